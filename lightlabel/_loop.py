"""Pieces shared by the training loops (teachers, adapter fitting, students, distillation).

Reproducibility and exact resumption come from one rule: everything random in epoch ``e`` (data order,
augmentation) is drawn from generators seeded by ``(seed, e)`` alone, inside ``torch.random.fork_rng`` so the
caller's global RNG is untouched. A run resumed at an epoch boundary from saved model and optimizer state
therefore computes exactly what the uninterrupted run computed.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler

from ._io import atomic_path

__all__ = ["ddp", "epoch_rng", "epoch_seed", "evaluate", "is_main_process", "load_state", "make_loader", "per_rank_batch",
           "resolve_device", "save_state", "settings_digest", "world"]


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks this rank's CUDA device when available, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return world()[0] == 0


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed derived from ``(seed, epoch)`` alone."""
    digest = hashlib.sha256(f"{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@contextlib.contextmanager
def epoch_rng(seed: int, epoch: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNGs from ``(seed, epoch)`` for the body and restore the caller's state afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(epoch_seed(seed, epoch))
        yield


def ddp(module: torch.nn.Module, device: torch.device, *, sync_buffers: bool = True) -> torch.nn.Module:
    """Wrap ``module`` in ``DistributedDataParallel`` (only parameters with ``requires_grad`` are all-reduced).

    ``sync_buffers=False`` skips the per-forward buffer broadcast (for frozen bases whose buffers are identical on
    every rank), with ``forward_sync_buffers`` where torch has it and ``broadcast_buffers`` before.
    """
    kwargs: dict = {"device_ids": [device] if device.type == "cuda" else None}
    if not sync_buffers:
        params = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
        kwargs["forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"] = False
    return torch.nn.parallel.DistributedDataParallel(module, **kwargs)


def per_rank_batch(batch_size: int) -> int:
    """The per-rank share of a global batch; raises ``ValueError`` unless the world size divides it."""
    size = world()[1]
    if batch_size % size:
        raise ValueError(f"the global `batch_size` {batch_size} must be divisible by the {size} processes")
    return batch_size // size


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, epoch: int = 0, seed: int = 0,
                drop_last: bool = False, num_workers: int = 0, device: torch.device | None = None) -> DataLoader:
    """A DataLoader over one global order of the data, seeded by ``(seed, epoch)``.

    ``batch_size`` is the global batch. Single-process, batch ``k`` holds positions ``[k * B, (k + 1) * B)`` of the
    permutation; under torch.distributed a ``DistributedSampler`` over the same permutation gives each of the ``W``
    ranks ``B / W`` of exactly those positions, so a DDP step sees the same samples as a single-process step. A
    :class:`~lightlabel.data.TransformedDataset` with a seed is told the epoch, so per-sample augmentation does not
    depend on the rank or worker either.
    """
    rank, size = world()
    local = per_rank_batch(batch_size)
    order_seed = epoch_seed(seed, epoch)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    if size > 1:
        sampler = DistributedSampler(dataset, num_replicas=size, rank=rank, shuffle=shuffle, seed=order_seed,
                                     drop_last=drop_last)
        sampler.set_epoch(0)
    elif shuffle:
        sampler = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(order_seed)).tolist()
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=local, sampler=sampler, drop_last=drop_last, num_workers=num_workers,
                      pin_memory=device is not None and device.type == "cuda", persistent_workers=False)


def settings_digest(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def save_state(path: Path, state: Mapping[str, Any]) -> None:
    """Atomically write a training state (only on the main process)."""
    if is_main_process():
        with atomic_path(path) as tmp:
            torch.save(dict(state), tmp)


def load_state(path: Path, settings: Mapping[str, Any], what: str) -> dict[str, Any] | None:
    """Read a training state written by :func:`save_state`, refusing one made with other settings.

    Raises:
        ValueError: the saved settings differ (the differing keys are named).
    """
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("settings_digest") != settings_digest(settings):
        old = state.get("settings", {})
        diff = sorted(k for k in set(old) | set(settings) if str(old.get(k)) != str(settings.get(k)))
        raise ValueError(f"{path} holds a {what} run with other settings (differing: {diff}); use another "
                         f"output folder or delete it to start over")
    return state


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, *, batch_size: int = 256, device: torch.device | None = None,
             mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> float:
    """Top-1 accuracy of ``model`` on a dataset of ``(float image in [0, 1], label)`` (normalised here)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1) if mean is not None else None
    s = torch.tensor(std, device=device).view(1, 3, 1, 1) if std is not None else None
    correct = total = 0
    for images, labels in DataLoader(dataset, batch_size=batch_size):
        images, labels = images.to(device), labels.to(device)
        if m is not None:
            images = (images - m) / s
        correct += int((model(images).argmax(1) == labels).sum())
        total += len(labels)
    model.train(was_training)
    return correct / max(total, 1)
