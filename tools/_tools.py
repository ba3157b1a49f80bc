"""What the release tools share: their arguments, their cache and the CIFAR-10 data, all through the installed library.

The tools make the files shipped in ``lightlabel/assets``. They import ``lightlabel`` and nothing from
``benchmarks/``; a cache folder laid out as the benchmarks' (``--cache benchmarks/.cache``) lets them reuse a
trajectory, a fit or a distilled set the benchmarks already built, because every cache folder is named by a
fingerprint of its inputs and settings.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

import lightlabel as ll
from lightlabel.labeling.stored import images_digest
from lightlabel.utils.hashing import json_digest

ROOT = Path(__file__).resolve().parent.parent


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Add ``--cache``, ``--threads`` and ``--quiet``; parse; set torch's threads and INFO logging."""
    parser.add_argument("--cache", type=Path, default=ROOT / "tools" / ".cache",
                        help="cache folder, fingerprinted per stage (default: tools/.cache; benchmarks/.cache reuses "
                             "the benchmarks' stages)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    return args


def digest(*parts) -> str:
    """A short fingerprint of JSON-able parts: the name of a cache folder."""
    return json_digest(list(parts))[:12]


def cifar10(progress: bool) -> tuple[ll.data.TensorImageDataset, ll.data.TensorImageDataset, str]:
    """CIFAR-10 train and test (``ll.data.load_cifar10``: ``$LIGHTLABEL_DATA``, a ``shared/data`` folder or a
    download) and the fingerprint of the training images, which names every cache built from them."""
    train = ll.data.load_cifar10("train", progress=progress)
    test = ll.data.load_cifar10("test", progress=progress)
    return train, test, digest(images_digest(train.images), train.classes)
