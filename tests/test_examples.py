"""Every example runs on the committed real-image fixture (no shared data, no network), and answers --help."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "cifar10"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.py")))
def test_every_example_answers_help(name, tmp_path):
    out = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--help"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--data" in out.stdout and "usage:" in out.stdout


def test_quickstart(tmp_path, capsys):
    out = _load("quickstart").main(["--data", str(FIXTURE), "--out", str(tmp_path), "--batch-size", "20"])
    assert out["soft_logits"].shape == (20, 10) and torch.isfinite(out["soft_logits"]).all()
    assert out["adapter"].is_file()
    printed = capsys.readouterr().out
    assert "stored soft labels" in printed and f"data: ImageFolder {FIXTURE / 'train'}" in printed
    assert "lightlabel-proxy-rn / lightlabel:packaged" in printed


def test_drop_in_training():
    loss = _load("drop_in_training").main(["--data", str(FIXTURE), "--epochs", "1", "--per-class", "3"])
    assert loss == loss and loss > 0  # finite, positive


def test_timm_student():
    top1 = _load("timm_student").main(["--data", str(FIXTURE), "--epochs", "1", "--ipc", "1"])
    scored = top1 * 40  # a fraction of the fixture's 40 real test images
    assert abs(scored - round(scored)) < 1e-9


def test_build_and_publish(tmp_path, monkeypatch):
    module = _load("build_and_publish")
    pushed = []
    monkeypatch.setattr(module.ll.Projector, "push_to_hub", lambda self, repo, **kw: pushed.append(repo) or "ok")
    path = module.main(["--data", str(FIXTURE), "--out", str(tmp_path / "a"), "--epochs", "1", "--per-class", "6",
                        "--push", "me/repo"])
    assert path.is_file() and (tmp_path / "a" / "README.md").is_file() and pushed == ["me/repo"]
    info = module.ll.read_adapter(path)[0]
    assert info.base_pretrained == "lightlabel:packaged" and info.fit_info["num_teachers"] == 3


def test_distill_dataset(tmp_path):
    distilled = _load("distill_dataset").main(["--data", str(FIXTURE), "--out", str(tmp_path / "d"), "--ipc", "1",
                                               "--candidates", "4"])
    assert len(distilled) == 10 and (tmp_path / "d" / "manifest.json").is_file()
    assert distilled.manifest["observer"]["type"] != "Projector"


def test_distill_dataset_with_a_projector_observes_with_it_and_does_not_refine(tmp_path):
    distilled = _load("distill_dataset").main(["--data", str(FIXTURE), "--out", str(tmp_path / "d"), "--ipc", "1",
                                               "--candidates", "4", "--adapter", "lightlabel/cifar10-proxy-rn"])
    assert distilled.manifest["observer"]["type"] == "Projector" and distilled.manifest["refine"] is False


def test_ddp_train_under_torchrun(tmp_path):
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(EXAMPLES / "ddp_train.py"), "--demo", "--data", str(FIXTURE), "--epochs", "1"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "epoch 1/1" in out.stdout and "top-1" in out.stdout


def test_api_reference_lists_every_public_name():
    import lightlabel as ll

    text = (EXAMPLES.parent / "docs" / "api.md").read_text()
    missing = [name for name in ll.__all__ if f"## `{name}" not in text]
    assert not missing, f"docs/api.md is stale (run python docs/_gen_api.py): {missing}"
