"""HaBa's training objective (Liu et al., NeurIPS 2022) for a factorised build: the dataset-distillation ConvNet and
the losses: distribution matching (L_DD), the range term, and the adversary's InfoNCE. (Named apart from the
hallucinators themselves, which are an artefact's part: :mod:`lightlabel.sets.hallucinators`.)

:func:`lightlabel.factorize_images` composes them with the hallucinators of :mod:`lightlabel.sets.hallucinators`,
which a :class:`lightlabel.FactorizedSet` stores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvNet", "contrastive_loss", "conv_net", "dm_loss", "range_loss"]


class ConvNet(nn.Module):
    """The dataset-distillation ConvNet (DC/DM/MTT): ``depth`` x [3x3 conv, instance norm, ReLU, 2x2 average pool],
    then a linear classifier. :meth:`features` gives the embedding before it.

    Shape: ``(B, 3, S, S)`` -> ``(B, num_classes)``; features ``(B, width * (S / 2^depth)^2)``.
    """

    def __init__(self, num_classes: int, *, width: int = 128, depth: int = 3, image_size: int = 32) -> None:
        super().__init__()
        layers, cin, size = [], 3, image_size
        for _ in range(depth):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.GroupNorm(width, width, affine=True), nn.ReLU(),
                       nn.AvgPool2d(2)]
            cin, size = width, size // 2
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def conv_net(num_classes: int, *, width: int = 128, depth: int = 3, image_size: int = 32) -> ConvNet:
    """A :class:`ConvNet` (kept for 0.2 callers)."""
    return ConvNet(num_classes, width=width, depth=depth, image_size=image_size)


def dm_loss(net: nn.Module, real: list[torch.Tensor], synthetic: list[torch.Tensor]) -> torch.Tensor:
    """Distribution matching (Zhao & Bilen, WACV 2023): ``sum_c ||mean F(real_c) - mean F(syn_c)||^2`` over classes,
    ``F`` the network's embedding. Inputs are per class, already normalised."""
    loss = torch.zeros(())
    for r, s in zip(real, synthetic):
        with torch.no_grad():
            target = net.features(r).mean(0)
        loss = loss + ((target - net.features(s).mean(0)) ** 2).sum()
    return loss


def range_loss(images: torch.Tensor) -> torch.Tensor:
    """``mean((x - clamp(x, 0, 1))^2)``: how far unclamped images ``(B, C, H, W)`` leave [0, 1]; 0 inside it.

    The gradient of a pixel outside [0, 1] points back into it, the one signal that still reaches a pixel which
    ``clamp`` has cut off from every other loss. Returns a float32 scalar.
    """
    return (images - images.clamp(0, 1)).pow(2).mean()


def contrastive_loss(za: torch.Tensor, zb: torch.Tensor, tau: float) -> torch.Tensor:
    """InfoNCE between two views of the same bases (HaBa Eq. 3): row i of ``za`` matches row i of ``zb``."""
    logits = F.normalize(za, dim=1) @ F.normalize(zb, dim=1).t() / tau
    target = torch.arange(za.shape[0], device=za.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
