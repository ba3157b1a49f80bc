"""distill_images: stitching, patch selection, Eq. 7 refinement, DistilledSet files, determinism, errors."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from conftest import CIFAR10_CLASSES, randomize_adapter
from test_fit import _run_killed_then_resumed
from torch import nn

import lightlabel as ll
from lightlabel.data import TensorImageDataset, load_image_folder
from lightlabel.recipes.distill import refine_images, stitch_patches


@pytest.fixture(scope="module")
def cifar_ds(cifar_train):
    return load_image_folder(cifar_train, progress=False)


@pytest.fixture(scope="module")
def resnet56(models_dir):
    return ll.load_teacher(models_dir / "cifar10-resnet56-4bfd9763.th",
                           input_spec=ll.InputSpec.imagenet(32))


def test_stitching_puts_each_patch_in_its_quadrant():
    patches = torch.stack([torch.full((3, 4, 4), float(i)) for i in range(8)])  # two images of 2 x 2 patches
    images = stitch_patches(patches, 4)
    assert images.shape == (2, 3, 8, 8)
    for n in range(2):
        for i, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            block = images[n, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4]
            assert torch.equal(block, torch.full((3, 4, 4), float(4 * n + i))), (n, i)
    nine = stitch_patches(torch.arange(9.0).view(9, 1, 1, 1).expand(9, 1, 2, 2), 9)
    assert nine[0, 0, ::2, ::2].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(ValueError, match="perfect square"):
        stitch_patches(patches, 2)


class BrightnessObserver(nn.Module):
    """Stub observer: the logit of class 0 is 10 x mean brightness, others 0; remembers every batch it saw."""

    def __init__(self, num_classes=2):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.num_classes, self.seen = num_classes, []
        self.input_spec = ll.InputSpec((0, 0, 0), (1, 1, 1))

    def forward(self, x):
        self.seen.append(x.detach().clone())
        out = torch.zeros(x.shape[0], self.num_classes)
        out[:, 0] = 10 * x.mean(dim=(1, 2, 3))
        return out


def _toy_dataset(values):
    images = torch.stack([torch.full((3, 8, 8), v, dtype=torch.uint8) for v in values])
    return TensorImageDataset(images, torch.zeros(len(values), dtype=torch.long), ["bright", "other"],
                              ids=[f"img{v}" for v in values])


def test_top_patches_by_realism_score_are_kept():
    values = [10, 200, 50, 250, 120, 30]  # brighter = higher class-0 logit = higher realism score
    ds = _toy_dataset(values)
    ds = TensorImageDataset(torch.cat([ds.images, ds.images[:2]]), torch.tensor([0] * 6 + [1, 1]),
                            ["bright", "other"], ids=ds.ids + ["o1", "o2"])
    out = ll.distill_images(ds, BrightnessObserver(), ipc=2, patches_per_image=1, candidates_per_class=6,
                            crops_per_image=2, image_size=8,
                            device="cpu", progress=False)
    chosen = sorted(src[0] for src, label in zip(out.sources, out.targets) if label == 0)
    assert chosen == ["img200", "img250"]


def test_each_image_keeps_its_best_crop():
    gradient = torch.linspace(0, 255, 16).round().to(torch.uint8).view(1, 1, 16).expand(3, 16, 16).clone()
    ds = TensorImageDataset(torch.stack([gradient, gradient]), torch.tensor([0, 1]), ["a", "b"], ids=["g0", "g1"])
    observer = BrightnessObserver()
    out = ll.distill_images(ds, observer, ipc=1, patches_per_image=1, candidates_per_class=1, crops_per_image=6,
                            crop_scale=(0.1, 0.5), image_size=16,
                            device="cpu", progress=False)
    crops = torch.cat(observer.seen[1:])[:6]  # class 0's six crops (the first call is the class-count probe)
    best = crops[crops.mean(dim=(1, 2, 3)).argmax()]
    assert torch.equal(out.images[0], (best * 255).round().to(torch.uint8))


def test_real_distillation_shapes_determinism_and_manifest(cifar_ds, resnet56):
    kw = dict(ipc=2, patches_per_image=4, candidates_per_class=8, crops_per_image=3, image_size=32, progress=False)
    a = ll.distill_images(cifar_ds, resnet56, seed=0, **kw)
    b = ll.distill_images(cifar_ds, resnet56, seed=0, **kw)
    c = ll.distill_images(cifar_ds, resnet56, seed=1, **kw)
    assert a.images.shape == (20, 3, 32, 32) and a.images.dtype == torch.uint8
    assert a.targets == [c for c in range(10) for _ in range(2)]
    assert torch.equal(a.images, b.images) and a.sources == b.sources
    assert not torch.equal(a.images, c.images)
    assert all(len(s) == 4 for s in a.sources)
    assert all(src.split("/")[0] == CIFAR10_CLASSES[label] for s, label in zip(a.sources, a.targets) for src in s)
    m = a.manifest
    assert m["ipc"] == 2 and m["patch_size"] == 16 and m["classes"] == CIFAR10_CLASSES
    assert m["seconds_select_per_image"] > 0 and m["peak_memory_bytes"] > 0 and len(m["observer"]["fingerprint"]) == 64
    assert a.storage_nbytes > 0


def test_refinement_lowers_eq7_loss_and_keeps_range(cifar_batch, make_projector):
    projector = make_projector(targets=("conv", "attnpool"))
    randomize_adapter(projector, scale=0.2)
    images = cifar_batch[0][:6]
    refined, curve = refine_images(images, projector, steps=15, lr=0.01)
    assert refined.shape == images.shape and refined.min() >= 0 and refined.max() <= 1
    assert curve[-1] < curve[0], curve
    assert not torch.equal(refined, images)
    assert all(p.grad is None for p in projector.trainable_parameters()), "refinement must not touch the adapter"


def test_distill_with_projector_refinement_and_projector_observer(cifar_ds, resnet56, make_projector):
    projector = make_projector()
    with pytest.warns(UserWarning, match="no information loss to compensate"):  # 1 patch: measured to hurt
        out = ll.distill_images(cifar_ds, resnet56, ipc=1, patches_per_image=1, candidates_per_class=3,
                                crops_per_image=2, image_size=32, projector=projector, refine_steps=3, progress=False)
    assert out.manifest["refine"] and set(out.manifest["refine_loss"]) == set(CIFAR10_CLASSES)
    by_projector = ll.distill_images(cifar_ds, projector.eval(), ipc=1, patches_per_image=1, candidates_per_class=3,
                                     crops_per_image=2, progress=False)
    assert by_projector.images.shape == (10, 3, 32, 32)
    with warnings.catch_warnings():  # a 2 x 2 grid down-samples its patches: Eq. 7 has a loss to compensate
        warnings.simplefilter("error")
        grid = ll.distill_images(cifar_ds, resnet56, ipc=1, patches_per_image=4, candidates_per_class=4,
                                 crops_per_image=2, image_size=32, projector=projector, refine_steps=2, progress=False)
    assert grid.manifest["refine"] and grid.images.shape == (10, 3, 32, 32)


def test_save_load_round_trip_is_exact_and_atomic(cifar_ds, resnet56, tmp_path, monkeypatch):
    out = ll.distill_images(cifar_ds, resnet56, ipc=1, patches_per_image=4, candidates_per_class=4,
                            crops_per_image=2, image_size=32, progress=False)
    path = out.save(tmp_path / "set")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["ipc"] == 1 and manifest["classes"] == CIFAR10_CLASSES and len(manifest["sources"]) == 10
    assert manifest["storage_bytes"] == sum((path / f).stat().st_size for f in manifest["files"]) == out.storage_nbytes
    loaded = ll.DistilledSet.load(path)
    assert torch.equal(loaded.images, out.images) and loaded.targets == out.targets and loaded.sources == out.sources
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(str(path))
    assert folder.classes == CIFAR10_CLASSES and sorted(folder.targets) == sorted(out.targets)

    import lightlabel.sets.distilled as distill_module

    def broken_png(image):
        raise OSError("disk full")

    monkeypatch.setattr(distill_module, "_png_bytes", broken_png)
    with pytest.raises(OSError):
        out.save(path)
    monkeypatch.undo()
    assert torch.equal(ll.DistilledSet.load(path).images, out.images), "a failed save must leave the old set intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]

    first = path / manifest["files"][0]
    first.write_bytes(first.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="does not match its sha256"):
        ll.DistilledSet.load(path)
    (path / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a complete distilled set"):
        ll.DistilledSet.load(path)


def test_unsafe_class_names_get_ordered_folders(tmp_path):
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    ds = ll.DistilledSet(images, torch.tensor([0, 1]), ["zebra / striped", "ant"], [["x"], ["y"]])
    path = ds.save(tmp_path / "s")
    from torchvision.datasets import ImageFolder

    assert ImageFolder(str(path)).classes == ["0000-zebra_striped", "0001-ant"]
    assert ll.DistilledSet.load(path).classes == ["zebra / striped", "ant"]


def test_errors(cifar_ds, resnet56):
    kw = dict(crops_per_image=2, progress=False)
    with pytest.raises(ValueError, match=r"ipc \* patches_per_image = 52 .* fewer"):
        ll.distill_images(cifar_ds, resnet56, ipc=13, patches_per_image=4, candidates_per_class=20, image_size=32, **kw)
    with pytest.raises(ValueError, match="smaller than a 64x64 patch"):
        ll.distill_images(cifar_ds, resnet56, ipc=1, patches_per_image=1, candidates_per_class=2, image_size=64, **kw)
    seven = ll.models.build_model("cifar_resnet20", 7)
    with pytest.raises(ValueError, match="observer .* carries no input normalisation"):
        ll.distill_images(cifar_ds, seven, ipc=1, patches_per_image=1, candidates_per_class=2, **kw)
    with pytest.raises(ValueError, match="outputs 7 classes but the dataset has 10"):
        ll.distill_images(cifar_ds, ll.with_input_spec(seven, ll.InputSpec.imagenet(32)), ipc=1, patches_per_image=1,
                          candidates_per_class=2, **kw)
    shuffled = ll.with_input_spec(ll.models.build_model("cifar_resnet20", 10), ll.InputSpec.imagenet(32))
    shuffled.classes = list(cifar_ds.classes)[::-1]  # its realism scores would be another class's
    with pytest.raises(ValueError, match="the labels of the observer name the images' 10 classes in a different order"):
        ll.distill_images(cifar_ds, shuffled, ipc=1, patches_per_image=1, candidates_per_class=2, **kw)
    with pytest.raises(TypeError, match="unknown DistillConfig settings \\['ipcs'\\]"):
        ll.distill_images(cifar_ds, resnet56, ipcs=1, **kw)
    with pytest.raises(ValueError, match="perfect square"):
        ll.distill_images(cifar_ds, resnet56, ipc=1, patches_per_image=2, **kw)
    with pytest.raises(ValueError, match="ipc"):
        ll.distill_images(cifar_ds, resnet56, ipc=0, **kw)


def test_sigkill_mid_run_then_resume_equals_uninterrupted(cifar_train, tiny_rn, resnet20_path, tmp_path):
    killed, reference = _run_killed_then_resumed("distill", tmp_path, cifar_train, tiny_rn[1], resnet20_path,
                                                 "distill-state.pt")
    a, b = ll.DistilledSet.load(killed / "distilled"), ll.DistilledSet.load(reference / "distilled")
    assert torch.equal(a.images, b.images) and a.sources == b.sources


def test_observer_by_name_equals_the_loaded_module(cifar_ds):
    ds = cifar_ds
    kw = dict(ipc=1, patches_per_image=1, candidates_per_class=2, crops_per_image=2, image_size=32, device="cpu",
              progress=False)
    by_name = ll.distill_images(ds, "lightlabel:cifar10-resnet20-epoch3", **kw)
    by_module = ll.distill_images(ds, ll.load_teacher("lightlabel:cifar10-resnet20-epoch3"), **kw)
    assert torch.equal(by_name.images, by_module.images)
    with pytest.raises(TypeError, match="`observer` must be"):
        ll.distill_images(ds, 3, **kw)


class ImageNetBrightnessObserver(BrightnessObserver):
    """A 1000-class stand-in for torchvision's ImageNet ResNet-18: brightness lands on ImageNet index 217
    (n02102040, English springer), everything else is 0."""

    def __init__(self):
        super().__init__(num_classes=1000)
        self.classifier = nn.Linear(1, 1000)  # what the class count is read from without a forward

    def forward(self, x):
        out = torch.zeros(x.shape[0], 1000)
        out[:, 217] = 10 * x.mean(dim=(1, 2, 3))
        return out


def test_a_1000_class_imagenet_observer_is_restricted_to_a_wordnet_id_subset():
    """RDED's observer for ImageNet subsets is a 1000-class model; on folders named by WordNet id its logits are
    restricted to the subset's classes, in the subset's order (here the springer is the dataset's class 0)."""
    values = [10, 200, 50, 250, 120, 30]
    images = torch.stack([torch.full((3, 8, 8), v, dtype=torch.uint8) for v in values + [1, 2]])
    ds = TensorImageDataset(images, torch.tensor([0] * 6 + [1, 1]), ["n02102040", "n01440764"],
                            ids=[f"img{v}" for v in values] + ["o1", "o2"])
    out = ll.distill_images(ds, ImageNetBrightnessObserver(), ipc=2, patches_per_image=1, candidates_per_class=6,
                            crops_per_image=2, image_size=8, device="cpu", progress=False)
    assert sorted(src[0] for src, label in zip(out.sources, out.targets) if label == 0) == ["img200", "img250"]
    named = TensorImageDataset(images, ds.labels, ["springer", "tench"], ids=ds.ids)
    with pytest.raises(ValueError, match=r"outputs 1000 classes but the dataset has 2 .*restrict_classes"):
        ll.distill_images(named, ImageNetBrightnessObserver(), ipc=1, patches_per_image=1, candidates_per_class=2,
                          crops_per_image=2, image_size=8, device="cpu", progress=False)
