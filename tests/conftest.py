"""Shared fixtures: tiny open_clip bases saved and reloaded through open_clip, and small real-data subsets.

No test touches the network: the Hub is forced offline before anything imports huggingface_hub, and every
cache (lightlabel's text heads, the Hub cache) points into a temporary folder.
"""

from __future__ import annotations

import atexit
import os
import shutil
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

from lightlabel.data import default_data_root, extract_image_folder  # noqa: E402
from lightlabel.testing import save_tiny_base  # noqa: E402

torch.set_num_threads(2)

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


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = default_data_root()
    if root is None:
        pytest.fail("real data not found: set LIGHTLABEL_DATA to the shared/data folder (see shared/data/README.md)")
    return root


@pytest.fixture(scope="session")
def cifar_train(data_root, tmp_path_factory) -> Path:
    """ImageFolder of the first 12 CIFAR-10 training images of each class (real JPEGs, 32 x 32)."""
    return extract_image_folder(data_root / "cifar10" / "train.tar.gz", tmp_path_factory.mktemp("cifar") / "train",
                                split="train", per_class=12)


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


def randomize_adapter(projector, seed: int = 0, scale: float = 0.05) -> None:
    """Give every adapter tensor random non-zero values (so tests see a real change)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in projector.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
