"""Labellers named by strings: what ``--labels`` takes on the command line, and ``labeller=`` in Python."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.projector import Projector
from ..inputs import InputSpec
from ..models import load_teacher
from ..pretrained import is_model_name
from .stored import StoredSoftLabels

__all__ = ["labeller_from_string", "resolve_labeller"]


def labeller_from_string(spec: str | os.PathLike, *, teacher_input: InputSpec | None = None) -> Any:
    """A labeller named by a string, as the command line's ``--labels`` takes it: ``"hard"``, a pretrained teacher by
    name (``torchvision:``, ``timm:``, ``hf-hub:``, ``lightlabel:``), a stored-labels folder, a teacher checkpoint
    (``.pt``/``.pth``/``.th``; ``teacher_input`` for a plain state dict), or else an adapter (file, folder,
    registry name or Hub id: :meth:`Projector.from_pretrained`).

    Raises:
        FileNotFoundError: nothing of these kinds found under ``spec`` (the adapter loader's message).
    """
    if spec == "hard":
        return "hard"
    if isinstance(spec, str) and is_model_name(spec):
        return load_teacher(spec, input_spec=teacher_input)
    path = Path(spec)
    if path.is_dir() and (path / "stored-labels.json").is_file():
        return StoredSoftLabels(path)
    if path.suffix in (".pt", ".pth", ".th") and path.is_file():
        return load_teacher(path, input_spec=teacher_input)
    return Projector.from_pretrained(str(spec))


def resolve_labeller(labeller: Any, *, teacher_input: InputSpec | None = None) -> Any:
    """``labeller`` with every string or path in it (itself, or the items of a list of teachers) loaded by
    :func:`labeller_from_string`; anything else is returned as it is."""
    if isinstance(labeller, (str, os.PathLike)):
        return labeller_from_string(labeller, teacher_input=teacher_input)
    if isinstance(labeller, Sequence) and labeller and any(isinstance(t, (str, os.PathLike)) for t in labeller):
        return [load_teacher(t, input_spec=teacher_input) if isinstance(t, (str, os.PathLike)) else t
                for t in labeller]
    return labeller
