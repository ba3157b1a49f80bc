"""Tiny open_clip bases for tests, examples and CPU benchmarks (like ``torch.testing``: not for real labels).

No pretrained CLIP weights can be downloaded in offline environments, so tests build small open_clip models
with random weights, register their configs with ``open_clip.add_model_config``, save the weights to a local
checkpoint, and load them back through the real ``open_clip.create_model(name, pretrained=path)`` path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import open_clip
import torch

from ._io import atomic_path, atomic_write_text

__all__ = ["TINY_CONFIGS", "register_tiny_configs", "save_tiny_base"]

_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}

#: open_clip configs of tiny bases: a ModifiedResNet (with attention pool) and a ViT, 32 x 32 pixels.
TINY_CONFIGS: dict[str, dict] = {
    "lightlabel-tiny-rn": {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8,
                                                           "head_width": 16}, "text_cfg": _TEXT},
    "lightlabel-tiny-vit": {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32,
                                                            "patch_size": 8, "head_width": 16}, "text_cfg": _TEXT},
}


def register_tiny_configs(config_dir: str | os.PathLike) -> list[str]:
    """Write the :data:`TINY_CONFIGS` JSON files into ``config_dir`` and register them with open_clip.

    Returns:
        The registered model names.
    """
    config_dir = Path(config_dir)
    for name, cfg in TINY_CONFIGS.items():
        atomic_write_text(config_dir / f"{name}.json", json.dumps(cfg))
    open_clip.add_model_config(config_dir)
    return list(TINY_CONFIGS)


def save_tiny_base(out_dir: str | os.PathLike, name: str = "lightlabel-tiny-rn", seed: int = 0) -> tuple[str, Path]:
    """Register the tiny configs, build ``name`` with random weights from ``seed`` and save them.

    Returns:
        ``(model name, checkpoint path)`` to pass as ``base=`` and ``pretrained=`` (an existing checkpoint is
        reused, so repeated calls give the same weights).

    Raises:
        ValueError: ``name`` is not one of :data:`TINY_CONFIGS`.
    """
    if name not in TINY_CONFIGS:
        raise ValueError(f"`name` must be one of {list(TINY_CONFIGS)}, got {name!r}")
    out_dir = Path(out_dir)
    register_tiny_configs(out_dir / "configs")
    path = out_dir / f"{name}-seed{seed}.pt"
    if not path.is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.create_model(name)
        with atomic_path(path) as tmp:
            torch.save(model.state_dict(), tmp)
    return name, path
