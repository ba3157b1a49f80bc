"""The package stands on its own: the built wheel, installed into a second fresh venv and run from an empty folder
with no shared/ data above it, answers --version, doctor and info, and the packaged proxy base labels images."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import torch
from PIL import Image

import lightlabel as ll
from lightlabel.version import DISTRIBUTION

PROJECT = Path(__file__).resolve().parent.parent


def _run(cmd, cwd, env):
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{cmd}: {out.stdout[-1500:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_wheel_from_an_empty_folder(tmp_path, make_projector):
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w",
          str(dist), str(PROJECT)], PROJECT, os.environ)
    wheel = next(dist.glob("lightlabel_torch-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    fields = dict(line.split(": ", 1) for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                  if ": " in line and not line.startswith(" "))
    assert fields["Name"] == DISTRIBUTION == "lightlabel-torch" and fields["Version"] == ll.__version__
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "lightlabel = lightlabel.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
    for asset in ("proxy-base.safetensors", "imagenet1k_wnids.txt", "clip-vit-b32-imagenet1k-text.fp16.safetensors",
                  "lightlabel-proxy-rn.json", "cifar10-resnet20-epoch001.pt", "adapters/registry.json",
                  "adapters/cifar10-proxy-rn/adapter.safetensors", "adapters/cifar10-proxy-rn/text_embeddings.safetensors"):
        assert any(n.endswith(asset) for n in names), f"{asset} is not in the wheel"
    assert not any(n.startswith(("tests/", "benchmarks/", "shared/")) for n in names)
    # exactly the source's modules: a stale build/ folder beside the source once shipped a module deleted from it
    source = {p.relative_to(PROJECT).as_posix() for p in (PROJECT / "lightlabel").rglob("*.py")}
    shipped = {n for n in names if n.startswith("lightlabel/") and n.endswith(".py")}
    assert shipped == source, f"wheel and source differ (delete build/ and rebuild): {sorted(shipped ^ source)}"

    # a second, fresh venv: lightlabel only from the wheel; its dependencies (torch & co.) seen through a .pth file
    venv = tmp_path / "venv2"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, os.environ)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                     os.environ).strip())
    (site / "_lightlabel_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp_path, os.environ)

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("LIGHTLABEL_DATA", "PYTHONPATH")}
    env.update(HF_HUB_OFFLINE="1", LIGHTLABEL_CACHE=str(tmp_path / "cache"), HF_HOME=str(tmp_path / "hf"))
    lightlabel = str(venv / "bin" / "lightlabel")
    assert _run([lightlabel, "--version"], empty, env).strip() == f"lightlabel {ll.__version__}"
    doctor = _run([lightlabel, "doctor"], empty, env)
    assert str(venv) in doctor and "lightlabel-proxy-rn: shipped" in doctor and "3 weak teachers shipped" in doctor
    assert f"distribution {DISTRIBUTION}" in doctor
    assert "shared data: not found" in doctor, doctor
    adapter = make_projector().save_pretrained(tmp_path / "adapter")
    info = _run([lightlabel, "info", str(adapter)], empty, env)
    assert "lightlabel-tiny-rn" in info and "10: airplane" in info

    for i in range(4):  # images the test writes, labelled by the packaged proxy base
        Image.fromarray((torch.rand(48, 48, 3) * 255).byte().numpy()).save(empty / f"img{i}.png")
    script = textwrap.dedent("""
        import glob, lightlabel as ll, torch
        from lightlabel.data import decode_rgb
        assert ll.__file__.startswith(%r), ll.__file__
        projector = ll.Projector.packaged(["n01440764", "n01443537", "n01484850"]).merge()
        names = list(projector.class_names)
        assert projector.base_pretrained == "lightlabel:packaged", projector.base_pretrained
        images = torch.stack([decode_rgb(f) for f in sorted(glob.glob("img*.png"))]).float() / 255
        logits = ll.labeling.ModelLabels(projector).label(images)
        assert logits.shape == (4, 3) and torch.isfinite(logits).all()
        fitted = ll.Projector.from_pretrained("lightlabel/cifar10-proxy-rn")  # the adapter shipped in the wheel
        entry = ll.list_adapters()[0]
        assert fitted.num_classes == 10 and entry.nbytes == fitted.adapter_nbytes, (entry, fitted.adapter_nbytes)
        print("labelled", tuple(logits.shape), names)
    """) % str(site)
    assert "labelled (4, 3)" in _run([str(python), "-c", script], empty, env)
    for example in sorted((PROJECT / "examples").glob("*.py")):  # each example's --help, from the wheel's package
        assert "usage:" in _run([str(python), str(example), "--help"], empty, env), example
