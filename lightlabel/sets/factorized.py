"""Factorised distilled images as a dataset and a file: :class:`FactorizedSet` (HaBa, Liu et al., NeurIPS 2022).

A few bases per class and a few hallucinators shared by all classes; every (basis, hallucinator) pair is a training
image (HaBa Eq. 1). One safetensors file holds the bases (uint8), the hallucinators (fp16) and a versioned header
with a sha256 of the tensors. :func:`lightlabel.factorize_images` builds one; it implements
:class:`~lightlabel.TrainingSet`.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch.utils.data import Dataset

from ..errors import StoredLabelsError
from ..utils.files import atomic_write_bytes
from ..utils.hashing import bytes_digest, safetensors_header, tensors_digest
from ..utils.placement import module_device, on_device
from ..version import __version__
from .distilled import DistilledSet
from .hallucinators import HALLUCINATOR_BORDERS, HallucinatorBank, epoch_hallucinators

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "FactorizedSet", "FactorizedSetError"]

FORMAT_NAME = "lightlabel-factorized"
FORMAT_VERSION = 1


class FactorizedSetError(StoredLabelsError):
    """A factorised-set file is damaged, truncated, edited or of another format version (a :class:`ValueError`)."""


class FactorizedSet(Dataset):
    """Bases and shared hallucinators: a map-style dataset of ``len(bases) * H`` images.

    Item ``i`` is basis ``i // H`` through hallucinator ``i % H``, clamped to [0, 1]: ``(image (3, S, S) float32,
    label)``; nothing is random. Stored as one safetensors file (:meth:`save`): bases as uint8, hallucinators as
    fp16, with a versioned header (classes, settings, provenance) and a sha256 of the tensors; :attr:`storage_nbytes`
    is that file's size.

    Args:
        bases: ``(N, 3, S, S)`` uint8. labels: ``(N,)`` int64. classes: names in index order.
        hallucinators: a :class:`HallucinatorBank` (its weights are rounded to fp16, as stored).
        manifest: settings and provenance.

    Raises:
        ValueError: mismatched shapes or a bank for another image size.
    """

    def __init__(self, bases: torch.Tensor, labels: torch.Tensor, classes: list[str], hallucinators: HallucinatorBank,
                 manifest: dict[str, Any] | None = None) -> None:
        if bases.dtype != torch.uint8 or bases.ndim != 4 or bases.shape[1] != 3:
            raise ValueError(f"`bases` must be uint8 (N, 3, S, S), got {bases.dtype} {tuple(bases.shape)}")
        if labels.shape != (bases.shape[0],):
            raise ValueError(f"`labels` must be ({bases.shape[0]},), got {tuple(labels.shape)}")
        if hallucinators.image_size != bases.shape[-1]:
            raise ValueError(f"hallucinators for {hallucinators.image_size} px, bases of {bases.shape[-1]} px")
        self.bases, self.labels, self.classes = bases, labels.long(), list(classes)
        self.hallucinators = hallucinators.eval().requires_grad_(False)
        with torch.no_grad():
            for p in self.hallucinators.parameters():
                p.copy_(p.half().float())  # exactly what the file holds
        self.manifest = dict(manifest or {})

    # -------------------------------------------------------------------------- dataset
    @property
    def num_hallucinators(self) -> int:
        return self.hallucinators.count

    def __len__(self) -> int:
        return self.bases.shape[0] * self.num_hallucinators

    @torch.no_grad()
    def generate(self, basis: torch.Tensor, hallucinator: torch.Tensor, device: torch.device | str | None = None
                 ) -> torch.Tensor:
        """Images of ``(basis[i], hallucinator[i])`` pairs in one batched call: ``(B, 3, S, S)`` float32 in [0, 1]."""
        device = torch.device(device) if device is not None else self.bases.device
        bank = on_device(self.hallucinators, device)  # a copy when it must move: the set itself stays put
        x = self.bases[basis.to(self.bases.device)].to(device).float() / 255
        return bank(x, hallucinator.to(device)).clamp_(0, 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        b, h = divmod(int(index), self.num_hallucinators)
        return self.generate(torch.tensor([b]), torch.tensor([h]))[0], int(self.labels[b])

    # -------------------------------------------------------------------------- the student's view of it
    @property
    def image_size(self) -> int:
        return int(self.bases.shape[-1])

    @property
    def num_epoch_images(self) -> int:
        """Images per student epoch: each basis once (HaBa's sampler)."""
        return int(self.bases.shape[0])

    @property
    def patches_per_side(self) -> int:
        """1: a basis is one whole image (the bases are RDED selections with one patch each)."""
        return 1

    @property
    def hallucinated(self) -> bool:
        return True

    @property
    def fingerprint(self) -> str:
        return bytes_digest(self.to_bytes())

    def epoch_images(self, seed: int, epoch: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The epoch's images: every basis through the hallucinator :func:`epoch_hallucinators` draws for it.

        Made on ``device`` from the bases, which are copied there on every call when they are elsewhere: a run of
        many epochs moves the bases and hallucinators once, with :meth:`to_device`, and asks that set (as
        :func:`~lightlabel.train_student` does); then only the epoch's ``(N,)`` hallucinator indices travel.
        """
        index = epoch_hallucinators(self.num_epoch_images, self.num_hallucinators, seed, epoch)
        return self.generate(torch.arange(self.num_epoch_images, device=self.bases.device), index, device)

    def to_device(self, device: torch.device | str) -> FactorizedSet:
        """The set with its bases and hallucinators on ``device`` for a run's epochs (see :meth:`epoch_images`).

        ``self`` when both are there already, else a shallow copy holding the bases copied to ``device`` and the
        hallucinators there (a deep copy when they are elsewhere); ``self`` never moves. :attr:`fingerprint`,
        :meth:`save` and :meth:`to_bytes` read CPU tensors: ask the original set for them.

        Args:
            device: where the bases and hallucinators should live.

        Returns:
            A :class:`FactorizedSet` whose bases and hallucinators are on ``device``.
        """
        device = torch.device(device)
        if self.bases.device == device and module_device(self.hallucinators) == device:
            return self
        out = copy.copy(self)
        out.bases = self.bases.to(device)
        out.hallucinators = on_device(self.hallucinators, device)
        return out

    def bases_only(self) -> DistilledSet:
        """The bases alone, as a :class:`DistilledSet` (the control: no hallucinators)."""
        return DistilledSet(self.bases.clone(), self.labels.clone(), self.classes,
                            [[f"basis{i}"] for i in range(len(self.bases))],
                            {"ipc": self.manifest.get("bases_per_class"), "patches_per_image": 1,
                             "factorized_from": self.manifest.get("sha256")})

    # -------------------------------------------------------------------------- file
    def _tensors(self) -> dict[str, torch.Tensor]:
        out = {"bases": self.bases.contiguous(), "labels": self.labels.to(torch.int32).contiguous()}
        for name, p in self.hallucinators.named_parameters():
            out[f"hallucinators.{name}"] = p.detach().half().contiguous()
        return out

    def to_bytes(self) -> bytes:
        tensors = self._tensors()
        meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "lightlabel_version": __version__,
                "classes": json.dumps(self.classes), "hidden_channels": str(self.hallucinators.hidden),
                "hallucinators": str(self.num_hallucinators),
                **({} if self.hallucinators.border == "zero" else
                   {"hallucinator_border": self.hallucinators.border}),
                "manifest": json.dumps({k: v for k, v in self.manifest.items() if k != "sha256"}, sort_keys=True,
                                       default=str),
                "sha256_tensors": tensors_digest(tensors)}
        return _canonical(safetensors.torch.save(tensors, metadata=meta))

    @property
    def storage_nbytes(self) -> int:
        """Bytes of the file :meth:`save` writes (bases uint8, hallucinators fp16, header)."""
        return len(self.to_bytes())

    def save(self, path: str | os.PathLike) -> Path:
        """Write the set to one ``.safetensors`` file, atomically (temp file + rename). Returns the path."""
        path = Path(path)
        atomic_write_bytes(path, self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FactorizedSet:
        """Read and verify a file written by :meth:`save`.

        Raises:
            FileNotFoundError: no file. FactorizedSetError: not such a file, truncated, a checksum mismatch (flipped
            bits or an edited header), or a newer format version.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"factorised set not found: {path}")
        data = path.read_bytes()
        parsed = safetensors_header(data)
        if parsed is None:
            raise FactorizedSetError(f"{path}: truncated or not a safetensors file")
        try:
            meta = parsed[0].get("__metadata__") or {}
            tensors = safetensors.torch.load(data)
        except Exception as e:
            raise FactorizedSetError(f"{path}: not a readable safetensors file ({e})") from e
        if meta.get("format") != FORMAT_NAME:
            raise FactorizedSetError(f"{path}: not a lightlabel factorised set (format {meta.get('format')!r})")
        if int(meta.get("format_version", -1)) != FORMAT_VERSION:
            raise FactorizedSetError(f"{path}: format version {meta.get('format_version')!r}; this lightlabel reads "
                                     f"{FORMAT_VERSION}")
        try:
            classes, manifest = json.loads(meta["classes"]), json.loads(meta["manifest"])
            count, hidden = int(meta["hallucinators"]), int(meta["hidden_channels"])
            border = meta.get("hallucinator_border", "zero")
            if border not in HALLUCINATOR_BORDERS:
                raise ValueError(f"hallucinator_border {border!r} is none of {list(HALLUCINATOR_BORDERS)}")
            bank = HallucinatorBank(count=count, image_size=int(tensors["bases"].shape[-1]), hidden=hidden,
                                    init="random", border=border)  # its weights are the file's
            bank.load_state_dict({k.removeprefix("hallucinators."): v.float() for k, v in tensors.items()
                                  if k.startswith("hallucinators.")})
            out = cls(tensors["bases"], tensors["labels"].long(), classes, bank, manifest)
        except (KeyError, ValueError, RuntimeError, json.JSONDecodeError) as e:
            raise FactorizedSetError(f"{path}: malformed factorised set ({e})") from e
        if out.to_bytes() != data:
            raise FactorizedSetError(f"{path}: tensors or header do not match their checksum: the file is damaged or "
                                     "edited")
        out.manifest["sha256"] = bytes_digest(data)
        return out

    def __repr__(self) -> str:
        return (f"FactorizedSet(bases={len(self.bases)}, hallucinators={self.num_hallucinators}, images={len(self)}, "
                f"classes={len(self.classes)}, size={self.image_size})")


def _canonical(data: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted: safetensors writes the metadata in hash order,
    which differs between processes, and a set's file must be the same bytes for the same content (its sha256 is
    its identity). The sorted header has the same length; the padding safetensors adds is kept."""
    header, n = safetensors_header(data)
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if len(canonical) > n:  # cannot happen for a header safetensors wrote; keep its bytes rather than break offsets
        return data
    return data[:8] + canonical + b" " * (n - len(canonical)) + data[8 + n:]
