"""Every settings object of lightlabel, as dataclasses that validate themselves, in one light module.

- :class:`AdapterConfig`: the adapter (ranks, alphas, LoRA targets, head mode); written into adapter headers and
  read back into it.
- :class:`AugmentConfig`: the views of a student run (RDED's by default).
- :class:`EvalProtocol`: how a student is trained and scored (``rded`` and ``helio`` presets).
- :class:`FitConfig`, :class:`TeacherConfig`, :class:`DistillConfig`: the recipes' settings.
- :class:`LabelCompression`: how stored soft labels are compressed (top-k, int8, label pruning).
- :class:`FactorizeConfig`: factorised distilled images (HaBa bases and hallucinators).

Each recipe takes its config whole, plus field overrides (:func:`config_from`), and never re-lists the fields; the
command line builds its flags from these fields. This module imports no torch, so ``lightlabel --help`` and
argument errors answer at once.

The evaluation protocol's two presets, each following its source:

- :meth:`EvalProtocol.rded`: RDED's validation code (``argument.py``, ``validation/main.py``, ``validation/utils.py``
  of LINs-lab/RDED): AdamW (lr 1e-3 for ResNet-18, weight decay 0.01 on weights only, not on biases and norms),
  ``LambdaLR(0.5 * (1 + cos(pi * epoch / epochs / 2)))`` stepped per epoch (ends at half the learning rate),
  300 epochs, batch 10 / 50 / 100 at IPC 1 / 10 / 50 (doubled for 100 and 1000 classes, at most all the images),
  views ShufflePatches(f) + RandomResizedCrop(1/f, 1) + flip + CutMix 1.0, loss KL at temperature 20 on the
  teacher's labels, scored on the validation set every 10 epochs in the last 20 % and reported as the best.
- :meth:`EvalProtocol.helio`: HeLlO supplementary Table 3: AdamW lr 1e-3, 300 epochs, batch 100, CutMix alpha 1,
  loss MSE + 0.025 CE. The table names no schedule and no views; the schedule is cosine to zero per step
  (DESIGN.md's reading) and the views are RDED's (HeLlO distils RDED-style images and follows RDED's evaluation).

Count optimiser steps, not epochs, when comparing: at IPC 10 on 10 classes RDED takes 600 steps (batch 50) and
HeLlO 300 (batch 100).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from .inputs import InputSpec

__all__ = [
    "FACTORIZE_OBJECTIVES",
    "HALLUCINATOR_INITS",
    "HEAD_MODES",
    "LABEL_VALUES",
    "LORA_TARGETS",
    "LOSS_KINDS",
    "MIX_MODES",
    "SCHEDULES",
    "TOPK_FILLS",
    "AdapterConfig",
    "AugmentConfig",
    "DistillConfig",
    "EvalProtocol",
    "FactorizeConfig",
    "FitConfig",
    "LabelCompression",
    "TeacherConfig",
    "config_from",
    "config_to_dict",
    "field_docs",
    "rded_batch_size",
]

#: LoRA target kinds (see :func:`lightlabel.core.lora.find_lora_targets`).
LORA_TARGETS: tuple[str, ...] = ("attn", "attnpool", "conv", "linear")
#: Head modes (see :mod:`lightlabel.core.head`).
HEAD_MODES: tuple[str, ...] = ("additive", "renorm")
#: Soft-label losses (see :func:`lightlabel.soft_label_loss`).
LOSS_KINDS: tuple[str, ...] = ("kl", "mse", "soft_ce")
#: Batch mixing of the views.
MIX_MODES: tuple[str, ...] = ("cutmix", "mixup", "none")

C = TypeVar("C")


def config_from(cls: type[C], config: C | None, overrides: Mapping[str, Any]) -> C:
    """``config`` (or ``cls()``) with the ``overrides`` fields replaced, validated by the dataclass.

    Raises:
        TypeError: ``config`` of another type, or an unknown field name (the valid ones are listed).
        ValueError: an invalid value (from the dataclass's own checks).
    """
    if config is not None and not isinstance(config, cls):
        raise TypeError(f"`config` must be a {cls.__name__}, got {type(config).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(f"unknown {cls.__name__} settings {unknown}; valid: {names}")
    base = config if config is not None else cls()
    return dataclasses.replace(base, **overrides) if overrides else base


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config's fields as JSON-ready values (tuples become lists, nested configs and input specs dicts)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        elif dataclasses.is_dataclass(value):
            value = config_to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def field_docs(cls: type) -> dict[str, str]:
    """Each field's description from the ``Args:`` section of a config's docstring, as one line.

    An entry is ``name: text`` or ``name1, name2: text`` (shared by the names) at the section's item indent; deeper
    indented lines continue it. The command line's ``--help`` shows these texts next to each flag's default.

    Returns:
        ``{field name: description}`` for every field the docstring describes.
    """
    lines = (cls.__doc__ or "").splitlines()
    out: dict[str, str] = {}
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() in ("Args:", "Attributes:"))
    except StopIteration:
        return out
    section = len(lines[start]) - len(lines[start].lstrip())
    item: int | None = None
    names: list[str] = []
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= section:
            break  # the next section (Raises:, Source:, ...)
        head, sep, text = line.strip().partition(": ")
        candidates = [n.strip().strip("`") for n in head.split(",")]
        if (item is None or indent == item) and sep and all(n.isidentifier() for n in candidates):
            item, names = indent, candidates
            for n in names:
                out[n] = text.strip()
        elif names:
            for n in names:
                out[n] = f"{out[n]} {line.strip()}"
    return out


@dataclass(frozen=True)
class AdapterConfig:
    """LoRA ranks, alphas, targets and head mode of an adapter. Validates itself.

    Args:
        image_rank: LoRA rank on the image tower (paper: 8).
        image_alpha: LoRA alpha on the image tower; ``None`` means ``image_rank`` (scaling 1).
        head_rank: rank of the head update ``B_h A_h`` (paper: 64 for 100 classes, 128 for 1000).
        head_alpha: alpha of the head update; ``None`` means ``head_rank``.
        targets: LoRA target kinds, from ``("attn", "attnpool", "conv", "linear")`` (paper: ``("conv",)``).
        head_mode: ``"renorm"`` or ``"additive"`` (see :mod:`lightlabel.head`).
        label_size: the side in pixels at which the projector labels (and is fitted); ``None``: the base's own size
            (224 for RN50). The base's positional embedding is resampled for it, and the size is recorded in the
            adapter. Labelling cost falls with the square of the side (RN50: 6.11 GMAC per image at 224 px, 3.12 at
            160, 2.00 at 128).

    Raises:
        ValueError: a rank < 1, a non-positive alpha, an unknown target kind or head mode, a label size < 16.
    """

    image_rank: int = 8
    image_alpha: float | None = None
    head_rank: int = 64
    head_alpha: float | None = None
    targets: tuple[str, ...] = ("conv",)
    head_mode: str = "renorm"
    label_size: int | None = None

    def __post_init__(self) -> None:
        if self.label_size is not None and (isinstance(self.label_size, bool) or not isinstance(self.label_size, int)
                                            or self.label_size < 16):
            raise ValueError(f"`label_size` must be None or an int >= 16 (pixels), got {self.label_size!r}")
        for name in ("image_rank", "head_rank"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
        for name, rank in (("image_alpha", self.image_rank), ("head_alpha", self.head_rank)):
            value = getattr(self, name)
            value = float(rank) if value is None else value
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"`{name}` must be a positive number, got {value!r}")
            object.__setattr__(self, name, float(value))
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        bad = [t for t in targets if t not in LORA_TARGETS]
        if bad or not targets:
            raise ValueError(f"`targets` must be a non-empty subset of {list(LORA_TARGETS)}, got {list(targets)}")
        object.__setattr__(self, "targets", tuple(sorted(set(targets))))
        if self.head_mode not in HEAD_MODES:
            raise ValueError(f"`head_mode` must be one of {list(HEAD_MODES)}, got {self.head_mode!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; :meth:`from_dict` gives back an equal config."""
        out = {"image_rank": self.image_rank, "image_alpha": self.image_alpha, "head_rank": self.head_rank,
               "head_alpha": self.head_alpha, "targets": list(self.targets), "head_mode": self.head_mode}
        if self.label_size is not None:  # absent means the base's own size (and 0.2's dicts stay as they were)
            out["label_size"] = self.label_size
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdapterConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: unknown keys (listed) or invalid values.
        """
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown AdapterConfig fields {unknown}; valid: {sorted(cls.__dataclass_fields__)}")
        return cls(**{k: (tuple(v) if k == "targets" else v) for k, v in data.items()})


@dataclass(frozen=True)
class AugmentConfig:
    """The per-batch augmentation of a student run. Validates itself.

    Args:
        patches_per_side: ``f``, patches per side of the distilled images (1 for one-patch images, 2 for 2 x 2
            mosaics). ShufflePatches permutes on this grid.
        shuffle_patches: apply RDED's ShufflePatches(f) (no effect at ``f = 1``).
        crop_scale: area range of the RandomResizedCrop back to the image size, or ``None`` for no crop.
            RDED: ``(1/f, 1)`` for ``f > 1`` and no crop at ``f = 1`` (:meth:`rded`).
        flip: random horizontal flip (p = 0.5).
        mix: ``"cutmix"``, ``"mixup"`` or ``"none"``.
        alpha: Beta(alpha, alpha) parameter of CutMix / MixUp (RDED, HeLlO: 1.0).

    Raises:
        ValueError: a bad value (named, with what was given).

    Source: RDED validation arguments (``--factor``, ``RandomResizedCrop(scale=(1/factor, 1))``, ``--mix-type
    cutmix``, ``--cutmix 1.0``); HeLlO supplementary Table 3 (CutMix, alpha 1.0).
    """

    patches_per_side: int = 1
    shuffle_patches: bool = True
    crop_scale: tuple[float, float] | None = None
    flip: bool = True
    mix: str = "cutmix"
    alpha: float = 1.0

    def __post_init__(self) -> None:
        f = self.patches_per_side
        if isinstance(f, bool) or not isinstance(f, int) or f < 1:
            raise ValueError(f"`patches_per_side` must be an int >= 1, got {f!r}")
        if self.crop_scale is not None:
            scale = tuple(self.crop_scale)
            if len(scale) != 2 or not all(isinstance(v, (int, float)) for v in scale) or not 0 < scale[0] <= scale[1] <= 1:
                raise ValueError(f"`crop_scale` must be (lo, hi) with 0 < lo <= hi <= 1, or None, got {self.crop_scale!r}")
            object.__setattr__(self, "crop_scale", (float(scale[0]), float(scale[1])))
        if self.mix not in MIX_MODES:
            raise ValueError(f"`mix` must be one of {list(MIX_MODES)}, got {self.mix!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise ValueError(f"`alpha` must be a number > 0, got {self.alpha!r}")
        object.__setattr__(self, "alpha", float(self.alpha))

    @classmethod
    def rded(cls, patches_per_side: int = 1) -> AugmentConfig:
        """RDED's views: ShufflePatches(f), RandomResizedCrop(scale=(1/f, 1)) (none at f = 1), flip, CutMix 1.0."""
        crop = None if patches_per_side == 1 else (1.0 / patches_per_side, 1.0)
        return cls(patches_per_side=patches_per_side, crop_scale=crop)

    @classmethod
    def imagenet_crop(cls) -> AugmentConfig:
        """RandomResizedCrop(0.08, 1) + flip + CutMix of every image: what lightlabel 0.1 did. Kept for the triage
        of issue 19; on RDED's CIFAR-10 IPC-10 images the real ResNet-56 names a class in neither mixed image on 56 %
        of such views (14 % with RDED's views)."""
        return cls(shuffle_patches=False, crop_scale=(0.08, 1.0))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["crop_scale"] = None if self.crop_scale is None else list(self.crop_scale)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        data = dict(data)
        if data.get("crop_scale") is not None:
            data["crop_scale"] = tuple(data["crop_scale"])
        return cls(**data)


#: ``"cosine"``: ``0.5 * (1 + cos(pi * step / steps))`` per optimiser step, to zero. ``"rded"``:
#: ``0.5 * (1 + cos(pi * epoch / epochs / 2))`` per epoch, from 1 to 0.5 (RDED ``validation/main.py``).
SCHEDULES: tuple[str, ...] = ("cosine", "rded")


def rded_batch_size(ipc: int, num_classes: int) -> int:
    """RDED's student batch size (``argument.py``): 10 / 50 / 100 at IPC 1 / 10 / 50, doubled for 100 or 1000
    classes, at most ``ipc * num_classes``.

    Raises:
        ValueError: another IPC (RDED's code defines none; pass ``batch_size=`` to :meth:`EvalProtocol.rded`).
    """
    table = {1: 10, 10: 50, 50: 100}
    if ipc not in table:
        raise ValueError(f"RDED defines student batch sizes for IPC {sorted(table)} only, got ipc={ipc}; "
                         "pass `batch_size=` explicitly")
    batch = table[ipc] * (2 if num_classes in (100, 1000) else 1)
    return min(batch, ipc * num_classes)


@dataclass(frozen=True)
class EvalProtocol:
    """The student's architecture, optimiser, schedule, length, views, loss and what is reported.

    Args:
        name: a label for reports (``"rded"``, ``"helio"``, ``"custom"``).
        student: a model name for :func:`lightlabel.models.build_model` (low-resolution stem at 64 px or less).
        epochs: passes over the distilled images.
        batch_size: global batch.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        decay_norm_and_bias: apply weight decay to biases and normalisation weights too (RDED: no).
        schedule: one of :data:`SCHEDULES`.
        augment: the views (:class:`~lightlabel.AugmentConfig`).
        soft_loss: loss on soft labels, from ``("mse", "kl", "soft_ce")`` (see :func:`lightlabel.soft_label_loss`).
        ce_weight: weight of the CE term on the mixed targets next to ``soft_loss``.
        temperature: for ``"kl"``/``"soft_ce"``. lightlabel's KL is multiplied by ``T^2`` and RDED's is not; with
            AdamW a constant factor on the loss changes nothing but the effect of its ``eps`` (1e-8).
        eval_every, eval_from: the best-of-last evaluation: every ``eval_every`` epochs once more than
            ``eval_from * epochs`` epochs are done, plus the last epoch (RDED: 10 and 0.8). The final-epoch top-1
            is always reported too.
        student_input: the student's input normalisation (RDED: ImageNet statistics).
        source: where the values come from.

    Raises:
        ValueError: a bad value (named, with what was given).
    """

    name: str = "custom"
    student: str = "resnet18"
    epochs: int = 300
    batch_size: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.01
    decay_norm_and_bias: bool = False
    schedule: str = "cosine"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    soft_loss: str = "mse"
    ce_weight: float = 0.025
    temperature: float = 1.0
    eval_every: int = 10
    eval_from: float = 0.8
    student_input: InputSpec = field(default_factory=InputSpec.imagenet)
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
        for name, lo_open in (("lr", True), ("weight_decay", False), ("ce_weight", False), ("temperature", True)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (lo_open and value == 0):
                raise ValueError(f"`{name}` must be a number {'> 0' if lo_open else '>= 0'}, got {value!r}")
        if not 0 <= self.eval_from < 1:
            raise ValueError(f"`eval_from` must be in [0, 1), got {self.eval_from!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"`schedule` must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.soft_loss not in LOSS_KINDS:
            raise ValueError(f"`soft_loss` must be one of {list(LOSS_KINDS)}, got {self.soft_loss!r}")
        if not isinstance(self.augment, AugmentConfig):
            raise TypeError(f"`augment` must be an AugmentConfig, got {type(self.augment).__name__}")
        if not isinstance(self.student_input, InputSpec):
            raise TypeError(f"`student_input` must be an InputSpec, got {type(self.student_input).__name__}")

    # ------------------------------------------------------------------ presets
    @classmethod
    def rded(cls, *, ipc: int, num_classes: int, patches_per_side: int = 1, **overrides: Any) -> EvalProtocol:
        """RDED's validation protocol for a distilled set of ``ipc`` images per class of ``num_classes`` classes
        whose images hold ``patches_per_side ** 2`` patches (``--factor``). ``overrides`` replace any field.

        Raises:
            ValueError: an IPC RDED defines no batch size for (without ``batch_size=``), or a bad override.
        """
        batch = overrides.pop("batch_size", None) or rded_batch_size(ipc, num_classes)
        return cls(name="rded", epochs=300, batch_size=batch, lr=1e-3, weight_decay=0.01, decay_norm_and_bias=False,
                   schedule="rded", augment=AugmentConfig.rded(patches_per_side), soft_loss="kl", ce_weight=0.0,
                   temperature=20.0, eval_every=10, eval_from=0.8, student_input=InputSpec.imagenet(),
                   source="RDED (Sun et al., CVPR 2024) validation code: argument.py and validation/main.py",
                   ).replace(**overrides)

    @classmethod
    def helio(cls, *, patches_per_side: int = 1, **overrides: Any) -> EvalProtocol:
        """HeLlO's evaluation protocol (supplementary Table 3) on RDED's views for ``patches_per_side``.
        ``overrides`` replace any field."""
        return cls(name="helio", epochs=300, batch_size=100, lr=1e-3, weight_decay=0.01, decay_norm_and_bias=False,
                   schedule="cosine", augment=AugmentConfig.rded(patches_per_side), soft_loss="mse", ce_weight=0.025,
                   temperature=1.0, eval_every=10, eval_from=0.8, student_input=InputSpec.imagenet(),
                   source="HeLlO supplementary Table 3 (AdamW 1e-3, 300 epochs, MSE + 0.025 CE, batch 100, CutMix 1.0); "
                          "views from RDED's validation code",
                   ).replace(**overrides)

    PRESETS = ("rded", "helio")

    @classmethod
    def preset(cls, name: str, *, ipc: int, num_classes: int, patches_per_side: int = 1,
               **overrides: Any) -> EvalProtocol:
        """A preset by name (:attr:`PRESETS`).

        Raises:
            ValueError: an unknown name (the valid ones are listed).
        """
        if name == "rded":
            return cls.rded(ipc=ipc, num_classes=num_classes, patches_per_side=patches_per_side, **overrides)
        if name == "helio":
            return cls.helio(patches_per_side=patches_per_side, **overrides)
        raise ValueError(f"unknown protocol {name!r}; presets: {list(cls.PRESETS)}")

    # ------------------------------------------------------------------ helpers
    def replace(self, **changes: Any) -> EvalProtocol:
        """A copy with some fields changed (``dataclasses.replace``), validated again.

        Raises:
            TypeError: an unknown field (the valid ones are listed).
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown EvalProtocol fields {unknown}; valid: {[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes) if changes else self

    def steps_per_epoch(self, num_images: int) -> int:
        return math.ceil(num_images / self.batch_size)

    def total_steps(self, num_images: int) -> int:
        """Optimiser steps of a run on ``num_images`` distilled images."""
        return self.epochs * self.steps_per_epoch(num_images)

    def eval_epochs(self) -> list[int]:
        """The epochs (1-based) after which the student is scored: the best-of-last evaluations, and the last."""
        epochs = {e for e in range(1, self.epochs + 1) if e % self.eval_every == 0 and e > self.eval_from * self.epochs}
        return sorted(epochs | {self.epochs})

    def lr_factor(self, step: int, epoch: int, total_steps: int) -> float:
        """The learning-rate multiplier at optimiser ``step`` (0-based) in ``epoch`` (0-based)."""
        if self.schedule == "rded":
            return 0.5 * (1 + math.cos(math.pi * epoch / self.epochs / 2))
        return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["augment"] = self.augment.to_dict()
        out["student_input"] = self.student_input.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalProtocol:
        data = dict(data)
        data["augment"] = AugmentConfig.from_dict(data["augment"])
        data["student_input"] = InputSpec.from_dict(data["student_input"])
        return cls(**data)


@dataclass(frozen=True)
class FitConfig:
    """Settings of :func:`fit_adapter` (HeLlO supplementary Table 2 by default). Validates itself.

    Args:
        epochs: fitting epochs (paper: 20).
        lr: AdamW learning rate, constant (paper: 5e-4).
        weight_decay: AdamW weight decay of the LoRA/head factors (logit scale and bias get none). The paper does
            not state it; 0.01 is AdamW's default.
        batch_size: the global batch (paper: 256); under torch.distributed each of the ``W`` processes takes
            ``batch_size / W`` of it, so a run on ``W`` processes matches one process with the same ``batch_size``.
        ce_weight: weight of the cross-entropy term (paper: 0.1, Eq. 5 lambda).
        image_size: resolution the teachers see (default: their recorded training size, else the first image's
            size). The projector sees the same view resized to its own input size.
        augment: use the teachers' training augmentation (:func:`lightlabel.data.train_transform`); otherwise a
            resize + center crop.
        val_fraction: fraction of the training set held out (deterministically) to measure label fidelity each
            epoch; 0 disables it.
        seed: seed of the adapter initialisation, data split, order and augmentation.
        num_workers: DataLoader workers.

    Raises:
        ValueError: a bad value (named, with what was given).
    """

    epochs: int = 20
    lr: float = 5e-4
    weight_decay: float = 0.01
    batch_size: int = 256
    ce_weight: float = 0.1
    image_size: int | None = None
    augment: bool = True
    val_fraction: float = 0.05
    seed: int = 0
    num_workers: int = 0

    def __post_init__(self) -> None:
        for name, low in (("epochs", 0), ("batch_size", 1), ("num_workers", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`{name}` must be an int >= {low}, got {value!r}")
        for name in ("lr", "weight_decay", "ce_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (name == "lr" and value == 0):
                raise ValueError(f"`{name}` must be a number {'> 0' if name == 'lr' else '>= 0'}, got {value!r}")
        if not isinstance(self.val_fraction, (int, float)) or not 0 <= self.val_fraction < 1:
            raise ValueError(f"`val_fraction` must be in [0, 1), got {self.val_fraction!r}")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitConfig:
        return cls(**data)


@dataclass(frozen=True)
class TeacherConfig:
    """Settings of :func:`train_teachers`: the paper's recipe by default (HeLlO supp. Table 1). Validates itself.

    Args:
        arch: torchvision or timm model name, or ``cifar_resnet20``..``110`` (:func:`lightlabel.models.build_model`).
        epochs: epochs to train (default 41: the last checkpoint of the paper's earliest teacher window "1-41").
        save_epochs: epochs whose checkpoints are kept (default: 9 evenly spaced in ``[1, epochs]``, the paper's
            model pool of 9).
        image_size: training resolution in pixels (default: the first image's size).
        low_res: 3x3 stem without max-pool (default: ``image_size <= 64``; ResNet-style archs only).
        batch_size, lr, momentum, weight_decay, step_size, gamma: SGD with StepLR (paper: 256, 0.1, 0.9, 1e-4, 30,
            0.1); ``batch_size`` is the global batch, split across processes under torch.distributed.
        seed: seed of the initialisation, data order and augmentation.
        num_workers: DataLoader workers.

    Raises:
        ValueError: a bad value (named, with what was given).
    """

    arch: str = "resnet18"
    epochs: int = 41
    save_epochs: tuple[int, ...] | None = None
    image_size: int | None = None
    low_res: bool | None = None
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    step_size: int = 30
    gamma: float = 0.1
    seed: int = 0
    num_workers: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "step_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
        if self.save_epochs is not None:
            saves = tuple(sorted({int(e) for e in self.save_epochs}))
            if not saves or saves[0] < 1 or saves[-1] > self.epochs:
                raise ValueError(f"`save_epochs` must be within [1, {self.epochs}], got {self.save_epochs}")
            object.__setattr__(self, "save_epochs", saves)
        if not self.lr > 0:
            raise ValueError(f"`lr` must be > 0, got {self.lr!r}")

    @property
    def checkpoint_epochs(self) -> tuple[int, ...]:
        """The epochs whose checkpoints are kept: ``save_epochs``, or 9 evenly spaced in ``[1, epochs]``."""
        if self.save_epochs is not None:
            return self.save_epochs
        count = min(9, self.epochs)
        return tuple(sorted({round(1 + i * (self.epochs - 1) / max(count - 1, 1)) for i in range(count)}))


@dataclass(frozen=True)
class DistillConfig:
    """Settings of :func:`distill_images`. Validates itself.

    Args:
        ipc: distilled images per class.
        patches_per_image: ``k * k`` patches per image (RDED: 4 for high resolution, 1 below 64 px).
        candidates_per_class: images drawn uniformly at random per class (RDED ``|T'_c|``, ``--mipc``: 300).
        crops_per_image: random-resized crops scored per candidate image (RDED ``--num-crop``: 5).
        crop_scale: area range of those crops (RDED ``--min/max-scale-crops``: 0.08, 1).
        refine_steps, refine_lr: Adam steps and learning rate of the Eq. 7 refinement (paper: 300, 0.01); used
            only with a projector.
        image_size: side of a distilled image in pixels, the student's training resolution (default: a teacher
            observer's training size, else the first training image's size). Patches are ``image_size / k``
            pixels; crops are scored at ``image_size`` (a projector observer sees them resized to its input).
        seed: every class uses a generator seeded by ``(seed, class)``: deterministic and order-independent.
        batch_size: observer batch size for scoring.

    Raises:
        ValueError: a bad value (named, with what was given).
    """

    ipc: int = 10
    patches_per_image: int = 4
    candidates_per_class: int = 300
    crops_per_image: int = 5
    crop_scale: tuple[float, float] = (0.08, 1.0)
    refine_steps: int = 300
    refine_lr: float = 0.01
    image_size: int | None = None
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self) -> None:
        for name in ("ipc", "candidates_per_class", "crops_per_image", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
        if isinstance(self.refine_steps, bool) or not isinstance(self.refine_steps, int) or self.refine_steps < 0:
            raise ValueError(f"`refine_steps` must be an int >= 0, got {self.refine_steps!r}")
        ppi = self.patches_per_image
        k = math.isqrt(ppi) if isinstance(ppi, int) and not isinstance(ppi, bool) and ppi > 0 else 0
        if k * k != ppi or k == 0:
            raise ValueError(f"`patches_per_image` must be a perfect square (1, 4, 9, ...), got {ppi!r}")
        scale = tuple(self.crop_scale)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"`crop_scale` must be (lo, hi) with 0 < lo <= hi <= 1, got {self.crop_scale!r}")
        object.__setattr__(self, "crop_scale", (float(scale[0]), float(scale[1])))
        if self.image_size is not None and (isinstance(self.image_size, bool) or not isinstance(self.image_size, int)
                                            or self.image_size < 1):
            raise ValueError(f"`image_size` must be an int >= 1 or None, got {self.image_size!r}")
        if not self.refine_lr > 0:
            raise ValueError(f"`refine_lr` must be > 0, got {self.refine_lr!r}")

    @property
    def grid(self) -> int:
        """``k``, patches per side."""
        return math.isqrt(self.patches_per_image)




#: How the logits outside a view's top-k are filled back in: ``"min"`` (the view's smallest stored logit) or ``"mass"``
#: (the probability mass the top-k leave, spread evenly over the other classes: RDED's ``keep_top_k``).
TOPK_FILLS: tuple[str, ...] = ("min", "mass")
#: Storage of the stored logit values.
LABEL_VALUES: tuple[str, ...] = ("fp16", "int8")


@dataclass(frozen=True)
class LabelCompression:
    """How stored soft labels are compressed (the LPLD / LPQLD baselines). Validates itself.

    Args:
        topk: keep the ``k`` largest logits of each view (their class indices as uint16); ``None`` keeps all ``C``
            (SRe2L/FKD storage). LPQLD's "label quantization" is this: top-k logits in fp16 with 2-byte indices,
            ``4 k`` bytes per view (its code saves ``torch.topk`` values as fp16 and indices as int16).
        values: ``"fp16"`` (as LPQLD), or ``"int8"`` with one fp32 scale per view (symmetric: ``v ~= q * scale``).
            int8 is lightlabel's own further step; LPQLD stores no int8 values.
        fill: how the other logits are reconstructed: ``"min"``, the view's smallest stored value (LPQLD's "MRS"
            variant fills with the view's minimum logit); ``"mass"``, the probability the top-k leave spread evenly
            over the other classes (RDED ``keep_top_k``; one fp32 logsumexp is stored per view). ``"min"`` needs
            ``topk >= 2``: with one stored value it would make every logit equal. LPQLD's default
            ("MR-k") gives the other classes probability 0 and renormalises the top-k; that needs a
            probability-space loss (KL) and has no finite logits for the MSE term of the HeLlO protocol, so it is
            not offered.
        keep_epochs: fraction of the epochs whose labels are stored (label pruning, LPLD):
            ``max(1, round(keep_epochs * epochs))`` epochs, drawn at random from ``(seed, "prune")``; every other
            epoch replays the views and labels of a kept epoch drawn from ``(seed, epoch, "reuse")``, as LPLD
            replays whole stored batches (crops, flips, CutMix boxes and labels). LPQLD's "dynamic knowledge reuse"
            adds a temperature schedule on the replayed logits, which the loss (not this storage) would carry.

    Raises:
        ValueError: a bad value (named, with what was given).

    Source: He et al., "Are Large-scale Soft Labels Necessary for Large-scale Dataset Distillation?" (NeurIPS
    2024, LPLD: random label pruning); Xiao & He, "Soft Label Pruning and Quantization for Large-Scale Dataset
    Distillation" (TPAMI 2026, LPQLD: top-k, quantised labels, knowledge reuse); RDED ``validation/utils.py``
    (``keep_top_k``).
    """

    topk: int | None = None
    values: str = "fp16"
    fill: str = "min"
    keep_epochs: float = 1.0

    def __post_init__(self) -> None:
        if self.topk is not None and (isinstance(self.topk, bool) or not isinstance(self.topk, int) or
                                      not 1 <= self.topk <= 65535):
            raise ValueError(f"`topk` must be an int in [1, 65535] or None, got {self.topk!r}")
        if self.values not in LABEL_VALUES:
            raise ValueError(f"`values` must be one of {list(LABEL_VALUES)}, got {self.values!r}")
        if self.fill not in TOPK_FILLS:
            raise ValueError(f"`fill` must be one of {list(TOPK_FILLS)}, got {self.fill!r}")
        if self.topk == 1 and self.fill == "min":
            raise ValueError("`fill`='min' with `topk`=1 fills every logit with the one stored value, so the labels "
                             "would carry no class at all; use fill='mass' (the rest of the probability spread over "
                             "the other classes) for top-1 storage")
        if isinstance(self.keep_epochs, bool) or not isinstance(self.keep_epochs, (int, float)) or \
                not 0 < self.keep_epochs <= 1:
            raise ValueError(f"`keep_epochs` must be in (0, 1], got {self.keep_epochs!r}")

    def kept_epochs(self, epochs: int) -> int:
        """How many epochs' labels are stored: ``max(1, round(keep_epochs * epochs))``."""
        return max(1, round(self.keep_epochs * epochs))

    def bytes_per_view(self, num_classes: int) -> int:
        """Label bytes of one view: ``k * (2 + value bytes)`` for top-k (uint16 index + value), ``C * value bytes``
        for full storage, plus 4 for an int8 scale and 4 for a ``"mass"`` logsumexp."""
        value = 2 if self.values == "fp16" else 1
        k = num_classes if self.topk is None else min(self.topk, num_classes)
        per_view = k * value + (2 * k if self.topk is not None else 0)
        return per_view + (4 if self.values == "int8" else 0) + (4 if self.topk is not None and self.fill == "mass" else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelCompression:
        return cls(**data)


#: Dataset-distillation objectives of :func:`lightlabel.factorize_images` (HaBa's MTT is not built: see its docs).
FACTORIZE_OBJECTIVES: tuple[str, ...] = ("dm",)

#: Initialisations of HaBa's hallucinators (:class:`lightlabel.recipes.factorize.HallucinatorBank`).
HALLUCINATOR_INITS: tuple[str, ...] = ("identity", "random")


@dataclass(frozen=True)
class FactorizeConfig:
    """Settings of :func:`lightlabel.factorize_images` (HaBa, Liu et al. NeurIPS 2022, with distribution matching).
    Validates itself.

    Args:
        bases_per_class: bases per class (initialised from RDED-selected images).
        hallucinators: hallucinator networks shared by all classes (HaBa: 5).
        hidden_channels: ``c''``, feature channels of a hallucinator (HaBa: 3); at least 3 (the image's channels)
            with ``hallucinator_init="identity"``.
        hallucinator_init: how the hallucinators (HaBa Eq. 2) start. ``"identity"`` (default): each is the identity
            map plus a little noise of its own (encoder and decoder kernels a per-channel centre delta plus
            ``N(0, 0.005^2)``, ``sigma = 1``, ``mu = 0``, biases 0), so a fresh hallucinator's view of an RDED-selected
            basis is that basis, which the observer recognises, and the hallucinators still differ. ``"random"``:
            PyTorch's default convolution initialisation (as HaBa's code), whose views of the bases the CIFAR-10
            ResNet-56 recognises 8-14 % of the time at iteration 0 (measured on CIFAR-10, 5 x 5).
        objective: the dataset-distillation term ``L_DD``: ``"dm"``, distribution matching (mean embeddings of real
            and hallucinated images under a randomly initialised ConvNet, redrawn every iteration).
        iterations: optimisation steps.
        hallucinators_per_iteration: hallucinators drawn per step (HaBa: 2); at least 2 for ``L_cos``.
        real_per_class: real images per class per step for DM.
        lr: Adam learning rate of the hallucinators, default 1e-3, the bases' rate (HaBa Sec. 3.4 uses one rate for
            both). DM rewards views that leave their bases' class content (it scores such views better than real
            photographs), so the hallucinators' rate sets how far they go. Measured on CIFAR-10, 5 x 5, 1,000
            iterations: at 1e-3 a student with projector labels reaches
            40.4 % (views still named 24-52 % by the ResNet-56); at 0.01, the earlier default, 20.1 % (views 16-22 %).
        adversary_lr: Adam learning rate of the feature extractor (HaBa: 1e-3).
        bases_lr: Adam learning rate of the bases (pixels in [0, 1]). DM's gradients change with the random network
            drawn every iteration, so Adam, which normalises each step to about ``bases_lr`` whatever the gradient's
            size, makes a pixel random-walk about ``bases_lr * sqrt(iterations)``: at 0.01 that erases the RDED
            content of the bases in 1,000 iterations (the observer then names a basis's class 26 % of the time,
            measured on CIFAR-10).
        adversarial: train the adversary and add ``lambda_cos * L_cos`` (Eq. 3-6).
        lambda_range: weight of the range term ``mean((x - clamp(x, 0, 1))^2)`` on the hallucinators' outputs ``x``
            before they are clamped to [0, 1] (our addition, not in HaBa). The student sees clamped views, so the
            build clamps them too; but a clamped pixel passes no gradient, so once a hallucinator overshoots, neither
            DM nor ``L_cos`` can pull that pixel back. The term is zero inside [0, 1] and pulls outside pixels back.
            ``0`` (default) turns it off. Measured on CIFAR-10 (200 iterations, ``lambda_range=100``): the views
            still drift; the ResNet-56 names 20-40 % of them with it (14-21 % of their
            values clamped), 24-42 % without, so the clamp is not what erases their class content, and it stays off.
        lambda_con, lambda_task, lambda_cos, lambda_dd: HaBa's loss weights (0.1, 1, 0.1, 1).
        temperature: ``tau`` of the contrastive loss (Eq. 3).
        net_width, net_depth: the ConvNet of DM and of the adversary (width 128, depth 3, instance norm, average
            pooling: the dataset-distillation standard).
        candidates_per_class, crops_per_image: RDED selection of the initial bases.
        seed: all randomness (initial bases, networks, real batches, hallucinator draws).

    Raises:
        ValueError: a bad value (named, with what was given).
    """

    bases_per_class: int = 5
    hallucinators: int = 5
    hidden_channels: int = 3
    hallucinator_init: str = "identity"
    objective: str = "dm"
    iterations: int = 2000
    hallucinators_per_iteration: int = 2
    real_per_class: int = 64
    lr: float = 1e-3
    bases_lr: float = 1e-3
    adversary_lr: float = 1e-3
    adversarial: bool = True
    lambda_con: float = 0.1
    lambda_task: float = 1.0
    lambda_cos: float = 0.1
    lambda_dd: float = 1.0
    lambda_range: float = 0.0
    temperature: float = 0.1
    net_width: int = 128
    net_depth: int = 3
    candidates_per_class: int = 300
    crops_per_image: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("bases_per_class", "hallucinators", "hidden_channels", "iterations", "real_per_class",
                     "net_width", "net_depth", "candidates_per_class", "crops_per_image"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
        if self.hallucinator_init not in HALLUCINATOR_INITS:
            raise ValueError(f"`hallucinator_init` must be one of {list(HALLUCINATOR_INITS)}, got "
                             f"{self.hallucinator_init!r}")
        if self.hallucinator_init == "identity" and self.hidden_channels < 3:
            raise ValueError(f"`hidden_channels` must be >= 3 (the image's channels) with hallucinator_init='identity', "
                             f"got {self.hidden_channels}; use hallucinator_init='random' for fewer")
        if self.objective not in FACTORIZE_OBJECTIVES:
            raise ValueError(f"`objective` must be one of {list(FACTORIZE_OBJECTIVES)} (trajectory matching, HaBa's "
                             f"own L_DD, is not built), got {self.objective!r}")
        k = self.hallucinators_per_iteration
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.hallucinators:
            raise ValueError(f"`hallucinators_per_iteration` must be in [1, {self.hallucinators}], got {k!r}")
        if self.adversarial and k < 2:
            raise ValueError("`hallucinators_per_iteration` must be >= 2 with `adversarial` (L_cos compares two "
                             "hallucinated views of one basis)")
        for name in ("lr", "bases_lr", "adversary_lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)!r}")
        for name in ("lambda_con", "lambda_task", "lambda_cos", "lambda_dd", "lambda_range"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FactorizeConfig:
        return cls(**data)
