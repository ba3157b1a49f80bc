"""The offline proxy base: a small open_clip image tower standing in for CLIP where no CLIP weights exist.

``lightlabel-proxy-rn`` (open_clip ModifiedResNet, width 16, embed dim 512, 64 px) was trained by
``benchmarks/proxy_base.py`` on tiny-imagenet-150 (202 ImageNet classes) to match the real CLIP ViT-B/32 text
embeddings of those classes. Its text tower is a random stand-in, so its head is always built from those
real text embeddings (``clip-vit-b32-imagenet1k-text.safetensors`` in the shared data, rows by
``imagenet1k_wnids.txt``), which limits it to ImageNet classes named by WordNet id. It is a proxy, not CLIP.
"""

from __future__ import annotations

import os
from pathlib import Path

import open_clip
import safetensors.torch
import torch
import torch.nn.functional as F

__all__ = ["PROXY_BASE", "PROXY_CHECKPOINT", "imagenet_class_names", "imagenet_text_embeddings", "proxy_available"]

#: open_clip model name of the proxy base (config shipped in lightlabel/model_configs).
PROXY_BASE = "lightlabel-proxy-rn"
#: Its weights (fp16 safetensors, loadable with ``open_clip.create_model(PROXY_BASE, pretrained=...)``).
PROXY_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "proxy-base.safetensors"
TEXT_FEATURES = "clip-vit-b32-imagenet1k-text.safetensors"
WNIDS = "imagenet1k_wnids.txt"


def proxy_available() -> bool:
    return PROXY_CHECKPOINT.is_file()


def _order(data_root: str | os.PathLike) -> list[str]:
    path = Path(data_root) / WNIDS
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the ImageNet class index comes from the shared data folder")
    return path.read_text().split()


def _rows(wnids: list[str], order: list[str]) -> list[int]:
    missing = [w for w in wnids if w not in order]
    if missing:
        raise ValueError(f"class folders must be ImageNet WordNet ids for the proxy base's text head; not found: "
                         f"{missing[:5]}")
    return [order.index(w) for w in wnids]


def imagenet_class_names(wnids: list[str], data_root: str | os.PathLike) -> list[str]:
    """Readable class names (``open_clip.IMAGENET_CLASSNAMES``) of ImageNet WordNet ids.

    Raises:
        FileNotFoundError: no ``imagenet1k_wnids.txt`` in ``data_root``. ValueError: an unknown wnid.
    """
    return [open_clip.IMAGENET_CLASSNAMES[i] for i in _rows(wnids, _order(data_root))]


def imagenet_text_embeddings(wnids: list[str], data_root: str | os.PathLike) -> torch.Tensor:
    """Real CLIP ViT-B/32 text embeddings of ImageNet classes given by WordNet id, L2-normalised: ``[C, 512]``.

    Raises:
        FileNotFoundError: the embeddings or the class index are not in ``data_root``. ValueError: unknown wnids.
    """
    path = Path(data_root) / TEXT_FEATURES
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (real CLIP text embeddings from the shared data folder)")
    feats = safetensors.torch.load_file(str(path))["text_features"]
    return F.normalize(feats[_rows(wnids, _order(data_root))].float(), dim=-1)
