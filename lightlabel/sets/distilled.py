"""Distilled images as a dataset and a folder: :class:`DistilledSet`.

RDED-selected (and optionally Eq. 7-refined) images, or a random subset of real images, with their class indices
and provenance; saved as an ImageFolder of lossless PNGs plus a ``manifest.json`` holding every file's sha256, so a
set is checked when it is read. :func:`lightlabel.distill_images` and :func:`lightlabel.random_subset` build one;
it implements :class:`~lightlabel.TrainingSet`.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from ..data import decode_rgb
from ..utils.hashing import bytes_digest, file_digest, tensor_digest
from ..version import __version__

__all__ = ["MANIFEST", "SAVE_LAYOUTS", "DistilledSet"]

MANIFEST = "manifest.json"
#: folder layouts of a saved set (see DistilledSet.save)
SAVE_LAYOUTS: tuple[str, ...] = ("names", "rded")
_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _png_bytes(image: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _folder_names(classes: Sequence[str]) -> list[str]:
    if all(_SAFE.match(c) for c in classes) and list(classes) == sorted(classes):
        return list(classes)
    return [f"{i:04d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', c)[:60]}" for i, c in enumerate(classes)]


def _check_labels(labels: torch.Tensor, classes: list[str]) -> None:
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"`classes` must be distinct class names, one per class index, got {classes[:10]}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"`labels` must be integer class indices, got {labels.dtype}")
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < len(classes)):
        raise ValueError(f"`labels` must be class indices in [0, {len(classes)}) for {len(classes)} classes, got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")


def _check_grid(images: torch.Tensor, patches_per_image: Any) -> None:
    side = math.isqrt(patches_per_image) if isinstance(patches_per_image, int) and patches_per_image >= 1 else 0
    if isinstance(patches_per_image, bool) or side * side != patches_per_image:
        raise ValueError(f"manifest `patches_per_image` must be a perfect square (1, 4, 9, ...), got "
                         f"{patches_per_image!r}")
    if images.shape[-1] % side or images.shape[-2] % side:
        raise ValueError(f"{tuple(images.shape[-2:])} images do not split into the {side} x {side} grid of manifest "
                         f"`patches_per_image` = {patches_per_image}")


class DistilledSet(Dataset):
    """Distilled images and their class indices, with provenance.

    Args:
        images: ``(N, 3, H, W)`` uint8 RGB.
        labels: ``(N,)`` int64 class indices.
        classes: class names in index order.
        sources: for each image, the ids of the source images of its patches (row-major grid order).
        manifest: settings and provenance (ipc, observer, seed, timings, ...).
        transform: optional callable applied to each ``(3, H, W)`` uint8 image in ``__getitem__``.

    Returns (``__getitem__``): ``(image, label)``.

    Raises:
        ValueError: mismatched shapes or lengths; labels that are not integers or fall outside
            ``[0, len(classes))``; empty or repeated class names; a manifest ``patches_per_image`` that is not a
            perfect square or whose grid does not divide the images.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                 sources: Sequence[Sequence[str]], manifest: dict[str, Any] | None = None, transform=None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"`images` must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],) or len(sources) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {tuple(labels.shape)} labels and {len(sources)} sources")
        _check_labels(labels, list(classes))
        _check_grid(images, dict(manifest or {}).get("patches_per_image", 1))
        self.images, self.labels, self.classes = images, labels.long(), list(classes)
        self.targets = self.labels.tolist()
        self.sources = [list(s) for s in sources]
        self.manifest = dict(manifest or {})
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        image = self.images[index]
        return (self.transform(image) if self.transform is not None else image), self.targets[index]

    @property
    def ipc(self) -> int:
        """Images per class."""
        return self.manifest.get("ipc", len(self) // max(len(self.classes), 1))

    # the student's view of a training set (shared with FactorizedSet)
    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def num_epoch_images(self) -> int:
        """Images per student epoch: all of them."""
        return len(self)

    @property
    def patches_per_side(self) -> int:
        """``f``: patches per side of an image (its manifest's ``patches_per_image``; 1 for whole images)."""
        return max(1, math.isqrt(int(self.manifest.get("patches_per_image", 1))))

    @property
    def hallucinated(self) -> bool:
        return False

    @property
    def fingerprint(self) -> str:
        """sha256 of the uint8 images (ties stored labels and resume states to them)."""
        return tensor_digest(self.images)

    def epoch_images(self, seed: int, epoch: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The images of every epoch: ``(N, 3, S, S)`` uint8 (the same each epoch), on ``device``.

        A copy per call when the images are elsewhere: a run of many epochs moves them once, with
        :meth:`to_device`, and asks that set (as :func:`~lightlabel.train_student` does).
        """
        return self.images if device is None else self.images.to(device)

    def to_device(self, device: torch.device | str) -> DistilledSet:
        """The set with its images on ``device`` for a run's epochs, so :meth:`epoch_images` moves nothing.

        ``self`` when the images are there already, else a shallow copy holding the images copied to ``device``
        (labels, classes, sources and manifest shared); ``self`` never moves. :attr:`fingerprint`, :meth:`save`
        and :attr:`storage_nbytes` read CPU images: ask the original set for them.

        Args:
            device: where the images should live.

        Returns:
            A :class:`DistilledSet` whose ``images`` are on ``device``.
        """
        device = torch.device(device)
        if self.images.device == device:
            return self
        out = copy.copy(self)
        out.images = self.images.to(device)
        return out

    @property
    def storage_nbytes(self) -> int:
        """Bytes of the images as lossless PNG files (what :meth:`save` writes, manifest excluded)."""
        if "_png_nbytes" not in self.__dict__:
            self._png_nbytes = sum(len(_png_bytes(img)) for img in self.images)
        return self._png_nbytes

    def save(self, directory: str | os.PathLike, *, layout: str = "names") -> Path:
        """Write an ImageFolder of PNGs plus ``manifest.json``, atomically.

        Everything is written into a temporary sibling folder, the manifest last, and the folder is then renamed
        into place (an existing set is replaced only after the new one is complete).

        Args:
            directory: the set's folder.
            layout: ``"names"`` (default): class folders are the class names when those are file-system safe and
                already sorted, otherwise ``NNNN-name``; ``"rded"``: RDED's layout, folders ``00000``, ``00001``, ...
                and files ``class00000_id00000.png``, plus ``classes.txt`` (the class names, one per line, in index
                order). Either way ``torchvision.datasets.ImageFolder`` (which RDED and DD-Ranking use) assigns the
                same label indices as :attr:`labels`, and :meth:`load` reads it back.

        Returns:
            ``directory``.

        Raises:
            ValueError: an unknown ``layout``.
        """
        if layout not in SAVE_LAYOUTS:
            raise ValueError(f"`layout` must be one of {list(SAVE_LAYOUTS)}, got {layout!r}")
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        rded = layout == "rded"
        folders = [f"{c:05d}" for c in range(len(self.classes))] if rded else _folder_names(self.classes)
        files, hashes, total = [], [], 0
        try:
            counters = [0] * len(self.classes)
            for image, label in zip(self.images, self.targets):
                name = f"class{label:05d}_id{counters[label]:05d}.png" if rded else f"{counters[label]:05d}.png"
                rel = f"{folders[label]}/{name}"
                counters[label] += 1
                data = _png_bytes(image)
                (tmp / folders[label]).mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_bytes(data)
                files.append(rel)
                hashes.append(bytes_digest(data))
                total += len(data)
            if rded:
                (tmp / "classes.txt").write_text("\n".join(self.classes) + "\n")
            manifest = {**self.manifest, "format": "lightlabel-distilled", "lightlabel_version": __version__,
                        "layout": layout,
                        "classes": self.classes, "class_folders": folders, "files": files, "sha256": hashes,
                        "labels": self.targets, "sources": self.sources, "storage_bytes": total,
                        "image_shape": list(self.images.shape[1:])}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            old = directory.parent / f".{directory.name}.old-{os.getpid()}"
            if directory.exists():
                os.replace(directory, old)
            os.replace(tmp, directory)
            if old.exists():
                shutil.rmtree(old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._png_nbytes = total
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, transform=None) -> DistilledSet:
        """Read a set written by :meth:`save`, checking every file against the manifest's sha256.

        Raises:
            FileNotFoundError: no ``manifest.json`` (not a distilled set, or one whose writing never finished).
            ValueError: a missing, extra or modified image file, or a malformed manifest.
        """
        directory = Path(directory)
        path = directory / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{directory} is not a complete distilled set (no {MANIFEST})")
        try:
            manifest = json.loads(path.read_text())
            files, hashes, labels = manifest["files"], manifest["sha256"], manifest["labels"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: malformed manifest ({e})") from e
        if manifest.get("format") != "lightlabel-distilled" or not len(files) == len(hashes) == len(labels):
            raise ValueError(f"{path}: not a lightlabel distilled-set manifest")
        images = []
        for rel, digest in zip(files, hashes):
            file = directory / rel
            if not file.is_file():
                raise ValueError(f"{directory}: image {rel} listed in the manifest is missing")
            if file_digest(file) != digest:
                raise ValueError(f"{directory}: image {rel} does not match its sha256 in the manifest (modified)")
            images.append(decode_rgb(file))
        keep = {k: v for k, v in manifest.items() if k not in ("files", "sha256", "labels", "sources", "layout")}
        out = cls(torch.stack(images), torch.tensor(labels), manifest["classes"], manifest["sources"], keep, transform)
        out._png_nbytes = manifest.get("storage_bytes")
        return out

    def with_transform(self, transform) -> DistilledSet:
        """The same images with another per-image transform."""
        out = DistilledSet(self.images, self.labels, self.classes, self.sources, self.manifest, transform)
        return out

    def __repr__(self) -> str:
        return (f"DistilledSet(images={len(self)}, classes={len(self.classes)}, ipc={self.ipc}, "
                f"size={tuple(self.images.shape[-2:])})")
