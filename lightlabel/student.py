"""Training a student on a distilled set with online (or stored, or hard) labels: the evaluation protocol.

HeLlO supplementary Table 3: ResNet-18 student, AdamW lr 1e-3 with cosine decay, batch 100, CutMix (alpha 1),
loss ``MSE(student, labels) + 0.025 CE(student, mixed targets)``, 300 epochs, top-1 on the real validation set.
Every label source sees the same augmented batches for the same seed: the data order and the augmentation of
epoch ``e`` come from ``(seed, e)`` alone, so only the labels differ between runs.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ._loop import ddp, evaluate, per_rank_batch, resolve_device, world
from ._memory import peak_memory_bytes, reset_peak_memory
from ._progress import progress_bar
from .data import TransformedDataset, as_dataset, eval_transform
from .distill import DistilledSet
from .losses import soft_label_loss
from .models import IMAGENET_MEAN, IMAGENET_STD, build_model
from .projector import Projector
from .stored import AugmentSpec, StoredSoftLabels, epoch_plan
from .teachers import TeacherEnsemble

__all__ = ["StudentResult", "load_labels", "train_student"]

logger = logging.getLogger(__name__)


@dataclass
class StudentResult:
    """Outcome of :func:`train_student`.

    Attributes:
        top1: final top-1 on the validation set (in [0, 1]; ``nan`` without one).
        labels: ``"projector"``, ``"teacher"``, ``"stored"`` or ``"hard"``.
        seconds_per_iter: mean wall time of a training iteration (labelling included), seconds, from the epochs
            after the first two (warm-up); CUDA is synchronised once per epoch, not per iteration.
        peak_memory_bytes: bytes; peak CUDA memory allocated during training, or on CPU the peak resident set
            size (RSS) of the process during training (Linux: the high-water mark is reset when training starts).
        peak_memory_kind: what ``peak_memory_bytes`` measured: ``"cuda allocated"``, ``"RSS"``, or
            ``"process lifetime RSS"`` where the CPU high-water mark could not be reset.
        extra_storage_bytes: bytes the labels need besides the images (adapter file, teacher parameters in
            fp32, stored-label files, or 0).
        history: per-evaluation ``{"epoch", "loss", "top1"}``.
    """

    top1: float
    labels: str
    seconds_per_iter: float
    peak_memory_bytes: int
    extra_storage_bytes: int
    epochs: int
    iterations: int
    history: list[dict[str, Any]] = field(default_factory=list)
    peak_memory_kind: str = "RSS"


def _label_kind(labels: Any) -> str:
    if isinstance(labels, str) and labels == "hard":
        return "hard"
    if isinstance(labels, Projector):
        return "projector"
    if isinstance(labels, StoredSoftLabels):
        return "stored"
    if isinstance(labels, (nn.Module, list, tuple)):
        return "teacher"
    raise TypeError(f"`labels` must be a Projector, a teacher module (or list), StoredSoftLabels or 'hard', "
                    f"got {type(labels).__name__}")


def train_student(
    distilled: DistilledSet,
    labels: Projector | nn.Module | Sequence[nn.Module] | StoredSoftLabels | str,
    *,
    student: str | nn.Module = "resnet18",
    epochs: int = 300,
    batch_size: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    ce_weight: float = 0.025,
    mix: str = "cutmix",
    alpha: float = 1.0,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    val_set: Dataset | str | os.PathLike | None = None,
    eval_every: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> StudentResult:
    """Train a student on distilled images with labels from a projector, a teacher, stored labels, or hard labels.

    Args:
        distilled: the distilled set (uint8 images, labels).
        labels: a :class:`~lightlabel.Projector` (online projector labels), a teacher module or list of teachers
            (online teacher labels, RDED style), :class:`~lightlabel.stored.StoredSoftLabels` (read from disk,
            SRe2L style; their recorded epochs, batch size and augmentation are used), or ``"hard"`` (CutMix
            targets only).
        student: a model name for :func:`lightlabel.models.build_model` (low-resolution stem at 64 px or less) or
            a module.
        epochs, batch_size, lr, weight_decay: AdamW with cosine decay per iteration (paper: 300, 100, 1e-3).
            ``batch_size`` is the global batch: under torch.distributed (``torchrun``) each rank trains on its share
            with DDP and labels its own share online.
        ce_weight: weight of the CE term next to the MSE on logits (paper: 0.025).
        mix, alpha, crop_scale: the per-batch augmentation: per-sample RandomResizedCrop + flip, then CutMix.
        val_set: validation data (dataset of ``(image, label)`` or an ImageFolder path), resized to the distilled
            images' size.
        eval_every: evaluate every this many epochs (default: only at the end).
        mean, std: the student's input normalisation.
        seed: seed of the student initialisation, the data order and the augmentation.
        device: default CUDA when available.

    Returns:
        A :class:`StudentResult`.

    Raises:
        TypeError: an unknown label source. ValueError: stored labels made for other images or settings.

    Source: HeLlO supplementary A.6 and Table 3; Alg. 1 lines 12-15.
    """
    kind = _label_kind(labels)
    device = resolve_device(device)
    size = distilled.images.shape[-1]
    num_classes = len(distilled.classes)
    spec = AugmentSpec(crop_size=size, crop_scale=tuple(crop_scale), flip=True, mix=mix, alpha=alpha)
    stored = labels if kind == "stored" else None
    rank, world_size = world()
    if stored is not None and world_size > 1:
        raise ValueError("stored soft labels replay CutMix over the whole recorded batch; they cannot be split "
                         "across processes (run them in one process, or use online labels under torchrun)")
    per_rank_batch(batch_size)  # validates that the processes divide the global batch
    if stored is not None:
        stored.check(distilled.images)
        epochs, batch_size, spec = stored.epochs, stored.batch_size, stored.augment
    extra = 0
    if kind == "projector":
        labeler = labels.to(device)
        extra = labels.adapter_nbytes
    elif kind == "teacher":
        labeler = labels if isinstance(labels, nn.Module) else TeacherEnsemble(list(labels))
        labeler = labeler.to(device)
        extra = 4 * sum(p.numel() for p in labeler.parameters()) + 4 * sum(b.numel() for b in labeler.buffers())
    else:
        labeler = None
        extra = stored.nbytes if stored is not None else 0
    mean_t, std_t = tuple(mean), tuple(std)
    relabeler = spec.relabeler(labeler, num_classes, mean=mean_t, std=std_t, seed=0) if labeler is not None else None
    augmenter = relabeler or spec.relabeler(_NoLabels(), num_classes, mean=mean_t, std=std_t, seed=0)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = build_model(student, num_classes, low_res=size <= 64, image_size=size) if isinstance(student, str) else student
    model = model.to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    net = ddp(model, device) if world_size > 1 else model
    steps_per_epoch = math.ceil(len(distilled) / batch_size)
    total_steps = epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    images = distilled.images.to(device)
    targets_all = distilled.labels.to(device)
    m = torch.tensor(mean_t, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std_t, device=device).view(1, 3, 1, 1)
    val = None
    if val_set is not None:
        val = TransformedDataset(as_dataset(val_set), eval_transform(size))
    history: list[dict[str, Any]] = []
    memory_kind = reset_peak_memory(device)
    epoch_times: list[tuple[float, int]] = []
    for epoch in progress_bar(range(epochs), desc=f"student ({kind} labels)", disable=not progress):
        total = torch.zeros((), device=device)
        t_epoch, steps = time.perf_counter(), 0
        if stored is not None:
            batches = stored.batches(epoch, device)
        else:
            order, gen = epoch_plan(len(distilled), batch_size, seed, epoch)
            if world_size > 1:  # each rank: its share of every global batch, its own augmentation stream
                gen = torch.Generator().manual_seed(int(gen.initial_seed()) + rank)
            augmenter.load_state_dict({"rng_state": gen.get_state(), "calls": 0})
            order = order.to(device)  # one copy per epoch; indexing then needs no host-device transfer per step
            batches = ((order[i:i + batch_size][rank::world_size], None, None) for i in range(0, len(order), batch_size))
        for idx, params, soft in batches:
            idx = idx.to(device, non_blocking=True)
            x = (images[idx].float() / 255 - m) / s
            y = targets_all[idx]
            if params is None:
                params = augmenter.sample_params(len(idx), size, size)
            x, mixed = augmenter.apply(x, y, params)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            if relabeler is not None:
                soft = relabeler.label(x)
            out = net(x)
            if soft is None:
                loss = F.cross_entropy(out.float(), mixed)
            else:
                loss = soft_label_loss(out, soft.float(), mixed, kind="mse", ce_weight=ce_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach()
            steps += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # once per epoch, for the timing
        epoch_times.append((time.perf_counter() - t_epoch, steps))
        last = epoch + 1 == epochs
        if val is not None and (last or (eval_every and (epoch + 1) % eval_every == 0)):
            top1 = evaluate(model, val, device=device, mean=mean_t, std=std_t)
            history.append({"epoch": epoch + 1, "loss": float(total) / steps_per_epoch, "top1": top1})
            logger.info("student (%s labels) epoch %d/%d: loss %.4f, top-1 %.4f", kind, epoch + 1, epochs,
                        history[-1]["loss"], top1)
    timed = epoch_times[min(2, len(epoch_times) - 1):] if epoch_times else []  # the first epochs warm up
    peak = peak_memory_bytes(device)
    return StudentResult(top1=history[-1]["top1"] if history else float("nan"), labels=kind,
                         seconds_per_iter=sum(t for t, _ in timed) / max(sum(n for _, n in timed), 1),
                         peak_memory_bytes=int(peak), extra_storage_bytes=int(extra), epochs=epochs,
                         iterations=sum(n for _, n in epoch_times), history=history,
                         peak_memory_kind=memory_kind)


class _NoLabels(nn.Module):
    """A stand-in labeller for hard-label and stored-label runs: only the relabeler's augmentation is used."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never called
        raise RuntimeError("hard-label runs do not label")


def load_labels(spec: str | os.PathLike, **kwargs: Any) -> Projector | nn.Module | StoredSoftLabels | str:
    """Resolve a label source from a string: ``"hard"``, an adapter (file, folder or Hub id), a teacher
    checkpoint (``.pt``/``.pth``/``.th``), or a stored-labels folder."""
    from .models import load_teacher

    if spec == "hard":
        return "hard"
    path = Path(spec)
    if path.is_dir() and (path / "stored-labels.json").is_file():
        return StoredSoftLabels(path)
    if path.suffix in (".pt", ".pth", ".th") and path.is_file():
        return load_teacher(path)
    return Projector.from_pretrained(spec, **kwargs)
