"""Where a model runs: recipes use a caller's model on their device without moving the caller's object."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["module_device", "on_device"]


def module_device(module: nn.Module) -> torch.device | None:
    """The device of ``module``'s first parameter (or buffer); ``None`` for a module with neither."""
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return None if tensor is None else tensor.device


def on_device(module: nn.Module, device: torch.device | str) -> nn.Module:
    """``module`` itself when it is on ``device`` already (or holds no tensors), else a deep copy moved there.

    The caller's module is never moved, so a teacher built on the CPU stays on the CPU after a recipe labelled CUDA
    views with it. ``"cuda"`` without an index means the current CUDA device.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    current = module_device(module)
    if current is None or current == device:
        return module
    return copy.deepcopy(module).to(device)
