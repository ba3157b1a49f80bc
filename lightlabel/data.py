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
from pathlib import Path

from ._io import atomic_write_text

__all__ = ["default_data_root", "extract_image_folder"]

logger = logging.getLogger(__name__)

_MARKER = ".lightlabel-extracted"


def default_data_root() -> Path | None:
    """The folder of real data shipped beside a checkout (``shared/data``), or ``None``.

    Looks at ``$LIGHTLABEL_DATA``, then ``shared/data`` in the current folder and its parents, then beside this
    package's source tree, then the project workspace ``/work/shared/data``.
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
    workspace = Path("/work/shared/data")
    return workspace if (workspace / "README.md").is_file() else None


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
        ``dest`` (already complete folders are returned without re-extracting).

    Raises:
        FileNotFoundError: no archive.
        ValueError: nothing matched ``split``/``classes``.
    """
    archive, dest = Path(archive), Path(dest)
    marker = dest / _MARKER
    key = f"{archive.name} split={split} per_class={per_class} classes={classes}"
    if marker.is_file() and marker.read_text() == key:
        return dest
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    if dest.exists():
        shutil.rmtree(dest)
    counts: dict[str, int] = {}
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
            (dest / cls).mkdir(parents=True, exist_ok=True)
            with open(dest / cls / name, "wb") as out:
                shutil.copyfileobj(src, out)
            counts[cls] = counts.get(cls, 0) + 1
    if not counts:
        raise ValueError(f"no images in {archive} matched split={split!r}, classes={classes!r}")
    atomic_write_text(marker, key)
    logger.info("extracted %d images of %d classes from %s to %s", sum(counts.values()), len(counts), archive, dest)
    return dest
