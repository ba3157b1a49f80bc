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

import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from ..configs import AugmentConfig, LabelCompression, int_arg
from ..errors import StoredLabelsError
from ..utils.files import atomic_path, atomic_write_text
from ..utils.hashing import bytes_digest, file_digest, tensor_digest
from ..utils.progress import progress_bar
from ..utils.quantize import quantize_int8
from ..utils.seeding import derive_seed, generator
from .augment import Augmenter, epoch_order, epoch_views
from .sources import LabelSource, RunInfo, as_label_source

__all__ = ["VIEW_PLAN_VERSION", "StoredSoftLabels", "compress_logits", "decompress_logits", "images_digest",
           "kept_epochs", "store_soft_labels"]

META = "stored-labels.json"
#: Version of the view plan (data order and augmentation streams); stored labels made under another are refused.
VIEW_PLAN_VERSION = 3  # 3: RDED's crops and patch shuffles drawn for the whole batch at once (0.3)


#: Compact dtypes of the recorded augmentation parameters; per-view keys are concatenated, per-batch ones stacked.
_RECORD_DTYPES = {"rows": torch.uint8, "cols": torch.uint8, "crop": torch.int16, "flip": torch.uint8,
                  "box": torch.int16, "lam": torch.float32}
_PER_VIEW = ("logits", "rows", "cols", "crop", "flip", "topk_index", "topk_value", "scale", "lse")
#: The tensors that hold labels (their bytes are the formula of LabelCompression.bytes_per_view); the rest records
#: the data order and the augmentation.
LABEL_KEYS = ("logits", "topk_index", "topk_value", "scale", "lse")


def kept_epochs(epochs: int, compression: LabelCompression, seed: int) -> list[int]:
    """The epochs whose labels are stored: all, or a random subset from ``(seed, "prune")`` (LPLD label pruning)."""
    count = compression.num_kept_epochs(epochs)
    if count >= epochs:
        return list(range(epochs))
    return sorted(torch.randperm(epochs, generator=generator(seed, "prune"))[:count].tolist())


def view_epoch(epoch: int, kept: list[int], seed: int) -> int:
    """The stored epoch whose views and labels epoch ``epoch`` trains on: itself when kept, else a kept epoch drawn
    from ``(seed, epoch, "reuse")`` (knowledge reuse)."""
    return epoch if epoch in kept else kept[derive_seed(seed, epoch, "reuse") % len(kept)]


def compress_logits(logits: torch.Tensor, compression: LabelCompression) -> dict[str, torch.Tensor]:
    """Store ``(V, C)`` logits as ``compression`` says: ``logits`` (fp16 or int8), or ``topk_index`` (uint16),
    ``topk_value`` (fp16 or int8), with ``scale`` (fp32, int8 only) and ``lse`` (fp32, ``fill="mass"`` only)."""
    logits = logits.float()
    out: dict[str, torch.Tensor] = {}
    values = logits
    if compression.topk is not None:
        k = min(compression.topk, logits.shape[1])
        values, index = logits.topk(k, dim=1)
        out["topk_index"] = index.to(torch.uint16)
        if compression.fill == "mass":
            out["lse"] = torch.logsumexp(logits, dim=1)
    if compression.values == "int8":
        values, out["scale"] = quantize_int8(values, 1)  # one scale per view
    else:
        values = values.half()
    out["topk_value" if compression.topk is not None else "logits"] = values
    return out


def decompress_logits(data: dict[str, torch.Tensor], num_classes: int, fill: str) -> torch.Tensor:
    """Inverse of :func:`compress_logits`: ``(V, C)`` float32 logits. Outside a view's top-k, ``fill="min"`` puts the
    view's smallest stored value; ``fill="mass"`` spreads the probability mass the top-k leave evenly over the other
    classes (``logit = lse + log(remaining / (C - k))``, RDED ``keep_top_k``), floored at the smallest stored value
    minus 20 where almost no mass remains. With ``k = C`` both equal full storage."""
    key = "topk_value" if "topk_value" in data else "logits"
    values = data[key].float()
    if "scale" in data:
        values = values * data["scale"].float()[:, None]
    if key == "logits":
        return values
    index = data["topk_index"].long()
    low = values.amin(dim=1, keepdim=True)
    if fill == "mass" and "lse" in data and index.shape[1] < num_classes:
        lse = data["lse"].float()[:, None]
        remaining = (1 - torch.exp(values - lse).sum(1, keepdim=True)).clamp_min(0)
        other = lse + torch.log(remaining / (num_classes - index.shape[1]))
        fill_value = torch.maximum(other, low - 20)
    else:
        fill_value = low
    out = fill_value.expand(-1, num_classes).clone()
    return out.scatter_(1, index, values)


def images_digest(images: torch.Tensor) -> str:
    """sha256 of a uint8 image tensor (ties stored labels to the exact distilled images)."""
    return tensor_digest(images)


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
    compression: LabelCompression | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> StoredSoftLabels:
    """Generate and store the soft labels of every view of every (kept) epoch (SRe2L/FKD; LPLD/LPQLD compressed).

    Args:
        images: ``(N, 3, H, W)`` uint8 distilled images. labels: ``(N,)`` int64.
        labeller: any label source (a teacher module, an ensemble, a projector, ...; see
            :func:`~lightlabel.labeling.sources.as_label_source`).
        out_dir: folder for ``epoch-NNNN.safetensors`` files and the ``stored-labels.json`` record (written last,
            atomically: a folder without it is incomplete).
        augment, epochs, batch_size, seed: the student run that reads them must use the same (an
            :class:`~lightlabel.EvalProtocol`'s ``augment``, ``epochs`` and ``batch_size``).
        compression: how the labels are stored (:class:`~lightlabel.LabelCompression`: top-k, int8, label pruning;
            default: every logit of every view in fp16). Label bytes follow
            :meth:`LabelCompression.bytes_per_view` exactly; the record of order and augmentation comes on top.
        device: where labelling runs (default: CUDA when available).

    Returns:
        The :class:`StoredSoftLabels` written.

    Raises:
        ValueError: images not uint8 ``(N, 3, H, W)``, labels of another length, ``epochs`` or ``batch_size`` not an
            int >= 1, a labeller that does not label.
    """
    int_arg(epochs, "epochs", 1)
    int_arg(batch_size, "batch_size", 1)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"`images` must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"`labels` must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    source = as_label_source(labeller, device=device)
    if source.input_spec is None:
        raise ValueError(f"{source.kind} labels look at no views; there is nothing to store")
    out_dir = Path(out_dir)
    augmenter = Augmenter(augment, source.num_classes)
    compression = compression or LabelCompression()
    x_all, y_all = images.to(device), labels.to(device)
    kept = kept_epochs(epochs, compression, seed)
    sha: dict[int, str] = {}
    for epoch in progress_bar(kept, desc="storing soft labels", disable=not progress):
        record: dict[str, list[torch.Tensor]] = {}
        for view in epoch_views(x_all, y_all, augmenter, batch_size=batch_size, seed=seed, epoch=epoch):
            logits = source.label(view.views, epoch=epoch, step=view.step).cpu()
            for key, value in compress_logits(logits, compression).items():
                record.setdefault(key, []).append(value)
            for key, value in view.params.items():
                record.setdefault(key, []).append(value.to(_RECORD_DTYPES[key]))
        order = torch.cat(epoch_order(images.shape[0], batch_size, seed, epoch))
        tensors = {"order": order.to(torch.int32), **{k: (torch.cat(vs) if k in _PER_VIEW else torch.stack(vs))
                                                      for k, vs in record.items()}}
        with atomic_path(out_dir / f"epoch-{epoch:04d}.safetensors") as tmp:
            safetensors.torch.save_file(tensors, str(tmp))
        sha[epoch] = file_digest(out_dir / f"epoch-{epoch:04d}.safetensors")
    meta = {"format": "lightlabel-stored-labels", "view_plan_version": VIEW_PLAN_VERSION, "epochs": epochs,
            "batch_size": batch_size, "seed": seed, "augment": augment.to_dict(), "num_classes": source.num_classes,
            "num_images": int(images.shape[0]), "images_sha256": images_digest(images), "labeller": source.describe(),
            "compression": compression.to_dict(), "kept_epochs": kept, "sha256": {str(e): d for e, d in sha.items()},
            "label_bytes": len(kept) * images.shape[0] * compression.bytes_per_view(source.num_classes)}
    atomic_write_text(out_dir / META, json.dumps(meta, indent=1))
    return StoredSoftLabels(out_dir)


class StoredSoftLabels:
    """Soft labels stored on disk by :func:`store_soft_labels`: a :class:`~lightlabel.LabelSource` that reads.

    With label pruning, an epoch that stored no labels trains on the views and labels of a kept epoch
    (:meth:`view_epoch`); :func:`lightlabel.train_student` asks for it.

    Args:
        directory: the folder :func:`store_soft_labels` wrote.

    Attributes:
        epochs, batch_size, seed, augment, num_classes, compression, kept: the run the labels were made for, how
            they are stored, and the epochs whose labels exist.

    Raises:
        FileNotFoundError: no ``stored-labels.json`` (missing or never finished) or a missing epoch file.
        StoredLabelsError: a record of another format or view-plan version (here), an epoch file that is damaged,
            truncated or edited (when it is read).
    """

    kind = "stored"
    input_spec = None

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        path = self.directory / META
        if not path.is_file():
            raise FileNotFoundError(f"{self.directory} holds no stored soft labels ({META} missing)")
        try:
            self.meta = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StoredLabelsError(f"{path}: damaged record ({e})") from e
        if self.meta.get("format") != "lightlabel-stored-labels" or self.meta.get("view_plan_version") != VIEW_PLAN_VERSION:
            raise StoredLabelsError(f"{self.directory}: stored labels of another format or view-plan version "
                                    f"({self.meta.get('format')!r}, {self.meta.get('view_plan_version')!r}; this "
                                    f"lightlabel reads version {VIEW_PLAN_VERSION}): store them again")
        self.epochs, self.batch_size, self.seed = self.meta["epochs"], self.meta["batch_size"], self.meta["seed"]
        self.augment = AugmentConfig.from_dict(self.meta["augment"])
        self.compression = LabelCompression.from_dict(self.meta["compression"])
        self.kept: list[int] = list(self.meta["kept_epochs"])
        self.num_classes = self.meta["num_classes"]
        missing = [e for e in self.kept if not self._file(e).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.directory}: stored labels of epochs {missing[:5]} are missing")
        self._epoch: tuple[int, torch.Tensor] | None = None

    def _file(self, epoch: int) -> Path:
        return self.directory / f"epoch-{epoch:04d}.safetensors"

    @property
    def nbytes(self) -> int:
        """Bytes on disk of the stored labels, augmentation records and the metadata file: the files this record
        lists (other files in the folder, e.g. epochs left by an earlier store into it, are not counted)."""
        return sum(f.stat().st_size for f in [self.directory / META, *map(self._file, self.kept)])

    @property
    def label_nbytes(self) -> int:
        """Bytes of the label tensors alone (:meth:`LabelCompression.bytes_per_view` per view and kept epoch)."""
        return int(self.meta["label_bytes"])

    def extra_bytes(self) -> int:
        return self.nbytes

    def describe(self) -> dict[str, Any]:
        return {"kind": "stored", "directory": str(self.directory), "bytes": self.nbytes,
                **{k: self.meta[k] for k in ("epochs", "batch_size", "seed", "augment", "images_sha256", "labeller",
                                             "compression")}}

    def view_epoch(self, epoch: int) -> int:
        """The stored epoch whose views and labels run epoch ``epoch`` trains on (itself unless pruned)."""
        return view_epoch(epoch, self.kept, self.seed)

    def prepare(self, run: RunInfo) -> None:
        """Refuse a run the labels were not made for (other images, augmentation, batch size, epochs or seed).

        Raises:
            ValueError: naming every setting that differs; or a distributed run (stored views are per global batch).
        """
        if run.hallucinated:
            raise ValueError("stored soft labels cannot label a factorised set: every epoch hallucinates new images, so "
                             "they would need one stored label per hallucinated view, the very storage factorising "
                             "and online labels remove; use a projector or a teacher")
        if run.world_size > 1:
            raise ValueError("stored soft labels hold one label per view of the whole recorded batch; they cannot be "
                             "split across processes (run them in one process, or use online labels under torchrun)")
        want = {"images_sha256": run.images_sha256, "augment": run.augment.to_dict(), "batch_size": run.batch_size,
                "epochs": run.epochs, "seed": run.seed}
        diff = [f"{k}: stored {self.meta[k]!r}, run {v!r}" for k, v in want.items() if self.meta[k] != v]
        if diff:
            raise ValueError(f"{self.directory}: stored labels were made for another run ({'; '.join(diff)[:600]}); "
                             "store them for this run's images and protocol")

    def _load(self, epoch: int) -> torch.Tensor:
        path = self._file(epoch)
        data = path.read_bytes()
        if bytes_digest(data) != self.meta["sha256"].get(str(epoch)):
            raise StoredLabelsError(f"{path}: does not match its sha256 in {META}: the file is damaged or edited")
        try:
            tensors = safetensors.torch.load(data)
        except Exception as e:  # safetensors' own error type
            raise StoredLabelsError(f"{path}: not a readable safetensors file ({e})") from e
        expected = torch.cat(epoch_order(self.meta["num_images"], self.batch_size, self.seed, epoch)).to(torch.int32)
        if not torch.equal(tensors["order"], expected):
            raise StoredLabelsError(f"{path}: the recorded data order differs from this run's; the stored views are "
                                    "not the ones being trained on")
        return decompress_logits(tensors, self.num_classes, self.compression.fill)

    def label(self, views: torch.Tensor, *, epoch: int | None = None, step: int | None = None) -> torch.Tensor:
        """The stored logits of batch ``step`` of stored epoch ``epoch`` (see :meth:`view_epoch`): ``(B, C)``
        float32 on the views' device, reconstructed as the compression says.

        Raises:
            ValueError: no ``epoch``/``step``, an epoch whose labels were pruned, or a batch of another size.
            StoredLabelsError: a damaged or edited epoch file, or one whose recorded data order differs from the
                run's (the views would not be the labelled ones).
        """
        if epoch is None or step is None or epoch not in self.kept:
            raise ValueError(f"stored labels are read by a stored `epoch` (one of {self.kept[:8]}...) and `step`; got "
                             f"{epoch}, {step}: ask view_epoch(epoch) which stored epoch a run epoch uses")
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, self._load(epoch))
        logits = self._epoch[1][step * self.batch_size:(step + 1) * self.batch_size]
        if logits.shape[0] != views.shape[0]:
            raise ValueError(f"batch {step} of epoch {epoch} has {views.shape[0]} views but {logits.shape[0]} stored "
                             "labels")
        return logits.to(views.device, torch.float32)

    def __repr__(self) -> str:
        return (f"StoredSoftLabels({self.directory}, epochs={self.epochs} ({len(self.kept)} stored), "
                f"batch_size={self.batch_size}, {self.compression}, {self.nbytes:,} bytes)")
