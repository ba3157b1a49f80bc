"""Published adapters with their provenance, as torchvision and timm publish weights.

Each entry of the registry names an adapter and says what it is: its base and tag, the dataset and class list,
the teachers it imitates, its label fidelity, the student top-1 it gave under a named protocol, its bytes and
checksum, and the command that made it. An entry either ships inside the package (``path``: works offline) or
lives on the Hugging Face Hub (``repo_id``: downloaded into the Hub cache on first use).
``Projector.from_pretrained(name)`` and ``lightlabel info name`` resolve registry names first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["ADAPTERS", "AdapterEntry", "adapter_entry", "list_adapters"]

ADAPTERS = Path(__file__).resolve().parent.parent / "assets" / "adapters"
REGISTRY = ADAPTERS / "registry.json"


@dataclass(frozen=True)
class AdapterEntry:
    """One published adapter and its provenance.

    Attributes:
        name: the registry name (``"lightlabel/cifar10-proxy-rn"``).
        base, pretrained: the open_clip base and tag the adapter belongs to.
        dataset: the dataset it was fitted on; classes: its class names in label order.
        teachers: the teachers it imitates (what and which checkpoints).
        fidelity: held-out label fidelity after fitting (``agreement``, ``kl``, ``top1``, ``teacher_top1``).
        student: the student top-1 it gave: ``{"top1", "protocol", "images", "seed", ...}``.
        nbytes: the adapter file's size in bytes; sha256: its checksum, checked whenever the entry is resolved
            (the packaged file, or the file downloaded at ``revision``).
        command: the command that made it.
        path: the file inside the package (``None`` for a Hub entry); repo_id: the Hub repo (``None`` if packaged);
            revision: the Hub commit the entry was recorded at (``None``: the repo's ``main``), so that the
            provenance above stays the provenance of the file a user downloads.
    """

    name: str
    base: str
    pretrained: str | None
    dataset: str
    classes: tuple[str, ...]
    teachers: str
    fidelity: dict[str, float] = field(default_factory=dict)
    student: dict[str, Any] = field(default_factory=dict)
    nbytes: int = 0
    sha256: str = ""
    command: str = ""
    path: str | None = None
    repo_id: str | None = None
    revision: str | None = None

    @property
    def packaged(self) -> bool:
        """Whether the adapter ships inside the package (works offline)."""
        return self.path is not None

    def file(self) -> Path | None:
        """The packaged adapter file, or ``None`` for a Hub entry."""
        return ADAPTERS / self.path if self.path else None


@lru_cache(maxsize=1)
def _entries() -> dict[str, AdapterEntry]:
    if not REGISTRY.is_file():
        return {}
    out = {}
    for name, data in json.loads(REGISTRY.read_text()).items():
        out[name] = AdapterEntry(name=name, **{**data, "classes": tuple(data["classes"])})
    return out


def list_adapters() -> list[AdapterEntry]:
    """Every registered adapter, packaged ones first, then by name.

    Example:
        >>> [e.name for e in list_adapters() if e.packaged]
        ['lightlabel/cifar10-proxy-rn']
    """
    return sorted(_entries().values(), key=lambda e: (not e.packaged, e.name))


def adapter_entry(name: str) -> AdapterEntry | None:
    """The registry entry called ``name``, or ``None``."""
    return _entries().get(name)
