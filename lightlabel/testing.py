"""Tiny open_clip bases for tests, examples and CPU benchmarks (like ``torch.testing``: not for real labels).

No pretrained CLIP weights can be downloaded in offline environments, so tests build small open_clip models
with random weights, save them to a local checkpoint, and load them back through the real
``open_clip.create_model(name, pretrained=path)`` path. Their configs ship in ``lightlabel/model_configs`` and
are registered with open_clip when lightlabel is imported, so any process can load them by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import open_clip
import torch

from .core import base as _base  # noqa: F401  (registers the shipped configs)
from .utils.files import atomic_path

__all__ = ["TINY_BASES", "save_tiny_base"]

#: Names of the tiny bases: a ModifiedResNet (with attention pool) and a ViT, 32 x 32 pixels, embed dim 32.
TINY_BASES: tuple[str, ...] = ("lightlabel-tiny-rn", "lightlabel-tiny-vit")


def save_tiny_base(out_dir: str | os.PathLike, name: str = "lightlabel-tiny-rn", seed: int = 0) -> tuple[str, Path]:
    """Build the tiny base ``name`` with random weights from ``seed`` and save them under ``out_dir``.

    Returns:
        ``(model name, checkpoint path)`` to pass as ``base=`` and ``pretrained=`` (an existing checkpoint is
        reused, so repeated calls give the same weights).

    Raises:
        ValueError: ``name`` is not one of :data:`TINY_BASES`.
    """
    if name not in TINY_BASES:
        raise ValueError(f"`name` must be one of {list(TINY_BASES)}, got {name!r}")
    path = Path(out_dir) / f"{name}-seed{seed}.pt"
    if not path.is_file():
        with torch.random.fork_rng(devices=[]), _base.quiet_random_init():
            torch.manual_seed(seed)
            model = open_clip.create_model(name)
        with atomic_path(path) as tmp:
            torch.save(model.state_dict(), tmp)
    return name, path
