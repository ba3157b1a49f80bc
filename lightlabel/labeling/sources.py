"""Where a student's labels come from, as one small protocol: :class:`LabelSource`.

A label source labels a batch of views, says how many bytes it costs besides the images, and carries the
:class:`~lightlabel.InputSpec` of the model behind it. The projector, a teacher or an ensemble of teachers
(:class:`ModelLabels`), stored soft labels (:class:`~lightlabel.StoredSoftLabels`) and hard labels
(:class:`HardLabels`) implement it, and so can a user's own labeller: :func:`lightlabel.train_student`,
:class:`lightlabel.OnlineRelabeler` and :func:`lightlabel.store_soft_labels` accept any object that does.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

from ..classes import check_class_order, logit_class_names
from ..configs import described, int_arg
from ..core.base import fingerprint
from ..core.fastpath import fast_labeller, float32_logits_view, labelling_autocast
from ..core.projector import Projector
from ..inputs import InputSpec, input_spec_of
from ..storage import module_nbytes
from ..utils.placement import on_device
from .teachers import TeacherEnsemble

if TYPE_CHECKING:
    from .augment import AugmentConfig

__all__ = ["HardLabels", "LabelSource", "ModelLabels", "RunInfo", "as_label_source"]


@dataclass(frozen=True)
class RunInfo:
    """What a student run will ask a label source for, given to its optional ``prepare(run)`` hook before the
    first batch (stored labels use it to refuse runs they were not made for).

    Attributes:
        images_sha256: sha256 of the ``(N, 3, H, W)`` uint8 distilled images.
        num_images: ``N``.
        augment: the run's augmentation. batch_size: global batch. epochs: epochs. seed: the run's seed.
        world_size: processes under torch.distributed (1 otherwise).
        hallucinated: the images are made anew every epoch (a factorised set), so no view repeats.
    """

    images_sha256: str
    num_images: int
    augment: AugmentConfig
    batch_size: int
    epochs: int
    seed: int
    world_size: int = 1
    hallucinated: bool = False


@runtime_checkable
class LabelSource(Protocol):
    """The label-source contract: every attribute and hook a student run asks of a source.

    Attributes:
        kind: a short name for reports (``"projector"``, ``"teacher"``, ``"stored"``, ``"hard"``, ...).
        num_classes: ``C``.
        input_spec: the input of the model behind the labels, or ``None`` when the views are not looked at
            (hard labels, stored labels).

    Methods:
        label(views, *, epoch, step): ``(B, 3, H, W)`` float views, pixels in [0, 1] -> ``(B, C)`` float32 logits,
            or ``None`` for "train on the mixed hard targets". ``epoch`` and ``step`` locate the batch in the run
            (stored labels read by them; online sources ignore them).
        extra_bytes(): bytes the labels cost besides the images (adapter file, teacher weights, label files, 0).
        describe(): a JSON-ready dict identifying the source (kind, fingerprint, settings), recorded with results
            and resume states.
        prepare(run): called once before the first batch of a student run with its :class:`RunInfo`; raise there
            if the source cannot label that run (online sources: nothing to do).
        view_epoch(epoch): the epoch whose views the student trains on in ``epoch`` (stored labels with label
            pruning replay a kept epoch; online sources: ``epoch``).

    A source of your own that has only ``label``, ``extra_bytes``, ``describe`` and the attributes (lightlabel 0.2's
    contract) still works: :func:`as_label_source` gives it the two hooks' defaults.
    """

    kind: str
    num_classes: int
    input_spec: InputSpec | None

    def label(self, views: torch.Tensor, *, epoch: int | None = None, step: int | None = None) -> torch.Tensor | None:
        ...

    def extra_bytes(self) -> int:
        ...

    def describe(self) -> dict[str, Any]:
        ...

    def prepare(self, run: RunInfo) -> None:
        ...

    def view_epoch(self, epoch: int) -> int:
        ...


class _OnlineHooks:
    """The two hooks as online sources have them: nothing to prepare, every epoch its own views."""

    def prepare(self, run: RunInfo) -> None:
        return None

    def view_epoch(self, epoch: int) -> int:
        return epoch


class _WithHooks(_OnlineHooks):
    """A 0.2-style source (no ``prepare``/``view_epoch``) with the hooks' defaults; everything else is the source's."""

    def __init__(self, source: Any) -> None:
        self._source = source

    def __getattr__(self, name: str) -> Any:
        if name == "_source" or name.startswith("__"):  # not built yet (copy, pickle) or a protocol probe
            raise AttributeError(name)
        return getattr(self._source, name)

    def label(self, views: torch.Tensor, *, epoch: int | None = None, step: int | None = None) -> torch.Tensor | None:
        return self._source.label(views, epoch=epoch, step=step)

    def extra_bytes(self) -> int:
        return self._source.extra_bytes()

    def describe(self) -> dict[str, Any]:
        return self._source.describe()


class ModelLabels(_OnlineHooks):
    """Online labels from a model: a :class:`~lightlabel.Projector`, a teacher, or a :class:`TeacherEnsemble`.

    Each batch of views is resized and normalised for the model with its :class:`~lightlabel.InputSpec`
    (:meth:`InputSpec.prepare`), labelled under ``torch.inference_mode()`` (and bf16 autocast on CUDA), and returned
    as float32 logits. The model is put in eval mode; nothing else about it is changed. A teacher's classifier (its
    last ``nn.Linear``) is computed in float32 under autocast, through a view that shares its weights
    (:func:`~lightlabel.core.fastpath.float32_logits_view`), so its logits are not rounded to bf16. Its
    ``class_names`` are the names of the logit columns when the model records them (a projector's ``class_names``,
    a teacher's ``classes``; :func:`~lightlabel.classes.logit_class_names`), else ``None``: recipes refuse labels
    that order the images' classes otherwise.

    Args:
        model: the labeller.
        input_spec: its input, if it carries none (``model.input_spec``; a projector always carries one).
        kind: the name in reports (default ``"projector"`` for a projector, else ``"teacher"``).
        autocast: bf16 autocast on CUDA.

    Raises:
        ValueError: a model without an input spec and no ``input_spec`` (the message says how to give one), or
            one whose spec disagrees with ``input_spec``.
    """

    def __init__(self, model: nn.Module, *, input_spec: InputSpec | None = None, kind: str | None = None,
                 autocast: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
        own = getattr(model, "input_spec", None)
        if input_spec is not None and own is not None and own != input_spec:
            raise ValueError(f"`input_spec` ({input_spec}) contradicts the model's own ({own}); a labeller's spec says "
                             f"what it expects, not what a host loop feeds it: to label another loop's batches use "
                             f"`model.as_teacher(host_spec)` (lightlabel.TeacherModule), which converts them")
        self.is_projector = isinstance(model, Projector)
        # a teacher's classifier in float32 under autocast (its bf16 logits would be rounded): a weight-sharing view
        self.model = model.eval() if self.is_projector else float32_logits_view(model.eval())
        self.input_spec = input_spec or input_spec_of(model, "projector" if self.is_projector else "teacher")
        self.kind = kind or ("projector" if self.is_projector else "teacher")
        self.autocast = bool(autocast)
        self._bf16_weights = False  # set by optimized(bf16=True): label under bf16 autocast on any device
        self.num_classes = model.num_classes if self.is_projector else self._probe_classes()
        self.class_names = logit_class_names(model)  # the columns' names, when the model records them
        self._origin: ModelLabels | None = None
        self.is_optimized = False  # made by optimized(): recipes take it as it is

    def _probe_classes(self) -> int:
        classes = getattr(self.model, "classes", None)
        if classes:
            return len(classes)
        device = self.device or torch.device("cpu")
        size = self.input_spec.image_size or (32, 32)
        with torch.inference_mode(), self._autocast(device):
            return int(self.model(torch.zeros(1, 3, *size, device=device)).shape[-1])

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        return labelling_autocast(device, autocast=self.autocast, bf16_weights=self._bf16_weights)

    @property
    def device(self) -> torch.device | None:
        p = next(self.model.parameters(), None)
        if p is None:
            p = next(self.model.buffers(), None)
        return None if p is None else p.device

    def label(self, views: torch.Tensor, *, epoch: int | None = None, step: int | None = None,
              input_spec: InputSpec | None = None) -> torch.Tensor:
        """``(B, 3, H, W)`` float views in [0, 1] -> ``(B, C)`` float32 logits (a normal tensor, not an inference
        tensor). With ``input_spec``, the views are normalised with it instead (a host loop's batch): the conversion
        to the model's input is one affine map per channel (:meth:`InputSpec.prepare` with ``source``). Views of
        any float dtype are cast to the model's float32 or float64 weights (bf16 weights label under autocast). On
        CUDA the input is made channels-last, like the model of :meth:`optimized`; nothing in here waits for the
        device.

        Raises:
            TypeError: not a float tensor. ValueError: not ``(B, 3, H, W)``, or the model returned another shape.
            RuntimeError: views and model on different devices.
        """
        if not isinstance(views, torch.Tensor) or not views.is_floating_point():
            raise TypeError(f"`views` must be a float tensor, got {described(views)}")
        if views.ndim != 4 or views.shape[1] != 3:
            raise ValueError(f"`views` must have shape (B, 3, H, W), got {tuple(views.shape)}")
        device = self.device
        if device is not None and device != views.device:
            raise RuntimeError(f"the labeller is on {device} but the views are on {views.device}; move one of them")
        with torch.inference_mode():
            x = self.input_spec.prepare(views, source=input_spec)
            weights = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), None)
            if weights in (torch.float32, torch.float64) and x.dtype != weights:
                x = x.to(weights)  # float64 or float16 views (a numpy or AMP loader): the weights' precision
            on_cuda = x.device.type == "cuda"
            if on_cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast(x.device):
                out = self.model(x)  # a projector checks pixel values on CPU only (no sync on CUDA)
            out = out.float()
        if out.shape != (views.shape[0], self.num_classes):
            raise ValueError(f"the labeller returned shape {tuple(out.shape)}, expected ({views.shape[0]}, "
                             f"{self.num_classes})")
        return out.clone()

    def to(self, device: torch.device | str) -> ModelLabels:
        """This labeller with its model on ``device``: ``self`` when the model is there already, else a new
        ``ModelLabels`` over a copy of the model moved there. The caller's model is never moved or changed.

        Recipes call it with their device, so a teacher or projector built on the CPU labels CUDA views.
        """
        model = on_device(self.model, device)
        if model is self.model:
            return self
        moved = ModelLabels(model, input_spec=self.input_spec, kind=self.kind, autocast=self.autocast)
        moved._origin, moved.is_optimized = self._origin or self, self.is_optimized
        moved._bf16_weights = self._bf16_weights
        return moved

    def optimized(self, device: torch.device | str, *, compile: bool | dict[str, Any] = False,
                  bf16: bool | None = None) -> ModelLabels:
        """This labeller on its fast inference path, on ``device``: a copy, so the caller's model is not changed.

        Projector and teacher take the same path, so comparisons between them stay fair: a projector is merged
        (LoRA and BatchNorm folded, one-token attention pool, head precomputed), a teacher gets its BatchNorm folded
        and its classifier in float32 (:func:`~lightlabel.core.fastpath.fast_teacher`); on CUDA, under this
        labeller's bf16 autocast, both are made channels-last and keep their convolution and linear weights in bf16
        (:func:`~lightlabel.core.fastpath.cast_autocast_weights`: the tensors autocast would cast on every call;
        heads and classifiers stay float32). Labels equal the unoptimised ones to float rounding.

        Args:
            device: where the copy labels.
            compile: opt-in ``torch.compile`` of the copy (``True``, or a dict of ``torch.compile`` options such as
                ``{"mode": "reduce-overhead"}`` for CUDA graphs when the batch shape is fixed). The first batch of
                each shape compiles (seconds to minutes): time it apart from the steady state. Pass the result to
                :func:`~lightlabel.train_student` to train under the compiled labeller (recipes take an optimised
                labeller as it is, moved to their device).
            bf16: keep the convolution and linear weights in bf16 and label under bf16 autocast on any device.
                Default: on CUDA when this labeller autocasts (a CPU without native bf16 would be slower).

        Raises:
            TypeError: ``bf16`` not a bool or None.
        """
        device = torch.device(device)
        if bf16 is not None and not isinstance(bf16, bool):
            raise TypeError(f"`bf16` must be True, False or None, got {bf16!r}")
        if bf16 is None:
            bf16 = device.type == "cuda" and self.autocast
        model = fast_labeller(self.model, weight_dtype=torch.bfloat16 if bf16 else None).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        if compile:
            model.compile(**({} if compile is True else dict(compile)))  # in place: keeps the module's attributes
        fast = copy.copy(self)  # the same spec, kind and classes; bytes and identity stay those of the labeller given
        fast.model, fast.autocast, fast._bf16_weights = model, self.autocast or bf16, bf16
        fast._origin, fast.is_optimized = self._origin or self, True
        return fast

    def extra_bytes(self) -> int:
        """The adapter file's bytes for a projector; the fp32 state dict's bytes for a teacher or ensemble (of the
        labeller as given, also for an :meth:`optimized` copy)."""
        if self._origin is not None:
            return self._origin.extra_bytes()
        return self.model.adapter_nbytes if self.is_projector else module_nbytes(self.model)

    def describe(self) -> dict[str, Any]:
        if self._origin is not None:
            return self._origin.describe()
        out = {"kind": self.kind, "type": type(self.model).__name__, "input_spec": self.input_spec.to_dict(),
               "fingerprint": fingerprint(self.model)}
        if isinstance(self.model, TeacherEnsemble):
            out["num_teachers"] = self.model.num_teachers
        return out

    def __repr__(self) -> str:
        return f"ModelLabels({self.kind}: {type(self.model).__name__}, {self.input_spec})"


class HardLabels(_OnlineHooks):
    """No soft labels: the student trains on the mixed hard targets (cross-entropy). Costs 0 bytes.

    :meth:`label` returns ``None`` for any ``(B, 3, H, W)`` batch of views, which the student loop reads as "use
    the ``(B,)`` or mixed ``(B, C)`` targets alone".

    Args:
        num_classes: ``C``, an int >= 2.

    Raises:
        ValueError: ``num_classes`` is not an int >= 2.
    """

    kind = "hard"
    input_spec = None

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int_arg(num_classes, "num_classes", 2)

    def label(self, views: torch.Tensor, *, epoch: int | None = None, step: int | None = None) -> None:
        return None

    def extra_bytes(self) -> int:
        return 0

    def describe(self) -> dict[str, Any]:
        return {"kind": "hard"}

    def __repr__(self) -> str:
        return f"HardLabels(num_classes={self.num_classes})"


def as_label_source(labels: Any, num_classes: int | None = None, *, device: torch.device | str | None = None,
                    class_names: Sequence[str] | None = None) -> LabelSource:
    """A :class:`LabelSource` from what a user passes: a label source (returned as is), ``"hard"``, a projector or
    teacher module, or a list of teachers (an ensemble sharing one input spec); strings are resolved first by
    :func:`~lightlabel.labeling.named.resolve_labeller` where the public API takes them. With ``device``, a model labeller labels there
    (:meth:`ModelLabels.to`: a copy when the caller's model is elsewhere; it is never moved). With ``class_names``
    (the images' classes in label-index order), a source whose columns name the same classes in a different order is
    refused (:func:`~lightlabel.classes.check_class_order`; a source's names are its ``class_names`` attribute,
    which :class:`ModelLabels` reads off a projector or a teacher that records its classes).

    Raises:
        TypeError: anything else (the accepted kinds are listed).
        ValueError: ``"hard"`` without ``num_classes``, teachers without an input spec or with differing ones,
            a source with another number of classes than ``num_classes``, or one that orders ``class_names``
            otherwise.
    """
    if isinstance(labels, str) and labels == "hard":
        if num_classes is None:
            raise ValueError("hard labels need `num_classes`")
        source: Any = HardLabels(num_classes)
    elif isinstance(labels, nn.Module):
        source = ModelLabels(labels)
    elif isinstance(labels, Sequence) and not isinstance(labels, str) and labels and all(
            isinstance(t, nn.Module) for t in labels):
        source = ModelLabels(TeacherEnsemble(list(labels)), kind="teachers")
    elif isinstance(labels, LabelSource):
        source = labels
    elif all(callable(getattr(labels, m, None)) for m in ("label", "extra_bytes", "describe")) and all(
            hasattr(labels, a) for a in ("kind", "num_classes", "input_spec")):
        source = _WithHooks(labels)  # 0.2's contract: the two hooks get their online defaults
    else:
        raise TypeError(f"`labeller` must be a LabelSource, 'hard', a Projector or teacher nn.Module, a list of teacher "
                        f"modules, or StoredSoftLabels; got {type(labels).__name__}")
    if num_classes is not None and source.num_classes != num_classes:
        raise ValueError(f"the labels have {source.num_classes} classes but the images have {num_classes}")
    check_class_order(getattr(source, "class_names", None), class_names, what=f"the {source.kind}")
    if device is not None and isinstance(source, ModelLabels):
        source = source.to(device)
    return source
