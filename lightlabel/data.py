"""Datasets: ImageFolder archives, the shared real data, and turning user datasets into tensors.

``extract_image_folder`` extracts an ImageFolder-layout ``.tar.gz`` (``<split>/<class>/<file>``), or a
per-class subset of it, safely (member paths are never trusted) and idempotently (a marker file is written
last, so a half-extracted folder is never mistaken for a complete one).
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .utils.files import atomic_path, atomic_write_text, cache_root
from .utils.hashing import json_digest
from .utils.progress import progress_bar
from .utils.seeding import derive_seed

__all__ = [
    "ImageFolderDataset",
    "TensorImageDataset",
    "TransformedDataset",
    "as_dataset",
    "class_names_and_targets",
    "dataset_classes",
    "dataset_targets",
    "default_data_root",
    "eval_transform",
    "extract_image_folder",
    "image_size_of",
    "load_cifar10",
    "load_image_folder",
    "train_transform",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def decode_rgb(path: str | os.PathLike) -> torch.Tensor:
    """Decode an image file as RGB (grayscale, palette, CMYK and RGBA are converted): ``(3, H, W)`` uint8.

    Raises:
        OSError, ValueError: Pillow cannot read the file (truncated, corrupt, not an image).
    """
    with Image.open(path) as img:
        img.load()
        return v2.functional.pil_to_tensor(img.convert("RGB"))

logger = logging.getLogger(__name__)

_MARKER = ".lightlabel-extracted"


def _fingerprint(parts: object) -> str:
    return json_digest(parts)


def default_data_root() -> Path | None:
    """The folder of real data shipped beside a checkout (``shared/data``), or ``None``.

    Looks at ``$LIGHTLABEL_DATA``, then for a ``shared/data`` folder (holding a ``README.md``) in the current folder
    and its parents, then beside this package's source tree and its parents (a checkout whose ``shared/`` sits
    next to it). No other path is ever consulted.
    """
    env = os.environ.get("LIGHTLABEL_DATA")
    if env:
        return Path(env) if Path(env).is_dir() else None
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "data"
            if (candidate / "README.md").is_file():
                return candidate
    return None


def extract_image_folder(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    split: str | None = None,
    per_class: int | None = None,
    classes: list[str] | None = None,
) -> Path:
    """Extract an ImageFolder tarball (or the first ``per_class`` images of each class) to ``dest/<class>/``.

    Args:
        archive: a ``.tar.gz`` whose image members are ``.../<split>/<class>/<file>``.
        dest: output folder; it receives one sub-folder per class.
        split: only members with this path component (e.g. ``"train"``, ``"val"``); ``None`` takes all.
        per_class: at most this many images per class, in archive order (deterministic).
        classes: only these class folder names.

    Returns:
        ``dest`` (already complete folders are returned without re-extracting). The images are extracted into a
        private sibling folder that replaces ``dest`` only when complete: an interrupted or failed extraction leaves
        an existing ``dest`` as it was, and concurrent extractions of one archive do not disturb each other.

    Raises:
        FileNotFoundError: no archive.
        ValueError: nothing matched ``split``/``classes``.
    """
    archive, dest = Path(archive), Path(dest)
    marker = dest / _MARKER
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    stat = archive.stat()  # the marker carries the archive's identity: another archive is extracted afresh
    key = f"{archive.resolve()} bytes={stat.st_size} mtime_ns={stat.st_mtime_ns} split={split} per_class={per_class} classes={classes}"
    if marker.is_file() and marker.read_text() == key:
        return dest
    # Extract into a private sibling folder and swap it in at the end, so that an interrupted extraction never
    # leaves a half-filled ``dest`` and two processes extracting the same archive never delete each other's files.
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extracting-", dir=dest.parent))
    counts: dict[str, int] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if not member.isfile() or len(parts) < 2 or (split is not None and split not in parts[:-2]):
                    continue
                cls, name = parts[-2], parts[-1]
                if name.startswith(".") or (classes is not None and cls not in classes):
                    continue
                if per_class is not None and counts.get(cls, 0) >= per_class:
                    continue
                src = tar.extractfile(member)
                if src is None:
                    continue
                (work / cls).mkdir(parents=True, exist_ok=True)
                with open(work / cls / name, "wb") as out:
                    shutil.copyfileobj(src, out)
                counts[cls] = counts.get(cls, 0) + 1
        if not counts:
            raise ValueError(f"archive: no images in {archive} matched split={split!r}, classes={classes!r}")
        atomic_write_text(work / _MARKER, key)
        if marker.is_file() and marker.read_text() == key:  # another process finished the same extraction first
            shutil.rmtree(work, ignore_errors=True)
            return dest
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / "data")
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(work, dest)
        except OSError:  # another process swapped in its copy between our check and our rename
            if not (marker.is_file() and marker.read_text() == key):
                raise
            return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("extracted %d images of %d classes from %s to %s", sum(counts.values()), len(counts), archive, dest)
    return dest


class TensorImageDataset(Dataset):
    """Decoded images held in memory as one uint8 tensor, with labels and class names.

    Args:
        images: ``(N, 3, H, W)`` uint8 RGB.
        labels: ``(N,)`` int64 class indices in ``[0, len(classes))``.
        classes: class names in index order.
        transform: optional callable applied to each ``(3, H, W)`` uint8 image.
        ids: optional per-image identifiers (e.g. file paths relative to the root).

    Returns (``__getitem__``):
        ``(image, label)``: the (transformed) image and an int.

    Raises:
        ValueError: mismatched lengths, a non-uint8 or non-RGB tensor, or labels out of range.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                 transform: Callable | None = None, ids: Sequence[str] | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"`images` must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if labels.shape != (images.shape[0],):
            raise ValueError(f"`labels` must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(f"`labels` must be in [0, {len(classes)}), got [{int(labels.min())}, {int(labels.max())}]")
        if ids is not None and len(ids) != images.shape[0]:
            raise ValueError(f"`ids` must have {images.shape[0]} entries, got {len(ids)}")
        self.images, self.labels, self.classes = images, labels, list(classes)
        self.targets = labels.tolist()
        self.transform = transform
        self.ids = list(ids) if ids is not None else [str(i) for i in range(images.shape[0])]
        self.skipped: list[str] = []  # files load_image_folder could not decode
        self.origin = ""  # where the images came from, for messages (see load_cifar10)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        image = self.images[index]
        return (self.transform(image) if self.transform is not None else image), self.targets[index]

    def with_transform(self, transform: Callable | None) -> TensorImageDataset:
        """The same images (shared memory) with another transform."""
        return TensorImageDataset(self.images, self.labels, self.classes, transform, self.ids)

    def subset(self, indices: Sequence[int]) -> TensorImageDataset:
        """A new dataset of the given indices (same classes and transform)."""
        idx = torch.as_tensor(list(indices), dtype=torch.int64)
        return TensorImageDataset(self.images[idx], self.labels[idx], self.classes, self.transform,
                                  [self.ids[i] for i in idx.tolist()])


def load_image_folder(
    root: str | os.PathLike,
    *,
    size: int | None = None,
    on_error: str = "skip",
    allow_empty: bool = False,
    cache: str | os.PathLike | None = None,
    progress: bool = True,
) -> TensorImageDataset:
    """Decode an ImageFolder (``root/<class>/<image>``) into memory as uint8 RGB tensors.

    Grayscale, palette and RGBA files are converted to RGB. With ``size``, each image is resized so its shorter
    side is ``size`` (antialiased) and center-cropped to ``size x size``; without it all images must share one
    size.

    Args:
        root: the ImageFolder root; class names are the sorted sub-folder names (as ``torchvision``'s
            ``ImageFolder``).
        size: output side in pixels, or ``None`` to keep the files' size.
        on_error: ``"skip"`` unreadable or undecodable files (their count and names are logged as a warning) or
            ``"raise"`` on the first one.
        allow_empty: keep classes whose folder holds no image (otherwise an error).
        cache: optional ``.pt`` file: loaded if it exists and was made from the same files (names and sizes) and
            settings, written (atomically) after decoding otherwise.
        progress: show a progress bar.

    Returns:
        A :class:`TensorImageDataset` with ``ids`` = paths relative to ``root``.

    Raises:
        FileNotFoundError: ``root`` is not a folder or has no class folders.
        ValueError: empty class folders (names listed), unreadable files with ``on_error="raise"``, mixed sizes
            without ``size``, or a bad ``on_error``.
    """
    _check_on_error(on_error)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"{root} has no class sub-folders (expected root/<class>/<image>)")
    files = [(c, i, f) for i, c in enumerate(classes) for f in sorted((root / c).iterdir())
             if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
    key = _fingerprint([size, on_error] + [(f"{c}/{f.name}", f.stat().st_size) for c, _, f in files])
    if cache is not None and Path(cache).is_file():
        blob = torch.load(cache, weights_only=True)
        if blob.get("fingerprint") == key:
            return TensorImageDataset(blob["images"], blob["labels"], blob["classes"], ids=blob["ids"])
        logger.info("decoded-image cache %s was made from other files or settings: decoding %s again", cache, root)
    empty = [c for c in classes if not any(fc == c for fc, _, _ in files)]
    if empty and not allow_empty:
        raise _empty_classes_error(root, empty)
    images, labels, ids, failed = [], [], [], []
    resize = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)]) if size else None
    for cls, label, path in progress_bar(files, desc=f"decoding {root.name}", disable=not progress):
        try:
            img = decode_rgb(path)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            if on_error == "raise":
                raise ValueError(f"cannot decode image {path}: {e}") from e
            failed.append(str(path.relative_to(root)))
            continue
        images.append(resize(img) if resize is not None else img)
        labels.append(label)
        ids.append(f"{cls}/{path.name}")
    if failed:
        logger.warning("skipped %d unreadable image files in %s: %s", len(failed), root, failed[:10])
    if not images:
        raise ValueError(f"{root}: no readable images")
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise ValueError(f"{root}: images have different sizes {sorted(shapes)[:4]}...; pass `size=`")
    dataset = TensorImageDataset(torch.stack(images), torch.tensor(labels), classes, ids=ids)
    dataset.skipped = failed
    if cache is not None:
        with atomic_path(cache) as tmp:
            torch.save({"images": dataset.images, "labels": dataset.labels, "classes": classes, "ids": ids,
                        "fingerprint": key}, tmp)
    return dataset


def _empty_classes_error(root: Path, empty: list[str]) -> ValueError:
    """The error for class folders without images; when they hold class folders themselves (``root/train/<class>``),
    it names the folder to pass instead."""
    nested = [c for c in empty if any(d.is_dir() and any(f.suffix.lower() in IMAGE_EXTENSIONS for f in d.iterdir())
                                      for d in (root / c).iterdir())]
    hint = (f"; {nested[:3]} hold class folders themselves: pass one of them as the image folder, e.g. "
            f"{root / ('train' if 'train' in nested else nested[0])}" if nested else "")
    return ValueError(f"{root}: class folders without images: {empty[:10]} (pass allow_empty=True to keep them)"
                      f"{hint}")


class ImageFolderDataset(Dataset):
    """A lazily decoded ImageFolder (``root/<class>/<image>``) that tolerates bad files.

    Images are decoded as RGB (grayscale, palette and RGBA files are converted) into ``(3, H, W)`` uint8 tensors.

    Args:
        root: the folder; classes are the sorted sub-folder names.
        transform: optional callable applied to each decoded image.
        on_error: ``"skip"``: an unreadable file is replaced by the next readable one (deterministically) and
            logged with a running count; ``"raise"``: a ``ValueError`` naming the file.
        allow_empty: keep class folders without images (otherwise a ``ValueError`` lists them).

    Raises:
        FileNotFoundError: ``root`` is missing or has no class folders.
        ValueError: empty class folders, a bad ``on_error``.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None, *, on_error: str = "skip",
                 allow_empty: bool = False) -> None:
        _check_on_error(on_error)
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder not found: {root}")
        self.classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not self.classes:
            raise FileNotFoundError(f"{root} has no class sub-folders (expected root/<class>/<image>)")
        self.samples = [(str(f), i) for i, c in enumerate(self.classes) for f in sorted((root / c).iterdir())
                        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
        empty = sorted(set(self.classes) - {self.classes[t] for _, t in self.samples})
        if empty and not allow_empty:
            raise _empty_classes_error(root, empty)
        if not self.samples:
            raise ValueError(f"{root}: no image files")
        self.root, self.transform, self.on_error = root, transform, on_error
        self.targets = [t for _, t in self.samples]
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        for attempt in range(len(self.samples)):
            path, target = self.samples[(index + attempt) % len(self.samples)]
            try:
                image = decode_rgb(path)
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                if self.on_error == "raise":
                    raise ValueError(f"cannot decode image {path}: {e}") from e
                self.skipped += 1
                logger.warning("skipping unreadable image %s (%d skipped so far in this process)", path, self.skipped)
                continue
            return (self.transform(image) if self.transform is not None else image), target
        raise ValueError(f"{self.root}: no readable image at all")


def as_dataset(data: Dataset | str | os.PathLike, *, on_error: str = "skip") -> Dataset:
    """A map-style dataset from a dataset (returned as is) or an ImageFolder path (:class:`ImageFolderDataset`).

    Raises:
        TypeError: neither a path nor an object with ``__getitem__`` and ``__len__``.
        ValueError: an ``on_error`` other than ``"skip"`` or ``"raise"`` (checked for datasets too, where it has no
            effect, so that a typo is not ignored until a path is passed).
    """
    _check_on_error(on_error)
    if isinstance(data, (str, os.PathLike)):
        return ImageFolderDataset(data, on_error=on_error)
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise TypeError(f"expected a map-style dataset or an ImageFolder path, got {type(data).__name__}")
    return data


def dataset_classes(dataset: Dataset) -> list[str] | None:
    """``dataset.classes`` (looking through ``torch.utils.data.Subset``), or ``None``."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    return list(classes) if classes is not None else None


def dataset_targets(dataset: Dataset) -> list[int]:
    """Integer labels of every sample (``targets`` attribute when present, else by reading the samples)."""
    if isinstance(dataset, torch.utils.data.Subset):
        parent = dataset_targets(dataset.dataset)
        return [parent[i] for i in dataset.indices]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(t) for t in targets]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def _check_on_error(on_error: str) -> None:
    if on_error not in ("skip", "raise"):
        raise ValueError(f"`on_error` must be 'skip' or 'raise', got {on_error!r}")


def class_names_and_targets(dataset: Dataset, class_names: Sequence[str] | None) -> tuple[list[str], torch.Tensor]:
    """The class names (``class_names``, else ``dataset.classes``) and every sample's label, checked to agree.

    Returns:
        ``(classes, targets)``: ``targets`` is an int64 ``(N,)`` tensor with every label in ``[0, len(classes))``.

    Raises:
        ValueError: no class names (neither given nor on the dataset), or a label outside ``[0, len(classes))``
            (``class_names`` shorter than the labels need): a set built on them would silently lose those samples.
            Fewer labels than names is allowed (a pool without some classes); a class with too few samples is the
            caller's error to raise.
    """
    classes = list(class_names) if class_names is not None else dataset_classes(dataset)
    if not classes:
        raise ValueError("the dataset has no `classes` attribute; pass `class_names`")
    targets = torch.as_tensor(dataset_targets(dataset), dtype=torch.int64)
    outside = targets[(targets < 0) | (targets >= len(classes))]
    if len(outside):
        raise ValueError(f"the dataset has labels outside [0, {len(classes)}) for its {len(classes)} class names: "
                         f"{sorted(set(outside.tolist()))[:5]}")
    return classes, targets


def image_size_of(dataset: Dataset) -> int:
    """Side length of the first image (PIL or tensor), for datasets of square images."""
    image = dataset[0][0]
    h, w = v2.functional.get_size(image)
    return int(min(h, w))


def train_transform(size: int, *, low_res: bool | None = None) -> v2.Compose:
    """The standard training augmentation, for PIL images or uint8/float tensors, giving float32 in [0, 1].

    ``low_res`` (default: ``size <= 64``): ``RandomCrop(size, padding=size // 8)`` + flip (CIFAR style);
    otherwise ``RandomResizedCrop(size)`` + flip (ImageNet style). Normalisation is left to the consumer.

    Shape: any image -> ``(3, size, size)`` float32.
    """
    low_res = size <= 64 if low_res is None else low_res
    crop = (v2.Compose([v2.Resize(size, antialias=True), v2.RandomCrop(size, padding=size // 8, padding_mode="reflect")])
            if low_res else v2.RandomResizedCrop(size, antialias=True))
    return v2.Compose([v2.ToImage(), v2.RGB(), crop, v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)])


def eval_transform(size: int) -> v2.Compose:
    """Resize the shorter side to ``size``, center-crop, float32 in [0, 1]. Shape: any -> ``(3, size, size)``."""
    return v2.Compose([v2.ToImage(), v2.RGB(), v2.Resize(size, antialias=True), v2.CenterCrop(size),
                       v2.ToDtype(torch.float32, scale=True)])


class TransformedDataset(Dataset):
    """``(transform(image), int(label))`` over any map-style dataset.

    With a ``seed``, the random transform of sample ``i`` in epoch ``e`` (see :meth:`set_epoch`) is drawn after
    seeding torch's RNG from ``(seed, e, i)`` alone, so it is the same whatever the process, rank, worker or
    order that loads it (exact resumption, and DDP runs equal to single-process ones).
    """

    def __init__(self, dataset: Dataset, transform: Callable, seed: int | None = None) -> None:
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        if self.seed is not None:
            torch.manual_seed(derive_seed(self.seed, self.epoch, int(index)))
        return self.transform(image), int(label)


#: CIFAR-10's classes in label-index order (torchvision's and the ImageFolder copies' order).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: seconds a CIFAR-10 download may stall before it counts as "no network"
DOWNLOAD_TIMEOUT_S = 30


def _first_per_class(dataset: TensorImageDataset, per_class: int | None) -> TensorImageDataset:
    if per_class is None:
        return dataset
    keep = [i for c in range(len(dataset.classes)) for i in
            [j for j, t in enumerate(dataset.targets) if t == c][:per_class]]
    return dataset.subset(keep)


def _split_folder(root: Path, split: str) -> Path | None:
    """``root`` itself when it holds class folders of images, else ``root/<split>`` (``test`` and ``val`` stand in for
    each other), else ``None``."""
    names = [split] + {"test": ["val"], "val": ["test"]}.get(split, [])
    for name in names:
        if (root / name).is_dir():
            return root / name
    has_images = any(f.suffix.lower() in IMAGE_EXTENSIONS for d in root.iterdir() if d.is_dir() for f in d.iterdir())
    return root if has_images else None


def load_cifar10(split: str = "train", *, data: str | os.PathLike | None = None, per_class: int | None = None,
                 download: bool = True, progress: bool = True) -> TensorImageDataset:
    """CIFAR-10 as uint8 ``(N, 3, 32, 32)`` images, from the first source that has it.

    Sources, in order (the returned dataset's ``origin`` attribute says which was used):

    1. ``data``: an ImageFolder (``data/<class>/<image>``) or a root holding ``data/<split>/<class>/<image>``
       (``test`` and ``val`` stand in for each other);
    2. ``$LIGHTLABEL_DATA`` or a ``shared/data`` folder beside the checkout (:func:`default_data_root`), whose
       ``cifar10/<split>.tar.gz`` is extracted into the cache folder;
    3. with ``download``, torchvision's CIFAR-10 download into ``<cache>/datasets`` (30 s stall limit).

    Args:
        split: ``"train"`` or ``"test"`` (``"val"`` is accepted for ``"test"``).
        data: an ImageFolder of your own (source 1).
        per_class: keep the first ``per_class`` images of each class (in file or archive order).
        download: allow source 3.
        progress: progress bars while decoding.

    Returns:
        A :class:`TensorImageDataset`; class names in CIFAR-10's order for sources 2 and 3, the folder names for 1.

    Raises:
        ValueError: an unknown ``split``.
        FileNotFoundError: ``data`` is not a folder of images, or no source has the data (one message naming the
            three and the cache folder).
    """
    if split not in ("train", "test", "val"):
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}")
    split = "test" if split == "val" else split
    if data is not None:
        root = Path(data)
        folder = _split_folder(root, split) if root.is_dir() else None
        if folder is None:
            raise FileNotFoundError(f"`data` {root} is not an ImageFolder (root/<class>/<image>) nor a folder holding "
                                    f"{split}/<class>/<image>")
        dataset = _first_per_class(load_image_folder(folder, progress=progress), per_class)
        dataset.origin = f"ImageFolder {folder}"
        return dataset
    shared = default_data_root()
    archive = shared / "cifar10" / f"{split}.tar.gz" if shared is not None else None
    if archive is not None and archive.is_file():
        dest = cache_root() / "datasets" / f"cifar10-{split}-{_fingerprint([str(archive), per_class])[:12]}"
        folder = extract_image_folder(archive, dest, split=split, per_class=per_class)
        dataset = load_image_folder(folder, progress=progress)
        dataset.origin = f"shared data {archive}"
        return dataset
    if not download:
        raise FileNotFoundError(_no_cifar10("downloads are off"))
    raw = _download_cifar10(split)
    dataset = _first_per_class(raw, per_class)
    dataset.origin = raw.origin
    return dataset


def _no_cifar10(reason: str) -> str:
    return (f"no CIFAR-10 ({reason}). Give it one of: (1) an ImageFolder of your own (`data=` / `--data DIR`); "
            f"(2) LIGHTLABEL_DATA or a shared/data folder beside the checkout (with cifar10/train.tar.gz and "
            f"cifar10/test.tar.gz); (3) a network connection, to download CIFAR-10 into {cache_root() / 'datasets'}")


def _download_cifar10(split: str) -> TensorImageDataset:
    import socket

    from torchvision.datasets import CIFAR10

    root = cache_root() / "datasets"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # offline or firewalled: fail within seconds, never hang
    try:
        raw = CIFAR10(str(root), train=split == "train", download=True)
    except Exception as e:  # URLError, socket timeouts, HTTP errors, a partial archive: all mean "not available"
        raise FileNotFoundError(_no_cifar10(f"downloading it failed: {type(e).__name__}: {e}")) from None
    finally:
        socket.setdefaulttimeout(previous)
    images = torch.from_numpy(raw.data).permute(0, 3, 1, 2).contiguous()
    dataset = TensorImageDataset(images, torch.tensor(raw.targets), raw.classes)
    dataset.origin = f"torchvision download in {root}"
    return dataset
