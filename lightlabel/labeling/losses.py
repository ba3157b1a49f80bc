"""Student loss on online soft labels: a functional core plus a thin module.

Default (HeLlO Alg. 1 line 14, supplementary Table 3):

    loss = MSE(student_logits, soft_logits) + ce_weight * CE(student_logits, targets),   ce_weight = 0.025

``MSE`` is the mean over all ``B * C`` entries. Alternatives: ``kind="kl"``,
``T^2 * KL(softmax(soft / T) || softmax(student / T))`` averaged over the batch (the ``T^2`` keeps gradient
magnitudes comparable across temperatures, Hinton et al. 2015); and ``kind="soft_ce"``,
``-sum softmax(soft / T) * log_softmax(student / T)`` averaged over the batch (FKD/SRe2L style).
``targets`` are class indices ``[B]`` or mixed class probabilities ``[B, C]`` from CutMix/Mixup.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import LOSS_KINDS, number_arg

__all__ = ["SoftLabelLoss", "soft_label_loss"]



def _check_options(kind: str, ce_weight: float, temperature: float) -> None:
    if kind not in LOSS_KINDS:
        raise ValueError(f"`kind` must be one of {list(LOSS_KINDS)}, got {kind!r}")
    number_arg(ce_weight, "ce_weight", 0)
    number_arg(temperature, "temperature", 0, open_low=True)


def soft_label_loss(
    student_logits: torch.Tensor,
    soft_logits: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    kind: str = "mse",
    ce_weight: float = 0.025,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Soft-label distillation loss plus a weighted cross-entropy on the (mixed) hard targets.

    Args:
        student_logits: ``(B, C)`` student outputs (any float dtype; computed in float32).
        soft_logits: ``(B, C)`` labeller logits (projector or teacher), no gradient needed.
        targets: ``(B,)`` int64 class indices or ``(B, C)`` float probabilities (rows summing to 1); may be
            ``None`` only when ``ce_weight == 0``.
        kind: ``"mse"`` (default, HeLlO), ``"kl"`` or ``"soft_ce"``.
        ce_weight: weight ``beta`` of the cross-entropy term (HeLlO: 0.025 for students, 0.1 when fitting).
        temperature: ``T`` for ``"kl"`` and ``"soft_ce"`` (ignored by ``"mse"``).

    Returns:
        Scalar float32 loss.

    Raises:
        ValueError: shape mismatches (both shapes are named), bad options, missing targets, index targets not int64,
            and, for tensors on the CPU (a check on a GPU would synchronise every step), index targets outside
            ``[0, C)`` or probability targets with negative entries or rows not summing to 1 (within 1e-3).

    Source: HeLlO Alg. 1 line 14 and Eq. 5; supplementary Table 3.
    """
    _check_options(kind, ce_weight, temperature)
    if student_logits.ndim != 2 or student_logits.shape != soft_logits.shape:
        raise ValueError(f"`student_logits` and `soft_logits` must both be (B, C); got {tuple(student_logits.shape)} "
                         f"and {tuple(soft_logits.shape)}")
    s = student_logits.float()
    t = soft_logits.detach().float()
    if kind == "mse":
        loss = F.mse_loss(s, t)
    elif kind == "kl":
        loss = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1),
                        reduction="batchmean", log_target=True) * temperature**2
    else:
        loss = -(F.softmax(t / temperature, -1) * F.log_softmax(s / temperature, -1)).sum(-1).mean()
    if ce_weight == 0:
        return loss
    if targets is None:
        raise ValueError("`targets` are required when `ce_weight` > 0")
    return loss + ce_weight * F.cross_entropy(s, _checked_targets(targets, s.shape))


def _checked_targets(targets: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``targets`` for the cross-entropy, checked: shape and dtype everywhere, values on the CPU only (on a GPU a
    value check would wait for the device at every step)."""
    (b, c), check = shape, targets.device.type == "cpu"
    if targets.ndim == 1:
        if targets.shape[0] != b or targets.dtype != torch.int64:
            raise ValueError(f"index `targets` must be int64 of shape ({b},), got {targets.dtype} "
                             f"{tuple(targets.shape)}")
        if check and targets.numel() and not (0 <= int(targets.min()) and int(targets.max()) < c):
            raise ValueError(f"index `targets` must be class indices in [0, {c}), got values from "
                             f"{int(targets.min())} to {int(targets.max())}")
        return targets
    if targets.shape != shape or not targets.is_floating_point():
        raise ValueError(f"probability `targets` must be float of shape {tuple(shape)}, got {targets.dtype} "
                         f"{tuple(targets.shape)}")
    targets = targets.float()
    if check and targets.numel() and (bool((targets < 0).any()) or not torch.allclose(targets.sum(1), torch.ones(b),
                                                                                      atol=1e-3)):
        raise ValueError("probability `targets` must be non-negative with rows summing to 1 (as CutMix/Mixup give); "
                         f"got row sums from {float(targets.sum(1).min()):.4g} to {float(targets.sum(1).max()):.4g}")
    return targets


class SoftLabelLoss(nn.Module):
    """Module form of :func:`soft_label_loss`; validates its options on construction.

    Args:
        kind: ``"mse"`` (default), ``"kl"`` or ``"soft_ce"``.
        ce_weight: cross-entropy weight (default 0.025, HeLlO supplementary Table 3).
        temperature: for ``"kl"``/``"soft_ce"``.

    Shape:
        - student_logits, soft_logits: ``(B, C)``, any float dtype (computed in fp32).
        - targets: ``(B,)`` int64 indices or ``(B, C)`` probabilities (rows summing to 1, as CutMix/Mixup give).
        - Output: scalar, fp32.

    Raises:
        ValueError: on construction, ``kind`` not one of ``"mse"``, ``"kl"``, ``"soft_ce"`` (the message lists
            them), ``ce_weight`` negative or not finite, ``temperature`` not a finite number > 0; on a call, what
            :func:`soft_label_loss` raises (mismatched shapes, missing targets).

    Source: HeLlO Alg. 1 line 14 and Eq. 5 (MSE on logits plus ``ce_weight`` cross-entropy); supplementary Table 3.

    Example:
        >>> criterion = SoftLabelLoss(ce_weight=0.025)
        >>> loss = criterion(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1]))
    """

    def __init__(self, *, kind: str = "mse", ce_weight: float = 0.025, temperature: float = 1.0) -> None:
        super().__init__()
        _check_options(kind, ce_weight, temperature)
        self.kind, self.ce_weight, self.temperature = kind, float(ce_weight), float(temperature)

    def forward(self, student_logits: torch.Tensor, soft_logits: torch.Tensor,
                targets: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of :func:`soft_label_loss` with this module's settings: ``(B, C)`` student logits, ``(B, C)`` soft
        logits and optional ``(B,)`` or ``(B, C)`` targets -> a scalar (raises as that function does)."""
        return soft_label_loss(student_logits, soft_logits, targets, kind=self.kind, ce_weight=self.ce_weight,
                               temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, ce_weight={self.ce_weight}, temperature={self.temperature}"
