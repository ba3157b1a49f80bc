"""fit_adapter and train_teachers on real CIFAR-10 images and the real CIFAR-10 ResNet teachers."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import CIFAR10_CLASSES, interrupt_after_save

import lightlabel as ll
from lightlabel.core.base import fingerprint
from lightlabel.data import load_image_folder
from lightlabel.labeling.teachers import load_teachers

WORKER = Path(__file__).resolve().parent / "resume_worker.py"


@pytest.fixture(scope="module")
def cifar_ds(cifar_train):
    return load_image_folder(cifar_train, progress=False)


@pytest.fixture(scope="module")
def resnet20(resnet20_path):
    return resnet20_path


@pytest.fixture(scope="module")
def resnet56(models_dir):
    return models_dir / "cifar10-resnet56-4bfd9763.th"


IMAGENET32 = ll.InputSpec.imagenet(32)


def _fit(ds, teachers, tiny_rn, out_dir=None, **kw):
    fit = {"epochs": 2, "batch_size": 20, "lr": 5e-3, "val_fraction": 0.2,
           **{k: kw.pop(k) for k in list(kw) if k in ll.FitConfig.__dataclass_fields__}}
    return ll.fit_adapter(ds, teachers=teachers, base=tiny_rn[0], pretrained=tiny_rn[1], out_dir=out_dir,
                          config=ll.AdapterConfig(head_rank=4), fit=ll.FitConfig(**fit), teacher_input=IMAGENET32,
                          progress=False, **{"device": "cpu", **kw})


def test_real_teachers_load_and_are_accurate(data_root, models_dir, resnet56, tmp_path):
    from lightlabel.data import extract_image_folder

    test = load_image_folder(extract_image_folder(data_root / "cifar10" / "test.tar.gz", tmp_path / "test",
                                                  split="test", per_class=10), progress=False)
    x = IMAGENET32.normalize(test.images.float() / 255)
    for path in (models_dir / "cifar10-resnet20-12fca82f.th", resnet56):
        teacher = ll.load_teacher(path, input_spec=IMAGENET32)
        assert teacher.input_spec == IMAGENET32
        with torch.no_grad():
            acc = (teacher(x).argmax(1) == test.labels).float().mean().item()
        assert acc >= 0.8, f"{path.name}: {acc:.2f} top-1 on 100 real test images"


def test_fitting_lowers_mse_to_teachers_and_changes_only_the_adapter(cifar_ds, resnet20, resnet56, tiny_rn):
    reference = ll.Projector(base=tiny_rn[0], pretrained=tiny_rn[1], class_names=CIFAR10_CLASSES,
                             config=ll.AdapterConfig(head_rank=4))
    base_before = {k: v.clone() for k, v in reference.visual.state_dict().items() if "lora" not in k}
    projector = _fit(cifar_ds, [resnet20, resnet56], tiny_rn, epochs=3)
    history = projector.fit_info["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert history[-1]["mse"] < history[0]["mse"], "fitting must lower the held-out MSE to the teachers"
    assert history[-1]["loss"] < history[1]["loss"]
    for key in ("agreement", "kl", "top1", "teacher_top1"):
        assert 0 <= history[-1][key] < float("inf")
    assert history[-1]["teacher_top1"] >= 0.8
    base_after = {k: v for k, v in projector.visual.state_dict().items() if "lora" not in k}
    assert base_after.keys() == base_before.keys()
    for k, v in base_before.items():
        assert torch.equal(base_after[k], v), f"base tensor {k} changed during fitting"
    changed = [k for k, v in projector.adapter_state().items() if not torch.equal(v, reference.adapter_state()[k])]
    assert any(k.startswith("image.") for k in changed) and "head.lora_B" in changed
    assert projector.fit_info["final_agreement"] == history[-1]["agreement"]
    assert not projector.training
    # the adapter names the teachers it imitates: other teachers (here one of the two) give another fingerprint
    both = load_teachers([resnet20, resnet56], input_spec=IMAGENET32)
    assert projector.fit_info["teachers_fingerprint"] == fingerprint(both)
    assert fingerprint(load_teachers([resnet20], input_spec=IMAGENET32)) != fingerprint(both)


def test_resume_equals_uninterrupted(cifar_ds, resnet20, tiny_rn, tmp_path, monkeypatch):
    full = _fit(cifar_ds, [resnet20], tiny_rn, out_dir=tmp_path / "full", epochs=3)
    interrupt_after_save(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _fit(cifar_ds, [resnet20], tiny_rn, out_dir=tmp_path / "resumed", epochs=3)
    monkeypatch.undo()
    assert torch.load(tmp_path / "resumed" / "fit-state.pt", weights_only=False)["epoch"] == 1
    # resumed with a DataLoader worker: each sample's augmentation is seeded by (seed, epoch, index), so the
    # workers change nothing and the resume is allowed
    resumed = _fit(cifar_ds, [resnet20], tiny_rn, out_dir=tmp_path / "resumed", epochs=3, num_workers=1)
    for k, v in full.adapter_state().items():
        assert torch.equal(resumed.adapter_state()[k], v), k
    assert [h["epoch"] for h in resumed.fit_info["history"]] == [0, 1, 2, 3]
    ll.Projector.from_pretrained(tmp_path / "resumed" / "adapter.safetensors")  # the per-epoch file loads
    assert ll.FitConfig.from_dict(ll.read_adapter(tmp_path / "resumed")[0].fit_info["config"]) == ll.FitConfig(
        epochs=3, batch_size=20, lr=5e-3, val_fraction=0.2, num_workers=1), "the fit config round-trips through the header"


def test_out_dir_of_a_fit_on_precomputed_text_embeddings_loads_alone(cifar_ds, resnet20, tiny_rn, tmp_path):
    dim = ll.Projector(base=tiny_rn[0], pretrained=tiny_rn[1], class_names=cifar_ds.classes).head.text_weight.shape[1]
    text = torch.nn.functional.normalize(torch.randn(len(cifar_ds.classes), dim, generator=torch.Generator().manual_seed(3)), dim=-1)
    fitted = _fit(cifar_ds, [resnet20], tiny_rn, out_dir=tmp_path, epochs=1, text_embeddings=text).eval()
    assert (tmp_path / "text_embeddings.safetensors").is_file()
    loaded = ll.Projector.from_pretrained(tmp_path).eval()  # no text_embeddings argument needed
    x = fitted.input_spec.normalize(torch.rand(4, 3, *fitted.image_size))
    with torch.no_grad():
        assert torch.equal(loaded(x), fitted(x))


def test_other_settings_in_out_dir_are_refused(cifar_ds, resnet20, tiny_rn, tmp_path):
    _fit(cifar_ds, [resnet20], tiny_rn, out_dir=tmp_path, epochs=1)
    with pytest.raises(ValueError, match=r"other settings \(differing: \['fit.lr'\]\)"):
        _fit(cifar_ds, [resnet20], tiny_rn, out_dir=tmp_path, epochs=1, lr=1e-3)


def test_image_folder_path_and_class_name_errors(cifar_train, cifar_ds, resnet20, tiny_rn):
    projector = _fit(str(cifar_train), [resnet20], tiny_rn, epochs=1)
    assert projector.class_names == tuple(CIFAR10_CLASSES)
    with pytest.raises(ValueError, match="has 9 names but the dataset has 10 classes"):
        _fit(cifar_ds, [resnet20], tiny_rn, class_names=CIFAR10_CLASSES[:9])
    no_cats = cifar_ds.subset([i for i, t in enumerate(cifar_ds.targets) if t != 3])
    with pytest.raises(ValueError, match=r"classes without samples.*'cat'"):
        _fit(no_cats, [resnet20], tiny_rn)
    with pytest.raises(ValueError, match="batch_size"):
        _fit(cifar_ds, [resnet20], tiny_rn, batch_size=0)
    with pytest.raises(ValueError, match="val_fraction"):
        _fit(cifar_ds, [resnet20], tiny_rn, val_fraction=1.5)


def test_teachers_with_wrong_class_count_raise(cifar_ds, tiny_rn):
    teacher = ll.models.build_model("cifar_resnet20", 7)
    with pytest.raises(ValueError, match="carries no input normalisation"):
        ll.fit_adapter(cifar_ds, teachers=[teacher], base=tiny_rn[0], pretrained=tiny_rn[1], progress=False)
    with pytest.raises(ValueError, match="output 7 classes but there are 10"):
        _fit(cifar_ds, [ll.with_input_spec(teacher, IMAGENET32)], tiny_rn)
    shuffled = ll.with_input_spec(ll.models.build_model("cifar_resnet20", 10), IMAGENET32)
    shuffled.classes = list(cifar_ds.classes)[::-1]  # the images' classes in another order: wrong targets
    with pytest.raises(ValueError, match="the labels of the teachers name the images' 10 classes in a different order"):
        _fit(cifar_ds, [shuffled], tiny_rn)


def test_train_teachers_checkpoints_and_resume(cifar_ds, tmp_path, monkeypatch):
    kw = dict(arch="cifar_resnet20", epochs=3, save_epochs=[1, 3], batch_size=30, lr=0.05, progress=False,
              device="cpu")  # bit-exact resume is a CPU property (cuDNN kernels may be nondeterministic)
    paths = ll.train_teachers(cifar_ds, out_dir=tmp_path / "full", **kw)
    assert [p.name for p in paths] == ["teacher-epoch001.pt", "teacher-epoch003.pt"]
    teacher = ll.load_teacher(paths[-1])
    assert teacher.classes == CIFAR10_CLASSES and teacher.input_spec == IMAGENET32 and not teacher.training
    assert teacher(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="contradicts"):
        ll.load_teacher(paths[-1], input_spec=ll.InputSpec.cifar10())

    interrupt_after_save(monkeypatch, epoch=2)
    with pytest.raises(KeyboardInterrupt):
        ll.train_teachers(cifar_ds, out_dir=tmp_path / "resumed", **kw)
    monkeypatch.undo()
    resumed = ll.train_teachers(cifar_ds, out_dir=tmp_path / "resumed", **kw)
    a, b = ll.load_teacher(paths[-1]).state_dict(), ll.load_teacher(resumed[-1]).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="save_epochs"):
        ll.train_teachers(cifar_ds, out_dir=tmp_path / "x", arch="cifar_resnet20", epochs=2, save_epochs=[3])
    with pytest.raises(TypeError, match="unknown TeacherConfig settings \\['epoch'\\]"):
        ll.train_teachers(cifar_ds, out_dir=tmp_path / "x", epoch=2)
    with pytest.raises(ValueError, match="arch"):
        ll.train_teachers(cifar_ds, out_dir=tmp_path / "y", arch="resnet-eighteen", epochs=1)


def test_low_res_resnet18_and_timm_architectures():
    model = ll.models.build_model("resnet18", 10, low_res=True, image_size=64).eval()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (2, 2) and isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    cifar = ll.models.build_model("resnet18", 10, low_res=True, image_size=32)
    assert cifar.conv1.stride == (1, 1)
    timm_model = ll.models.build_model("resnet10t", 5).eval()
    assert timm_model(torch.zeros(1, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(ValueError, match="ResNet-style"):
        ll.models.build_model("mobilenet_v2", 10, low_res=True)


def test_vectorized_ensemble_equals_loop_on_real_teachers(resnet56, cifar_batch):
    base = ll.load_teacher(resnet56, input_spec=IMAGENET32)
    teachers = []
    for i in range(3):
        t = copy.deepcopy(base)
        with torch.no_grad():
            for p in t.parameters():
                p.mul_(1 + 0.02 * i)
        teachers.append(t)
    x = (cifar_batch[0][:8] - 0.45) / 0.25
    with torch.no_grad():
        looped = ll.TeacherEnsemble(teachers, vectorize=False)(x)
        vmapped = ll.TeacherEnsemble(teachers, vectorize=True)(x)
        reference = torch.stack([t(x) for t in teachers]).mean(0)
    torch.testing.assert_close(vmapped, reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(looped, reference, rtol=1e-5, atol=1e-5)


def _run_killed_then_resumed(job, tmp_path, data_dir, base_ckpt, teacher, state_file, epoch_key="epoch"):
    """Start the worker, SIGKILL it once its state shows progress, then run it again to completion."""
    out = tmp_path / "killed"
    args = [sys.executable, str(WORKER), job, str(out), str(data_dir), str(base_ckpt), str(teacher)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "CUDA_VISIBLE_DEVICES": ""}  # bit-exact resume is checked on CPU
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (out / state_file).exists():
        if proc.poll() is not None:
            raise AssertionError(f"worker ended before the kill: {proc.stderr.read().decode()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("worker made no progress")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the worker finished before it could be killed"
    subprocess.run(args, env=env, check=True, capture_output=True)
    reference = tmp_path / "reference"
    subprocess.run(args[:3] + [str(reference)] + args[4:], env=env, check=True, capture_output=True)
    return out, reference


@pytest.mark.parametrize("job,state_file", [("fit", "fit-state.pt"), ("teachers", "trainer-state.pt")])
def test_sigkill_mid_run_then_resume_equals_uninterrupted(job, state_file, cifar_train, tiny_rn, resnet20, tmp_path):
    killed, reference = _run_killed_then_resumed(job, tmp_path, cifar_train, tiny_rn[1], resnet20, state_file)
    if job == "fit":
        a = ll.read_adapter(killed / "adapter.safetensors")[1]
        b = ll.read_adapter(reference / "adapter.safetensors")[1]
    else:
        a = ll.load_teacher(killed / "teacher-epoch004.pt").state_dict()
        b = ll.load_teacher(reference / "teacher-epoch004.pt").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fitting_at_a_label_size_feeds_that_size_and_records_it(cifar_ds, resnet20, tiny_rn, tmp_path):
    """An adapter is fitted at the size it labels at (here 64 px on a 32 px base), and its header says so."""
    projector = ll.Projector(base=tiny_rn[0], pretrained=tiny_rn[1], class_names=CIFAR10_CLASSES,
                             config=ll.AdapterConfig(head_rank=4, label_size=64))
    seen = set()
    projector.visual.register_forward_pre_hook(lambda m, args: seen.add(tuple(args[0].shape[-2:])))
    fitted = ll.fit_adapter(cifar_ds, teachers=[resnet20], projector=projector, out_dir=tmp_path / "fit",
                            fit=ll.FitConfig(epochs=1, batch_size=20, lr=5e-3, val_fraction=0.2),
                            teacher_input=IMAGENET32, progress=False, device="cpu")
    assert seen == {(64, 64)}, f"the tower saw {seen}"
    assert fitted.image_size == (64, 64) and fitted.input_spec.image_size == (64, 64)
    fitted.save_pretrained(tmp_path / "a")
    info = ll.read_adapter(tmp_path / "a")[0]
    assert info.config.label_size == 64
    assert ll.Projector.from_pretrained(tmp_path / "a").image_size == (64, 64)
