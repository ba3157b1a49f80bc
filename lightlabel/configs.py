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
  (our reading of a table that names none) and the views are RDED's (HeLlO distils RDED-style images and follows RDED's evaluation).

Count optimiser steps, not epochs, when comparing: at IPC 10 on 10 classes RDED takes 600 steps (batch 50) and
HeLlO 300 (batch 100).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    "check_bool",
    "check_int",
    "check_number",
    "check_range",
    "check_str",
    "config_from",
    "config_from_dict",
    "config_to_dict",
    "field_docs",
    "int_arg",
    "number_arg",
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


# ---------------------------------------------------------------------------------------------- field checks
# One way to validate a field, used by every config: each check names the field, says what was expected and what
# was given, and rejects bools where numbers are expected (``True`` is an ``int`` in Python).
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def described(value: Any) -> str:
    """What a bad array argument was, for an error message: ``"torch.float64 (8, 3, 32, 32)"`` for a tensor, the
    type and shape of anything else (``"numpy.ndarray (8, 3, 32, 32)"``), else the type's name.

    Example:
        >>> import torch
        >>> described(torch.zeros(2, 3, dtype=torch.uint8))
        'torch.uint8 (2, 3)'
        >>> described([1, 2])
        'list'
    """
    import torch

    shape = getattr(value, "shape", None)
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} {tuple(shape)}"
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__.split('.')[0]}.{kind.__name__}"
    return name if shape is None else f"{name} {tuple(shape)}"


def int_arg(value: Any, name: str, low: int | None = None, high: int | None = None, *,
            optional: bool = False) -> int | None:
    """``value`` when it is an int in ``[low, high]`` (or ``None`` when ``optional``); otherwise ``ValueError``
    naming the argument ``name``, what was expected and what was given. A bool is not an int here.

    Example:
        >>> int_arg(3, "ipc", 1)
        3
        >>> int_arg(0, "ipc", 1)
        Traceback (most recent call last):
        ...
        ValueError: `ipc` must be an int >= 1, got 0
    """
    if optional and value is None:
        return None
    if not _is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        bounds = f" in [{low}, {high}]" if high is not None else (f" >= {low}" if low is not None else "")
        raise ValueError(f"`{name}` must be an int{bounds}{' or None' if optional else ''}, got {value!r}")
    return value


def number_arg(value: Any, name: str, low: float | None = None, *, open_low: bool = False, high: float | None = None,
               open_high: bool = False, optional: bool = False, unit: str = "") -> float | None:
    """``value`` as a float when it is a finite real number within the bounds (``open_*``: excluded), or ``None``
    when ``optional``; otherwise ``ValueError`` naming the argument ``name`` (``unit``, e.g. ``"seconds"``, is said
    in the message). A bool is not a number here."""
    if optional and value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low is None or (value > low if open_low else value >= low))
    ok = ok and (high is None or (value < high if open_high else value <= high))
    if not ok:
        lo = "" if low is None else f"{'>' if open_low else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if open_high else '<='} {high:g}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        raise ValueError(f"`{name}` must be a finite number{' of ' + unit if unit else ''}"
                         f"{' ' + bounds if bounds else ''}{' or None' if optional else ''}, got {value!r}")
    return float(value)


def check_int(config: Any, name: str, low: int | None = None, high: int | None = None, *,
              optional: bool = False) -> None:
    """Raise ``ValueError`` unless ``config.<name>`` is an int in ``[low, high]`` (or ``None`` when ``optional``)."""
    int_arg(getattr(config, name), name, low, high, optional=optional)


def check_number(config: Any, name: str, low: float | None = None, *, open_low: bool = False,
                 high: float | None = None, open_high: bool = False, optional: bool = False) -> None:
    """Raise ``ValueError`` unless ``config.<name>`` is a real number within the bounds (``open_*``: excluded); an
    int is stored as a float."""
    value = number_arg(getattr(config, name), name, low, open_low=open_low, high=high, open_high=open_high,
                       optional=optional)
    if value is not None:
        object.__setattr__(config, name, value)


def check_bool(config: Any, name: str, *, optional: bool = False) -> None:
    """Raise ``ValueError`` unless ``config.<name>`` is a bool (or ``None`` when ``optional``)."""
    value = getattr(config, name)
    if not (isinstance(value, bool) or (optional and value is None)):
        raise ValueError(f"`{name}` must be True or False{' or None' if optional else ''}, got {value!r}")


def check_str(config: Any, name: str, choices: tuple[str, ...] | None = None) -> None:
    """Raise ``ValueError`` unless ``config.<name>`` is a str (one of ``choices`` when given, which are listed)."""
    value = getattr(config, name)
    if not isinstance(value, str) or (choices is not None and value not in choices):
        expected = f"one of {list(choices)}" if choices is not None else "a str"
        raise ValueError(f"`{name}` must be {expected}, got {value!r}")


def check_range(config: Any, name: str, *, optional: bool = False) -> None:
    """Raise ``ValueError`` unless ``config.<name>`` is ``(lo, hi)`` with ``0 < lo <= hi <= 1``; stored as floats."""
    value = getattr(config, name)
    if optional and value is None:
        return
    pair = tuple(value) if isinstance(value, (list, tuple)) else ()
    if len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair) \
            or not 0 < pair[0] <= pair[1] <= 1:
        raise ValueError(f"`{name}` must be (lo, hi) with 0 < lo <= hi <= 1{', or None' if optional else ''}, "
                         f"got {value!r}")
    object.__setattr__(config, name, (float(pair[0]), float(pair[1])))


def config_from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """The inverse of :func:`config_to_dict`: lists become tuples and nested dicts the configs (or the
    :class:`~lightlabel.InputSpec`) their fields hold, then the dataclass validates itself.

    Raises:
        ValueError: unknown keys (the valid ones are listed) or invalid values.
    """
    import typing

    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; valid: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in data.items():
        hint = hints[key]
        if isinstance(value, Mapping) and hasattr(hint, "from_dict"):
            value = hint.from_dict(value)
        elif isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return cls(**out)


class _Config:
    """What every config shares: one serialisation, :func:`config_to_dict` and :func:`config_from_dict`, round-tripped
    for every config by the tests."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists, nested configs and input specs as dicts)."""
        return config_to_dict(self)

    def result_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` with ``num_workers`` (where the config has it) set to 0: the settings that change a run's
        result. Augmentation is seeded per sample, so the workers do not; a run may resume with other workers, and
        states saved with the 0 that earlier runs recorded still resume."""
        out = self.to_dict()
        if "num_workers" in out:
            out["num_workers"] = 0
        return out

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: unknown keys (the valid ones are listed) or invalid values.
        """
        return config_from_dict(cls, data)


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
class AdapterConfig(_Config):
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
            160, 2.00 at 128). A smaller side needs a longer fit: on CIFAR-10 IPC 10 an adapter at half the proxy
            base's side (32 px of 64, a 1 x 1 final grid) labelled in 0.22 of the time; fitted 10 epochs it
            agreed with its teachers less (0.65 against 0.75) and its students scored 1.8 points lower (43.7 % against
            45.5 %, 3 seeds); fitted 20 epochs they scored 46.6 %, against 47.5 % for the 64 px adapter fitted as long.
            With ``image_rank=32`` the 32 px adapter's students scored 47.7 %, level with the 64 px rank-8 one (the
            same labelling time once merged; 0.8 MB of adapter instead of 0.23). One fit each: three 64 px rank-8 fits
            with identical settings taught 47.5 %, 49.4 % and 47.3 %.

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
        check_int(self, "image_rank", 1)
        check_int(self, "head_rank", 1)
        for name, rank in (("image_alpha", self.image_rank), ("head_alpha", self.head_rank)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, float(rank))
            check_number(self, name, 0, open_low=True)
        targets = (self.targets,) if isinstance(self.targets, str) else self.targets
        if not isinstance(targets, (list, tuple)) or not targets or any(t not in LORA_TARGETS for t in targets):
            raise ValueError(f"`targets` must be a non-empty subset of {list(LORA_TARGETS)}, got {self.targets!r}")
        object.__setattr__(self, "targets", tuple(sorted(set(targets))))
        check_str(self, "head_mode", HEAD_MODES)
        check_int(self, "label_size", 16, optional=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; :meth:`from_dict` gives back an equal config."""
        out = config_to_dict(self)
        if self.label_size is None:  # absent means the base's own size (and 0.2's dicts stay as they were)
            del out["label_size"]
        return out


@dataclass(frozen=True)
class AugmentConfig(_Config):
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
        check_int(self, "patches_per_side", 1)
        check_bool(self, "shuffle_patches")
        check_range(self, "crop_scale", optional=True)
        check_bool(self, "flip")
        check_str(self, "mix", MIX_MODES)
        check_number(self, "alpha", 0, open_low=True)

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
class EvalProtocol(_Config):
    """The student's architecture, optimiser, schedule, length, views, loss and what is reported.

    Args:
        name: a label for reports (``"rded"``, ``"helio"``, ``"custom"``).
        student: a model name for :func:`lightlabel.models.build_model` (low-resolution stem at 64 px or less).
        epochs: passes over the distilled images.
        batch_size: global batch.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        decay_norm_and_bias: apply weight decay to biases and normalisation weights too (RDED: no).
        schedule: ``"cosine"`` (per step, to zero) or ``"rded"`` (RDED's per-epoch half cosine, from 1 to 0.5).
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
        check_str(self, "name")
        check_str(self, "student")
        for name in ("epochs", "batch_size", "eval_every"):
            check_int(self, name, 1)
        check_number(self, "lr", 0, open_low=True)
        check_number(self, "weight_decay", 0)
        check_bool(self, "decay_norm_and_bias")
        check_str(self, "schedule", SCHEDULES)
        if not isinstance(self.augment, AugmentConfig):
            raise TypeError(f"`augment` must be an AugmentConfig, got {type(self.augment).__name__}")
        check_str(self, "soft_loss", LOSS_KINDS)
        check_number(self, "ce_weight", 0)
        check_number(self, "temperature", 0, open_low=True)
        check_number(self, "eval_from", 0, high=1, open_high=True)
        if not isinstance(self.student_input, InputSpec):
            raise TypeError(f"`student_input` must be an InputSpec, got {type(self.student_input).__name__}")
        check_str(self, "source")

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

@dataclass(frozen=True)
class FitConfig(_Config):
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
        num_workers: DataLoader workers of the per-sample CPU augmentation. The result does not depend on it (each
            sample's augmentation is seeded by ``seed``, epoch and index), so a fit may resume with other workers.
            On a GPU use several (e.g. 8): with 0, a CIFAR-10 fit on one H200 took 45 s per epoch, about 20 s of it
            augmenting in the main process.

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
        check_int(self, "epochs", 0)
        check_number(self, "lr", 0, open_low=True)
        check_number(self, "weight_decay", 0)
        check_int(self, "batch_size", 1)
        check_number(self, "ce_weight", 0)
        check_int(self, "image_size", 1, optional=True)
        check_bool(self, "augment")
        check_number(self, "val_fraction", 0, high=1, open_high=True)
        check_int(self, "seed", 0)
        check_int(self, "num_workers", 0)

@dataclass(frozen=True)
class TeacherConfig(_Config):
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
        num_workers: DataLoader workers; the result does not depend on it (per-sample seeded augmentation).

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
        check_str(self, "arch")
        for name in ("epochs", "batch_size", "step_size"):
            check_int(self, name, 1)
        if self.save_epochs is not None:
            saves = self.save_epochs if isinstance(self.save_epochs, (list, tuple)) else None
            if not saves or not all(_is_int(e) for e in saves) or min(saves) < 1 or max(saves) > self.epochs:
                raise ValueError(f"`save_epochs` must be ints within [1, {self.epochs}] or None, got "
                                 f"{self.save_epochs!r}")
            object.__setattr__(self, "save_epochs", tuple(sorted(set(saves))))
        check_int(self, "image_size", 1, optional=True)
        check_bool(self, "low_res", optional=True)
        check_number(self, "lr", 0, open_low=True)
        check_number(self, "momentum", 0, high=1)
        check_number(self, "weight_decay", 0)
        check_number(self, "gamma", 0, open_low=True)
        check_int(self, "seed", 0)
        check_int(self, "num_workers", 0)

    @property
    def checkpoint_epochs(self) -> tuple[int, ...]:
        """The epochs whose checkpoints are kept: ``save_epochs``, or 9 evenly spaced in ``[1, epochs]``."""
        if self.save_epochs is not None:
            return self.save_epochs
        count = min(9, self.epochs)
        return tuple(sorted({round(1 + i * (self.epochs - 1) / max(count - 1, 1)) for i in range(count)}))


@dataclass(frozen=True)
class DistillConfig(_Config):
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
            check_int(self, name, 1)
        check_int(self, "refine_steps", 0)
        ppi = self.patches_per_image
        k = math.isqrt(ppi) if _is_int(ppi) and ppi > 0 else 0
        if k * k != ppi or k == 0:
            raise ValueError(f"`patches_per_image` must be a perfect square (1, 4, 9, ...), got {ppi!r}")
        check_range(self, "crop_scale")
        check_number(self, "refine_lr", 0, open_low=True)
        check_int(self, "image_size", 1, optional=True)
        check_int(self, "seed", 0)

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
class LabelCompression(_Config):
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
        check_int(self, "topk", 1, 65535, optional=True)
        check_str(self, "values", LABEL_VALUES)
        check_str(self, "fill", TOPK_FILLS)
        if self.topk == 1 and self.fill == "min":
            raise ValueError("`fill`='min' with `topk`=1 fills every logit with the one stored value, so the labels "
                             "would carry no class at all; use fill='mass' (the rest of the probability spread over "
                             "the other classes) for top-1 storage")
        check_number(self, "keep_epochs", 0, open_low=True, high=1)

    def num_kept_epochs(self, epochs: int) -> int:
        """How many epochs' labels are stored: ``max(1, round(keep_epochs * epochs))`` (which ones:
        :func:`lightlabel.labeling.stored.kept_epochs`)."""
        return max(1, round(self.keep_epochs * epochs))

    def kept_epochs(self, epochs: int) -> int:
        """Deprecated (0.2 name): :meth:`num_kept_epochs`; ``stored.kept_epochs`` is the list of kept epochs."""
        warnings.warn("LabelCompression.kept_epochs is deprecated: use num_kept_epochs (a count)", DeprecationWarning,
                      stacklevel=2)
        return self.num_kept_epochs(epochs)

    def bytes_per_view(self, num_classes: int) -> int:
        """Label bytes of one view: ``k * (2 + value bytes)`` for top-k (uint16 index + value), ``C * value bytes``
        for full storage, plus 4 for an int8 scale and 4 for a ``"mass"`` logsumexp."""
        value = 2 if self.values == "fp16" else 1
        k = num_classes if self.topk is None else min(self.topk, num_classes)
        per_view = k * value + (2 * k if self.topk is not None else 0)
        return per_view + (4 if self.values == "int8" else 0) + (4 if self.topk is not None and self.fill == "mass" else 0)

#: Dataset-distillation objectives of :func:`lightlabel.factorize_images` (HaBa's MTT is not built: see its docs).
FACTORIZE_OBJECTIVES: tuple[str, ...] = ("dm",)

#: Initialisations of HaBa's hallucinators (:class:`lightlabel.sets.HallucinatorBank`).
HALLUCINATOR_INITS: tuple[str, ...] = ("identity", "random")


@dataclass(frozen=True)
class FactorizeConfig(_Config):
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
            check_int(self, name, 1)
        check_str(self, "hallucinator_init", HALLUCINATOR_INITS)
        if self.hallucinator_init == "identity" and self.hidden_channels < 3:
            raise ValueError(f"`hidden_channels` must be >= 3 (the image's channels) with hallucinator_init='identity', "
                             f"got {self.hidden_channels}; use hallucinator_init='random' for fewer")
        if self.objective not in FACTORIZE_OBJECTIVES:
            raise ValueError(f"`objective` must be one of {list(FACTORIZE_OBJECTIVES)} (trajectory matching, HaBa's "
                             f"own L_DD, is not built), got {self.objective!r}")
        check_int(self, "hallucinators_per_iteration", 1, self.hallucinators)
        check_bool(self, "adversarial")
        if self.adversarial and self.hallucinators_per_iteration < 2:
            raise ValueError("`hallucinators_per_iteration` must be >= 2 with `adversarial` (L_cos compares two "
                             "hallucinated views of one basis)")
        for name in ("lr", "bases_lr", "adversary_lr", "temperature"):
            check_number(self, name, 0, open_low=True)
        for name in ("lambda_con", "lambda_task", "lambda_cos", "lambda_dd", "lambda_range"):
            check_number(self, name, 0)
        check_int(self, "seed", 0)


