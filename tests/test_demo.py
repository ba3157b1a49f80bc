"""lightlabel demo: the pipeline end to end at toy size, its data sources, resume, and caches that never mix data."""

from __future__ import annotations

import json
import shutil
import urllib.error
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import lightlabel as ll
from lightlabel import demo
from lightlabel.cli import main

TINY = demo.DemoSettings(
    adapter=ll.AdapterConfig(head_rank=4), fit=ll.FitConfig(epochs=1, batch_size=8, lr=5e-3), fit_per_class=None,
    distill=ll.DistillConfig(ipc=1, patches_per_image=1, candidates_per_class=4, crops_per_image=2, refine_steps=0),
    protocol=ll.EvalProtocol.helio(student="cifar_resnet20", epochs=2, batch_size=2, eval_every=2),
    teachers=ll.TeacherConfig(arch="cifar_resnet20", epochs=2, save_epochs=(1, 2), batch_size=8, lr=0.05))


def _toy_folder(root: Path, cifar_train: Path, classes: list[str], per_class: int = 6) -> Path:
    """An ImageFolder root with train/ and val/ of real CIFAR-10 images of ``classes``."""
    for split, offset in (("train", 0), ("val", per_class)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for f in sorted((cifar_train / c).iterdir())[offset:offset + per_class]:
                shutil.copy(f, root / split / c / f.name)
    return root


def _run(data, work, tiny_rn, capsys):
    results = demo.run_demo(data=str(data), work_dir=str(work), base=tiny_rn[0], pretrained=tiny_rn[1],
                            settings=TINY, progress=False, download=False)
    return results, capsys.readouterr().out


def test_demo_end_to_end_at_toy_size_resumes_every_stage(tmp_path, cifar_train, tiny_rn, capsys, caplog):
    data = _toy_folder(tmp_path / "cats-dogs", cifar_train, ["cat", "dog"])
    results, out = _run(data, tmp_path / "work", tiny_rn, capsys)
    for expected in ("lightlabel demo on cats-dogs", "2 classes (cat, dog)", "projector labels (online)",
                     "online teacher labels", "hard labels", "stored fp16 soft labels the projector replaces",
                     "6,000,000,000 bytes at ImageNet-1k scale", "trained here on your data (weak)", "wall time"):
        assert expected in out, expected
    assert [s["labels"] for s in results["students"]] == ["projector", "teacher", "hard"]
    assert all(s["iterations"] == 2 for s in results["students"])
    assert results["stored_soft_label_bytes"] == 300 * 2 * 2 * 2 and results["classes"] == ["cat", "dog"]
    assert set(results["timings"]) == {"data", "teachers", "fit", "distill", "student_projector", "student_teacher",
                                       "student_hard"}
    assert json.loads((tmp_path / "work" / "results.json").read_text())["dataset"] == "cats-dogs"
    stages = sorted(p.name.split("-")[0] for p in (tmp_path / "work").iterdir() if p.is_dir())
    assert stages == ["adapter", "decoded", "distill", "fit", "student", "student", "student", "teachers"]

    before = {p.name for p in (tmp_path / "work").iterdir()}
    caplog.set_level("INFO")
    again, _ = _run(data, tmp_path / "work", tiny_rn, capsys)
    assert {p.name for p in (tmp_path / "work").iterdir()} == before, "a re-run must reuse every stage's folder"
    assert [s["top1"] for s in again["students"]] == [s["top1"] for s in results["students"]]
    assert again["timings"]["teachers"] < results["timings"]["teachers"]
    resumed = " ".join(r.getMessage() for r in caplog.records)
    assert "train_teachers: resuming" not in resumed  # finished runs return at once, with no epoch to resume


def test_a_second_dataset_in_the_same_work_folder_gets_its_own_results(tmp_path, cifar_train, tiny_rn, capsys):
    work = tmp_path / "work"
    a = _toy_folder(tmp_path / "A", cifar_train, ["cat", "dog"])
    b = _toy_folder(tmp_path / "B", cifar_train, ["airplane", "ship", "truck"])
    first, _ = _run(a, work, tiny_rn, capsys)
    second, out = _run(b, work, tiny_rn, capsys)
    assert second["classes"] == ["airplane", "ship", "truck"] and "lightlabel demo on B" in out
    assert "3 classes (airplane, ship, truck)" in out
    assert json.loads((work / "results.json").read_text())["classes"] == ["airplane", "ship", "truck"]
    assert ll.Projector.from_pretrained(work / "adapter").class_names == ("airplane", "ship", "truck")
    assert len(list(work.glob("distill-*"))) == 2 and len(list(work.glob("fit-*"))) == 2
    assert first["distilled_bytes"] != second["distilled_bytes"]


def test_missing_or_empty_data_fails_at_once_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "results.json").write_text('{"dataset": "earlier"}')
    for data in (tmp_path / "empty", tmp_path / "missing"):
        assert main(["demo", "--data", str(data), "--work-dir", str(tmp_path / "work"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "missing or empty" in err and "--data" in err and "Traceback" not in err
    assert (tmp_path / "work" / "results.json").read_text() == '{"dataset": "earlier"}'


def test_offline_without_shared_data_names_the_three_sources(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "default_data_root", lambda: None)
    monkeypatch.setenv("LIGHTLABEL_CACHE", str(tmp_path / "cache"))
    import torchvision.datasets

    calls = []

    def no_network(self, *a, **k):
        calls.append(1)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", no_network)
    with pytest.raises(FileNotFoundError) as e:
        demo.resolve_data(None, tmp_path / "work")
    message = str(e.value)
    assert calls and all(s in message for s in ("--data", "LIGHTLABEL_DATA", "shared/data", "download", "URLError"))
    assert main(["demo", "--work-dir", str(tmp_path / "work"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and "network is unreachable" in err


def test_default_data_is_cifar10_from_the_shared_data(tmp_path, data_root):
    source = demo.resolve_data(None, tmp_path, val_per_class=3, progress=False)
    assert source.name == "CIFAR-10" and "shared data" in source.origin
    assert source.train.classes == demo.CIFAR10_CLASSES and len(source.val) == 30
    assert source.train.images.shape[1:] == (3, 32, 32) and source.train.images.dtype == torch.uint8


def test_packaged_weak_teachers_are_early_checkpoints_of_one_trajectory():
    paths = demo._weak_teachers()
    assert [p.name for p in paths] == [f"cifar10-resnet20-epoch00{e}.pt" for e in (1, 2, 3)]
    for p in paths:
        blob = torch.load(p, weights_only=True)
        assert blob["arch"] == "cifar_resnet20" and blob["classes"] == demo.CIFAR10_CLASSES
        assert blob["state_dict"]["conv1.weight"].dtype == torch.float16 and blob["made_by"].startswith("python ")
        assert ll.load_teacher(p).input_spec == demo.TEACHER_INPUT
    accuracy = [torch.load(p, weights_only=True)["test_top1"] for p in paths]
    assert accuracy == sorted(accuracy) and accuracy[0] > 0.2, "weak but real: better than chance, rising"


def test_settings_presets():
    cpu, full = demo.DemoSettings.cpu(), demo.DemoSettings.full()
    assert cpu.protocol.total_steps(100) == full.protocol.total_steps(100) == 300, "the anchors' step count at IPC 10"
    assert full.protocol.student == "resnet18" and cpu.protocol.augment == full.protocol.augment
    assert replace(cpu, fit_per_class=None).fit_per_class is None


def test_a_given_strong_teacher_keeps_its_description(tmp_path, capsys):
    """0.3.0.dev printed "teachers: full CifarResNet ()" and recorded an empty teacher note whenever the strong
    teacher was given or the weak ones were packaged: the note was dropped on the way out."""
    from lightlabel.models import build_model, save_teacher

    path = save_teacher(build_model("cifar_resnet20", 10), tmp_path / "strong.pt", arch="cifar_resnet20",
                        classes=[str(i) for i in range(10)], low_res=True, input_spec=demo.TEACHER_INPUT)
    cfg = demo.DemoSettings()
    for weak in (None, [str(path)]):
        strong, note, paths, weak_note = demo._demo_teachers(cfg, None, tmp_path, str(path), weak, True, 32, 0,
                                                             "cpu", False, False)
        assert note == str(path) and isinstance(strong, torch.nn.Module) and paths and weak_note
