"""The one rule for randomness: every random stream is seeded by a key derived from ``(seed, *parts)`` alone.

``derive_seed(seed, epoch)`` seeds an epoch's data order, ``derive_seed(seed, epoch, "augment")`` its augmentation,
``derive_seed(seed, epoch, index)`` one sample's transform and ``derive_seed(seed, "class", c)`` one class of a
distilled set. A stream therefore does not depend on what ran before it, which is what makes resumed runs equal
uninterrupted ones and a DDP run equal a single-process one.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["derive_seed", "generator"]


def derive_seed(seed: int, *parts: int | str) -> int:
    """A 63-bit seed from ``seed`` and any further keys (ints or strings): sha256 of their ``:``-joined text.

    Example:
        >>> derive_seed(0, 3) == derive_seed(0, 3) != derive_seed(0, 4)
        True
    """
    text = ":".join(str(p) for p in (int(seed), *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, *parts: int | str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of the same arguments."""
    return torch.Generator().manual_seed(derive_seed(seed, *parts))
