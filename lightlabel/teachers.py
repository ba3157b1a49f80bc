"""Teachers: the ensemble of weak teachers whose mean logits the adapter is fitted to.

The ensemble label is the mean of the teachers' logits (HeLlO Eq. 1 and Eq. 5, ``Y' = mean_k f_k(X)``). When all
teachers share one architecture, their weights are stacked once and run as one batched call with
``torch.func.functional_call`` under ``torch.vmap``, instead of a Python loop over the teachers.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

__all__ = ["TeacherEnsemble"]

logger = logging.getLogger(__name__)


def _signature(module: nn.Module) -> tuple:
    return (type(module),) + tuple((k, tuple(v.shape), v.dtype) for k, v in module.state_dict().items())


class TeacherEnsemble(nn.Module):
    """Mean logits of several frozen teachers, in eval mode.

    Args:
        teachers: one or more ``nn.Module`` mapping ``(B, 3, H, W)`` to ``(B, C)`` logits (same ``C``).
        vectorize: ``"auto"`` (vmap when all architectures and shapes are identical), ``True`` (require it) or
            ``False`` (a plain loop).

    Shape:
        - Input: ``(B, 3, H, W)``.
        - Output: ``(B, C)`` mean logits, the teachers' dtype.

    Raises:
        ValueError: no teachers, or ``vectorize=True`` with differing architectures.

    Source: HeLlO Eq. 1 and Eq. 5 (multi-weak-teacher soft labels).
    """

    def __init__(self, teachers: Sequence[nn.Module], *, vectorize: bool | str = "auto") -> None:
        super().__init__()
        teachers = list(teachers)
        if not teachers or not all(isinstance(t, nn.Module) for t in teachers):
            raise ValueError(f"`teachers` must be a non-empty list of nn.Module, got {teachers!r}"[:200])
        if vectorize not in (True, False, "auto"):
            raise ValueError(f"`vectorize` must be True, False or 'auto', got {vectorize!r}")
        for t in teachers:
            t.eval().requires_grad_(False)
        same = len({_signature(t) for t in teachers}) == 1
        if vectorize is True and not same:
            raise ValueError("`vectorize=True` needs teachers of one architecture with identical parameter shapes")
        self.num_teachers = len(teachers)
        self.vectorized = bool(vectorize) and same and len(teachers) > 1
        if self.vectorized:
            params, buffers = stack_module_state(teachers)
            self._param_names, self._buffer_names = list(params), list(buffers)
            for i, v in enumerate(params.values()):
                self.register_buffer(f"_p{i}", v.detach())
            for i, v in enumerate(buffers.values()):
                self.register_buffer(f"_b{i}", v)
            self._skeleton = [copy.deepcopy(teachers[0]).to("meta")]  # a list: not registered as a submodule
        else:
            self.teachers = nn.ModuleList(teachers)

    def train(self, mode: bool = True) -> TeacherEnsemble:
        """Teachers always stay in eval mode."""
        super().train(False)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.vectorized:
            return torch.stack([t(images) for t in self.teachers]).mean(0)
        params = {n: getattr(self, f"_p{i}") for i, n in enumerate(self._param_names)}
        buffers = {n: getattr(self, f"_b{i}") for i, n in enumerate(self._buffer_names)}
        skeleton = self._skeleton[0]

        def one(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(skeleton, (p, b), (x,))

        return torch.vmap(one, in_dims=(0, 0, None))(params, buffers, images).mean(0)

    def extra_repr(self) -> str:
        return f"num_teachers={self.num_teachers}, vectorized={self.vectorized}"
