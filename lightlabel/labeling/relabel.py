"""Online relabelling for your own training loop: augment the batch on its device, then label the views.

Nothing is replayed and nothing is stored: each view gets its label from the projector (or a teacher) right when
it is made (HeLlO Alg. 1 lines 12-14). The augmentation is an :class:`~lightlabel.labeling.augment.Augmenter`
and the labels come from a :class:`~lightlabel.LabelSource`; this class only joins the two and converts between
your loader's normalisation and the labeller's.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..configs import described, int_arg
from ..core.base import fingerprint
from ..inputs import InputSpec
from ..utils.seeding import derive_seed
from .augment import AugmentConfig, Augmenter
from .named import resolve_labeller
from .sources import LabelSource, ModelLabels, as_label_source

__all__ = ["OnlineRelabeler"]

logger = logging.getLogger(__name__)


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class OnlineRelabeler:
    """Augments a batch (CutMix by default) and labels the views online.

    Args:
        labeller: a :class:`~lightlabel.Projector`, a teacher ``nn.Module`` carrying an ``input_spec``, a list of
            teachers (their mean logits: the RDED online-teacher baseline), any :class:`~lightlabel.LabelSource`, or
            a string: a teacher name (``"torchvision:resnet18"``), a checkpoint or an adapter (see
            :func:`~lightlabel.labeling.named.labeller_from_string`). Put in eval mode; otherwise left as it is (call ``projector.merge()`` yourself for the fast path).
        input_spec: the normalisation of the images you pass in (your loader's, e.g. ``InputSpec.imagenet()``).
            The views are converted from it to the labeller's own input. Required: lightlabel does not guess.
        augment: the augmentation (:class:`~lightlabel.AugmentConfig`). Default: ``mix``/``alpha`` only, no crop,
            no flip, no patch shuffling (your loader already crops and flips).
        mix, alpha: shortcuts for the default augmentation: ``"cutmix"`` (HeLlO supp. Table 3), ``"mixup"`` or
            ``"none"``; Beta(alpha, alpha). Give either these or ``augment``.
        num_classes: ``C``, only for a label source that cannot tell.
        class_names: your dataset's classes in label order (e.g. ``dataset.classes``); a labeller whose
            ``class_names`` or ``classes`` are the same names in a different order is refused. ``None``: not checked.
        seed: seeds the augmentation stream (reproducible; leaves the global RNG untouched). ``None``: drawn from
            the global RNG once. Under torch.distributed, rank ``r`` uses its own stream from ``(seed, r)``.
        check_every: check the labels for NaN/Inf every this many calls (one host sync; default 1 on CPU, 100 on
            CUDA).

    Shape:
        - images: ``(B, 3, H, W)`` float, normalised with ``input_spec``.
        - targets: ``(B,)`` int64 or ``(B, C)`` probabilities.
        - returns: ``(views (B, 3, H, W) in your normalisation, soft logits (B, C) float32, mixed targets (B, C)
          float32)``. The logits are computed on exactly the returned views.

    Raises:
        TypeError: an unsupported labeller, a non-float image tensor.
        ValueError: a labeller without an input spec or in another class order than ``class_names``, both
            ``augment`` and ``mix``/``alpha``, bad options, images or targets of the wrong shape, or NaN/Inf labels.
        RuntimeError: images and labeller on different devices, or labeller weights that differ between ranks.

    Source: HeLlO Alg. 1 lines 12-14; CutMix (Yun et al. 2019) as in RDED/SRe2L evaluation.

    Example:
        >>> import torch, lightlabel as ll
        >>> projector = ll.Projector.packaged(["n01440764", "n02102040"]).merge()
        >>> relabeler = OnlineRelabeler(projector, input_spec=InputSpec.imagenet(), seed=0)
        >>> images = InputSpec.imagenet().normalize(torch.rand(8, 3, 64, 64))  # your loader's batch (on the GPU)
        >>> views, soft_logits, targets = relabeler(images, torch.tensor([0, 1] * 4))
        >>> soft_logits.shape, targets.shape
        (torch.Size([8, 2]), torch.Size([8, 2]))
    """

    def __init__(
        self,
        labeller: LabelSource | nn.Module | Sequence[nn.Module | str] | str | None = None,
        *,
        input_spec: InputSpec,
        augment: AugmentConfig | None = None,
        mix: str | None = None,
        alpha: float | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        seed: int | None = None,
        check_every: int | None = None,
        labels: LabelSource | nn.Module | Sequence[nn.Module] | None = None,
    ) -> None:
        if labels is not None:
            if labeller is not None:
                raise TypeError("give `labeller` only (`labels` is its deprecated name)")
            warnings.warn("OnlineRelabeler(labels=...) is deprecated: the argument is `labeller`", DeprecationWarning,
                          stacklevel=2)
            labeller = labels
        if labeller is None:
            raise TypeError("OnlineRelabeler needs a `labeller` (a Projector, a teacher, teachers or a LabelSource)")
        if not isinstance(input_spec, InputSpec):
            raise TypeError(f"`input_spec` must be an InputSpec (the normalisation of the images you pass in, e.g. "
                            f"InputSpec.imagenet()), got {type(input_spec).__name__}")
        self.source = as_label_source(resolve_labeller(labeller), num_classes, class_names=class_names)
        if self.source.input_spec is None:
            raise ValueError(f"{self.source.kind} labels do not look at the views; OnlineRelabeler needs a labeller")
        if augment is not None and (mix is not None or alpha is not None):
            raise ValueError("give either `augment` or the `mix`/`alpha` shortcuts, not both")
        if augment is None:
            augment = AugmentConfig(crop_scale=None, flip=False, shuffle_patches=False,
                                    mix=mix or "cutmix", alpha=1.0 if alpha is None else alpha)
        self.augmenter = Augmenter(augment, self.source.num_classes)
        self.input_spec = input_spec
        int_arg(check_every, "check_every", 1, optional=True)
        self.check_every = check_every
        rank, size = _world()
        base = int(torch.randint(0, 2**62, (), dtype=torch.int64)) if seed is None else int(seed)
        self._gen = torch.Generator().manual_seed(derive_seed(base, "relabel", rank))
        self._ranks_checked = size == 1
        self._calls = 0
        self._bad: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The augmentation stream's state and the call count, to resume a run with identical augmentations."""
        return {"rng_state": self._gen.get_state(), "calls": self._calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._gen.set_state(state["rng_state"])
        self._calls = int(state["calls"])

    # ------------------------------------------------------------------ steps
    def check_ranks(self) -> None:
        """Under torch.distributed, check once that every rank holds identical labeller weights.

        Raises:
            RuntimeError: the weights differ between ranks (each rank would label with another model).
        """
        if self._ranks_checked:
            return
        import torch.distributed as dist

        self._ranks_checked = True
        if not isinstance(self.source, ModelLabels):
            return
        digests: list[str | None] = [None] * _world()[1]
        dist.all_gather_object(digests, fingerprint(self.source.model))
        if len(set(digests)) > 1:
            raise RuntimeError(f"the labeller's weights differ between processes (sha256 per rank: "
                               f"{[d[:12] for d in digests]}); load the same adapter or teacher on every rank")

    def label(self, images: torch.Tensor) -> torch.Tensor:
        """Label a batch as it is (no augmentation): ``(B, 3, H, W)`` in your normalisation -> ``(B, C)`` float32.

        Labels depend only on the images, so a batch may be labelled in chunks (gradient accumulation, as SRe2L's
        ``train_KD.py`` does): ``views, mixed = relabeler.augment(images, targets)`` once, then
        ``relabeler.label(chunk)`` for each chunk of ``views``; the result equals labelling ``views`` at once.

        Raises:
            TypeError: not a float tensor. ValueError: not ``(B, 3, H, W)``, or (at a check, every
            ``check_every`` calls) NaN/Inf logits since the last check. RuntimeError: a labeller on another
            device than the images.
        """
        self.check_ranks()
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            raise TypeError(f"`images` must be a float tensor, got {described(images)}")
        if isinstance(self.source, ModelLabels):  # one affine map from your normalisation to the labeller's
            out = self.source.label(images, input_spec=self.input_spec)
        else:
            out = self.source.label(self.input_spec.denormalize(images))
        bad = ~torch.isfinite(out).all()
        self._bad = bad if self._bad is None else (self._bad | bad)
        self._calls += 1
        if self._calls % (self.check_every or (1 if images.device.type == "cpu" else 100)) == 0:
            self.check()
        return out

    def check(self) -> None:
        """Raise if any labels since the last check were NaN/Inf (one host sync). Called every ``check_every``."""
        bad, self._bad = self._bad, None
        if bad is not None and bool(bad):
            raise ValueError(f"the labeller produced NaN/Inf logits within the last {self.check_every or 'few'} "
                             f"batches (up to call {self._calls}): check the input images for NaN/Inf pixels")

    def augment(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch with the next parameters of the stream: ``(views, (B, C) mixed targets)``.

        Each call advances the relabeler's random stream (seeded by ``seed``), so the n-th call's views are the same
        on every run; :meth:`label` then labels the views, whole or in chunks.

        Shape:
            - images: ``(B, 3, H, W)`` float, in your normalisation; targets: ``(B,)`` int64 class indices.
            - Output: ``(B, 3, H, W)`` views and ``(B, C)`` float32 mixed one-hot targets.
        """
        return self.augmenter(images, targets, self._gen)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Augment, then label: returns ``(views, soft_logits, mixed_targets)`` (see the class docstring)."""
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            raise TypeError(f"`images` must be a float tensor (B, 3, H, W), got "
                            f"{described(images)}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"`images` must have shape (B, 3, H, W), got {tuple(images.shape)}")
        views, targets = self.augment(images, targets)
        return views, self.label(views), targets

    def __repr__(self) -> str:
        return f"OnlineRelabeler({self.source!r}, {self.augmenter.config}, input={self.input_spec})"
