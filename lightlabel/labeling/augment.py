"""Augmentation of distilled images as an object of its own: :class:`Augmenter` (sample parameters, then apply).

The views a student trains on are RDED's (validation code, ``validation/main.py`` and ``validation/utils.py``):

1. ``ShufflePatches(f)``: an image made of ``f x f`` patches gets its rows of patches and its columns of patches
   permuted (whole patches only; ``f`` = patches per side of the distilled image, 1 = identity);
2. ``RandomResizedCrop(size, scale=(1/f, 1))`` back to the image size; at ``f = 1`` there is no crop at all;
3. a horizontal flip with probability 1/2;
4. CutMix (alpha 1) over the batch.

Every step uses ``torchvision.transforms.v2`` (its ``RandomResizedCrop``, ``CutMix`` and ``MixUp`` sample and apply the
parameters) except ShufflePatches, which is RDED's own and written here with einops. Parameters are sampled first,
from an explicit generator, and applied second, so the same view can be replayed (kornia's recorded parameters).
:func:`epoch_views` is the one place where a student run's views are made: the student, the online labeller,
stored labels and the label-view diagnostic all read the same tensors.

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

from ..configs import AugmentConfig
from ..utils.seeding import generator

__all__ = ["Augmenter", "View", "epoch_order", "epoch_views", "shuffle_patches"]

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
    rows, cols = rows.to(images.device), cols.to(images.device)
    grid = grid[batch[:, None], rows]  # rows of patches
    grid = grid[batch[:, None, None], torch.arange(f, device=images.device)[None, :, None], cols[:, None, :]]
    return rearrange(grid, "b fh fw c h w -> b c (fh h) (fw w)")


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
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}")
        self.config, self.num_classes = config, num_classes
        self._mixer = {"cutmix": v2.CutMix, "mixup": v2.MixUp}.get(config.mix)
        if self._mixer is not None:
            self._mixer = self._mixer(alpha=config.alpha, num_classes=num_classes)

    @property
    def shuffles(self) -> bool:
        return self.config.shuffle_patches and self.config.patches_per_side > 1

    def sample(self, batch_size: int, height: int, width: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Draw one batch's parameters from ``gen`` (CPU tensors, replayed exactly by :meth:`apply`).

        Returns:
            ``rows``/``cols`` ``(B, f)`` int64 (ShufflePatches), ``crop`` ``(B, 4)`` int64 (top, left, height,
            width), ``flip`` ``(B,)`` bool, ``box`` ``(4,)`` int64 (x1, y1, x2, y2) with ``lam`` ``()`` float64 for
            CutMix, or ``lam`` alone for MixUp; only the keys of the enabled steps.
        """
        c, f = self.config, self.config.patches_per_side
        params: dict[str, torch.Tensor] = {}
        if self.shuffles:
            params["rows"] = torch.stack([torch.randperm(f, generator=gen) for _ in range(batch_size)])
            params["cols"] = torch.stack([torch.randperm(f, generator=gen) for _ in range(batch_size)])
        probe = torch.empty(3, height, width, device="meta")
        with _global_rng_from(gen):
            if c.crop_scale is not None:
                crop = v2.RandomResizedCrop((height, width), scale=c.crop_scale, antialias=True)
                boxes = [crop.make_params([probe]) for _ in range(batch_size)]
                params["crop"] = torch.tensor([[b["top"], b["left"], b["height"], b["width"]] for b in boxes])
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
            return F.one_hot(targets, self.num_classes).float()
        if targets.shape != (images.shape[0], self.num_classes):
            raise ValueError(f"`targets` must be (B,) or (B, C) = ({images.shape[0]}, {self.num_classes}), "
                             f"got {tuple(targets.shape)}")
        return targets.float()

    def apply(self, images: torch.Tensor, targets: torch.Tensor, params: dict[str, torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply parameters from :meth:`sample`: ShufflePatches, crop, flip, mix, in that order (RDED's)."""
        if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4:
            raise TypeError(f"`images` must be a float tensor (B, 3, H, W), got "
                            f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
        targets = self._targets(images, targets)
        if "rows" in params:
            images = shuffle_patches(images, params["rows"], params["cols"])
        if "crop" in params:
            size = list(images.shape[-2:])
            images = torch.stack([v2.functional.resized_crop(img, *map(int, box), size=size, antialias=True)
                                  for img, box in zip(images, params["crop"].tolist())])
        if "flip" in params:
            flip = params["flip"]
            if images.is_cuda:  # a pageable host->device copy would synchronise the stream; a pinned one does not
                flip = flip.pin_memory()
            flip = flip.to(images.device, non_blocking=True).view(-1, 1, 1, 1)
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


def epoch_order(num_images: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """The global batches of an epoch: a permutation from ``(seed, epoch, "order")`` cut into ``batch_size`` pieces."""
    order = torch.randperm(num_images, generator=generator(seed, epoch, "order"))
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
            device the views should be on.
        labels: ``(N,)`` int64 class indices (same device).
        augmenter: the augmentation.
        batch_size: global batch size.
        seed, epoch: the run's seed and the epoch.

    Returns:
        An iterator of :class:`View`, ``ceil(N / batch_size)`` of them.
    """
    n, (h, w) = images.shape[0], images.shape[-2:]
    gen = generator(seed, epoch, "augment", rank)
    for step, batch in enumerate(epoch_order(n, batch_size, seed, epoch)):
        index = batch[rank::world_size]
        on_device = index.to(images.device, non_blocking=True)
        x = images[on_device].float().div_(255) if images.dtype == torch.uint8 else images[on_device].float()
        params = augmenter.sample(len(index), h, w, gen)
        views, targets = augmenter.apply(x, labels[on_device], params)
        yield View(step, index, views, targets, params)


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    return math.ceil(num_images / batch_size)
