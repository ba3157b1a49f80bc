"""Teachers, observers and students by name (issue 32): torchvision and timm weights through their own caches,
the packaged teachers, and one line naming the cache folder to fill when offline with nothing cached."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error

import pytest
import safetensors.torch
import torch
import torchvision

import lightlabel as ll
from lightlabel.cli import load_labels
from lightlabel.pretrained import is_model_name, packaged_teachers

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_torchvision_weights_from_a_filled_cache(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(reference.state_dict(), folder / os.path.basename(weights.url))
    teacher = ll.load_teacher("torchvision:resnet18")  # DEFAULT = IMAGENET1K_V1
    assert teacher.input_spec == ll.InputSpec.imagenet(224) and len(teacher.classes) == 1000
    assert teacher.classes[0] == "tench" and not teacher.training
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), reference.state_dict().values()))
    assert not any(p.requires_grad for p in teacher.parameters())
    assert ll.load_teacher("torchvision:resnet18:IMAGENET1K_V1").source == "torchvision:resnet18:IMAGENET1K_V1"
    import socket

    seen = []
    real = torchvision.models.get_model
    monkeypatch.setattr(torchvision.models, "get_model", lambda *a, **k: seen.append(socket.getdefaulttimeout())
                        or real(*a, **k))
    ll.load_teacher("torchvision:resnet18")
    assert seen == [socket.getdefaulttimeout()], "a cached file must not touch the process-wide socket timeout"


def test_torchvision_offline_with_an_empty_cache_is_one_line(tmp_path, monkeypatch, no_network, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="put the weights into .*empty/hub/checkpoints") as e:
        ll.load_teacher("torchvision:resnet18")
    assert "resnet18-f37072fd.pth" in str(e.value) and "\n" not in str(e.value)
    from lightlabel.cli import main

    assert main(["train", str(tmp_path), "--labels", "torchvision:resnet18"]) == 2  # no set there: an error first
    assert capsys.readouterr().err.count("\n") == 1


def _fill_hf_cache(cache, repo_id: str, files: dict[str, bytes]) -> None:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)


def test_timm_weights_from_a_filled_hub_cache(tmp_path, monkeypatch):
    import timm
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    torch.manual_seed(0)
    reference = timm.create_model("resnet10t.c3_in1k", pretrained=False)
    data = safetensors.torch.save({k: v.contiguous() for k, v in reference.state_dict().items()})
    config = {"architecture": "resnet10t", "num_classes": 1000,
              "pretrained_cfg": {k: v for k, v in reference.pretrained_cfg.items() if k not in ("url", "hf_hub_id")}}
    _fill_hf_cache(cache, "timm/resnet10t.c3_in1k", {"model.safetensors": data,
                                                      "config.json": json.dumps(config).encode()})
    teacher = ll.load_teacher("timm:resnet10t.c3_in1k")
    cfg = reference.pretrained_cfg
    assert teacher.input_spec == ll.InputSpec(cfg["mean"], cfg["std"], cfg["input_size"][-1])
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), reference.state_dict().values()))
    assert ll.load_teacher("hf-hub:timm/resnet10t.c3_in1k").source == "hf-hub:timm/resnet10t.c3_in1k"


def test_timm_offline_with_an_empty_cache_is_one_line(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    with pytest.raises(FileNotFoundError, match="put the weights into") as e:
        ll.load_teacher("timm:resnet10t.c3_in1k")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("source, error, words", [
    ("torchvision:resnet1800", ValueError, "torchvision has no classifier"),
    ("torchvision:resnet18:IMAGENET9K", ValueError, r"valid: \['IMAGENET1K_V1', 'DEFAULT'\]"),
    ("timm:not_a_model_xyz", ValueError, "timm has no model"),
    ("timm:resnet10t.bogus_tag", ValueError, r"no pretrained tag 'bogus_tag' for 'resnet10t'; valid: resnet10t.c3_in1k"),
    ("lightlabel:cifar10-resnet20-epoch9", FileNotFoundError, "shipped: "),
    ("tv:resnet18", FileNotFoundError, r"not found: tv:resnet18 \(not a model name either: a name starts with one of "
                                       r"\['torchvision:', 'timm:', 'hf-hub:', 'lightlabel:'\]\)"),
])
def test_bad_names_list_the_valid_choices(source, error, words):
    with pytest.raises(error, match=words):
        ll.load_teacher(source)


def test_packaged_teachers_and_the_name_parser(tmp_path):
    assert sorted(packaged_teachers()) == [f"cifar10-resnet20-epoch{e}" for e in (1, 2, 3)]
    teacher = ll.load_teacher("lightlabel:cifar10-resnet20-epoch2")
    assert teacher.input_spec == ll.InputSpec.imagenet(32) and teacher.classes[0] == "airplane"
    assert is_model_name("torchvision:resnet18") and is_model_name("timm:resnet18") and not is_model_name("t.pt")
    local = tmp_path / "timm:odd.pt"  # an existing file always counts as a file
    local.write_bytes(b"")
    assert not is_model_name(str(local))
    assert isinstance(load_labels("lightlabel:cifar10-resnet20-epoch1"), torch.nn.Module)


def test_students_by_scheme_name_build_the_architecture():
    model = ll.models.build_model("torchvision:resnet18", 10, low_res=True, image_size=32)
    assert model.fc.out_features == 10 and model.conv1.kernel_size == (3, 3)
    assert ll.models.build_model("timm:resnet10t", 7).fc.out_features == 7


def test_the_python_api_takes_teacher_names_where_it_takes_teachers(cifar_batch):
    from lightlabel.labeling.named import resolve_labeller
    from lightlabel.labeling.sources import as_label_source

    spec = ll.InputSpec.imagenet(32)
    one = ll.OnlineRelabeler("lightlabel:cifar10-resnet20-epoch1", input_spec=spec)
    images = cifar_batch[0][:3]
    expected = ll.load_teacher("lightlabel:cifar10-resnet20-epoch1")(spec.prepare(images))
    torch.testing.assert_close(one.label(spec.normalize(images)), expected, rtol=1e-5, atol=1e-5)
    both = resolve_labeller(["lightlabel:cifar10-resnet20-epoch1", ll.load_teacher("lightlabel:cifar10-resnet20-epoch2")])
    assert as_label_source(both).kind == "teachers"
    with pytest.raises(FileNotFoundError, match="shipped: "):
        resolve_labeller("lightlabel:cifar10-resnet20-epoch9")
    adapter = resolve_labeller("lightlabel/cifar10-proxy-rn")  # not a teacher name: an adapter (registry, Hub, file)
    assert isinstance(adapter, ll.Projector)
    assert resolve_labeller("hard") == "hard" and resolve_labeller(one) is one


def test_class_subset_takes_the_subsets_logits_in_its_order_and_carries_the_input():
    from lightlabel.pretrained import ClassSubset, restrict_classes, restrict_to_subset

    model = ll.with_input_spec(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1000)),
                               ll.InputSpec.imagenet(2))
    x = torch.randn(4, 3, 2, 2)
    sub = restrict_classes(model, ["n02102040", "n01440764"])  # ImageNet indices 217 and 0, in this order
    torch.testing.assert_close(sub(x), model(x)[:, [217, 0]])
    assert sub.input_spec == model.input_spec and "indices" in dict(sub.named_buffers())
    torch.testing.assert_close(restrict_classes(model, [5, 7])(x), model(x)[:, [5, 7]])
    with pytest.raises(ValueError, match="not ImageNet-1k WordNet ids"):
        restrict_classes(model, ["n02102040", "tench"])
    with pytest.raises(TypeError, match="the string 'n02102040'"):
        restrict_classes(model, "n02102040")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1000\)"):
        ClassSubset(model, [3, 1000])
    with pytest.raises(ValueError, match="non-empty sequence"):
        ClassSubset(model, [])
    # what the recipes do: restrict a 1000-class model only for WordNet-id class names, never otherwise
    assert isinstance(restrict_to_subset(model, ["n02102040", "n01440764"]), ClassSubset)
    assert restrict_to_subset(model, ["springer", "tench"]) is model
    assert restrict_to_subset(model, list(ll.classes.imagenet_wnids())) is model  # all 1000: nothing to restrict
    ten = ll.with_input_spec(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10)), ll.InputSpec.imagenet(2))
    assert restrict_to_subset(ten, ["n02102040", "n01440764"]) is ten


def test_fit_restricts_a_1000_class_teacher_to_a_wordnet_id_subset(tmp_path):
    from lightlabel.data import TensorImageDataset
    from lightlabel.recipes.fit import _teachers

    model = ll.with_input_spec(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 1000)),
                               ll.InputSpec.imagenet(8))
    ds = TensorImageDataset(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]),
                            ["n02102040", "n01440764"])
    ensemble = _teachers([model], ds, None, None, tmp_path, torch.device("cpu"), False)
    x = torch.randn(3, 3, 8, 8)
    torch.testing.assert_close(ensemble(x), model(x)[:, [217, 0]])


def test_wordnet_helpers_refuse_a_single_string_and_name_unknown_ids():
    """A bare string was iterated character by character, so the error listed ['n', '0', '1', ...]."""
    from lightlabel.classes import imagenet_class_indices, imagenet_class_names

    assert imagenet_class_indices(["n02102040", "n01440764"]) == [217, 0]
    for helper in (imagenet_class_indices, imagenet_class_names):
        with pytest.raises(TypeError, match=r"got the string 'n01440764' \(use \['n01440764'\]\)"):
            helper("n01440764")
    with pytest.raises(ValueError, match=r"not ImageNet-1k WordNet ids: \['tench'\]"):
        imagenet_class_indices(["n01440764", "tench"])
