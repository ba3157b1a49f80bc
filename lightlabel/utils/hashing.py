"""Fingerprints and file headers, written once: sha256 of JSON-able settings, of tensors and of bytes, and the JSON
header of a safetensors file.

Every cache, resume state and file checksum in lightlabel is named by one of these, so a cache is never reused
for other data or settings, and the same inputs give the same name on every machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["bytes_digest", "file_digest", "json_digest", "safetensors_header", "tensor_digest", "tensors_digest"]


def json_digest(obj: Any) -> str:
    """sha256 (hex) of ``obj`` as JSON with sorted keys (anything else as its ``str``): settings, parts of a key.

    Example:
        >>> json_digest({"b": 1, "a": [2, 3]}) == json_digest({"a": [2, 3], "b": 1})
        True
    """
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def tensor_digest(tensor: torch.Tensor) -> str:
    """sha256 (hex) of a tensor's bytes in C order (its values, not its dtype or shape): images, stacked weights."""
    return bytes_digest(tensor.detach().cpu().contiguous().numpy().tobytes())


def bytes_digest(data: bytes) -> str:
    """sha256 (hex) of bytes: a written file's checksum, a list of ids joined into text."""
    return hashlib.sha256(data).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes (read whole). Raises ``OSError`` when it cannot be read."""
    with open(path, "rb") as f:
        return bytes_digest(f.read())


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 (hex) of named tensors: for each name in sorted order, ``[name, dtype, shape]`` as JSON, then the
    tensor's bytes in C order. The checksum in adapter and factorised-set headers, and a module's
    :func:`~lightlabel.core.base.fingerprint` (of its state dict); any changed name, dtype, shape or value changes it.

    Example:
        >>> a = {"w": torch.zeros(2, 3), "b": torch.ones(3)}
        >>> tensors_digest(a) == tensors_digest(dict(reversed(a.items())))
        True
        >>> tensors_digest(a) == tensors_digest({"w": torch.zeros(3, 2), "b": torch.ones(3)})
        False
    """
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(json.dumps([key, str(t.dtype), list(t.shape)]).encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def safetensors_header(data: bytes) -> tuple[dict[str, Any], int] | None:
    """``(JSON header, header length)`` of safetensors bytes (or their first bytes: only the header is read), or
    ``None`` when the bytes are too short, the length prefix points past them, or the header is not a JSON object.
    The header's ``"__metadata__"`` holds the file's str -> str metadata."""
    if len(data) < 8:
        return None
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        return None
    try:
        header = json.loads(data[8:8 + length])
    except (ValueError, UnicodeDecodeError):
        return None
    return (header, length) if isinstance(header, dict) else None
