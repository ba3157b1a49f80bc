"""Symmetric int8 quantisation with one scale per slice: the adapter's int8 LoRA factors and int8 stored logits."""

from __future__ import annotations

import torch

from ..configs import described

__all__ = ["quantize_int8"]


def quantize_int8(t: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``t ~= q * scale``, with one scale per slice taken across ``dim`` (the slice's largest magnitude maps to 127).

    Args:
        t: a 2-D float tensor ``(N, M)``.
        dim: the dimension each scale covers: ``1`` gives one scale per row (``(N,)``), ``0`` one per column (``(M,)``).

    Returns:
        ``q``: int8 of ``t``'s shape, values in [-127, 127]; ``scale``: float32, one per slice (1 for an all-zero
        slice, whose ``q`` is all zero).

    Raises:
        ValueError: ``t`` is not a 2-D float tensor or ``dim`` is not 0 or 1.
    """
    if not isinstance(t, torch.Tensor) or t.ndim != 2 or not t.is_floating_point():
        raise ValueError(f"`t` must be a 2-D float tensor, got {described(t)}")
    if dim not in (0, 1):
        raise ValueError(f"`dim` must be 0 or 1, got {dim!r}")
    scale = t.abs().amax(dim=dim, keepdim=True).float() / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(t.float() / scale).clamp_(-127, 127).to(torch.int8)
    return q, scale.squeeze(dim)
