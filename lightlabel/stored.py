"""Stored soft labels (the SRe2L/FKD baseline): label every augmented view once, store it, read it back.

This is what lightlabel exists to replace, implemented faithfully so it can be measured: for every epoch the
data order, each view's crop box and flip, and each batch's CutMix box and ratio are recorded together with
the teacher's fp16 logits of the resulting augmented batch, one ``epoch-NNNN.safetensors`` per epoch. Training
reads the order, replays the recorded augmentation with the same torchvision ops, and uses the stored logits.
:attr:`StoredSoftLabels.nbytes` is the real number of bytes on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from ._io import atomic_path, atomic_write_text
from ._loop import epoch_seed, resolve_device
from ._progress import progress_bar
from .base import fingerprint
from .relabel import OnlineRelabeler

__all__ = ["StoredSoftLabels", "images_digest", "store_soft_labels"]

META = "stored-labels.json"


def images_digest(images: torch.Tensor) -> str:
    """sha256 of a uint8 image tensor (ties stored labels to the exact distilled images)."""
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()


@dataclass(frozen=True)
class AugmentSpec:
    """The per-step augmentation shared by the student loop and the stored labels."""

    crop_size: int
    crop_scale: tuple[float, float] = (0.08, 1.0)
    flip: bool = True
    mix: str = "cutmix"
    alpha: float = 1.0

    def relabeler(self, labeler: nn.Module, num_classes: int, *, mean: tuple[float, ...], std: tuple[float, ...],
                  **kwargs: Any) -> OnlineRelabeler:
        """A relabeler with this augmentation for images normalised with ``mean``/``std``; a plain teacher is fed
        its own normalisation (its ``mean``/``std`` attributes, else the same)."""
        return OnlineRelabeler(labeler, num_classes=num_classes, mix=self.mix, alpha=self.alpha,
                               crop_size=self.crop_size, crop_scale=self.crop_scale, flip=self.flip,
                               input_mean=mean, input_std=std, labeler_mean=tuple(getattr(labeler, "mean", mean)),
                               labeler_std=tuple(getattr(labeler, "std", std)), **kwargs)


def epoch_plan(n: int, batch_size: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Generator]:
    """The data order of an epoch and the generator seed of its augmentation, from ``(seed, epoch)`` alone."""
    s = epoch_seed(seed, epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(s))
    return order, torch.Generator().manual_seed(s ^ 0x2545F491)


def store_soft_labels(
    images: torch.Tensor,
    labels: torch.Tensor,
    teacher: nn.Module,
    out_dir: str | os.PathLike,
    *,
    num_classes: int,
    epochs: int,
    batch_size: int = 100,
    augment: AugmentSpec,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> StoredSoftLabels:
    """Generate and store the soft labels of every augmented view of every epoch (SRe2L/FKD style).

    Args:
        images: ``(N, 3, H, W)`` uint8 distilled images. labels: ``(N,)`` int64.
        teacher: the labeller (teacher module, ensemble or projector); images are re-normalised for it.
        num_classes: ``C``.
        out_dir: folder for ``epoch-NNNN.safetensors`` files and the ``stored-labels.json`` record.
        epochs, batch_size, augment, seed: must match the student run that reads them.
        mean, std: the student's input normalisation.

    Returns:
        The :class:`StoredSoftLabels` written.
    """
    device = resolve_device(device)
    out_dir = Path(out_dir)
    relabeler = augment.relabeler(teacher, num_classes, mean=mean, std=std, seed=0)
    x_all = images.to(device)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    n = images.shape[0]
    for epoch in progress_bar(range(epochs), desc="storing soft labels", disable=not progress):
        order, gen = epoch_plan(n, batch_size, seed, epoch)
        relabeler.load_state_dict({"rng_state": gen.get_state(), "calls": 0})
        record: dict[str, list[torch.Tensor]] = {"crop": [], "flip": [], "box": [], "lam": [], "logits": []}
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            x = (x_all[idx.to(device)].float() / 255 - m) / s
            params = relabeler.sample_params(len(idx), *x.shape[-2:])
            x_aug, _ = relabeler.apply(x, labels[idx].to(device), params)
            logits = relabeler.label(x_aug)
            record["logits"].append(logits.half().cpu())
            for key in ("crop", "flip"):
                if key in params:
                    record[key].append(params[key].to(torch.int16 if key == "crop" else torch.uint8))
            if "box" in params:
                record["box"].append(params["box"].to(torch.int16)[None])
            if "lam" in params:
                record["lam"].append(params["lam"].float()[None])
        tensors = {"order": order.to(torch.int32), **{k: torch.cat(v) for k, v in record.items() if v}}
        with atomic_path(out_dir / f"epoch-{epoch:04d}.safetensors") as tmp:
            safetensors.torch.save_file(tensors, str(tmp))
    meta = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "augment": augment.__dict__,
            "num_classes": num_classes, "images_sha256": images_digest(images), "teacher": fingerprint(teacher),
            "mean": list(mean), "std": list(std), "logits_dtype": "float16"}
    atomic_write_text(out_dir / META, json.dumps(meta, indent=1))
    return StoredSoftLabels(out_dir)


class StoredSoftLabels:
    """Soft labels stored on disk by :func:`store_soft_labels`.

    Raises:
        FileNotFoundError: no ``stored-labels.json`` or a missing epoch file.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        path = self.directory / META
        if not path.is_file():
            raise FileNotFoundError(f"{self.directory} holds no stored soft labels ({META} missing)")
        self.meta = json.loads(path.read_text())
        self.epochs, self.batch_size, self.seed = self.meta["epochs"], self.meta["batch_size"], self.meta["seed"]
        aug = dict(self.meta["augment"])
        aug["crop_scale"] = tuple(aug["crop_scale"])
        self.augment = AugmentSpec(**aug)
        self.num_classes = self.meta["num_classes"]
        missing = [e for e in range(self.epochs) if not self._file(e).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.directory}: stored labels of epochs {missing[:5]} are missing")

    def _file(self, epoch: int) -> Path:
        return self.directory / f"epoch-{epoch:04d}.safetensors"

    @property
    def nbytes(self) -> int:
        """Bytes on disk of all stored labels and augmentation records (the metadata file included)."""
        return sum(f.stat().st_size for f in self.directory.iterdir() if f.is_file())

    def check(self, images: torch.Tensor) -> None:
        """Raise ``ValueError`` unless these are the images the labels were generated for."""
        if images_digest(images) != self.meta["images_sha256"]:
            raise ValueError(f"{self.directory}: stored labels were generated for other images (sha256 differs)")

    def batches(self, epoch: int, device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, dict, torch.Tensor]]:
        """Yield ``(indices, augmentation params, fp16 logits)`` of each batch of ``epoch``, read from disk."""
        if not 0 <= epoch < self.epochs:
            raise ValueError(f"`epoch` must be in [0, {self.epochs}), got {epoch}")
        data = safetensors.torch.load_file(str(self._file(epoch)))
        order, logits = data["order"].long(), data["logits"]
        for step, start in enumerate(range(0, len(order), self.batch_size)):
            end = min(start + self.batch_size, len(order))
            params: dict[str, torch.Tensor] = {}
            if "crop" in data:
                params["crop"] = data["crop"][start:end].long()
            if "flip" in data:
                params["flip"] = data["flip"][start:end].bool()
            if "box" in data:
                params["box"] = data["box"][step].long()
            if "lam" in data:
                params["lam"] = data["lam"][step].double()
            yield order[start:end], params, logits[start:end].to(device, non_blocking=True)
