"""Storage accounting, with one definition of every byte count (every figure lightlabel prints comes from here).

- **Stored soft labels** (SRe2L/FKD): one label per view per epoch, ``epochs x (ipc x C) x C x 2`` bytes in fp16;
  compressed forms (top-k, int8, label pruning: LPLD / LPQLD) follow :meth:`LabelCompression.bytes_per_view`:

      stored_label_nbytes = kept epochs x (ipc x C) views x bytes per view
      bytes per view      = C x v                            (all logits; v = 2 for fp16, 1 for int8)
                          = k x (2 + v)                      (top-k: uint16 index + value)
                            + 4 (int8: fp32 scale per view) + 4 (top-k with fill="mass": fp32 logsumexp per view)

  These are the label tensors' bytes; the files add the data order, the augmentation record and the headers
  (:attr:`lightlabel.StoredSoftLabels.nbytes` is the real total on disk).
  Per view, the fp16 top-k cost is LPQLD's own (its code stores top-k fp16 values and int16 indices); its
  published sizes are within 1.0-1.25x of this formula for k >= 50 (measured against the sizes LPLD and LPQLD
  publish).
- **A teacher**: the tensor bytes of its state dict in fp32 (parameters and buffers; integer buffers such as
  BatchNorm's step counters at their own size), i.e. its checkpoint's payload (:func:`module_nbytes`).
- **An adapter**: the bytes of its ``.safetensors`` file (:attr:`lightlabel.Projector.adapter_nbytes`); without a
  file, the tensor bytes of its layout on a given base (:func:`lightlabel.core.adapter_layout_nbytes`).

Units: bytes, with MB = 10^6 bytes and MiB = 2^20 bytes, each printed figure naming its unit. HeLlO's tables quote
MB figures (5798.3 MB of stored labels at ImageNet-1k IPC 10, 44.7 MB for ResNet-18, 3.3 MB for its adapter).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .configs import LabelCompression, int_arg

__all__ = ["StorageReport", "format_bytes", "module_nbytes", "soft_label_nbytes",
           "storage_report", "stored_label_nbytes", "teacher_nbytes"]


def _positive(**values: int) -> None:
    for name, value in values.items():
        int_arg(value, name, 1)


LABEL_BYTES = (1, 2, 4, 8)
"""Bytes per stored logit that name a dtype: int8, fp16/bf16, fp32, fp64."""


def _label_bytes(label_bytes: int) -> None:
    if isinstance(label_bytes, bool) or label_bytes not in LABEL_BYTES:
        raise ValueError(f"`label_bytes` must be one of {list(LABEL_BYTES)} (bytes per stored logit: int8, fp16, "
                         f"fp32, fp64), got {label_bytes!r}")


def format_bytes(n: int) -> str:
    """``"5,722,050,000 bytes (5722.1 MB, 5457.0 MiB)"``: the exact count and both units, named."""
    return f"{n:,} bytes ({n / 1e6:,.1f} MB, {n / 2**20:,.1f} MiB)"


def module_nbytes(module: nn.Module) -> int:
    """Bytes of a model as a labeller costs them: its state dict's tensors with floating-point entries in fp32
    (4 bytes per element) and the others (e.g. BatchNorm's int64 step counters) at their own size; the payload of
    its checkpoint, without the container's few hundred bytes of overhead."""
    total = 0
    for t in module.state_dict().values():
        total += t.numel() * (4 if t.is_floating_point() else t.element_size())
    return total


def soft_label_nbytes(*, num_classes: int, ipc: int, epochs: int, label_bytes: int = 2) -> int:
    """Bytes of stored soft labels, every logit of every view: ``epochs * (ipc * C) * C * label_bytes``.

    Args:
        num_classes: ``C``. ipc: distilled images per class. epochs: student epochs (one label per image and epoch).
        label_bytes: bytes per stored logit, one of 1, 2, 4, 8 (1 for int8 without its scales, 2 for fp16, 4 for
            fp32, 8 for fp64).

    Raises:
        ValueError: a non-positive or non-int ``num_classes``, ``ipc`` or ``epochs``; a ``label_bytes`` that is no
            dtype's size.
    """
    _positive(num_classes=num_classes, ipc=ipc, epochs=epochs)
    _label_bytes(label_bytes)
    return epochs * ipc * num_classes * num_classes * label_bytes


def stored_label_nbytes(*, num_classes: int, ipc: int, epochs: int,
                        compression: LabelCompression | None = None) -> int:
    """Label bytes of stored soft labels in a compressed form (see the module docstring for the formula).

    Example:
        >>> stored_label_nbytes(num_classes=1000, ipc=10, epochs=300, compression=LabelCompression(topk=100, values="int8"))
        912000000

    Raises:
        ValueError: a non-positive argument.
    """
    _positive(num_classes=num_classes, ipc=ipc, epochs=epochs)
    compression = compression or LabelCompression()
    return compression.num_kept_epochs(epochs) * ipc * num_classes * compression.bytes_per_view(num_classes)


def teacher_nbytes(teacher: str | nn.Module | int, num_classes: int) -> int:
    """Bytes of a teacher (:func:`module_nbytes`: its fp32 state dict's tensors).

    Args:
        teacher: a torchvision classification model name (built on the meta device, no memory used), a module, or
            a parameter count (then 4 bytes each).
        num_classes: classes of the teacher's classifier (for a model name; unused otherwise).

    Raises:
        ValueError: a name that is not a torchvision classification model (the message lists the valid ones), a
            parameter count < 1, or a ``num_classes`` < 1 with a name.
        TypeError: a ``teacher`` that is none of the three.
    """
    if isinstance(teacher, int) and not isinstance(teacher, bool):
        _positive(teacher=teacher)
        return 4 * teacher
    if isinstance(teacher, str):
        import torchvision

        _positive(num_classes=num_classes)
        names = torchvision.models.list_models(module=torchvision.models)  # classifiers only
        if teacher not in names:
            raise ValueError(f"`teacher` {teacher!r} is not a torchvision classification model name. "
                             f"Available: {names}")
        with torch.device("meta"):
            teacher = torchvision.models.get_model(teacher, num_classes=num_classes)
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"`teacher` must be a torchvision model name, an nn.Module or a parameter count (int), got "
                        f"{type(teacher).__name__}")
    return module_nbytes(teacher)


@dataclass(frozen=True)
class StorageReport:
    """Extra storage a student's training needs, by labelling strategy (bytes).

    Attributes:
        num_classes, ipc, epochs: the setting.
        soft_label_bytes: stored fp16 soft labels, every logit (:func:`soft_label_nbytes`).
        compressed: ``(name, bytes)`` rows of compressed stored labels (:func:`stored_label_nbytes`).
        teacher_bytes: the teacher (:func:`teacher_nbytes`), online teacher labels (RDED).
        adapter_bytes: the adapter (a file's bytes, or :func:`lightlabel.core.adapter_layout_nbytes` of a layout),
            or ``None`` (no row).
        adapter_note: where the adapter figure comes from.
    """

    num_classes: int
    ipc: int
    epochs: int
    soft_label_bytes: int
    teacher_bytes: int
    adapter_bytes: int | None = None
    adapter_note: str = "file"
    compressed: tuple[tuple[str, int], ...] = ()
    label_bytes: int = 2

    def rows(self) -> list[tuple[str, int, float]]:
        """``(strategy, bytes, fraction of stored fp16 soft labels)`` rows."""
        rows = [(f"stored soft labels ({8 * self.label_bytes}-bit, all logits, {self.epochs} epochs)",
                 self.soft_label_bytes), *self.compressed,
                ("teacher, fp32 state dict (online teacher)", self.teacher_bytes)]
        if self.adapter_bytes is not None:
            rows.append((f"lightlabel adapter ({self.adapter_note})", self.adapter_bytes))
        return [(name, b, b / self.soft_label_bytes) for name, b in rows]

    def __str__(self) -> str:
        head = f"{self.num_classes} classes, IPC {self.ipc}, {self.epochs} epochs (MB = 10^6 bytes, MiB = 2^20 bytes)"
        width = max(48, *(len(n) for n, _, _ in self.rows()))
        lines = [head, f"{'strategy':<{width}} {'bytes':>16} {'MB':>11} {'MiB':>11} {'vs stored':>10}"]
        for name, b, frac in self.rows():
            lines.append(f"{name:<{width}} {b:>16,} {b / 1e6:>11.2f} {b / 2**20:>11.2f} {frac:>10.2e}")
        return "\n".join(lines)


def storage_report(*, num_classes: int, ipc: int, epochs: int, label_bytes: int = 2,
                   teacher: str | nn.Module | int = "resnet18", adapter_nbytes: int | None = None,
                   adapter_note: str = "file", compressed: dict[str, LabelCompression] | None = None) -> StorageReport:
    """Storage of stored soft labels (full and compressed), a teacher and an adapter for one setting.

    Args:
        num_classes, ipc, epochs: the setting. label_bytes: bytes per logit of the full stored labels.
        teacher: a torchvision name, a module or a parameter count (:func:`teacher_nbytes`).
        adapter_nbytes: an adapter's bytes, or ``None`` for no adapter row. adapter_note: where they come from.
        compressed: named :class:`~lightlabel.LabelCompression` forms to add as rows.

    Raises:
        ValueError: a non-positive ``num_classes``, ``ipc``, ``epochs`` or ``adapter_nbytes``, a ``label_bytes``
            outside 1, 2, 4, 8, or a bad ``teacher`` (:func:`teacher_nbytes`).
        TypeError: a ``compressed`` value that is not a :class:`~lightlabel.LabelCompression`.

    Example:
        >>> r = storage_report(num_classes=1000, ipc=10, epochs=300, adapter_nbytes=3_600_000)
        >>> r.soft_label_bytes
        6000000000
    """
    if adapter_nbytes is not None:
        _positive(adapter_nbytes=adapter_nbytes)
    for name, c in (compressed or {}).items():
        if not isinstance(c, LabelCompression):
            raise TypeError(f"`compressed[{name!r}]` must be a LabelCompression, got {type(c).__name__}")
    rows = tuple((f"stored labels, {name}", stored_label_nbytes(num_classes=num_classes, ipc=ipc, epochs=epochs,
                                                                compression=c)) for name, c in (compressed or {}).items())
    return StorageReport(
        num_classes=num_classes, ipc=ipc, epochs=epochs, label_bytes=label_bytes,
        soft_label_bytes=soft_label_nbytes(num_classes=num_classes, ipc=ipc, epochs=epochs, label_bytes=label_bytes),
        teacher_bytes=teacher_nbytes(teacher, num_classes), adapter_bytes=adapter_nbytes, adapter_note=adapter_note,
        compressed=rows)
