"""Online relabelling: augment the batch on its device, then label the augmented batch.

Nothing is replayed and nothing is stored: each CutMix/Mixup view gets its label from the projector (or a
teacher) right when it is made (HeLlO Alg. 1 lines 12-14). Augmentations are torchvision ``transforms.v2``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from ._loop import world
from .projector import Projector
from .teachers import TeacherEnsemble

__all__ = ["MIX_MODES", "OnlineRelabeler"]

logger = logging.getLogger(__name__)

MIX_MODES: tuple[str, ...] = ("cutmix", "mixup", "none")


def _channel_stats(value: Sequence[float] | None, name: str) -> torch.Tensor | None:
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() != 3:
        raise ValueError(f"`{name}` must have 3 values (RGB), got {list(t.tolist())}")
    if name.endswith("std") and not (t > 0).all():
        raise ValueError(f"`{name}` must be positive, got {t.tolist()}")
    return t.view(1, 3, 1, 1)


class OnlineRelabeler:
    """Augments a batch (optional per-sample RandomResizedCrop/flip, then CutMix or Mixup) and labels it online.

    Args:
        labeler: a :class:`~lightlabel.Projector`, any teacher ``nn.Module`` returning ``(B, C)`` logits, or a
            sequence of teachers (their mean logits; the RDED online-teacher baseline). Put in eval mode; a
            projector is merged for speed when ``merge`` is true.
        num_classes: ``C``; taken from a projector, required for other labellers.
        mix: ``"cutmix"`` (default, as in HeLlO supp. Table 3), ``"mixup"`` or ``"none"``.
        alpha: Beta(alpha, alpha) parameter of CutMix/Mixup (default 1.0).
        crop_size: if given, a per-sample ``RandomResizedCrop(crop_size, scale=crop_scale)`` on the device first.
        crop_scale: scale range of that crop.
        flip: per-sample random horizontal flip.
        input_mean, input_std: the normalisation of the images you pass in (e.g. ImageNet statistics). When given,
            images are re-normalised for the labeller (a projector's ``mean``/``std``, or
            ``labeler_mean``/``labeler_std``). When not given, images must already be normalised for the labeller.
        labeler_mean, labeler_std: normalisation a plain teacher expects (projectors know their own).
        seed: seeds a private generator for the augmentation parameters (reproducible, leaves the global RNG
            untouched); ``None`` uses the global RNG. Under torch.distributed, rank ``r`` uses ``seed + r``.
        autocast: label under bf16 autocast on CUDA (CPU labelling is float32).
        merge: merge a projector's LoRA into its weights (the fast inference path).
        check_every: check the labels for NaN/Inf every this many calls. The check needs a host sync, so the
            default is every call on CPU and every 100 calls on CUDA (the student's step stays sync-free).

    Shape:
        - images: ``(B, 3, H, W)`` float. The projector sees them resized to its ``image_size``; the returned
          images keep the input (or crop) size and normalisation.
        - targets: ``(B,)`` int64 class indices or ``(B, C)`` probabilities.
        - Returns ``(images, soft_logits, mixed_targets)``: ``(B, 3, H', W')`` same dtype, ``(B, C)`` float32,
          ``(B, C)`` float32 with rows summing to 1.

    Under DDP each rank labels its own batch; the labeller is never wrapped in DDP (it has no gradients), and the
    first call checks that its weights are identical on every rank.

    Raises:
        ValueError: bad options (named), a missing ``num_classes``, non-finite labels (at a check), wrong shapes.
        TypeError: integer images.
        RuntimeError: images and labeller on different devices, or labeller weights that differ between ranks.

    Source: HeLlO Alg. 1 lines 12-14; CutMix (Yun et al. 2019) as in RDED/SRe2L evaluation.

    Example:
        >>> relabeler = OnlineRelabeler(projector, mix="cutmix", alpha=1.0, seed=0)  # doctest: +SKIP
        >>> images, soft_logits, targets = relabeler(images.cuda(), labels.cuda())  # doctest: +SKIP
    """

    def __init__(
        self,
        labeler: Projector | nn.Module | Sequence[nn.Module],
        *,
        num_classes: int | None = None,
        mix: str | None = "cutmix",
        alpha: float = 1.0,
        crop_size: int | tuple[int, int] | None = None,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        flip: bool = False,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        labeler_mean: Sequence[float] | None = None,
        labeler_std: Sequence[float] | None = None,
        seed: int | None = None,
        autocast: bool = True,
        merge: bool = True,
        check_every: int | None = None,
    ) -> None:
        if isinstance(labeler, Sequence) and not isinstance(labeler, nn.Module):
            labeler = TeacherEnsemble(list(labeler))
        if not isinstance(labeler, nn.Module):
            raise TypeError(f"`labeler` must be a Projector, an nn.Module or a list of them, got {type(labeler).__name__}")
        self.labeler = labeler.eval()
        self.is_projector = isinstance(labeler, Projector)
        if self.is_projector:
            if num_classes is not None and num_classes != labeler.num_classes:
                raise ValueError(f"`num_classes`={num_classes} but the projector has {labeler.num_classes} classes")
            num_classes = labeler.num_classes
            if merge:
                labeler.merge()
            labeler_mean, labeler_std = labeler.mean, labeler.std
        if num_classes is None or isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2 (required unless the labeler is a Projector), "
                             f"got {num_classes!r}")
        self.num_classes = num_classes
        mix = "none" if mix is None else mix
        if mix not in MIX_MODES:
            raise ValueError(f"`mix` must be one of {list(MIX_MODES)} or None, got {mix!r}")
        if not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ValueError(f"`alpha` must be > 0, got {alpha!r}")
        self.mix, self.alpha = mix, float(alpha)
        self._mixer = {"cutmix": v2.CutMix, "mixup": v2.MixUp}.get(mix)
        if self._mixer is not None:
            self._mixer = self._mixer(alpha=self.alpha, num_classes=num_classes)
        self._crop = None
        if crop_size is not None:
            self._crop = v2.RandomResizedCrop(crop_size, scale=crop_scale, antialias=True)
        self.flip = bool(flip)
        in_mean, in_std = _channel_stats(input_mean, "input_mean"), _channel_stats(input_std, "input_std")
        lab_mean, lab_std = _channel_stats(labeler_mean, "labeler_mean"), _channel_stats(labeler_std, "labeler_std")
        if (in_mean is None) != (in_std is None) or (lab_mean is None) != (lab_std is None):
            raise ValueError("give both `input_mean` and `input_std` (and both `labeler_mean`/`labeler_std`) or neither")
        self._affine: tuple[torch.Tensor, torch.Tensor] | None = None
        if in_mean is not None:
            if lab_mean is None:
                raise ValueError("`input_mean`/`input_std` given but the labeler's normalisation is unknown: "
                                 "pass `labeler_mean`/`labeler_std` for a plain teacher")
            # x_labeler = (x * in_std + in_mean - lab_mean) / lab_std
            self._affine = (in_std / lab_std, (in_mean - lab_mean) / lab_std)
        self.autocast = bool(autocast)
        if check_every is not None and (isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1):
            raise ValueError(f"`check_every` must be an int >= 1 or None, got {check_every!r}")
        self.check_every = check_every
        rank, size = world()
        # under torch.distributed each rank draws its own augmentation stream (seed + rank)
        self._rng_state = None if seed is None else torch.Generator().manual_seed(int(seed) + rank).get_state()
        self._ranks_checked = size == 1
        self._calls = 0
        self._bad: torch.Tensor | None = None
        self._channels_last: bool | None = None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Generator state and call count, to resume a run with identical augmentations."""
        return {"rng_state": None if self._rng_state is None else self._rng_state.clone(), "calls": self._calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng_state = None if state["rng_state"] is None else state["rng_state"].clone()
        self._calls = int(state["calls"])

    @contextlib.contextmanager
    def _private_rng(self) -> Iterator[None]:
        # torchvision's CutMix/MixUp/RandomResizedCrop sample their parameters from the global CPU generator;
        # swapping its state in and out gives them a private, seeded stream.
        if self._rng_state is None:
            yield
            return
        saved = torch.random.get_rng_state()
        torch.random.set_rng_state(self._rng_state)
        try:
            yield
        finally:
            self._rng_state = torch.random.get_rng_state()
            torch.random.set_rng_state(saved)

    # ------------------------------------------------------------------ steps
    def _device(self) -> torch.device | None:
        p = next(self.labeler.parameters(), None)
        return None if p is None else p.device

    def _check_targets(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        if targets.ndim == 1:
            if targets.is_floating_point() or targets.shape[0] != images.shape[0]:
                raise ValueError(f"`targets` must be int64 (B,) = ({images.shape[0]},) or (B, C) probabilities, got "
                                 f"{targets.dtype} {tuple(targets.shape)}")
            if targets.device.type == "cpu" and targets.numel() and not (0 <= int(targets.min()) and int(targets.max()) < self.num_classes):
                raise ValueError(f"`targets` must be class indices in [0, {self.num_classes}), got range "
                                 f"[{int(targets.min())}, {int(targets.max())}]")
        elif targets.shape != (images.shape[0], self.num_classes):
            raise ValueError(f"`targets` must be (B,) or (B, C) = ({images.shape[0]}, {self.num_classes}), "
                             f"got {tuple(targets.shape)}")

    def sample_params(self, batch_size: int, height: int, width: int) -> dict[str, torch.Tensor]:
        """Draw the augmentation parameters of one batch (from the private generator when seeded).

        Returns CPU tensors: ``crop`` ``(B, 4)`` int64 (top, left, height, width) when cropping, ``flip`` ``(B,)``
        bool when flipping, and ``box`` ``(4,)`` int64 (x1, y1, x2, y2) with ``lam`` ``()`` float64 for CutMix, or
        ``lam`` alone for Mixup. :meth:`apply` replays them exactly (used to store and re-read soft labels).
        """
        params: dict[str, torch.Tensor] = {}
        probe = torch.empty(3, height, width, device="meta")
        with self._private_rng():
            if self._crop is not None:
                boxes = [self._crop.make_params([probe]) for _ in range(batch_size)]
                params["crop"] = torch.tensor([[b["top"], b["left"], b["height"], b["width"]] for b in boxes])
                height, width = self._crop.size
                probe = torch.empty(3, height, width, device="meta")
            if self.flip:
                params["flip"] = torch.rand(batch_size) < 0.5
            if self._mixer is not None:
                mix = self._mixer.make_params([probe.expand(batch_size, -1, -1, -1)])
                if "box" in mix:
                    params["box"] = torch.tensor(mix["box"])
                params["lam"] = torch.tensor(float(mix.get("lam_adjusted", mix.get("lam", 1.0))), dtype=torch.float64)
        return params

    def apply(self, images: torch.Tensor, targets: torch.Tensor, params: dict[str, torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply augmentation parameters from :meth:`sample_params` (torchvision v2 functional ops and
        ``CutMix``/``MixUp.transform``); returns ``(images, (B, C) float targets)``."""
        self._check_targets(images, targets)
        if "crop" in params:
            size = list(self._crop.size)
            images = torch.stack([v2.functional.resized_crop(img, *map(int, box), size=size, antialias=True)
                                  for img, box in zip(images, params["crop"].tolist())])
        if "flip" in params:
            flip = params["flip"]
            if images.is_cuda:  # a pageable host->device copy would synchronise the stream; a pinned one does not
                flip = flip.pin_memory()
            flip = flip.to(images.device, non_blocking=True).view(-1, 1, 1, 1)
            images = torch.where(flip, images.flip(-1), images)
        if targets.ndim == 1:
            targets = F.one_hot(targets, self.num_classes)
        targets = targets.float()
        if self._mixer is not None:
            lam = float(params["lam"])
            mix = {"lam_adjusted": lam} if "box" in params else {"lam": lam}
            if "box" in params:
                mix["box"] = tuple(int(v) for v in params["box"].tolist())
            mix.update(labels=targets, batch_size=images.shape[0])
            images = self._mixer.transform(images, mix)
            targets = self._mixer.transform(targets, mix)
        return images, targets

    def augment(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop/flip (if enabled) and mix a batch; returns ``(images, targets as (B, C) probabilities)``."""
        params = self.sample_params(images.shape[0], *images.shape[-2:])
        return self.apply(images, targets, params)

    def check_ranks(self) -> None:
        """Under torch.distributed, check once that every rank holds identical labeller weights.

        Raises:
            RuntimeError: the weights differ between ranks (each rank would label with another model).
        """
        if self._ranks_checked:
            return
        import torch.distributed as dist

        from .base import fingerprint

        digests: list[str | None] = [None] * world()[1]
        dist.all_gather_object(digests, fingerprint(self.labeler))
        self._ranks_checked = True
        if len(set(digests)) > 1:
            raise RuntimeError(f"the labeler's weights differ between processes (sha256 per rank: "
                               f"{[d[:12] for d in digests]}); load the same adapter or teacher on every rank")

    def label(self, images: torch.Tensor) -> torch.Tensor:
        """Label a batch as it is (no augmentation): ``(B, 3, H, W) -> (B, C)`` float32 logits, a normal tensor."""
        self.check_ranks()
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            raise TypeError(f"`images` must be a float tensor, got {getattr(images, 'dtype', type(images).__name__)}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"`images` must have shape (B, 3, H, W), got {tuple(images.shape)}")
        device = self._device()
        if device is not None and device != images.device:
            raise RuntimeError(f"the labeler is on {device} but images are on {images.device}; "
                               "move it with relabeler.labeler.to(images.device)")
        on_cpu = images.device.type == "cpu"
        if images.is_cuda and self._channels_last is None:  # once: NHWC kernels for the conv tower on CUDA
            self._channels_last = self.is_projector
            if self._channels_last:
                self.labeler.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            x = images
            if self._affine is not None:
                scale, shift = self._affine
                x = x * scale.to(x) + shift.to(x)
            if self.is_projector and tuple(x.shape[-2:]) != self.labeler.image_size:
                x = F.interpolate(x, size=self.labeler.image_size, mode="bilinear", antialias=True, align_corners=False)
            if self._channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=self.autocast and not on_cpu):
                out = self.labeler(x, check=on_cpu) if self.is_projector else self.labeler(x)
            out = out.float()
            if out.shape != (images.shape[0], self.num_classes):
                raise ValueError(f"the labeler returned shape {tuple(out.shape)}, expected ({images.shape[0]}, "
                                 f"{self.num_classes})")
            bad = ~torch.isfinite(out).all()
            self._bad = bad if self._bad is None else (self._bad | bad)
        self._calls += 1
        every = self.check_every or (1 if on_cpu else 100)
        if self._calls % every == 0:
            self.check()
        return out.clone()

    def check(self) -> None:
        """Raise if any labels since the last check were NaN/Inf (one host sync). Called every ``check_every``."""
        bad, self._bad = self._bad, None
        if bad is not None and bool(bad):
            raise ValueError(f"the labeler produced NaN/Inf logits within the last {self.check_every or 'few'} batches "
                             f"(up to call {self._calls}): check the input images for NaN/Inf pixels")

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Augment, then label: returns ``(images, soft_logits, mixed_targets)`` (see the class docstring)."""
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            raise TypeError(f"`images` must be a float tensor (B, 3, H, W), got "
                            f"{getattr(images, 'dtype', type(images).__name__)}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"`images` must have shape (B, 3, H, W), got {tuple(images.shape)}")
        images, targets = self.augment(images, targets)
        return images, self.label(images), targets

    def __repr__(self) -> str:
        return (f"OnlineRelabeler(labeler={type(self.labeler).__name__}, num_classes={self.num_classes}, "
                f"mix={self.mix!r}, alpha={self.alpha}, crop={self._crop is not None}, flip={self.flip})")
