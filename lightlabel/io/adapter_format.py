"""The adapter file: one ``.safetensors`` holding only the adapter, with everything needed to check it.

Tensors (nothing of the base model):

- ``image.<weight>.lora_A`` ``[r, fan_in]`` and ``image.<weight>.lora_B`` ``[out, r]`` for each adapted weight;
- ``head.lora_A`` ``[r_h, d]``, ``head.lora_B`` ``[C, r_h]``, ``head.logit_scale`` ``[]``, ``head.bias`` ``[C]``;
- with int8 storage, each factor is int8 with a float32 scale per rank channel ``<key>.qscale`` ``[r]`` (rows of
  ``A``, columns of ``B``).

Header metadata (``str -> str``; JSON where structured): see :meth:`AdapterInfo.to_metadata`. It ends with two
checksums: ``sha256_tensors`` over every tensor's name, dtype, shape and bytes (safetensors does not detect
flipped bits by itself) and ``sha256_metadata`` over every other metadata entry. Reading checks both, the
format name and version, and every field, and raises :class:`~lightlabel.AdapterError` naming the file, what
was expected and what was found.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from ..configs import AdapterConfig
from ..errors import AdapterError
from ..utils.hashing import json_digest, safetensors_header, tensors_digest
from ..utils.quantize import quantize_int8
from ..version import __version__

__all__ = [
    "ADAPTER_FILENAME",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "STORAGE_DTYPES",
    "AdapterInfo",
    "decode_adapter",
    "encode_adapter",
    "read_adapter",
]

FORMAT_NAME = "lightlabel-adapter"
FORMAT_VERSION = 1
#: File name of the adapter inside a directory (``save_pretrained(dir)``, Hub repos).
ADAPTER_FILENAME = "adapter.safetensors"
#: Storage dtypes of the LoRA factors. ``logit_scale`` and ``bias`` are always float32.
STORAGE_DTYPES: tuple[str, ...] = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class AdapterInfo:
    """Everything an adapter file's header records (read back by :func:`read_adapter`).

    Attributes:
        config: ranks, alphas, targets and head mode.
        base_model: open_clip model name (or ``local-dir:``/``hf-hub:`` identifier).
        base_pretrained: open_clip pretrained tag or checkpoint path, ``None`` for a randomly built base.
        base_fingerprint: sha256 (hex) of the base model's state dict, see :func:`lightlabel.base.fingerprint`.
        image_size: ``(H, W)`` in pixels the image tower expects.
        mean, std: per-channel normalisation of the base model (RGB, for pixels in [0, 1]).
        class_names: class names in index order.
        templates: prompt templates, or ``None`` when the head came from precomputed text embeddings.
        text_check: ``[C][3]`` projections of the normalised text embeddings on fixed random unit vectors,
            rounded to 1e-4; detects a different text tower or embedding file on load (tolerance 2e-3).
        lora_weights: names of the adapted weights of the image tower, in order.
        storage_dtype: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        lightlabel_version: version that wrote the file.
        format_version: file format version.
        fit_info: free-form record of how the adapter was fitted (fidelity, accuracy, settings).
    """

    config: AdapterConfig
    base_model: str
    base_pretrained: str | None
    base_fingerprint: str
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    templates: tuple[str, ...] | None
    text_check: tuple[tuple[float, ...], ...]
    lora_weights: tuple[str, ...]
    storage_dtype: str = "fp32"
    lightlabel_version: str = __version__
    format_version: int = FORMAT_VERSION
    fit_info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_metadata(self) -> dict[str, str]:
        """The header metadata, ``str -> str`` (checksums are added by :func:`encode_adapter`)."""
        c = self.config
        return {
            "format": FORMAT_NAME,
            "format_version": str(self.format_version),
            "lightlabel_version": self.lightlabel_version,
            "base_model": self.base_model,
            "base_pretrained": json.dumps(self.base_pretrained),
            "base_fingerprint": self.base_fingerprint,
            "image_size": json.dumps(list(self.image_size)),
            "image_mean": json.dumps(list(self.mean)),
            "image_std": json.dumps(list(self.std)),
            "lora_targets": json.dumps(list(c.targets)),
            "lora_weights": json.dumps(list(self.lora_weights)),
            "image_rank": str(c.image_rank),
            "image_alpha": repr(c.image_alpha),
            "head_rank": str(c.head_rank),
            "head_alpha": repr(c.head_alpha),
            "head_mode": c.head_mode,
            **({"label_size": str(c.label_size)} if c.label_size is not None else {}),
            "class_names": json.dumps(list(self.class_names)),
            "templates": json.dumps(None if self.templates is None else list(self.templates)),
            "text_check": json.dumps([list(row) for row in self.text_check]),
            "storage_dtype": self.storage_dtype,
            "fit_info": json.dumps(dict(self.fit_info), sort_keys=True),
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], source: str = "<adapter>") -> AdapterInfo:
        """Parse and validate header metadata.

        Raises:
            AdapterError: a missing or malformed entry, another format, or a newer format version.
        """
        def get(key: str) -> str:
            if key not in meta:
                raise AdapterError(f"{source}: metadata entry {key!r} is missing (found entries: {sorted(meta)})")
            return meta[key]

        def load_json(key: str, kind: type | tuple[type, ...]) -> Any:
            try:
                value = json.loads(get(key))
            except json.JSONDecodeError as e:
                raise AdapterError(f"{source}: metadata entry {key!r} is not valid JSON: {meta[key][:80]!r}") from e
            if not isinstance(value, kind):
                raise AdapterError(f"{source}: metadata entry {key!r} should be {kind}, found {type(value).__name__}")
            return value

        if get("format") != FORMAT_NAME:
            raise AdapterError(f"{source}: not a lightlabel adapter (format {meta['format']!r}, expected {FORMAT_NAME!r})")
        try:
            version = int(get("format_version"))
        except ValueError as e:
            raise AdapterError(f"{source}: format_version {meta['format_version']!r} is not an integer") from e
        if version > FORMAT_VERSION:
            raise AdapterError(
                f"{source}: adapter format version {version} is newer than this lightlabel {__version__} reads "
                f"(up to {FORMAT_VERSION}); upgrade lightlabel (`pip install -U lightlabel-torch`)"
            )
        if version < 1:
            raise AdapterError(f"{source}: adapter format version {version} is invalid (expected 1..{FORMAT_VERSION})")
        try:
            config = AdapterConfig(
                image_rank=int(get("image_rank")), image_alpha=float(get("image_alpha")),
                head_rank=int(get("head_rank")), head_alpha=float(get("head_alpha")),
                targets=tuple(load_json("lora_targets", list)), head_mode=get("head_mode"),
                label_size=int(meta["label_size"]) if "label_size" in meta else None)
        except (ValueError, TypeError) as e:
            if isinstance(e, AdapterError):
                raise
            raise AdapterError(f"{source}: invalid LoRA configuration in metadata: {e}") from e
        class_names = load_json("class_names", list)
        templates = load_json("templates", (list, type(None)))
        text_check = load_json("text_check", list)
        image_size = load_json("image_size", list)
        mean, std = load_json("image_mean", list), load_json("image_std", list)
        storage_dtype = get("storage_dtype")
        if storage_dtype not in STORAGE_DTYPES:
            raise AdapterError(f"{source}: storage_dtype {storage_dtype!r} is not one of {list(STORAGE_DTYPES)}")
        lora_weights = load_json("lora_weights", list)
        _check_header_values(source, class_names=class_names, text_check=text_check, image_size=image_size,
                             mean=mean, std=std, templates=templates or [], lora_weights=lora_weights)
        return cls(
            config=config,
            base_model=get("base_model"),
            base_pretrained=load_json("base_pretrained", (str, type(None))),
            base_fingerprint=get("base_fingerprint"),
            image_size=(int(image_size[0]), int(image_size[1])),
            mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in std),
            class_names=tuple(class_names),
            templates=None if templates is None else tuple(templates),
            text_check=tuple(tuple(float(v) for v in r) for r in text_check),
            lora_weights=tuple(lora_weights),
            storage_dtype=storage_dtype,
            lightlabel_version=get("lightlabel_version"),
            format_version=version,
            fit_info=load_json("fit_info", dict) if "fit_info" in meta else {},
        )


def _check_header_values(source: str, *, class_names: list, text_check: list, image_size: list, mean: list,
                         std: list, templates: list, lora_weights: list) -> None:
    """``AdapterError`` naming ``source`` and the entry for a header value of the right JSON type but a wrong
    content (the checksums are plain sha256: an edited header with recomputed sums gets this far)."""
    if not class_names or not all(isinstance(n, str) for n in class_names):
        raise AdapterError(f"{source}: class_names must be a non-empty list of str")
    if len(text_check) != len(class_names) or not all(
        isinstance(r, list) and all(isinstance(v, (int, float)) for v in r) for r in text_check
    ):
        raise AdapterError(f"{source}: text_check must have one row of numbers per class ({len(class_names)})")
    if len(image_size) != 2 or len(mean) != 3 or len(std) != 3:
        raise AdapterError(f"{source}: image_size must have 2 entries and image_mean/std 3, found "
                           f"{image_size}, {mean}, {std}")
    if not all(type(v) is int and v > 0 for v in image_size):
        raise AdapterError(f"{source}: image_size must be two positive ints, found {image_size!r}")
    if not all(type(v) in (int, float) and math.isfinite(v) for v in mean + std) or min(std) <= 0:
        raise AdapterError(f"{source}: image_mean/std must be finite numbers (std > 0), found {mean!r}, {std!r}")
    for name, values in (("templates", templates), ("lora_weights", lora_weights)):
        if not all(isinstance(v, str) for v in values):
            raise AdapterError(f"{source}: {name} must be a list of str, found {values!r}"[:300])


def _is_factor(key: str) -> bool:
    return key.endswith(".lora_A") or key.endswith(".lora_B")


def _rank_axis(key: str) -> int:
    """The rank dimension of a LoRA factor: rows of ``A`` ``[r, in]``, columns of ``B`` ``[out, r]``."""
    return 0 if key.endswith(".lora_A") else 1


def _sha256_metadata(meta: Mapping[str, str]) -> str:
    body = {k: v for k, v in meta.items() if k != "sha256_metadata"}
    return json_digest(body)


def encode_adapter(tensors: Mapping[str, torch.Tensor], info: AdapterInfo) -> bytes:
    """Serialise adapter tensors (float32, canonical keys) and header to safetensors bytes.

    The LoRA factors are stored in ``info.storage_dtype``; ``head.logit_scale`` and ``head.bias`` stay float32.
    """
    stored: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        t = t.detach().to("cpu", torch.float32).contiguous()
        if _is_factor(key) and info.storage_dtype == "fp16":
            t = t.half()
        elif _is_factor(key) and info.storage_dtype == "int8":
            t, stored[f"{key}.qscale"] = quantize_int8(t, 1 - _rank_axis(key))  # one scale per rank channel
        stored[key] = t
    meta = info.to_metadata()
    meta["sha256_tensors"] = tensors_digest(stored)
    meta["sha256_metadata"] = _sha256_metadata(meta)
    return safetensors.torch.save(stored, metadata=meta)


def decode_adapter(data: bytes, source: str = "<adapter>") -> tuple[AdapterInfo, dict[str, torch.Tensor]]:
    """Parse and verify adapter bytes.

    Returns:
        ``(info, tensors)``; tensors are float32 (fp16 and int8 factors are converted back), canonical keys.

    Raises:
        AdapterError: not a safetensors file, truncated, a checksum mismatch (flipped bits or edited header),
            missing or malformed metadata, or a newer format version.
    """
    if len(data) < 8:
        raise AdapterError(f"{source}: file is {len(data)} bytes, too short to be a safetensors adapter")
    parsed = safetensors_header(data)
    if parsed is None:
        raise AdapterError(f"{source}: not a valid safetensors file, truncated, or a damaged header (its length "
                           f"prefix claims {struct.unpack('<Q', data[:8])[0]} bytes, the file has {len(data) - 8})")
    try:
        meta = parsed[0].get("__metadata__")
        stored = safetensors.torch.load(data)
    except Exception as e:  # safetensors raises its own SafetensorError; JSON and UTF-8 errors too
        raise AdapterError(f"{source}: not a valid safetensors file or damaged header ({e})") from e
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise AdapterError(f"{source}: safetensors file has no lightlabel metadata (not an adapter file)")
    for key in ("sha256_tensors", "sha256_metadata"):
        if key not in meta:
            raise AdapterError(f"{source}: metadata entry {key!r} is missing (found entries: {sorted(meta)})")
    if _sha256_metadata(meta) != meta["sha256_metadata"]:
        raise AdapterError(
            f"{source}: header metadata does not match its checksum (expected sha256 {meta['sha256_metadata']}, "
            f"found {_sha256_metadata(meta)}): the header was edited or damaged"
        )
    found = tensors_digest(stored)
    if found != meta["sha256_tensors"]:
        raise AdapterError(
            f"{source}: tensor data does not match its checksum (expected sha256 {meta['sha256_tensors']}, "
            f"found {found}): the file is damaged"
        )
    info = AdapterInfo.from_metadata(meta, source)
    tensors: dict[str, torch.Tensor] = {}
    for key, t in stored.items():
        if key.endswith(".qscale"):
            continue
        if t.dtype == torch.int8:
            scale, axis = stored.get(f"{key}.qscale"), _rank_axis(key)
            if scale is None or t.ndim != 2 or scale.shape != (t.shape[axis],):
                raise AdapterError(f"{source}: int8 tensor {key!r} has no matching per-rank-channel '{key}.qscale'")
            t = t.float() * (scale[:, None] if axis == 0 else scale[None, :])
        elif t.dtype not in (torch.float32, torch.float16):
            raise AdapterError(f"{source}: tensor {key!r} has dtype {t.dtype}, expected float32, float16 or int8")
        tensors[key] = t.float()
    return info, tensors


def read_adapter(path: str | os.PathLike) -> tuple[AdapterInfo, dict[str, torch.Tensor]]:
    """Read and verify an adapter file (a ``.safetensors`` file, or a directory holding ``adapter.safetensors``).

    Returns:
        ``(info, tensors)`` as in :func:`decode_adapter`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        AdapterError: see :func:`decode_adapter`.
    """
    path = Path(path)
    if path.is_dir():
        path = path / ADAPTER_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"adapter file not found: {path}")
    return decode_adapter(path.read_bytes(), source=str(path))

