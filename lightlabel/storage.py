"""Storage accounting: stored soft labels vs a teacher checkpoint vs an adapter file.

Stored soft labels (SRe2L/FKD style) need one label per augmented view per epoch:

    soft_label_nbytes = epochs * (ipc * C) * C * label_bytes

e.g. ImageNet-1k, IPC 10, 300 epochs, fp16: 300 * 10,000 * 1,000 * 2 = 6.0e9 bytes (5.59 GiB; HeLlO Table 6
reports 5798.3 MB including the recorded augmentation parameters). A ResNet-18 teacher for 1000 classes is
11.69 M float32 parameters, 46.8e6 bytes (HeLlO Table 1: 44.7 MB). HeLlO's adapter is 3.3 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["StorageReport", "module_nbytes", "soft_label_nbytes", "storage_report", "teacher_nbytes"]


def module_nbytes(module: nn.Module) -> int:
    """Bytes of a model as a labeller costs them: its state dict's tensors with floating-point entries in fp32
    (4 bytes per element) and the others (e.g. BatchNorm's int64 step counters) at their own size; the payload of
    its checkpoint, without the container's few hundred bytes of overhead."""
    total = 0
    for t in module.state_dict().values():
        total += t.numel() * (4 if t.is_floating_point() else t.element_size())
    return total


def soft_label_nbytes(*, num_classes: int, ipc: int, epochs: int, label_bytes: int = 2) -> int:
    """Bytes of stored soft labels: ``epochs * (ipc * num_classes) * num_classes * label_bytes``.

    Args:
        num_classes: ``C``.
        ipc: distilled images per class.
        epochs: student training epochs (one label per image per epoch).
        label_bytes: bytes per stored logit (2 for fp16, 4 for fp32, 1 for int8).

    Raises:
        ValueError: a non-positive argument.
    """
    for name, value in (("num_classes", num_classes), ("ipc", ipc), ("epochs", epochs), ("label_bytes", label_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
    return epochs * ipc * num_classes * num_classes * label_bytes


def teacher_nbytes(teacher: str | nn.Module | int, num_classes: int) -> int:
    """Float32 bytes of a teacher's parameters.

    Args:
        teacher: a torchvision model name (built on the meta device, no memory used), a module, or a parameter
            count.
        num_classes: classes of the teacher's classifier (for a model name).

    Raises:
        ValueError: an unknown torchvision model name (the message lists the valid ones).
    """
    if isinstance(teacher, int):
        return 4 * teacher
    if isinstance(teacher, str):
        import torchvision

        names = torchvision.models.list_models()
        if teacher not in names:
            raise ValueError(f"`teacher` {teacher!r} is not a torchvision model name. Available: {names}")
        with torch.device("meta"):
            teacher = torchvision.models.get_model(teacher, num_classes=num_classes)
    return 4 * sum(p.numel() for p in teacher.parameters())


@dataclass(frozen=True)
class StorageReport:
    """Extra storage a student's training needs, by labelling strategy (bytes).

    Attributes:
        num_classes, ipc, epochs, label_bytes: the setting.
        soft_label_bytes: stored soft labels (:func:`soft_label_nbytes`).
        teacher_bytes: a teacher checkpoint (online teacher labels, RDED style).
        adapter_bytes: the adapter file, or ``None`` when not given.
    """

    num_classes: int
    ipc: int
    epochs: int
    label_bytes: int
    soft_label_bytes: int
    teacher_bytes: int
    adapter_bytes: int | None = None

    def rows(self) -> list[tuple[str, int, float]]:
        """``(strategy, bytes, fraction of stored soft labels)`` rows."""
        rows = [
            (f"stored soft labels ({8 * self.label_bytes}-bit, {self.epochs} epochs)", self.soft_label_bytes),
            ("teacher checkpoint (online teacher)", self.teacher_bytes),
        ]
        if self.adapter_bytes is not None:
            rows.append(("lightlabel adapter (online projector)", self.adapter_bytes))
        return [(name, b, b / self.soft_label_bytes) for name, b in rows]

    def __str__(self) -> str:
        head = f"{self.num_classes} classes, IPC {self.ipc}, {self.epochs} epochs"
        lines = [head, f"{'strategy':<48} {'bytes':>16} {'MiB':>12} {'vs stored':>11}"]
        for name, b, frac in self.rows():
            lines.append(f"{name:<48} {b:>16,} {b / 2**20:>12.2f} {frac:>11.2e}")
        return "\n".join(lines)


def storage_report(*, num_classes: int, ipc: int, epochs: int, label_bytes: int = 2,
                   teacher: str | nn.Module | int = "resnet18", adapter_nbytes: int | None = None) -> StorageReport:
    """Storage of stored soft labels, a teacher and (optionally) an adapter for one setting.

    Example:
        >>> r = storage_report(num_classes=1000, ipc=10, epochs=300, adapter_nbytes=3_600_000)
        >>> r.soft_label_bytes
        6000000000
    """
    return StorageReport(
        num_classes=num_classes, ipc=ipc, epochs=epochs, label_bytes=label_bytes,
        soft_label_bytes=soft_label_nbytes(num_classes=num_classes, ipc=ipc, epochs=epochs, label_bytes=label_bytes),
        teacher_bytes=teacher_nbytes(teacher, num_classes), adapter_bytes=adapter_nbytes,
    )
