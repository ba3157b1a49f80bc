"""Training a student on a distilled set with labels from any label source: the evaluation protocol.

Every label source sees the same views for the same seed: the data order and the augmentation of epoch ``e`` come
from ``(seed, e)`` alone (:func:`~lightlabel.labeling.augment.epoch_views`), so only the labels differ between rows
of a comparison, and the labeller labels exactly the views the student trains on.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..configs import EvalProtocol, int_arg
from ..data import TransformedDataset, as_dataset, class_names_and_targets, dataset_classes, eval_transform
from ..labeling.augment import Augmenter, epoch_views
from ..labeling.losses import soft_label_loss
from ..labeling.named import resolve_labeller
from ..labeling.sources import LabelSource, ModelLabels, RunInfo, as_label_source
from ..models import build_model
from ..sets import DistilledSet, FactorizedSet
from ..utils.memory import peak_memory_bytes, reset_peak_memory
from .loop import check_save_interval, ddp, evaluate, per_rank_batch, resolve_device, run_resumable, world

__all__ = ["StudentResult", "label_view_agreement", "train_student"]

logger = logging.getLogger(__name__)


@dataclass
class StudentResult:
    """Outcome of :func:`train_student`.

    Attributes:
        top1: top-1 after the last epoch, in [0, 1] (``nan`` without a validation set).
        best_top1: the best of the protocol's last evaluations (RDED's reported figure), in [0, 1] (``nan``).
        label_kind: the label source's kind (``"projector"``, ``"teacher"``, ``"teachers"``, ``"stored"``, ``"hard"``;
            ``labels`` is its deprecated 0.2 name).
        seconds_per_iter: mean wall time of a training iteration (labelling included), seconds, over the epochs
            after the first two (warm-up); CUDA is synchronised once per epoch, not per iteration.
        peak_memory_bytes: bytes; peak CUDA memory allocated during training, or on CPU the peak resident set
            size (RSS) of the process during training (Linux: the high-water mark is reset when training starts).
        peak_memory_kind: what ``peak_memory_bytes`` measured: ``"cuda allocated"``, ``"RSS"``, or
            ``"process lifetime RSS"`` where the CPU high-water mark could not be reset.
        extra_storage_bytes: bytes the labels need besides the images (the source's ``extra_bytes()``).
        epochs, iterations: the run's length (optimiser steps).
        history: per-epoch ``{"epoch", "loss", "seconds"}`` plus ``"top1"`` at evaluated epochs.
        protocol: the protocol, as a dict.
    """

    top1: float
    best_top1: float
    label_kind: str
    seconds_per_iter: float
    peak_memory_bytes: int
    peak_memory_kind: str
    extra_storage_bytes: int
    epochs: int
    iterations: int
    history: list[dict[str, Any]] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> str:
        """Deprecated: :attr:`label_kind`."""
        warnings.warn("StudentResult.labels is deprecated: use label_kind", DeprecationWarning, stacklevel=2)
        return self.label_kind


def default_protocol(distilled: DistilledSet) -> EvalProtocol:
    """HeLlO's preset on RDED's views for the set's patch grid (its manifest's ``patches_per_image``)."""
    return EvalProtocol.helio(patches_per_side=distilled.patches_per_side)


def _param_groups(model: nn.Module, protocol: EvalProtocol) -> list[dict[str, Any]]:
    if protocol.decay_norm_and_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if "weight" in name and p.ndim > 1 else no_decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_student(
    distilled: DistilledSet | FactorizedSet,
    labeller: LabelSource | nn.Module | list[nn.Module | str] | str | os.PathLike | None = None,
    protocol: EvalProtocol | None = None,
    *,
    val_set: Dataset | str | os.PathLike | None = None,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    student_model: nn.Module | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    save_interval_s: float = 60.0,
    overlap: bool = False,
    labels: LabelSource | nn.Module | list[nn.Module] | str | None = None,
    **overrides: Any,
) -> StudentResult:
    """Train a student on distilled images with labels from a projector, a teacher, stored labels, or hard labels.

    Args:
        distilled: the distilled set (uint8 images, labels, and a manifest saying its patch grid), or a
            :class:`~lightlabel.FactorizedSet` (each epoch, every basis through a hallucinator drawn from
            ``(seed, epoch)``; every hallucinated, augmented view gets its own online label).
        labeller: a :class:`~lightlabel.Projector` (online labels from a merged copy: the one passed is unchanged),
            a teacher module with an ``input_spec``, a checkpoint path or name (``"torchvision:resnet18"``: see
            :func:`~lightlabel.load_teacher`) or a list of them (online teacher labels, RDED style),
            :class:`~lightlabel.StoredSoftLabels` (SRe2L style), any other :class:`~lightlabel.LabelSource` (e.g.
            ``ModelLabels(p).optimized(device, compile=True)``: a compiled labeller), or ``"hard"`` (CutMix only).
        protocol: the :class:`~lightlabel.EvalProtocol` (default: :meth:`EvalProtocol.helio` on RDED's views for
            the set's patch grid).
        val_set: validation data (dataset of ``(image, label)`` or an ImageFolder path), resized to the distilled
            images' size; without it the top-1 figures are ``nan``.
        seed: seed of the student initialisation, the data order and the views.
        out_dir: if given, the training state is saved there (``student-state.pt``, atomically) after the last
            epoch and after any epoch that ends ``save_interval_s`` or more after the last save, and a call with the
            same settings resumes from it, computing what an uninterrupted run computes.
        save_interval_s: seconds (wall clock) between saves of the state; 0 saves after every epoch (a ResNet-18 +
            AdamW state is 134 MB: on a fast GPU, saving it every few-step epoch could outlast the training).
        student_model: a student module instead of ``protocol.student`` (its weights are trained in place).
        device: default CUDA when available. progress: a progress bar over the epochs.
        overlap: on CUDA, label the next batch on a side stream while the student trains on the current one (the
            labels do not change: the views come from ``(seed, epoch, rank)``). Ignored, with a warning, on CPU.
        labels: the deprecated name of ``labeller`` (lightlabel 0.2).
        **overrides: fields of the protocol to replace (e.g. ``epochs=2``).

    Returns:
        A :class:`StudentResult`.

    Raises:
        TypeError: an unknown label source or protocol field.
        ValueError: labels with another number or order of classes than ``distilled.classes``, a ``val_set``
            with another number of classes or labels outside them, stored labels made for another run, a batch the
            processes do not divide, a resume state of another run, a ``seed`` that is not an int >= 0, or a
            negative or non-finite ``save_interval_s``.
    Warns:
        UserWarning: ``overlap`` off CUDA (ignored); a ``val_set`` whose class names differ (same order assumed).

    Source: RDED validation code; HeLlO supplementary A.6 and Table 3; Alg. 1 lines 12-15.
    """
    labeller = _deprecated_name(labeller, labels, "train_student")
    check_save_interval(save_interval_s)
    protocol = (protocol or default_protocol(distilled)).replace(**overrides)
    _check_patch_grid(distilled, protocol)
    device = resolve_device(device)
    source = _fast_source(labeller, distilled.classes, device)
    run = _StudentRun(distilled, source, protocol, seed=seed, device=device, val_set=val_set,
                      student_model=student_model, overlap=overlap)
    memory_kind = reset_peak_memory(device)
    history = run_resumable(units=protocol.epochs, step=run.step, state=run.state(),
                            path=None if out_dir is None else Path(out_dir) / "student-state.pt",
                            settings=run.settings(student_model), what=f"student ({source.kind} labels)", seed=seed,
                            device=device, progress=progress, save_interval_s=save_interval_s)
    timed = history[min(2, len(history) - 1):]
    scored = [h["top1"] for h in history if "top1" in h]
    return StudentResult(
        top1=scored[-1] if scored and "top1" in history[-1] else float("nan"),
        best_top1=max(scored) if scored else float("nan"), label_kind=source.kind,
        seconds_per_iter=sum(h["seconds"] for h in timed) / max(len(timed) * run.steps_per_epoch, 1),
        peak_memory_bytes=int(peak_memory_bytes(device)), peak_memory_kind=memory_kind,
        extra_storage_bytes=int(source.extra_bytes()), epochs=protocol.epochs, iterations=run.total_steps,
        history=history, protocol=protocol.to_dict())


def _check_patch_grid(distilled: DistilledSet | FactorizedSet, protocol: EvalProtocol) -> None:
    """Warn when the protocol's ShufflePatches grid is not the set's: its views would cut patches across their
    borders (RDED's views assume the grid the images were stitched on)."""
    augment = protocol.augment
    if augment.shuffle_patches and augment.patches_per_side != distilled.patches_per_side:
        warnings.warn(f"the protocol shuffles patches on a {augment.patches_per_side} x {augment.patches_per_side} "
                      f"grid but the set's images hold {distilled.patches_per_side} x {distilled.patches_per_side} "
                      f"patches: pass EvalProtocol.helio(patches_per_side={distilled.patches_per_side}) (or leave "
                      "`protocol` out to use the set's grid)", stacklevel=3)


def _deprecated_name(labeller: Any, labels: Any, where: str) -> Any:
    """``labeller``, or the value of its deprecated 0.2 name ``labels`` (with a DeprecationWarning).

    Raises:
        TypeError: both or neither given.
    """
    if labels is not None:
        if labeller is not None:
            raise TypeError(f"{where}: give `labeller` only (`labels` is its deprecated name)")
        warnings.warn(f"{where}(labels=...) is deprecated: the argument is `labeller`", DeprecationWarning,
                      stacklevel=3)
        return labels
    if labeller is None:
        raise TypeError(f"{where} needs a `labeller`: a Projector, a teacher, teachers, a LabelSource or 'hard'")
    return labeller


def _fast_source(labeller: Any, classes: Sequence[str], device: torch.device) -> LabelSource:
    """The label source on ``device``, a model labeller on its fast path (:meth:`ModelLabels.optimized`: a merged
    or folded copy; the caller's model is never changed or moved), checked against the images' ``classes``."""
    source = as_label_source(resolve_labeller(labeller), len(classes), class_names=classes)
    if not isinstance(source, ModelLabels):
        return source
    return source.to(device) if source.is_optimized else source.optimized(device)


class _StudentRun:
    """One student run: its model, optimiser, schedule, views and the step of one epoch (HeLlO Alg. 1 lines 12-15)."""

    def __init__(self, distilled: DistilledSet | FactorizedSet, source: LabelSource, protocol: EvalProtocol, *,
                 seed: int, device: torch.device, val_set: Any, student_model: nn.Module | None,
                 overlap: bool = False) -> None:
        int_arg(seed, "seed", 0)
        if overlap and device.type != "cuda":
            warnings.warn("train_student(overlap=True) overlaps labelling with training on CUDA streams; on "
                          f"{device.type} it is ignored", stacklevel=3)
        self.distilled, self.source, self.protocol, self.seed, self.device = distilled, source, protocol, seed, device
        self.side = torch.cuda.Stream(device) if overlap and device.type == "cuda" else None
        self.rank, self.world_size = world()
        per_rank_batch(protocol.batch_size)  # validates that the processes divide the global batch
        num_images, size = distilled.num_epoch_images, distilled.image_size
        source.prepare(RunInfo(images_sha256=distilled.fingerprint, num_images=num_images, augment=protocol.augment,
                               batch_size=protocol.batch_size, epochs=protocol.epochs, seed=seed,
                               world_size=self.world_size, hallucinated=distilled.hallucinated))
        self.augmenter = Augmenter(protocol.augment, len(distilled.classes))
        # the images (a factorised set: its bases and hallucinators) go to the device once for the whole run, not
        # once per epoch; the caller's set never moves
        self.resident = distilled.to_device(device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            model = student_model if student_model is not None else build_model(
                protocol.student, len(distilled.classes), low_res=size <= 64, image_size=size)
        self.model = model.to(device).train()
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = ddp(self.model, device)
        self.steps_per_epoch = protocol.steps_per_epoch(num_images)
        self.total_steps = protocol.total_steps(num_images)
        self.opt = torch.optim.AdamW(_param_groups(self.model, protocol), lr=protocol.lr,
                                     weight_decay=protocol.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda step: protocol.lr_factor(step, step // self.steps_per_epoch, self.total_steps))
        self.targets = distilled.labels.to(device)
        self.val = (TransformedDataset(_checked_val_set(as_dataset(val_set), list(distilled.classes)),
                                       eval_transform(size)) if val_set is not None else None)
        self.evals = set(protocol.eval_epochs())

    def state(self) -> dict[str, Any]:
        return {"model": self.model, "opt": self.opt, "sched": self.sched}

    def settings(self, student_model: nn.Module | None) -> dict[str, Any]:
        """What a resumed run must share with the saved one."""
        return {"protocol": self.protocol.to_dict(), "labels": self.source.describe(),
                "images": self.distilled.fingerprint, "seed": self.seed,
                "val": None if self.val is None else len(self.val), "world": self.world_size,
                "student": self.protocol.student if student_model is None else type(student_model).__name__}

    def _loss(self, out: torch.Tensor, soft: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
        if soft is None:
            return F.cross_entropy(out.float(), targets)
        p = self.protocol
        return soft_label_loss(out, soft, targets, kind=p.soft_loss, ce_weight=p.ce_weight, temperature=p.temperature)

    def _labelled(self, views: Any, epoch: int) -> Any:
        """``(view, soft labels)`` per batch; with ``overlap`` on CUDA, each batch is labelled on a side stream while
        the student trains on the one before (the views come from ``(seed, epoch, rank)``, so the labels are the
        same either way)."""
        if self.side is None:
            for view in views:
                yield view, self.source.label(view.views, epoch=epoch, step=view.step)
            return
        main, pending = torch.cuda.current_stream(self.device), None
        for view in views:
            self.side.wait_stream(main)  # the views were made on the main stream
            with torch.cuda.stream(self.side):
                soft = self.source.label(view.views, epoch=epoch, step=view.step)
            view.views.record_stream(self.side)
            if soft is not None:
                soft.record_stream(main)
            done = torch.cuda.Event()
            done.record(self.side)
            if pending is not None:
                yield pending
            pending = view, soft, done
            main.wait_event(done)  # the next student step reads these labels
        if pending is not None:
            yield pending[0], pending[1]

    def step(self, epoch: int) -> dict[str, Any]:
        """One epoch: views from ``(seed, epoch)``, labelled online (or read), one optimiser step per batch."""
        device, protocol = self.device, self.protocol
        total = torch.zeros((), device=device)
        t0 = time.perf_counter()
        planned = self.source.view_epoch(epoch)  # pruned stored labels replay a kept epoch's views
        images = self.resident.epoch_images(self.seed, planned, device)
        views = epoch_views(images, self.targets, self.augmenter, batch_size=protocol.batch_size, seed=self.seed,
                            epoch=planned, rank=self.rank, world_size=self.world_size)
        for item in self._labelled(views, planned):
            view, soft = item[0], item[1]
            x = protocol.student_input.normalize(view.views)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            loss = self._loss(self.net(x), soft, view.targets)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            total += loss.detach()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # once per epoch, for the timing
        record: dict[str, Any] = {"loss": float(total) / self.steps_per_epoch, "seconds": time.perf_counter() - t0}
        if self.val is not None and epoch + 1 in self.evals:
            record["top1"] = evaluate(self.model, self.val, input_spec=protocol.student_input, device=device)
            logger.info("student (%s labels) epoch %d/%d: loss %.4f, top-1 %.4f", self.source.kind, epoch + 1,
                        protocol.epochs, record["loss"], record["top1"])
        return record


@torch.no_grad()
def _checked_val_set(val: Dataset, classes: list[str]) -> Dataset:
    """``val`` if its labels can be scored against a student of ``classes``; a top-1 on other classes is wrong."""
    own = dataset_classes(val)
    if own is not None and len(own) != len(classes):
        raise ValueError(f"`val_set` has {len(own)} classes but the distilled set has {len(classes)}")
    if own is not None and own != classes:
        warnings.warn(f"`val_set` names its classes {own[:3]}... and the distilled set {classes[:3]}...: top-1 "
                      f"assumes both are in the same order", stacklevel=4)
    class_names_and_targets(val, classes)  # every label in [0, len(classes))
    return val


def label_view_agreement(labeller: LabelSource | nn.Module | list[nn.Module] | None = None,
                         distilled: DistilledSet | None = None, protocol: EvalProtocol | None = None, *,
                         views: int = 1000, seed: int = 0, device: torch.device | str | None = None,
                         labels: LabelSource | nn.Module | list[nn.Module] | None = None) -> dict[str, float]:
    """How often a labeller names a class that is actually in the view: a diagnostic of labels and views.

    The views are the first ``views`` views a student run with this ``protocol`` and ``seed`` trains on (the same
    tensors, from :func:`~lightlabel.labeling.augment.epoch_views`).

    Args:
        labeller: a labeller (any label source that looks at views: projector, teacher(s)); ``labels`` is its
            deprecated 0.2 name.
        distilled: the distilled set.
        protocol: the views' protocol (default as in :func:`train_student`).
        views: how many views to label (whole batches; at least this many).

    Returns:
        ``views`` (the count), ``source_class``: the fraction of views whose labeller argmax is one of the view's
        source classes (a class with a non-zero mixed target), ``dominant_class``: the fraction whose argmax is the
        class with the largest mixed target, and ``mean_p_max``: the mean of the labeller's max softmax probability.
        Fractions in [0, 1]. Also the labels' scale, which sets the size of the MSE term of HeLlO's student loss
        (Algorithm 1, line 14: MSE + beta CE, beta = 0.025 in the supplementary's Table 3): ``mean_logit_std``,
        the standard deviation of a view's logits over the classes, averaged over views, and ``mean_entropy``, the
        softmax entropy in nats.

    Raises:
        ValueError: a source that does not look at views (hard or stored labels), or ``views`` not an int >= 1.
        TypeError: no ``distilled``.
    """
    labeller = _deprecated_name(labeller, labels, "label_view_agreement")
    if distilled is None:
        raise TypeError("label_view_agreement needs `distilled`")
    int_arg(views, "views", 1)
    protocol = protocol or default_protocol(distilled)
    device = resolve_device(device)
    source = as_label_source(resolve_labeller(labeller), len(distilled.classes), device=device,
                             class_names=distilled.classes)
    if source.input_spec is None:
        raise ValueError(f"{source.kind} labels look at no views; label-view agreement needs a labeller")
    augmenter = Augmenter(protocol.augment, len(distilled.classes))
    targets = distilled.labels.to(device)
    resident = distilled.to_device(device)  # moved once, not once per epoch
    n = in_source = dominant = 0
    p_max = logit_std = entropy = 0.0
    epoch = 0
    while n < views:
        images = resident.epoch_images(seed, epoch, device)
        for view in epoch_views(images, targets, augmenter, batch_size=protocol.batch_size, seed=seed, epoch=epoch):
            logits = source.label(view.views, epoch=epoch, step=view.step).float()
            log_p = logits.log_softmax(-1)
            p = log_p.exp()
            logit_std += float(logits.std(-1).sum())
            entropy += float(-(p * log_p).sum())
            top = p.argmax(-1)
            in_source += int((view.targets.gather(1, top[:, None]).squeeze(1) > 0).sum())
            dominant += int((top == view.targets.argmax(-1)).sum())
            p_max += float(p.max(-1).values.sum())
            n += len(top)
            if n >= views:
                break
        epoch += 1
    return {"views": n, "source_class": in_source / n, "dominant_class": dominant / n, "mean_p_max": p_max / n,
            "mean_logit_std": logit_std / n, "mean_entropy": entropy / n}
