"""HaBa's hallucinators (Liu et al., NeurIPS 2022, Eq. 2): the shared networks a :class:`FactorizedSet` stores,
and the sampler that picks one per basis each student epoch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import HALLUCINATOR_INITS
from ..utils.seeding import generator

__all__ = ["HALLUCINATOR_BORDERS", "HallucinatorBank", "epoch_hallucinators"]

#: How a hallucinator's decoder treats the image's outer ring (:class:`HallucinatorBank`); files record theirs under
#: ``hallucinator_border`` unless ``"zero"``, which files without the key (written before it existed) use.
HALLUCINATOR_BORDERS: tuple[str, ...] = ("replicate", "zero")


class HallucinatorBank(nn.Module):
    """``H`` hallucinators with stacked parameters, applied per sample in one batched call (HaBa Eq. 2).

    ``x_tilde = dec(sigma * enc(x) + mu)``: ``enc`` an unpadded 3x3 convolution + ReLU to ``hidden`` channels
    (``(S-2) x (S-2)`` positions), ``sigma`` and ``mu`` one value per channel and position, ``dec`` a 3x3 transposed
    convolution back to ``channels`` channels and ``S x S`` pixels.

    The border: a plain transposed convolution of ``S-2`` positions reaches the image's outer one-pixel ring only
    through its kernels' off-centre taps, so a map that is the identity inside (centre-delta kernels) makes that ring
    ``dec_bias``: black. No initialisation can avoid it (inside, ``dec * enc`` must be a delta, hence both kernels
    are centre deltas), so with ``border="replicate"`` (default) the decoder reads the features replicate-padded by
    one and crops its output back to ``S x S`` (a transposed convolution with ``padding=1``): the ring is decoded like
    its neighbours, and an identity hallucinator gives the ring its inner neighbour's value (``x[0] -> x[1]``), the
    nearest to the identity that ``S-2`` positions allow. ``border="zero"`` is the plain transposed convolution
    (HaBa's code, and what files that record no border, written before it existed, decode with).

    Args:
        count: ``H``. image_size: the images' side in pixels (``>= 3``). hidden: ``c''``. channels: image channels.
        init: ``"identity"`` (default): every hallucinator starts as the identity map with a little noise of its own:
            encoder and decoder kernels a centre delta per channel (hidden channel ``c`` <- image channel ``c`` and
            back; extra hidden channels get no delta) plus ``N(0, noise^2)``, ``sigma = 1``, ``mu = 0``, biases 0,
            so its view of a basis is nearly the basis (needs ``hidden >= channels``). ``"random"``: PyTorch's
            default (Kaiming-uniform) kernels, ``sigma = 1``, ``mu = 0``, biases 0.
        border: ``"replicate"`` or ``"zero"``, how the decoder treats the image's outer ring (above).
        noise: the standard deviation of the identity's per-hallucinator kernel noise.

    Shape:
        - images: ``(B, C, S, S)``; index: ``(B,)`` int64 hallucinator of each image.
        - returns: ``(B, C, S, S)`` (not clamped).

    Raises:
        ValueError: ``image_size < 3``, an unknown ``init`` or ``border``, ``init="identity"`` with
        ``hidden < channels``.
    """

    def __init__(self, *, count: int, image_size: int, hidden: int = 3, channels: int = 3, init: str = "identity",
                 border: str = "replicate", noise: float = 0.005) -> None:
        super().__init__()
        if image_size < 3:
            raise ValueError(f"`image_size` must be >= 3 for a 3x3 unpadded encoder, got {image_size}")
        if init not in HALLUCINATOR_INITS:
            raise ValueError(f"`init` must be one of {list(HALLUCINATOR_INITS)}, got {init!r}")
        if border not in HALLUCINATOR_BORDERS:
            raise ValueError(f"`border` must be one of {list(HALLUCINATOR_BORDERS)}, got {border!r}")
        if init == "identity" and hidden < channels:
            raise ValueError(f"init='identity' needs `hidden` >= `channels` ({channels}), got hidden={hidden}")
        inner = image_size - 2
        if init == "random":
            enc = torch.stack([nn.Conv2d(channels, hidden, 3).weight.detach() for _ in range(count)])
            dec = torch.stack([nn.ConvTranspose2d(hidden, channels, 3).weight.detach() for _ in range(count)])
        else:  # a centre delta per channel: enc (H, hidden, C, 3, 3), dec (H, hidden, C, 3, 3), both [h, c] = [c, c]
            delta = torch.zeros(hidden, channels, 3, 3)
            delta[torch.arange(channels), torch.arange(channels), 1, 1] = 1.0
            enc = delta + noise * torch.randn(count, hidden, channels, 3, 3)
            dec = delta + noise * torch.randn(count, hidden, channels, 3, 3)
        self.enc_weight = nn.Parameter(enc)
        self.enc_bias = nn.Parameter(torch.zeros(count, hidden))
        self.sigma = nn.Parameter(torch.ones(count, hidden, inner, inner))
        self.mu = nn.Parameter(torch.zeros(count, hidden, inner, inner))
        self.dec_weight = nn.Parameter(dec)
        self.dec_bias = nn.Parameter(torch.zeros(count, channels))
        self.count, self.image_size, self.hidden, self.channels = count, image_size, hidden, channels
        self.init, self.border = init, border

    def forward(self, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        b, c, h, w = images.shape
        if (h, w) != (self.image_size, self.image_size) or c != self.channels:
            raise ValueError(f"images must be (B, {self.channels}, {self.image_size}, {self.image_size}), got "
                             f"{tuple(images.shape)}")
        index = index.to(images.device)
        f = F.conv2d(images.reshape(1, b * c, h, w), self.enc_weight[index].reshape(b * self.hidden, c, 3, 3),
                     self.enc_bias[index].reshape(-1), groups=b)
        f = F.relu(f).reshape(b, self.hidden, h - 2, w - 2)
        f = self.sigma[index] * f + self.mu[index]
        pad = 1 if self.border == "replicate" else 0
        if pad:  # (B, hidden, S, S): the outer ring decoded like its neighbours, cropped back by `padding`
            f = F.pad(f, (1, 1, 1, 1), mode="replicate")
        out = F.conv_transpose2d(f.reshape(1, b * self.hidden, h - 2 + 2 * pad, w - 2 + 2 * pad),
                                 self.dec_weight[index].reshape(b * self.hidden, c, 3, 3),
                                 self.dec_bias[index].reshape(-1), groups=b, padding=pad)
        return out.reshape(b, c, h, w)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters()) // self.count


def epoch_hallucinators(num_bases: int, hallucinators: int, seed: int, epoch: int) -> torch.Tensor:
    """HaBa's student sampler: each basis once per epoch, through a hallucinator drawn from ``(seed, epoch)``
    alone, so every rank and every label source sees the same assignment. Returns ``(num_bases,)`` int64."""
    return torch.randint(hallucinators, (num_bases,), generator=generator(seed, epoch, "hallucinate"))
