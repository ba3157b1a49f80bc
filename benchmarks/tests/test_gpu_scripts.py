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


PREPARE = SCRIPT.parent / "prepare.sh"


def test_prepare_carries_the_data_models_and_finished_distilled_sets(tmp_path):
    root = tmp_path / "repo"
    (root / ".git" / "info").mkdir(parents=True)
    data, models, cache = tmp_path / "shared" / "data", tmp_path / "shared" / "models", tmp_path / "cache"
    (data / "cifar10").mkdir(parents=True)
    models.mkdir()
    for name in ("cifar10/train.tar.gz", "README.md", "clip-vit-b32-imagenet1k-text.safetensors", "imagenet1k_wnids.txt"):
        (data / name).write_text(name)
    (models / "cifar10-resnet56-4bfd9763.th").write_text("weights")
    for name in ("distilled-aaa", "distilled-bbb.work", "fit-ccc", "fit-ddd"):
        (cache / "helio" / "cifar10" / name).mkdir(parents=True)
        (cache / "helio" / "cifar10" / name / "manifest.json").write_text("{}")
    (cache / "helio" / "cifar10" / "fit-ddd" / "fit-state.pt").write_text("state")  # a fit, finished or not
    r = subprocess.run(["bash", str(PREPARE)], cwd=root, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "LIGHTLABEL_DATA": str(data), "LIGHTLABEL_BENCH_CACHE": str(cache),
                            "NO_WHEELS": "1"})
    assert r.returncode == 0, r.stderr
    carry = root / ".carry"
    assert (carry / "shared" / "data" / "cifar10" / "train.tar.gz").read_text() == "cifar10/train.tar.gz"
    assert (carry / "shared" / "models" / "cifar10-resnet56-4bfd9763.th").is_file()
    # finished distilled sets travel, no half-built (.work) one; and every fit with a state (to reuse or resume)
    assert (carry / "cache.lst").read_text().splitlines() == ["cache/helio/cifar10/distilled-aaa",
                                                               "cache/helio/cifar10/fit-ddd"]
    assert (carry / "cache" / "helio" / "cifar10" / "fit-ddd" / "fit-state.pt").read_text() == "state"
    assert {"/.whl/", "/.carry/"} <= set((root / ".git" / "info" / "exclude").read_text().splitlines())


def test_prepare_without_the_data_says_where_to_point(tmp_path):
    r = subprocess.run(["bash", str(PREPARE)], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "LIGHTLABEL_DATA": str(tmp_path / "nowhere"), "NO_WHEELS": "1"})
    assert r.returncode == 2 and "LIGHTLABEL_DATA" in r.stderr


SESSION = SCRIPT.parent / "session.sh"


@pytest.mark.parametrize("stages, expected", [
    ("cells", ["helio_table.py --ipc 10 --rows a", "helio_table.py --ipc 50 --rows b"]),
    ("tests bench", ["-m pytest", "labels_per_second.py", "train_step.py"]),
    (None, ["-m pytest", "labels_per_second.py", "train_step.py", "helio_table.py --ipc 10 --rows a",
            "helio_table.py --ipc 50 --rows b", "augment_speed.py", "-m pytest"]),
])
def test_session_runs_the_stages_it_is_given_in_order(tmp_path, stages, expected):
    """session.sh with stand-ins for python3, nvidia-smi and the machine's common.sh: which programs it runs."""
    root, bin_ = tmp_path / "repo", tmp_path / "bin"
    (root / "benchmarks" / "gpu").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "docs" / "results.md").write_text("")
    shutil.copy(SESSION, root / "benchmarks" / "gpu" / "session.sh")
    (root / "benchmarks" / "gpu" / "common.sh").write_text(
        'START=$(date +%s); END=$((START + ${BUDGET:-560}))\nleft() { echo $(( END - $(date +%s) )); }\n'
        'cells_timeout() { [ "$(left)" -gt 60 ] && echo $(( $(left) - 30 )); }\n')
    bin_.mkdir()
    calls = tmp_path / "calls.log"
    (bin_ / "python3").write_text(f'#!/bin/bash\necho "$*" >> {calls}\n')
    (bin_ / "nvidia-smi").write_text("#!/bin/bash\necho fake-gpu\n")
    for tool in bin_.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "OUT": str(tmp_path / "out"), "BUDGET": "600"}
    env.pop("STAGES", None)
    if stages is not None:
        env["STAGES"] = stages
    (tmp_path / "out").mkdir()
    r = subprocess.run(["bash", "benchmarks/gpu/session.sh", "--ipc 10 --rows a", "--ipc 50 --rows b"], cwd=root,
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    ran = calls.read_text().splitlines()
    assert len(ran) == len(expected) and all(want in line for want, line in zip(expected, ran)), ran
