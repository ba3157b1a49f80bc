"""Augmentation of distilled images as an object of its own: :class:`Augmenter` (sample parameters, then apply).

The views a student trains on are RDED's (validation code, ``validation/main.py`` and ``validation/utils.py``):

1. ``ShufflePatches(f)``: an image made of ``f x f`` patches gets its rows of patches and its columns of patches
   permuted (whole patches only; ``f`` = patches per side of the distilled image, 1 = identity);
2. ``RandomResizedCrop(size, scale=(1/f, 1))`` back to the image size; at ``f = 1`` there is no crop at all;
3. a horizontal flip with probability 1/2;
4. CutMix (alpha 1) over the batch.

ShufflePatches and the crop are done for the whole batch in one set of tensor ops (no per-image Python loop):
:func:`random_permutations` and :func:`crop_boxes` draw their parameters (``crop_boxes`` draws torchvision's
``RandomResizedCrop`` boxes, with its distribution), and :func:`resized_crops` resizes every crop with one
``grid_sample`` call that computes what torchvision's ``resized_crop`` (bilinear, antialiased) computes for crops no
larger than the image. The flip is a masked ``torch.where``; ``CutMix`` and ``MixUp`` are torchvision's
(``transforms.v2``). Parameters are sampled first, from an explicit generator, and applied second, so the same view
can be replayed (kornia's recorded parameters). :func:`epoch_views` is the one place where a student run's views are
made: the student, the online labeller, stored labels and the label-view diagnostic all read the same tensors.

Images travel as float pixels in [0, 1]; every step here is linear per channel, so augmenting normalised images
gives the normalised augmented images.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torchvision.transforms import v2

from ..configs import AugmentConfig, described, int_arg
from ..utils.seeding import generator

__all__ = ["Augmenter", "View", "crop_boxes", "epoch_order", "epoch_views", "random_permutations", "resized_crops",
           "shuffle_patches"]

#: torchvision's ``RandomResizedCrop`` defaults: the aspect-ratio range and the attempts before its fallback.
CROP_RATIO: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
CROP_ATTEMPTS = 10


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device`` without synchronising the host: a CPU tensor goes to CUDA through pinned memory with
    a non-blocking copy (a pageable copy would wait for the stream)."""
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def shuffle_patches(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """RDED's ShufflePatches: permute each image's rows of patches by ``rows`` and its columns by ``cols``.

    Args:
        images: ``(B, C, H, W)``, ``H`` and ``W`` divisible by ``f``.
        rows, cols: ``(B, f)`` int64, a permutation of ``range(f)`` per image.

    Returns:
        ``(B, C, H, W)``; patch ``(i, j)`` of the output is patch ``(rows[b, i], cols[b, j])`` of the input.

    Raises:
        ValueError: ``H`` or ``W`` not divisible by ``f``, or mismatched shapes.

    Source: RDED ``validation/utils.py`` ``ShufflePatches`` (strips of columns, then of rows).
    """
    b, _, h, w = images.shape
    f = rows.shape[-1]
    if rows.shape != (b, f) or cols.shape != (b, f):
        raise ValueError(f"`rows` and `cols` must be (B, f) = ({b}, {f}), got {tuple(rows.shape)}, {tuple(cols.shape)}")
    if h % f or w % f:
        raise ValueError(f"images of {h}x{w} pixels do not split into {f}x{f} patches")
    grid = rearrange(images, "b c (fh h) (fw w) -> b fh fw c h w", fh=f, fw=f)
    batch = torch.arange(b, device=images.device)
    rows, cols = _to_device(rows, images.device), _to_device(cols, images.device)
    grid = grid[batch[:, None], rows]  # rows of patches
    grid = grid[batch[:, None, None], torch.arange(f, device=images.device)[None, :, None], cols[:, None, :]]
    return rearrange(grid, "b fh fw c h w -> b c (fh h) (fw w)")


def random_permutations(batch_size: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """``batch_size`` independent uniform permutations of ``range(n)``, drawn at once from ``gen``.

    Each row is the ``argsort`` of ``n`` uniform float64 draws (ties, of probability about ``n^2 2^-53``, are broken
    by position, which keeps every row a permutation).

    Args:
        batch_size: ``B`` >= 0. n: ``n`` >= 1. gen: a CPU generator.

    Returns:
        ``(B, n)`` int64 on the CPU.

    Raises:
        ValueError: a negative ``batch_size`` or ``n`` < 1.
    """
    if batch_size < 0 or n < 1:
        raise ValueError(f"`batch_size` must be >= 0 and `n` >= 1, got {batch_size}, {n}")
    return torch.rand(batch_size, n, generator=gen, dtype=torch.float64).argsort(dim=1, stable=True)


def crop_boxes(batch_size: int, height: int, width: int, scale: tuple[float, float], gen: torch.Generator,
               ratio: tuple[float, float] = CROP_RATIO) -> torch.Tensor:
    """``batch_size`` boxes of torchvision's ``RandomResizedCrop(scale=scale, ratio=ratio)``, drawn at once.

    The distribution of ``RandomResizedCrop.make_params``: per image, up to :data:`CROP_ATTEMPTS` attempts of an area
    ``height * width * U(scale)`` and an aspect ratio ``exp(U(log ratio))`` (both drawn in float32, as torchvision
    does), a width ``round(sqrt(area * ratio))`` and height ``round(sqrt(area / ratio))`` (round half to even, as
    Python's ``round``); the first attempt that fits in the image is taken, with its top and left uniform over the
    positions where it fits; when none fits, torchvision's fallback, the central crop of the image clipped to the
    ratio range. All attempts are drawn for every image (the draws after the first fit are unused), so the stream
    differs from torchvision's one-image-at-a-time draws, not the distribution.

    Args:
        batch_size: ``B`` >= 0. height, width: the image's size in pixels (>= 1).
        scale: the area range, ``0 < lo <= hi`` (fractions of the image). gen: a CPU generator.
        ratio: the aspect-ratio (width / height) range, ``0 < lo <= hi``.

    Returns:
        ``(B, 4)`` int64 on the CPU: ``(top, left, height, width)``, each box inside the image.

    Raises:
        ValueError: a negative ``batch_size``, an empty image, or a bad ``scale`` or ``ratio``.

    Source: torchvision ``transforms.v2.RandomResizedCrop.make_params`` (0.29).
    """
    if batch_size < 0 or height < 1 or width < 1:
        raise ValueError(f"`batch_size` must be >= 0 and `height`, `width` >= 1, got {batch_size}, {height}, {width}")
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"`scale` must be (lo, hi) with 0 < lo <= hi, got {scale!r}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"`ratio` must be (lo, hi) with 0 < lo <= hi, got {ratio!r}")
    shape = (batch_size, CROP_ATTEMPTS)
    log_ratio = torch.log(torch.tensor(ratio))  # float32, as torchvision's
    target_area = height * width * torch.empty(shape).uniform_(scale[0], scale[1], generator=gen).double()
    aspect = torch.empty(shape).uniform_(float(log_ratio[0]), float(log_ratio[1]), generator=gen).exp_().double()
    w = torch.sqrt(target_area * aspect).round_().long()
    h = torch.sqrt(target_area / aspect).round_().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first maximum: the first fit
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    spots = torch.rand(batch_size, 2, generator=gen, dtype=torch.float64)
    room_h, room_w = height - h + 1, width - w + 1  # positions where the box fits (meaningless where none fits)
    top = torch.minimum((spots[:, 0] * room_h).floor_().long(), room_h - 1)
    left = torch.minimum((spots[:, 1] * room_w).floor_().long(), room_w - 1)
    # torchvision's fallback: the central crop, clipped to the ratio range
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    box = torch.stack([top, left, h, w], dim=1)
    fallback = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw])
    return torch.where(fits.any(dim=1, keepdim=True), box, fallback)


def _source_pixels(start: torch.Tensor, length: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, size)`` float64: where output pixel ``i`` of a ``length``-pixel crop resized to ``size`` pixels samples
    the image (bilinear, ``align_corners=False``): ``(i + 0.5) * length / size - 0.5`` in the crop, clamped to its
    edge pixels, plus ``start``."""
    i = torch.arange(size, dtype=torch.float64, device=start.device)
    length = length.to(torch.float64)[:, None]
    inside = ((i + 0.5) * (length / size) - 0.5).clamp_min_(0)
    return start.to(torch.float64)[:, None] + torch.minimum(inside, length - 1)


def resized_crops(images: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
    """Crop every image to its box and resize it back to the image size, for the whole batch in one call.

    Computes, per image, what ``v2.functional.resized_crop(image, top, left, height, width, size=(H, W),
    antialias=True)`` (bilinear) computes for a box no larger than the image (an upsampling or identity resize,
    where antialiasing has no effect): one ``grid_sample`` (bilinear) call whose grid samples output pixel ``(i, j)``
    at ``top + (i + 0.5) * height / H - 0.5``, ``left + (j + 0.5) * width / W - 0.5``, each clamped to the box's
    edge pixels as ``F.interpolate(mode="bilinear", align_corners=False)`` clamps. The grid's axes are computed in
    float64 on ``crop``'s device (the host) and copied without a host-device synchronisation (pinned, non-blocking).

    Args:
        images: ``(B, C, H, W)`` floating point, on any device.
        crop: ``(B, 4)`` int64 ``(top, left, height, width)``, each box inside the image (:func:`crop_boxes`); on
            the CPU (it may be elsewhere, then it is not checked).

    Returns:
        ``(B, C, H, W)``, ``images``' dtype and device.

    Raises:
        ValueError: ``crop`` of the wrong shape, or (on the CPU) a box that is empty or leaves the image.

    Note:
        In float32 the grid's coordinates carry float32 rounding (about ``2^-24 * W`` pixels; torchvision's own
        float32 resize carries the same), so at 224 pixels the two agree to about 3e-5 on noise images, and to about
        1e-7 at 64 pixels or in float64.
    """
    b, _, h, w = images.shape
    if crop.shape != (b, 4):
        raise ValueError(f"`crop` must be (B, 4) = ({b}, 4) (top, left, height, width), got {tuple(crop.shape)}")
    if crop.device.type == "cpu":
        top, left, ch, cw = crop.unbind(1)
        outside = (top < 0) | (left < 0) | (ch < 1) | (cw < 1) | (top + ch > h) | (left + cw > w)
        if bool(outside.any()):
            raise ValueError(f"`crop` boxes must lie inside the {h}x{w} image and not be empty; got "
                             f"{crop[outside][0].tolist()}")
    # grid_sample's normalised coordinates (align_corners=False): pixel p of n -> (2p + 1) / n - 1
    gy = (2 * _source_pixels(crop[:, 0], crop[:, 2], h) + 1) / h - 1
    gx = (2 * _source_pixels(crop[:, 1], crop[:, 3], w) + 1) / w - 1
    gy, gx = (_to_device(g.to(images.dtype), images.device) for g in (gy, gx))
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (B, H, W, (x, y))
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


@contextlib.contextmanager
def _global_rng_from(gen: torch.Generator) -> Iterator[None]:
    """torchvision's transforms sample from the global CPU generator: run them on ``gen``'s stream instead and
    leave the caller's global state untouched."""
    saved = torch.random.get_rng_state()
    torch.random.set_rng_state(gen.get_state())
    try:
        yield
    finally:
        gen.set_state(torch.random.get_rng_state())
        torch.random.set_rng_state(saved)


class Augmenter:
    """Sample and apply :class:`AugmentConfig` augmentations on a batch, on the batch's device.

    Args:
        config: what to apply.
        num_classes: ``C``, for the mixed targets.

    Shape:
        - images: ``(B, 3, H, W)`` float (pixels in [0, 1], or normalised: every step is linear per channel).
        - targets: ``(B,)`` int64 class indices or ``(B, C)`` probabilities.
        - returns: views ``(B, 3, H, W)`` (the same size) and mixed targets ``(B, C)`` float32 summing to 1.

    Raises:
        ValueError: ``num_classes`` < 2, or (in :meth:`apply`) targets of the wrong shape or range.

    Example:
        >>> aug = Augmenter(AugmentConfig.rded(2), num_classes=10)
        >>> x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
        >>> views, mixed = aug(x, y, torch.Generator().manual_seed(0))
        >>> views.shape, mixed.shape
        (torch.Size([4, 3, 32, 32]), torch.Size([4, 10]))
    """

    def __init__(self, config: AugmentConfig, num_classes: int) -> None:
        if not isinstance(config, AugmentConfig):
            raise TypeError(f"`config` must be an AugmentConfig, got {type(config).__name__}")
        int_arg(num_classes, "num_classes", 2)
        self.config, self.num_classes = config, num_classes
        self._mixer = {"cutmix": v2.CutMix, "mixup": v2.MixUp}.get(config.mix)
        if self._mixer is not None:
            self._mixer = self._mixer(alpha=config.alpha, num_classes=num_classes)

    @property
    def shuffles(self) -> bool:
        return self.config.shuffle_patches and self.config.patches_per_side > 1

    def sample(self, batch_size: int, height: int, width: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Draw one batch's parameters from ``gen`` (CPU tensors, replayed exactly by :meth:`apply`).

        In this order from ``gen``: the rows' then the columns' permutations for the whole batch
        (:func:`random_permutations`), the crops for the whole batch (:func:`crop_boxes`, torchvision's
        ``RandomResizedCrop`` distribution), then the flips and CutMix / MixUp (torchvision's, on ``gen``'s stream).

        Args:
            batch_size: ``B`` >= 0. height, width: the images' size in pixels. gen: a CPU generator (advanced).

        Returns:
            ``rows``/``cols`` ``(B, f)`` int64 (ShufflePatches), ``crop`` ``(B, 4)`` int64 (top, left, height,
            width), ``flip`` ``(B,)`` bool, ``box`` ``(4,)`` int64 (x1, y1, x2, y2) with ``lam`` ``()`` float64 for
            CutMix, or ``lam`` alone for MixUp; only the keys of the enabled steps.

        Raises:
            ValueError: a negative ``batch_size`` or an empty image size.
        """
        int_arg(batch_size, "batch_size", 0)
        if height < 1 or width < 1:
            raise ValueError(f"`height` and `width` must be >= 1, got {height}, {width}")
        c, f = self.config, self.config.patches_per_side
        params: dict[str, torch.Tensor] = {}
        if self.shuffles:
            params["rows"] = random_permutations(batch_size, f, gen)
            params["cols"] = random_permutations(batch_size, f, gen)
        if c.crop_scale is not None:
            params["crop"] = crop_boxes(batch_size, height, width, c.crop_scale, gen)
        probe = torch.empty(3, height, width, device="meta")
        with _global_rng_from(gen):
            if c.flip:
                params["flip"] = torch.rand(batch_size) < 0.5
            if self._mixer is not None:
                mix = self._mixer.make_params([probe.expand(batch_size, -1, -1, -1)])
                if "box" in mix:
                    params["box"] = torch.tensor(mix["box"])
                params["lam"] = torch.tensor(float(mix.get("lam_adjusted", mix.get("lam", 1.0))), dtype=torch.float64)
        return params

    def _targets(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.ndim == 1:
            if targets.is_floating_point() or targets.shape[0] != images.shape[0]:
                raise ValueError(f"`targets` must be int64 (B,) = ({images.shape[0]},) or (B, C) probabilities, got "
                                 f"{targets.dtype} {tuple(targets.shape)}")
            if targets.device.type == "cpu" and targets.numel() and not (
                    0 <= int(targets.min()) and int(targets.max()) < self.num_classes):
                raise ValueError(f"`targets` must be class indices in [0, {self.num_classes}), got range "
                                 f"[{int(targets.min())}, {int(targets.max())}]")
            return _to_device(F.one_hot(targets, self.num_classes).float(), images.device)
        if targets.shape != (images.shape[0], self.num_classes):
            raise ValueError(f"`targets` must be (B,) or (B, C) = ({images.shape[0]}, {self.num_classes}), "
                             f"got {tuple(targets.shape)}")
        return _to_device(targets.float(), images.device)

    def apply(self, images: torch.Tensor, targets: torch.Tensor, params: dict[str, torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply parameters from :meth:`sample`: ShufflePatches, crop, flip, mix, in that order (RDED's).

        Each step is a few tensor ops for the whole batch (:func:`shuffle_patches`, :func:`resized_crops`, a masked
        flip, torchvision's CutMix / MixUp). On CUDA nothing here waits for the device: the small CPU parameter
        tensors travel by pinned, non-blocking copies, and only CPU tensors are read on the host.

        Args:
            images: ``(B, 3, H, W)`` float, on any device. targets: ``(B,)`` class indices or ``(B, C)``.
            params: from :meth:`sample` (CPU tensors).

        Returns:
            ``(views, mixed targets)``: ``(B, 3, H, W)`` and ``(B, C)`` float32, on ``images``' device.

        Raises:
            TypeError: ``images`` not a 4-d float tensor. ValueError: targets of the wrong shape or range, or
            parameters that do not fit the batch (see :func:`shuffle_patches`, :func:`resized_crops`).
        """
        if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4:
            raise TypeError(f"`images` must be a float tensor (B, 3, H, W), got "
                            f"{described(images)}")
        targets = self._targets(images, targets)
        if "rows" in params:
            images = shuffle_patches(images, params["rows"], params["cols"])
        if "crop" in params:
            images = resized_crops(images, params["crop"])
        if "flip" in params:
            flip = _to_device(params["flip"], images.device).view(-1, 1, 1, 1)
            images = torch.where(flip, images.flip(-1), images)
        if self._mixer is not None:
            mix: dict[str, Any] = {"lam_adjusted" if "box" in params else "lam": float(params["lam"])}
            if "box" in params:
                mix["box"] = tuple(int(v) for v in params["box"].tolist())
            mix.update(labels=targets, batch_size=images.shape[0])
            images = self._mixer.transform(images, mix)
            targets = self._mixer.transform(targets, mix)
        return images, targets

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, gen: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample from ``gen`` and apply: ``(views, mixed targets)``."""
        return self.apply(images, targets, self.sample(images.shape[0], *images.shape[-2:], gen))

    def __repr__(self) -> str:
        return f"Augmenter({self.config}, num_classes={self.num_classes})"


@dataclass
class View:
    """One batch of a student run: its step in the epoch, the image indices, the views and the mixed targets.

    Attributes:
        step: batch index within the epoch.
        index: ``(B,)`` int64 indices into the distilled images (CPU).
        views: ``(B, 3, H, W)`` float pixels in [0, 1] (clamping aside), on the images' device.
        targets: ``(B, C)`` float32 mixed targets.
        params: the augmentation parameters (:meth:`Augmenter.sample`).
    """

    step: int
    index: torch.Tensor
    views: torch.Tensor
    targets: torch.Tensor
    params: dict[str, torch.Tensor]


def _epoch_permutation(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(num_images, generator=generator(seed, epoch, "order"))


def epoch_order(num_images: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """The global batches of an epoch: a permutation from ``(seed, epoch, "order")`` cut into ``batch_size`` pieces.

    Raises:
        ValueError: ``num_images`` below 0, or ``batch_size`` not an int >= 1.
    """
    int_arg(num_images, "num_images", 0)
    int_arg(batch_size, "batch_size", 1)
    order = _epoch_permutation(num_images, seed, epoch)
    return [order[i:i + batch_size] for i in range(0, num_images, batch_size)]


def epoch_views(images: torch.Tensor, labels: torch.Tensor, augmenter: Augmenter, *, batch_size: int, seed: int,
                epoch: int, rank: int = 0, world_size: int = 1) -> Iterator[View]:
    """The views of one epoch of a student run, batch by batch. The one source of views for the student, the
    online labeller, stored labels and :func:`lightlabel.label_view_agreement`.

    The order comes from ``(seed, epoch)`` and the augmentation parameters from ``(seed, epoch, rank)`` alone, so a
    resumed run sees exactly the views of an uninterrupted one. Under torch.distributed each of the ``world_size``
    ranks takes every ``world_size``-th image of each global batch and augments its share with its own stream.

    Args:
        images: ``(N, 3, H, W)`` uint8 distilled images, or float pixels in [0, 1] (hallucinated images), on the
            device the views should be on (keep them there for the whole run: nothing here moves them; the epoch's
            order goes to their device once per epoch).
        labels: ``(N,)`` int64 class indices (same device).
        augmenter: the augmentation.
        batch_size: global batch size.
        seed, epoch: the run's seed and the epoch.

    Returns:
        An iterator of :class:`View`, ``ceil(N / batch_size)`` of them.

    Raises:
        ValueError: (at the call, not at the first view) ``batch_size`` or ``world_size`` not an int >= 1, ``rank``
            not in ``[0, world_size)``, or ``epoch`` below 0.
    """
    int_arg(batch_size, "batch_size", 1)
    int_arg(world_size, "world_size", 1)
    int_arg(rank, "rank", 0, world_size - 1)
    int_arg(epoch, "epoch", 0)
    return _epoch_views(images, labels, augmenter, batch_size, seed, epoch, rank, world_size)


def _epoch_views(images: torch.Tensor, labels: torch.Tensor, augmenter: Augmenter, batch_size: int, seed: int,
                 epoch: int, rank: int, world_size: int) -> Iterator[View]:
    n, (h, w) = images.shape[0], images.shape[-2:]
    gen = generator(seed, epoch, "augment", rank)
    order = _epoch_permutation(n, seed, epoch)
    order_on_device = _to_device(order, images.device)  # once per epoch, not per batch
    for step, start in enumerate(range(0, n, batch_size)):
        index = order[start:start + batch_size][rank::world_size]
        on_device = order_on_device[start:start + batch_size][rank::world_size]
        x = images[on_device].float().div_(255) if images.dtype == torch.uint8 else images[on_device].float()
        params = augmenter.sample(len(index), h, w, gen)
        views, targets = augmenter.apply(x, labels[on_device], params)
        yield View(step, index, views, targets, params)


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    return math.ceil(num_images / batch_size)
