"""Training a teacher trajectory whose early checkpoints are the weak teachers of :func:`lightlabel.fit_adapter`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..configs import TeacherConfig, config_from
from ..data import (
    TransformedDataset,
    as_dataset,
    dataset_classes,
    eval_transform,
    image_size_of,
    train_transform,
)
from ..inputs import InputSpec
from ..models import build_model, save_teacher
from ..utils.progress import progress_bar
from .loop import (
    ddp,
    evaluate,
    is_main_process,
    make_loader,
    per_rank_batch,
    resolve_device,
    run_resumable,
)

__all__ = ["train_teachers"]

logger = logging.getLogger(__name__)


def train_teachers(
    train_set: Dataset | str | os.PathLike,
    config: TeacherConfig | None = None,
    *,
    out_dir: str | os.PathLike,
    input_spec: InputSpec | None = None,
    val_set: Dataset | str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    on_error: str = "skip",
    progress: bool = True,
    **overrides: Any,
) -> list[Path]:
    """Train one teacher from scratch and keep the checkpoints of early epochs ("weak teachers").

    One training trajectory with the paper's recipe (HeLlO supp. Table 1: SGD lr 0.1, momentum 0.9, weight decay
    1e-4, StepLR step 30, batch 256; standard augmentation, see :func:`lightlabel.data.train_transform`). The
    checkpoints of ``save_epochs`` become the weak teachers of :func:`fit_adapter` (Sec. 3.3; Table 4 right: early
    stages are best for small IPC). Resumable: the state after every epoch is written to
    ``out_dir/trainer-state.pt`` (atomically); calling again with the same settings continues from it, and a
    finished run returns at once. Exactly the same weights as an uninterrupted run (same seed, same device).

    Args:
        train_set: a map-style dataset of ``(PIL image or image tensor, int)`` or an ImageFolder path.
        config: the recipe (:class:`TeacherConfig`); ``overrides`` replace its fields (e.g. ``epochs=4``).
        out_dir: where the checkpoints ``teacher-epoch{NNN}.pt`` and the trainer state go.
        input_spec: the teachers' input normalisation, recorded in the checkpoints (default: ImageNet statistics
            at the training size).
        val_set: optional held-out data; its top-1 is logged each epoch and stored in the checkpoints.
        device: default CUDA when available.
        on_error: for ImageFolder paths, ``"skip"`` or ``"raise"`` on unreadable files.
        progress: show progress bars.

    Returns:
        Paths of the saved checkpoints, by epoch.

    Raises:
        ValueError: bad settings (named), a dataset without ``classes``, or an existing state in ``out_dir`` from
            other settings.
        TypeError: an unknown setting name.

    Source: HeLlO Sec. 3.3 and supplementary A.2, Table 1.
    """
    cfg = config_from(TeacherConfig, config, overrides)
    dataset = as_dataset(train_set, on_error=on_error)
    if dataset_classes(dataset) is None:
        raise ValueError("`train_set` must have a `classes` attribute (class names in label order)")
    run = _TeacherRun(dataset, cfg, input_spec, val_set, resolve_device(device), on_error, progress)
    paths = {e: Path(out_dir) / f"teacher-epoch{e:03d}.pt" for e in cfg.checkpoint_epochs}
    run_resumable(units=cfg.epochs, step=run.step, state=run.state(), path=Path(out_dir) / "trainer-state.pt",
                  settings=run.settings(), what="train_teachers", seed=cfg.seed, device=run.device,
                  after_unit=lambda epoch, history: run.save(paths.get(epoch + 1), epoch, history))
    return [paths[e] for e in cfg.checkpoint_epochs]


class _TeacherRun:
    """One teacher trajectory: model, SGD + StepLR, data, and the step of one epoch (HeLlO supp. Table 1)."""

    def __init__(self, dataset: Dataset, cfg: TeacherConfig, input_spec: InputSpec | None, val_set: Any,
                 device: torch.device, on_error: str, progress: bool) -> None:
        self.dataset, self.cfg, self.device, self.progress = dataset, cfg, device, progress
        self.classes = dataset_classes(dataset)
        self.size = size = int(cfg.image_size or image_size_of(dataset))
        self.low_res = size <= 64 if cfg.low_res is None else bool(cfg.low_res)
        self.spec = InputSpec(input_spec.mean, input_spec.std, size) if input_spec is not None else InputSpec.imagenet(size)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            self.model = build_model(cfg.arch, len(self.classes), low_res=self.low_res, image_size=size).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=cfg.step_size, gamma=cfg.gamma)
        self.train_data = TransformedDataset(dataset, train_transform(size, low_res=self.low_res), seed=cfg.seed)
        per_rank_batch(cfg.batch_size)
        # DDP; BatchNorm statistics stay per process (as in torchvision's reference recipe)
        self.net: nn.Module = ddp(self.model, device)
        self.val_data = (TransformedDataset(as_dataset(val_set, on_error=on_error), eval_transform(size))
                         if val_set is not None else None)

    def state(self) -> dict[str, Any]:
        return {"model": self.model, "opt": self.opt, "sched": self.sched}

    def settings(self) -> dict[str, Any]:
        """What a resumed trajectory must share with the saved one."""
        return {**self.cfg.result_dict(), "image_size": self.size, "low_res": self.low_res,
                "input_spec": self.spec.to_dict(), "classes": self.classes, "samples": len(self.dataset)}

    def step(self, epoch: int) -> dict[str, Any]:
        cfg, device = self.cfg, self.device
        self.net.train()
        total = correct = seen = 0
        loader = make_loader(self.train_data, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                             epoch=epoch, seed=cfg.seed, device=device)
        for images, labels in progress_bar(loader, desc=f"teacher epoch {epoch + 1}/{cfg.epochs}",
                                           disable=not self.progress or not is_main_process()):
            images = self.spec.normalize(images.to(device, non_blocking=True))
            labels = labels.to(device, non_blocking=True)
            logits = self.net(images)
            loss = F.cross_entropy(logits, labels)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.detach() * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
        self.sched.step()
        record = {"loss": float(total) / seen, "train_top1": float(correct) / seen}
        if self.val_data is not None:
            record["val_top1"] = evaluate(self.model, self.val_data, input_spec=self.spec, device=device)
        logger.info("teacher epoch %d/%d: %s", epoch + 1, cfg.epochs,
                    ", ".join(f"{k} {v:.4g}" for k, v in record.items()))
        return record

    def save(self, path: Path | None, epoch: int, history: list[dict[str, Any]]) -> None:
        """Write the checkpoint of ``epoch`` (0-based) when it is one to keep (main process only)."""
        if path is not None and is_main_process():
            save_teacher(self.model, path, arch=self.cfg.arch, classes=self.classes, low_res=self.low_res,
                         input_spec=self.spec, epoch=epoch + 1, history=list(history))
