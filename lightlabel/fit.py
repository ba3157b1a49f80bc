"""One-call adapter builder: fit the projector's adapter to an ensemble of weak teachers (HeLlO Eq. 5).

    loss = MSE(f(x), mean_k teacher_k(x)) + ce_weight * CE(f(x), y)

on the original training set under the teachers' augmentation, training only the adapter with AdamW
(HeLlO Sec. 3.3, Alg. 1 lines 4-8, supplementary A.4 and Table 2).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from ._loop import (
    ddp,
    epoch_rng,
    is_main_process,
    load_state,
    make_loader,
    per_rank_batch,
    resolve_device,
    save_state,
    settings_digest,
    world,
)
from ._progress import progress_bar
from .base import fingerprint
from .data import (
    TransformedDataset,
    as_dataset,
    dataset_classes,
    dataset_targets,
    eval_transform,
    image_size_of,
    train_transform,
)
from .losses import soft_label_loss
from .projector import Projector
from .teachers import TeacherEnsemble, load_teachers, train_teachers

__all__ = ["fit_adapter", "label_fidelity"]

logger = logging.getLogger(__name__)


def _normalizer(mean: Sequence[float], std: Sequence[float], device: torch.device):
    m = torch.tensor(list(mean), device=device).view(1, 3, 1, 1)
    s = torch.tensor(list(std), device=device).view(1, 3, 1, 1)
    return lambda x: (x - m) / s


class _Views:
    """Turns a batch of [0, 1] images into the teacher's and the projector's inputs."""

    def __init__(self, projector: Projector, teacher_mean, teacher_std, device: torch.device) -> None:
        self.size = projector.image_size
        self.teacher = _normalizer(teacher_mean, teacher_std, device)
        self.projector = _normalizer(projector.mean, projector.std, device)

    def __call__(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xp = x01
        if tuple(xp.shape[-2:]) != self.size:
            xp = F.interpolate(xp, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        return self.teacher(x01), self.projector(xp)


@torch.no_grad()
def label_fidelity(projector: Projector, teachers: nn.Module, dataset: Dataset, *, teacher_mean: Sequence[float],
                   teacher_std: Sequence[float], batch_size: int = 256, device: torch.device | None = None) -> dict[str, float]:
    """How well the projector reproduces the teachers' labels on held-out images.

    Args:
        projector: the projector.
        teachers: a teacher or :class:`~lightlabel.TeacherEnsemble` (mean logits).
        dataset: ``(float image in [0, 1] (3, H, W), label)`` pairs, at the teachers' resolution.
        teacher_mean, teacher_std: the teachers' input normalisation.

    Returns:
        ``agreement`` (top-1 agreement with the teachers, in [0, 1]), ``kl`` (mean KL(teacher || projector) of
        the softmax distributions, nats), ``mse`` (mean squared logit difference), ``top1`` (projector top-1 vs
        true labels) and ``teacher_top1``.
    """
    device = device or projector.device
    views = _Views(projector, teacher_mean, teacher_std, device)
    was_training = projector.training
    projector.eval()
    sums = dict(agreement=0.0, kl=0.0, mse=0.0, top1=0.0, teacher_top1=0.0)
    n = 0
    for images, labels in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
        images, labels = images.to(device), labels.to(device)
        xt, xp = views(images)
        with _autocast(device):
            t = teachers(xt).float()
            p = projector(xp, check=False).float()
        sums["agreement"] += float((t.argmax(1) == p.argmax(1)).sum())
        sums["kl"] += float(F.kl_div(F.log_softmax(p, 1), F.log_softmax(t, 1), log_target=True, reduction="sum"))
        sums["mse"] += float(F.mse_loss(p, t, reduction="sum")) / t.shape[1]
        sums["top1"] += float((p.argmax(1) == labels).sum())
        sums["teacher_top1"] += float((t.argmax(1) == labels).sum())
        n += len(labels)
    projector.train(was_training)
    return {k: v / max(n, 1) for k, v in sums.items()}


def _autocast(device: torch.device):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = min(n - 1, math.ceil(n * val_fraction)) if val_fraction > 0 else 0
    return sorted(perm[n_val:]), sorted(perm[:n_val])


def fit_adapter(
    train_set: Dataset | str | os.PathLike,
    class_names: Sequence[str] | None = None,
    *,
    teachers: Sequence[nn.Module | str | os.PathLike] | None = None,
    base: str = "RN50-quickgelu",
    pretrained: str | None = "openai",
    templates: str | Sequence[str] | None = None,
    text_embeddings: torch.Tensor | None = None,
    image_rank: int = 8,
    image_alpha: float | None = None,
    head_rank: int = 64,
    head_alpha: float | None = None,
    targets: Sequence[str] = ("conv",),
    head_mode: str = "renorm",
    epochs: int = 20,
    lr: float = 5e-4,
    weight_decay: float = 0.01,
    batch_size: int = 256,
    ce_weight: float = 0.1,
    image_size: int | None = None,
    augment: bool = True,
    val_fraction: float = 0.05,
    out_dir: str | os.PathLike | None = None,
    teacher_arch: str = "resnet18",
    teacher_epochs: int = 41,
    teacher_save_epochs: Sequence[int] | None = None,
    teacher_mean: Sequence[float] | None = None,
    teacher_std: Sequence[float] | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    on_error: str = "skip",
    progress: bool = True,
) -> Projector:
    """Build a projector and fit its adapter to weak teachers: the whole of HeLlO Alg. 1 lines 4-8 in one call.

    Args:
        train_set: the original training set: a map-style dataset of ``(PIL image or image tensor (3, H, W)
            uint8 or float in [0, 1], int label)``, or an ImageFolder path.
        class_names: class names in label order (default: ``train_set.classes``); these are the names the text
            head is built from, so use readable names (e.g. "goldfish", not "n01443537").
        teachers: checkpoint paths and/or modules of weak teachers (their mean logits are the targets). ``None``
            trains a trajectory first with :func:`train_teachers` (``teacher_arch``, ``teacher_epochs``,
            ``teacher_save_epochs``) into ``out_dir/teachers``.
        base, pretrained, templates, text_embeddings, image_rank, image_alpha, head_rank, head_alpha, targets,
            head_mode: the projector (see :class:`~lightlabel.Projector`). Paper: RN50 OpenAI CLIP, image rank 8 on
            every conv, head rank 64 (~100 classes) or 128 (1000 classes).
        epochs: fitting epochs (paper: 20).
        lr: AdamW learning rate, constant (paper: 5e-4).
        weight_decay: AdamW weight decay of the LoRA/head factors (logit scale and bias get none). The paper does
            not state it; 0.01 is AdamW's default.
        batch_size: the global batch (paper: 256); under torch.distributed each of the ``W`` processes takes
            ``batch_size / W`` of it, so a run on ``W`` processes matches one process with the same ``batch_size``.
        ce_weight: weight of the cross-entropy term (paper: 0.1, Eq. 5 lambda).
        image_size: resolution the teachers see (default: recorded in the teacher checkpoints, else the first
            image's size). The projector sees the same view resized to its own input size.
        augment: use the teachers' training augmentation (:func:`lightlabel.data.train_transform`); otherwise a
            resize + center crop.
        val_fraction: fraction of ``train_set`` held out (deterministically) to measure label fidelity each epoch;
            0 disables it.
        out_dir: where the fit state, the per-epoch adapter (``adapter.safetensors``) and trained teachers go;
            with ``text_embeddings`` also ``text_embeddings.safetensors``, so ``Projector.from_pretrained(out_dir)``
            loads the fitted adapter without further arguments. With ``out_dir`` an interrupted call resumes from
            the last finished epoch, and the result equals an uninterrupted run under the same seed and device.
            ``None``: a temporary folder (no resumption).
        teacher_arch, teacher_epochs, teacher_save_epochs: for ``teachers=None``, see :func:`train_teachers`.
        teacher_mean, teacher_std: the teachers' input normalisation (default: recorded in their checkpoints, else
            ImageNet statistics).
        seed: seed of the adapter initialisation, data split, order and augmentation.
        device: default CUDA when available. On CUDA, teachers and projector run under bf16 autocast.
        num_workers: DataLoader workers.
        on_error: for ImageFolder paths, ``"skip"`` or ``"raise"`` on unreadable files.
        progress: show progress bars.

    Returns:
        The fitted :class:`~lightlabel.Projector` (eval mode, unmerged). ``projector.fit_info`` holds the settings,
        the final fidelity and the per-epoch ``history`` (loss, and on the held-out split: top-1 agreement with
        the teachers, KL(teacher || projector), MSE, top-1); it is saved in the adapter's metadata.

    Raises:
        ValueError: class names that disagree in count with the dataset's classes, a class without samples,
            teachers whose class count differs, bad hyper-parameters (named), or an ``out_dir`` holding a run
            with other settings.

    Source: HeLlO Sec. 3.2-3.3, Eq. 5, Alg. 1 lines 4-8; supplementary A.2-A.4, Tables 1-2.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "epochs" else 1):
            raise ValueError(f"`{name}` must be an int >= {0 if name == 'epochs' else 1}, got {value!r}")
    for name, value in (("lr", lr), ("weight_decay", weight_decay), ("ce_weight", ce_weight)):
        if not isinstance(value, (int, float)) or value < 0 or (name == "lr" and value == 0):
            raise ValueError(f"`{name}` must be a number {'> 0' if name == 'lr' else '>= 0'}, got {value!r}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"`val_fraction` must be in [0, 1), got {val_fraction!r}")
    dataset = as_dataset(train_set, on_error=on_error)
    ds_classes = dataset_classes(dataset)
    names = list(class_names) if class_names is not None else ds_classes
    if names is None:
        raise ValueError("pass `class_names`: the dataset has no `classes` attribute")
    if ds_classes is not None and len(ds_classes) != len(names):
        raise ValueError(f"`class_names` has {len(names)} names but the dataset has {len(ds_classes)} classes")
    labels = dataset_targets(dataset)
    counts = torch.bincount(torch.tensor(labels), minlength=len(names))
    if len(counts) > len(names):
        raise ValueError(f"dataset labels go up to {len(counts) - 1} but there are {len(names)} class names")
    if (counts == 0).any():
        empty = [names[i] for i in (counts == 0).nonzero().flatten().tolist()]
        raise ValueError(f"classes without samples in `train_set`: {empty[:10]}")
    device = resolve_device(device)
    temp = None
    if out_dir is None:
        temp = tempfile.TemporaryDirectory(prefix="lightlabel-fit-")
        out_dir = temp.name
    out_dir = Path(out_dir)

    if teachers is None:
        teachers = train_teachers(dataset, out_dir=out_dir / "teachers", arch=teacher_arch, epochs=teacher_epochs,
                                  save_epochs=teacher_save_epochs, image_size=image_size, seed=seed, device=device,
                                  num_workers=num_workers, progress=progress)
    ensemble = teachers if isinstance(teachers, TeacherEnsemble) else load_teachers(teachers, device=device)
    ensemble.to(device)
    t_mean = tuple(teacher_mean or getattr(ensemble, "mean", None) or (0.485, 0.456, 0.406))
    t_std = tuple(teacher_std or getattr(ensemble, "std", None) or (0.229, 0.224, 0.225))
    size = int(image_size or getattr(ensemble, "image_size", None) or image_size_of(dataset))

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        projector = Projector(base=base, pretrained=pretrained, class_names=names, templates=templates,
                              text_embeddings=text_embeddings, image_rank=image_rank, image_alpha=image_alpha,
                              head_rank=head_rank, head_alpha=head_alpha, targets=targets, head_mode=head_mode,
                              device=device, progress=progress)
    with torch.no_grad():
        probe = ensemble(torch.zeros(1, 3, size, size, device=device))
    if probe.shape[-1] != len(names):
        raise ValueError(f"the teachers output {probe.shape[-1]} classes but there are {len(names)} class names")

    train_idx, val_idx = _split(len(dataset), val_fraction, seed)
    train_data = TransformedDataset(Subset(dataset, train_idx), train_transform(size) if augment else eval_transform(size),
                                    seed=seed)
    val_data = TransformedDataset(Subset(dataset, val_idx), eval_transform(size)) if val_idx else None
    views = _Views(projector, t_mean, t_std, device)
    decay = [p for lora in projector.image_lora for p in (lora.lora_A, lora.lora_B)] + [projector.head.lora_A,
                                                                                         projector.head.lora_B]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": [projector.head.logit_scale, projector.head.bias], "weight_decay": 0.0}], lr=lr)
    per_rank_batch(batch_size)
    model: nn.Module = projector
    if world()[1] > 1:  # gradients of the adapter only are all-reduced; the frozen base needs no sync
        model = ddp(projector, device, sync_buffers=False)

    settings = dict(base=projector.base_model, base_fingerprint=projector.base_fingerprint, classes=names,
                    templates=projector.templates, config=repr(projector.config), epochs=epochs, lr=lr,
                    weight_decay=weight_decay, batch_size=batch_size, ce_weight=ce_weight, image_size=size,
                    augment=augment, val_fraction=val_fraction, seed=seed, samples=len(dataset),
                    teachers=fingerprint(ensemble), teacher_mean=t_mean, teacher_std=t_std, world=world()[1])
    state_path = out_dir / "fit-state.pt"
    state = load_state(state_path, settings, "fit_adapter")
    history: list[dict[str, Any]] = []
    start = 0
    if state is not None:
        projector.load_adapter_state(state["adapter"], str(state_path))
        opt.load_state_dict(state["opt"])
        start, history = state["epoch"], state["history"]
        logger.info("fit_adapter: resuming %s after epoch %d of %d", out_dir, start, epochs)
    elif val_data is not None:
        history.append({"epoch": 0, **label_fidelity(projector, ensemble, val_data, teacher_mean=t_mean,
                                                     teacher_std=t_std, device=device)})
        logger.info("fit_adapter: before fitting: %s", _fmt(history[-1]))
    if is_main_process():  # precomputed text embeddings: from_pretrained(out_dir) needs them beside the adapter
        projector._save_text_embeddings(out_dir)

    for epoch in range(start, epochs):
        t0 = time.time()
        projector.train()
        total = torch.zeros((), device=device)
        seen = 0
        with epoch_rng(seed, epoch, device):
            loader = make_loader(train_data, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                 epoch=epoch, seed=seed, device=device)
            bar = progress_bar(loader, desc=f"fit epoch {epoch + 1}/{epochs}", disable=not progress or not is_main_process())
            for images, labels in bar:
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                xt, xp = views(images)
                with torch.no_grad(), _autocast(device):
                    soft = ensemble(xt).float()
                with _autocast(device):
                    logits = model(xp, check=False)
                loss = soft_label_loss(logits, soft, labels, kind="mse", ce_weight=ce_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * len(labels)
                seen += len(labels)
        record: dict[str, Any] = {"epoch": epoch + 1, "loss": float(total) / max(seen, 1), "seconds": time.time() - t0}
        if val_data is not None:
            record.update(label_fidelity(projector, ensemble, val_data, teacher_mean=t_mean, teacher_std=t_std,
                                         device=device))
        history.append(record)
        logger.info("fit_adapter epoch %d/%d: %s", epoch + 1, epochs, _fmt(record))
        projector.fit_info = _fit_info(settings, history, ensemble.num_teachers)
        save_state(state_path, {"adapter": {k: v.cpu() for k, v in projector.adapter_state().items()},
                                "opt": opt.state_dict(), "epoch": epoch + 1, "history": history,
                                "settings": settings, "settings_digest": settings_digest(settings)})
        if is_main_process():
            projector.save_pretrained(out_dir / "adapter.safetensors")
    projector.fit_info = _fit_info(settings, history, ensemble.num_teachers)
    projector.eval()
    if temp is not None:
        temp.cleanup()
    return projector


def _fit_info(settings: dict, history: list[dict], num_teachers: int) -> dict[str, Any]:
    rounded = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()} for h in history]
    last = rounded[-1] if rounded else {}
    keep = ("epochs", "lr", "weight_decay", "batch_size", "ce_weight", "image_size", "seed", "samples")
    return {**{k: settings[k] for k in keep}, "num_teachers": num_teachers,
            **{f"final_{k}": last[k] for k in ("agreement", "kl", "mse", "top1", "teacher_top1") if k in last},
            "history": rounded}


def _fmt(record: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch")
