"""benchmarks/gpu/imagenette.sh, the part that runs here: the archive's quarters rejoin to the same bytes, and a
wrong command fails with the usage. No GPU and no network needed."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "gpu" / "imagenette.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("split") is None,
                                reason="needs bash and coreutils")


@pytest.fixture
def repo(tmp_path):
    """A scratch 'repository' with the data folder the script reads."""
    root = tmp_path / "repo"
    (root / ".git" / "info").mkdir(parents=True)
    (root / ".git" / "info" / "exclude").write_text("")
    data = tmp_path / "data"
    data.mkdir()
    payload = os.urandom(100_003)  # not a multiple of 4: the last quarter is shorter
    (data / "imagenette-128.tar.gz").write_bytes(payload)
    for name in ("README.md", "clip-vit-b32-imagenet1k-text.safetensors", "imagenet1k_wnids.txt"):
        (data / name).write_text(name)
    return root, data, payload


def run(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=root, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def test_prepare_splits_the_archive_into_quarters_that_rejoin_to_its_bytes(repo):
    root, data, payload = repo
    r = run(root, "prepare", LIGHTLABEL_DATA=str(data))
    assert r.returncode == 0, r.stderr
    parts = [root / ".imn" / "a" / "part0"] + [root / ".imn" / "b" / f"part{i}" for i in (1, 2, 3)]
    assert b"".join(p.read_bytes() for p in parts) == payload
    assert (root / ".imn" / "b" / "sha256").read_text().strip() == hashlib.sha256(payload).hexdigest()
    assert sorted(p.name for p in (root / ".imn" / "b" / "data").iterdir()) == [
        "README.md", "clip-vit-b32-imagenet1k-text.safetensors", "imagenet1k_wnids.txt"]
    assert "/.imn/" in (root / ".git" / "info" / "exclude").read_text().splitlines()
    run(root, "prepare", LIGHTLABEL_DATA=str(data))  # a second run adds no second exclude line
    assert (root / ".git" / "info" / "exclude").read_text().splitlines().count("/.imn/") == 1


def test_an_unknown_command_prints_the_usage_and_fails(repo):
    r = run(repo[0], "cellz")
    assert r.returncode == 2 and "usage:" in r.stderr
