"""The labeller itself: a frozen open_clip image tower, LoRA, the text-initialised head, and input specs.

Nothing here trains, augments or reads datasets; those live in :mod:`lightlabel.labeling` and
:mod:`lightlabel.recipes`, which build on this layer (never the other way round).
"""

from .base import BaseModel, cache_root, fingerprint, load_base
from .projector import Projector, adapter_layout_nbytes
from .templates import HELIO_TEMPLATES, OPENAI_IMAGENET_TEMPLATES

__all__ = [
    "HELIO_TEMPLATES",
    "OPENAI_IMAGENET_TEMPLATES",
    "BaseModel",
    "Projector",
    "adapter_layout_nbytes",
    "cache_root",
    "fingerprint",
    "load_base",
]
