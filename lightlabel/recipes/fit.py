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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from ..classes import check_class_order, logit_class_names
from ..configs import AdapterConfig, FitConfig, TeacherConfig
from ..core.base import fingerprint
from ..core.fastpath import float32_logits_view
from ..core.projector import Projector
from ..data import (
    TransformedDataset,
    as_dataset,
    dataset_classes,
    dataset_targets,
    eval_transform,
    image_size_of,
    train_transform,
)
from ..inputs import InputSpec, input_spec_of
from ..labeling.losses import soft_label_loss
from ..labeling.teachers import TeacherEnsemble, load_teachers
from ..models import load_teacher
from ..pretrained import SUBSET_HINT, restrict_to_subset
from ..utils.progress import progress_bar
from .loop import (
    Accumulator,
    ddp,
    is_main_process,
    make_loader,
    per_rank_batch,
    resolve_device,
    run_resumable,
    world,
)
from .select import TeacherSelection
from .teachers import train_teachers

__all__ = ["fit_adapter", "label_fidelity"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def label_fidelity(projector: Projector, teachers: nn.Module, dataset: Dataset, *, batch_size: int = 256,
                   device: torch.device | None = None) -> dict[str, float]:
    """How well the projector reproduces the teachers' labels on held-out images.

    Args:
        projector: the projector.
        teachers: a teacher or :class:`~lightlabel.TeacherEnsemble` (mean logits) carrying an ``input_spec``.
        dataset: ``(float image in [0, 1] (3, H, W), label)`` pairs, at the teachers' resolution; each model sees
            them prepared with its own :class:`~lightlabel.InputSpec`.

    Returns:
        ``agreement`` (top-1 agreement with the teachers, in [0, 1]), ``kl`` (mean KL(teacher || projector) of
        the softmax distributions, nats), ``mse`` (mean squared logit difference), ``top1`` (projector top-1 vs
        true labels) and ``teacher_top1``.

    Raises:
        ValueError: teachers without an input spec.
    """
    device = device or projector.device
    t_spec, p_spec = input_spec_of(teachers), projector.input_spec
    teachers = float32_logits_view(teachers)  # logits not rounded to bf16 under CUDA autocast
    was_training = projector.training
    projector.eval()
    sums = dict(agreement=0.0, kl=0.0, mse=0.0, top1=0.0, teacher_top1=0.0)
    n = 0
    for images, labels in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
        images, labels = images.to(device), labels.to(device)
        with _autocast(device):
            t = teachers(t_spec.prepare(images)).float()
            p = projector(p_spec.prepare(images), check=False).float()
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
    train_set: Dataset | str | os.PathLike, class_names: Sequence[str] | None = None, *,
    teachers: Sequence[nn.Module | str | os.PathLike] | TeacherEnsemble | TeacherSelection | None = None,
    projector: Projector | None = None, base: str = "RN50-quickgelu", pretrained: str | None = "openai",
    config: AdapterConfig | None = None, templates: str | Sequence[str] | None = None,
    text_embeddings: torch.Tensor | None = None, fit: FitConfig | None = None,
    teacher_config: TeacherConfig | None = None, teacher_input: InputSpec | None = None,
    out_dir: str | os.PathLike | None = None, device: torch.device | str | None = None, on_error: str = "skip",
    progress: bool = True,
) -> Projector:
    """Build a projector and fit its adapter to weak teachers: the whole of HeLlO Alg. 1 lines 4-8 in one call.

        loss = MSE(f(x), mean_k teacher_k(x)) + ce_weight * CE(f(x), y)        (HeLlO Eq. 5)

    Args:
        train_set: the original training set: a map-style dataset of ``(PIL image or image tensor (3, H, W)
            uint8 or float in [0, 1], int label)``, or an ImageFolder path.
        class_names: class names in label order (default: ``train_set.classes``); these are the names the text
            head is built from, so use readable names (e.g. "goldfish", not "n01443537").
        teachers: checkpoint paths, names and/or modules of weak teachers, a :class:`~lightlabel.TeacherEnsemble`,
            or the :class:`~lightlabel.TeacherSelection` of :func:`~lightlabel.select_teachers` (their mean logits
            are the targets). A 1000-class ImageNet teacher (``torchvision:resnet18``) given by name or module is
            restricted to the dataset's classes when its folders are WordNet ids
            (:func:`lightlabel.pretrained.restrict_classes`). ``None`` trains a trajectory first with
            :func:`train_teachers` (``teacher_config``) into ``out_dir/teachers``.
        projector: a projector to fit (its adapter is trained in place); otherwise one is built from ``base``,
            ``pretrained``, ``config``, ``templates`` and ``text_embeddings`` (see :class:`~lightlabel.Projector`;
            paper: RN50 OpenAI CLIP, image rank 8 on every conv, head rank 64 or 128).
        fit: the fitting settings (:class:`FitConfig`; paper: 20 epochs, AdamW 5e-4, batch 256, ``ce_weight`` 0.1).
        teacher_config: for ``teachers=None``, see :class:`~lightlabel.recipes.teachers.TeacherConfig`.
        teacher_input: for plain teacher state dicts, which record no input (see :func:`lightlabel.load_teacher`).
        out_dir: where the fit state, the per-epoch adapter folder and trained teachers go (``adapter.safetensors``,
            the model card, and for precomputed text embeddings ``text_embeddings.safetensors``, so
            ``Projector.from_pretrained(out_dir)`` loads the fitted adapter alone). With ``out_dir`` an interrupted
            call resumes from the last finished epoch, and the result equals an uninterrupted run under the same
            seed and device. ``None``: a temporary folder (no resumption).
        device: default CUDA when available. On CUDA, teachers and projector run under bf16 autocast.
        on_error: for ImageFolder paths, ``"skip"`` or ``"raise"`` on unreadable files. progress: progress bars.

    Returns:
        The fitted :class:`~lightlabel.Projector` (eval mode, unmerged). ``projector.fit_info`` holds the fit
        config, the final fidelity, the per-epoch ``history`` (loss, and on the held-out split: top-1 agreement
        with the teachers, KL(teacher || projector), MSE, top-1) and ``teachers_fingerprint`` (a sha256 of the
        imitated teachers' weights: teachers retrained from the same settings on another machine are other
        teachers, and it tells them apart); it is saved in the adapter's metadata.

    Raises:
        ValueError: class names that disagree in count with the dataset's classes, a class without samples,
            teachers whose class count or class order differs or that carry no input spec, bad settings (named),
            or an ``out_dir`` holding a run with other settings.

    Source: HeLlO Sec. 3.2-3.3, Eq. 5, Alg. 1 lines 4-8; supplementary A.2-A.4, Tables 1-2.
    """
    cfg = fit if fit is not None else FitConfig()
    if not isinstance(cfg, FitConfig):
        raise TypeError(f"`fit` must be a FitConfig, got {type(cfg).__name__}")
    dataset = as_dataset(train_set, on_error=on_error)
    names = _class_names(dataset, class_names, projector)
    device = resolve_device(device)
    temp = tempfile.TemporaryDirectory(prefix="lightlabel-fit-") if out_dir is None else None
    out_dir = Path(temp.name if temp is not None else out_dir)
    ensemble = _teachers(teachers, dataset, teacher_config, teacher_input, out_dir, device, progress)
    t_spec = input_spec_of(ensemble)
    size = int(cfg.image_size or (t_spec.image_size[0] if t_spec.image_size else None) or image_size_of(dataset))
    projector = _projector(projector, names, cfg, device, progress, base=base, pretrained=pretrained,
                           config=config, templates=templates, text_embeddings=text_embeddings)
    _check_teacher_classes(ensemble, t_spec, size, len(names), device)
    check_class_order(logit_class_names(ensemble), names, what="the teachers")
    run = _FitRun(projector, ensemble, dataset, cfg, size, device, progress)
    settings, state_path = run.settings(names, len(dataset)), out_dir / "fit-state.pt"
    fidelity = Accumulator(run.fidelity(0) if not state_path.is_file() else [])
    history = run_resumable(units=cfg.epochs, step=run.step, state={"adapter": _AdapterState(projector),
                                                                    "opt": run.opt, "fidelity": fidelity},
                            path=state_path, settings=settings, what="fit_adapter", seed=cfg.seed, device=device,
                            after_unit=lambda epoch, h: run.export(settings, fidelity.items + h, out_dir))
    run.export(settings, fidelity.items + history)
    projector.eval()
    if temp is not None:
        temp.cleanup()
    return projector


def _class_names(dataset: Dataset, class_names: Sequence[str] | None, projector: Projector | None) -> list[str]:
    """The class names in label order, checked against the dataset's classes and labels.

    Raises:
        ValueError: no names, a count that differs from the dataset's classes or labels, or an empty class.
    """
    ds_classes = dataset_classes(dataset)
    names = list(class_names) if class_names is not None else (
        list(projector.class_names) if projector is not None else ds_classes)
    if names is None:
        raise ValueError("pass `class_names`: the dataset has no `classes` attribute")
    if ds_classes is not None and len(ds_classes) != len(names):
        raise ValueError(f"`class_names` has {len(names)} names but the dataset has {len(ds_classes)} classes")
    counts = torch.bincount(torch.tensor(dataset_targets(dataset)), minlength=len(names))
    if len(counts) > len(names):
        raise ValueError(f"dataset labels go up to {len(counts) - 1} but there are {len(names)} class names")
    if (counts == 0).any():
        empty = [names[i] for i in (counts == 0).nonzero().flatten().tolist()]
        raise ValueError(f"classes without samples in `train_set`: {empty[:10]}")
    return names


def _teachers(teachers: Any, dataset: Dataset, teacher_config: TeacherConfig | None, teacher_input: InputSpec | None,
              out_dir: Path, device: torch.device, progress: bool) -> TeacherEnsemble:
    """The teacher ensemble on ``device``: given, chosen by :func:`select_teachers`, or trained first."""
    if isinstance(teachers, TeacherSelection):  # the checkpoints select_teachers chose
        teachers = teachers.teachers
    if teachers is None:
        teachers = train_teachers(dataset, teacher_config, out_dir=out_dir / "teachers",
                                  input_spec=teacher_input, device=device, progress=progress)
    if not isinstance(teachers, TeacherEnsemble):  # a pretrained ImageNet teacher on an ImageNet subset: restricted
        members = [teachers] if isinstance(teachers, (str, os.PathLike, nn.Module)) else list(teachers)
        teachers = [restrict_to_subset(t if isinstance(t, nn.Module) else load_teacher(t, input_spec=teacher_input),
                                       getattr(dataset, "classes", None)) for t in members]
    ensemble = teachers if isinstance(teachers, TeacherEnsemble) else load_teachers(
        teachers, input_spec=teacher_input, device=device)
    return ensemble.to(device)


def _projector(projector: Projector | None, names: list[str], cfg: FitConfig, device: torch.device, progress: bool,
               **build: Any) -> Projector:
    """The projector to fit: built from ``build`` (seeded by ``cfg.seed``), or the given one, unmerged, on ``device``.

    Raises:
        ValueError: build settings next to a given projector, or a projector of other classes.
    """
    if projector is None:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            return Projector(class_names=names, device=device, progress=progress, **build)
    if any(build[k] is not None for k in ("config", "templates", "text_embeddings")):
        raise ValueError("`config`, `templates` and `text_embeddings` build a new projector; with `projector=` "
                         "leave them out")
    projector.check_class_names(names)
    return projector.unmerge().to(device)


def _check_teacher_classes(ensemble: nn.Module, spec: InputSpec, size: int, num_classes: int,
                           device: torch.device) -> None:
    with torch.no_grad():
        probe = ensemble(spec.prepare(torch.zeros(1, 3, size, size, device=device)))
    if probe.shape[-1] != num_classes:
        raise ValueError(f"the teachers output {probe.shape[-1]} classes but there are {num_classes} class names "
                         f"({SUBSET_HINT})")


class _FitRun:
    """One fit's data, optimiser and step (HeLlO Eq. 5: MSE to the teachers' mean logits + ce_weight * CE)."""

    def __init__(self, projector: Projector, ensemble: TeacherEnsemble, dataset: Dataset, cfg: FitConfig, size: int,
                 device: torch.device, progress: bool) -> None:
        # the targets: each teacher's classifier in float32 under CUDA autocast (weights shared, not copied)
        ensemble = float32_logits_view(ensemble)
        self.projector, self.ensemble, self.cfg, self.device, self.progress = projector, ensemble, cfg, device, progress
        self.size = size
        self.t_spec = input_spec_of(ensemble)
        train_idx, val_idx = _split(len(dataset), cfg.val_fraction, cfg.seed)
        self.train_data = TransformedDataset(Subset(dataset, train_idx),
                                             train_transform(size) if cfg.augment else eval_transform(size),
                                             seed=cfg.seed)
        self.val_data = TransformedDataset(Subset(dataset, val_idx), eval_transform(size)) if val_idx else None
        decay = [p for lora in projector.image_lora for p in (lora.lora_A, lora.lora_B)] + [
            projector.head.lora_A, projector.head.lora_B]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": [projector.head.logit_scale, projector.head.bias],
                                       "weight_decay": 0.0}], lr=cfg.lr)
        per_rank_batch(cfg.batch_size)
        # gradients of the adapter only are all-reduced; the frozen base needs no sync
        self.model = ddp(projector, device, sync_buffers=False)

    def settings(self, names: list[str], samples: int) -> dict[str, Any]:
        """What a resumed fit must share with the saved one."""
        p = self.projector
        return dict(base=p.base_model, base_fingerprint=p.base_fingerprint, classes=names, templates=p.templates,
                    config=p.config.to_dict(), fit=self.cfg.result_dict(), image_size=self.size, samples=samples,
                    teachers=fingerprint(self.ensemble), teacher_input=self.t_spec.to_dict(), world=world()[1])

    def export(self, settings: dict[str, Any], history: list[dict[str, Any]], out_dir: Path | None = None) -> None:
        """Record the fit in ``projector.fit_info``; with ``out_dir``, also save the adapter there (main process)."""
        self.projector.fit_info = _fit_info(self.cfg, settings, history, self.ensemble.num_teachers)
        if out_dir is not None and is_main_process():
            self.projector.save_pretrained(out_dir)

    def fidelity(self, epoch: int) -> list[dict[str, Any]]:
        """``[{"epoch", fidelity...}]`` on the held-out split, or ``[]`` without one."""
        if self.val_data is None:
            return []
        record = {"epoch": epoch, **label_fidelity(self.projector, self.ensemble, self.val_data, device=self.device)}
        logger.info("fit_adapter: before fitting: %s", _fmt(record))
        return [record]

    def step(self, epoch: int) -> dict[str, Any]:
        cfg, device = self.cfg, self.device
        self.projector.train()
        total, seen = torch.zeros((), device=device), 0
        loader = make_loader(self.train_data, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                             epoch=epoch, seed=cfg.seed, device=device)
        for images, targets in progress_bar(loader, desc=f"fit epoch {epoch + 1}/{cfg.epochs}",
                                            disable=not self.progress or not is_main_process()):
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with torch.no_grad(), _autocast(device):
                soft = self.ensemble(self.t_spec.prepare(images)).float()
            with _autocast(device):
                logits = self.model(self.projector.input_spec.prepare(images), check=False)
            loss = soft_label_loss(logits, soft, targets, kind="mse", ce_weight=cfg.ce_weight)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.detach() * len(targets)
            seen += len(targets)
        record: dict[str, Any] = {"loss": float(total) / max(seen, 1)}
        if self.val_data is not None:
            record.update(label_fidelity(self.projector, self.ensemble, self.val_data, device=device))
        logger.info("fit_adapter epoch %d/%d: %s", epoch + 1, cfg.epochs, _fmt(record))
        return record


class _AdapterState:
    """The projector's adapter tensors as a state for :func:`run_resumable`."""

    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in self.projector.adapter_state().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.projector.load_adapter_state(state, "fit-state.pt")


def _fit_info(cfg: FitConfig, settings: dict, history: list[dict], num_teachers: int) -> dict[str, Any]:
    rounded = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()} for h in history]
    last = rounded[-1] if rounded else {}
    return {**cfg.to_dict(), "config": cfg.to_dict(), "image_size": settings["image_size"],
            "samples": settings["samples"], "num_teachers": num_teachers, "teachers_fingerprint": settings["teachers"],
            **{f"final_{k}": last[k] for k in ("agreement", "kl", "mse", "top1", "teacher_top1") if k in last},
            "history": rounded}


def _fmt(record: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch")
