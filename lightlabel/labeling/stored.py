"""Stored soft labels (the SRe2L/FKD baseline): label every view of every epoch once, store it, read it back.

This is what lightlabel exists to replace, implemented faithfully so it can be measured. For every epoch the data
order, each view's augmentation parameters and the labeller's fp16 logits of the resulting views are written to one
``epoch-NNNN.safetensors`` file. The views come from :func:`~lightlabel.labeling.augment.epoch_views`, the same
function the student's training uses, so a student run with the same augmentation, batch size, epochs and seed sees
exactly the views that were labelled; :meth:`StoredSoftLabels.prepare` refuses any other run, and the recorded data
order of each epoch is compared with the run's before its labels are used. :meth:`StoredSoftLabels.extra_bytes` is
the real number of bytes on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from ..utils.files import atomic_path, atomic_write_text
from ..utils.progress import progress_bar
from .augment import AugmentConfig, Augmenter, epoch_order, epoch_views
from .sources import LabelSource, RunInfo, as_label_source

__all__ = ["VIEW_PLAN_VERSION", "StoredSoftLabels", "images_digest", "store_soft_labels"]

META = "stored-labels.json"
#: Version of the view plan (data order and augmentation streams); stored labels made under another are refused.
VIEW_PLAN_VERSION = 2


#: Compact dtypes of the recorded augmentation parameters; per-view keys are concatenated, per-batch ones stacked.
_RECORD_DTYPES = {"rows": torch.uint8, "cols": torch.uint8, "crop": torch.int16, "flip": torch.uint8,
                  "box": torch.int16, "lam": torch.float32}
_PER_VIEW = ("logits", "rows", "cols", "crop", "flip")


def images_digest(images: torch.Tensor) -> str:
    """sha256 of a uint8 image tensor (ties stored labels to the exact distilled images)."""
    return hashlib.sha256(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def store_soft_labels(
    images: torch.Tensor,
    labels: torch.Tensor,
    labeller: LabelSource | Any,
    out_dir: str | os.PathLike,
    *,
    augment: AugmentConfig,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> StoredSoftLabels:
    """Generate and store the soft labels of every view of every epoch (SRe2L/FKD style).

    Args:
        images: ``(N, 3, H, W)`` uint8 distilled images. labels: ``(N,)`` int64.
        labeller: any label source (a teacher module, an ensemble, a projector, ...; see
            :func:`~lightlabel.labeling.sources.as_label_source`).
        out_dir: folder for ``epoch-NNNN.safetensors`` files and the ``stored-labels.json`` record (written last,
            atomically: a folder without it is incomplete).
        augment, epochs, batch_size, seed: the student run that reads them must use the same (an
            :class:`~lightlabel.EvalProtocol`'s ``augment``, ``epochs`` and ``batch_size``).
        device: where labelling runs (default: CUDA when available).

    Returns:
        The :class:`StoredSoftLabels` written.

    Raises:
        ValueError: images not uint8 ``(N, 3, H, W)``, labels of another length, a labeller that does not label.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"`images` must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"`labels` must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    source = as_label_source(labeller)
    if source.input_spec is None:
        raise ValueError(f"{source.kind} labels look at no views; there is nothing to store")
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out_dir = Path(out_dir)
    augmenter = Augmenter(augment, source.num_classes)
    x_all, y_all = images.to(device), labels.to(device)
    for epoch in progress_bar(range(epochs), desc="storing soft labels", disable=not progress):
        record: dict[str, list[torch.Tensor]] = {}
        for view in epoch_views(x_all, y_all, augmenter, batch_size=batch_size, seed=seed, epoch=epoch):
            record.setdefault("logits", []).append(source.label(view.views, epoch=epoch, step=view.step).half().cpu())
            for key, value in view.params.items():
                record.setdefault(key, []).append(value.to(_RECORD_DTYPES[key]))
        order = torch.cat(epoch_order(images.shape[0], batch_size, seed, epoch))
        tensors = {"order": order.to(torch.int32), **{k: (torch.cat(vs) if k in _PER_VIEW else torch.stack(vs))
                                                      for k, vs in record.items()}}
        with atomic_path(out_dir / f"epoch-{epoch:04d}.safetensors") as tmp:
            safetensors.torch.save_file(tensors, str(tmp))
    meta = {"format": "lightlabel-stored-labels", "view_plan_version": VIEW_PLAN_VERSION, "epochs": epochs,
            "batch_size": batch_size, "seed": seed, "augment": augment.to_dict(), "num_classes": source.num_classes,
            "num_images": int(images.shape[0]), "images_sha256": images_digest(images), "labeller": source.describe(),
            "logits_dtype": "float16"}
    atomic_write_text(out_dir / META, json.dumps(meta, indent=1))
    return StoredSoftLabels(out_dir)


class StoredSoftLabels:
    """Soft labels stored on disk by :func:`store_soft_labels`: a :class:`~lightlabel.LabelSource` that reads.

    Args:
        directory: the folder :func:`store_soft_labels` wrote.

    Attributes:
        epochs, batch_size, seed, augment, num_classes: the run the labels were made for.

    Raises:
        FileNotFoundError: no ``stored-labels.json`` (missing or never finished) or a missing epoch file.
        ValueError: a record of another format or view-plan version.
    """

    kind = "stored"
    input_spec = None

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        path = self.directory / META
        if not path.is_file():
            raise FileNotFoundError(f"{self.directory} holds no stored soft labels ({META} missing)")
        self.meta = json.loads(path.read_text())
        if self.meta.get("format") != "lightlabel-stored-labels" or self.meta.get("view_plan_version") != VIEW_PLAN_VERSION:
            raise ValueError(f"{self.directory}: stored labels of another format or view-plan version "
                             f"({self.meta.get('format')!r}, {self.meta.get('view_plan_version')!r}; this lightlabel "
                             f"reads version {VIEW_PLAN_VERSION}): store them again")
        self.epochs, self.batch_size, self.seed = self.meta["epochs"], self.meta["batch_size"], self.meta["seed"]
        self.augment = AugmentConfig.from_dict(self.meta["augment"])
        self.num_classes = self.meta["num_classes"]
        missing = [e for e in range(self.epochs) if not self._file(e).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.directory}: stored labels of epochs {missing[:5]} are missing")
        self._epoch: tuple[int, torch.Tensor] | None = None

    def _file(self, epoch: int) -> Path:
        return self.directory / f"epoch-{epoch:04d}.safetensors"

    @property
    def nbytes(self) -> int:
        """Bytes on disk of all stored labels, augmentation records and the metadata file."""
        return sum(f.stat().st_size for f in self.directory.iterdir() if f.is_file())

    def extra_bytes(self) -> int:
        return self.nbytes

    def describe(self) -> dict[str, Any]:
        return {"kind": "stored", "directory": str(self.directory), "bytes": self.nbytes,
                **{k: self.meta[k] for k in ("epochs", "batch_size", "seed", "augment", "images_sha256", "labeller")}}

    def prepare(self, run: RunInfo) -> None:
        """Refuse a run the labels were not made for (other images, augmentation, batch size, epochs or seed).

        Raises:
            ValueError: naming every setting that differs; or a distributed run (stored views are per global batch).
        """
        if run.world_size > 1:
            raise ValueError("stored soft labels hold one label per view of the whole recorded batch; they cannot be "
                             "split across processes (run them in one process, or use online labels under torchrun)")
        want = {"images_sha256": run.images_sha256, "augment": run.augment.to_dict(), "batch_size": run.batch_size,
                "epochs": run.epochs, "seed": run.seed}
        diff = [f"{k}: stored {self.meta[k]!r}, run {v!r}" for k, v in want.items() if self.meta[k] != v]
        if diff:
            raise ValueError(f"{self.directory}: stored labels were made for another run ({'; '.join(diff)[:600]}); "
                             "store them for this run's images and protocol")

    def label(self, views: torch.Tensor, *, epoch: int | None = None, step: int | None = None) -> torch.Tensor:
        """The stored logits of batch ``step`` of ``epoch``: ``(B, C)`` float32 on the views' device.

        Raises:
            ValueError: no or out-of-range ``epoch``/``step``, a batch of another size, or an epoch whose recorded
                data order differs from the run's (the views would not be the labelled ones).
        """
        if epoch is None or step is None or not 0 <= epoch < self.epochs:
            raise ValueError(f"stored labels are read by `epoch` in [0, {self.epochs}) and `step`; got {epoch}, {step}")
        if self._epoch is None or self._epoch[0] != epoch:
            data = safetensors.torch.load_file(str(self._file(epoch)))
            expected = torch.cat(epoch_order(self.meta["num_images"], self.batch_size, self.seed, epoch)).to(torch.int32)
            if not torch.equal(data["order"], expected):
                raise ValueError(f"{self._file(epoch)}: the recorded data order differs from this run's; the stored "
                                 "views are not the ones being trained on")
            self._epoch = (epoch, data["logits"])
        logits = self._epoch[1][step * self.batch_size:(step + 1) * self.batch_size]
        if logits.shape[0] != views.shape[0]:
            raise ValueError(f"batch {step} of epoch {epoch} has {views.shape[0]} views but {logits.shape[0]} stored "
                             "labels")
        return logits.to(views.device, torch.float32)

    def __repr__(self) -> str:
        return (f"StoredSoftLabels({self.directory}, epochs={self.epochs}, batch_size={self.batch_size}, "
                f"{self.nbytes:,} bytes)")
