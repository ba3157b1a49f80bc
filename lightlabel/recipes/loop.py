"""The one loop runner of every recipe (teachers, adapter fitting, distillation, students), and its pieces.

:func:`run_resumable` gives a recipe resume, per-unit ``(seed, i)`` randomness, progress and the DDP rules (only
the main process writes); the recipe supplies only the step of one unit of work (an epoch, a class, a chunk of
iterations). Reproducibility and exact resumption come from one rule: everything random in unit ``i`` is drawn from
generators seeded by ``(seed, i)`` alone (:func:`lightlabel.utils.derive_seed`), inside ``torch.random.fork_rng`` so
the caller's global RNG is untouched. A run resumed at a unit boundary from the saved state therefore computes
exactly what the uninterrupted run did.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler

from ..configs import number_arg
from ..inputs import InputSpec
from ..utils.files import atomic_path
from ..utils.hashing import json_digest
from ..utils.progress import progress_bar
from ..utils.seeding import derive_seed

__all__ = ["check_save_interval", "cudnn_autotune", "ddp", "epoch_rng", "evaluate", "is_main_process",
           "load_state", "make_loader", "per_rank_batch", "resolve_device", "run_epochs", "run_resumable", "save_state",
           "settings_digest", "world"]

logger = logging.getLogger(__name__)
_clock = time.monotonic  # the clock of save_interval_s (a module attribute, so tests can replace it)


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks this rank's CUDA device (``cuda:$LOCAL_RANK``) when CUDA is
    available, else CPU.

    Raises:
        RuntimeError: ``None`` on a process whose ``LOCAL_RANK`` has no GPU of its own (more processes per node
            than GPUs): the message says how to run on fewer processes or on the CPU.
    """
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        rank, count = int(os.environ.get("LOCAL_RANK", 0)), torch.cuda.device_count()
        if rank >= count:
            raise RuntimeError(f"LOCAL_RANK={rank} but this node has {count} CUDA device(s): start at most {count} "
                               "process(es) per node (torchrun --nproc_per_node), or pass device='cpu' (or hide the "
                               "GPUs with CUDA_VISIBLE_DEVICES='') to train on CPU processes")
        return torch.device("cuda", rank)
    return torch.device("cpu")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return world()[0] == 0


@contextlib.contextmanager
def epoch_rng(seed: int, epoch: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNGs from ``(seed, epoch)`` for the body and restore the caller's state afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(derive_seed(seed, epoch))
        yield


def ddp(module: torch.nn.Module, device: torch.device, *, sync_buffers: bool = True) -> torch.nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` under a multi-process run, else ``module`` itself.

    Only parameters with ``requires_grad`` are all-reduced.

    ``sync_buffers=False`` skips the per-forward buffer broadcast (for frozen bases whose buffers are identical on
    every rank), with ``forward_sync_buffers`` where torch has it and ``broadcast_buffers`` before.
    """
    if world()[1] == 1:
        return module
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
    order_seed = derive_seed(seed, epoch, "order")
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
    return json_digest(settings)


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"fit.lr": ...}``, so a refused resume names the exact setting that differs."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


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
        old, new = (_flatten(json.loads(json.dumps(x, default=str))) for x in (state.get("settings", {}), settings))
        diff = sorted(k for k in set(old) | set(new) if str(old.get(k)) != str(new.get(k)))
        raise ValueError(f"{path} holds a {what} run with other settings (differing: {diff}); use another "
                         f"output folder or delete it to start over")
    return state


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def check_save_interval(save_interval_s: float) -> None:
    """Raises ValueError unless ``save_interval_s`` is a finite number of seconds >= 0."""
    number_arg(save_interval_s, "save_interval_s", 0, unit="seconds")


@contextlib.contextmanager
def cudnn_autotune(device: torch.device) -> Iterator[None]:
    """On a CUDA ``device``, cuDNN's autotuner (``torch.backends.cudnn.benchmark``) for the duration; the caller's
    setting comes back afterwards, also on error. Elsewhere nothing changes.

    With fixed batch shapes, as in every recipe's steps, each convolution's fastest algorithm is measured once on
    the first batch of a shape and reused; the benchmarks time the same path. Where
    ``torch.backends.cudnn.deterministic`` is set, the autotuner chooses among deterministic algorithms only.
    """
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def run_resumable(
    *,
    units: int,
    step: Callable[[int], dict[str, Any]],
    state: Mapping[str, Stateful],
    path: str | os.PathLike | None,
    settings: Mapping[str, Any],
    what: str,
    seed: int,
    device: torch.device,
    progress: bool = False,
    after_unit: Callable[[int, list[dict[str, Any]]], None] | None = None,
    save_interval_s: float = 0.0,
    unit: str = "epoch",
) -> list[dict[str, Any]]:
    """Run units ``[start, units)`` of a recipe's work, resuming from ``path`` where an earlier call stopped.

    A unit is what the recipe saves its state after: an epoch (fitting, teachers, students), one class
    (distillation) or a chunk of iterations (factorisation).

    Args:
        units: how many units the whole run has.
        step: ``step(i)`` runs unit ``i`` (from 0) and returns its record (numbers for the history). It runs inside
            :func:`epoch_rng`, so global-RNG draws in it depend on ``(seed, i)`` alone, and on CUDA inside
            :func:`cudnn_autotune` (the recipes' batches have fixed shapes).
        state: everything the recipe's result depends on that changes across units (model, optimiser, scheduler,
            accumulated results), by name; each is saved after a unit (see ``save_interval_s``) and restored on
            resume.
        path: the state file (written atomically by the main process only), or ``None`` for no resume.
        settings: what the run was started with; a saved state from other settings is refused (the differing keys
            are named), never silently reused.
        what: the recipe's name, for messages.
        seed: the run's seed. device: for the CUDA RNG fork.
        progress: a progress bar over the units.
        after_unit: ``after_unit(i, history)`` after each unit, before its state is saved (e.g. to write a
            checkpoint): a crash in between re-runs the unit, which rewrites the same output.
        save_interval_s: the state is saved after a unit only when at least this many seconds (wall clock) have
            passed since the last save, and always after the last unit; 0 saves after every unit. Units run
            since the last save are re-run on resume, with the same result, since every unit's randomness
            depends on ``(seed, i)`` alone. Use it where units are short and the state is large (a student
            at small IPC: one step per epoch, against a 134 MB ResNet-18 + AdamW state).
        unit: what a unit is, for messages and the record's counter (``{unit: i + 1}``, e.g. ``epoch``).

    Returns:
        The history: one record per unit (its counter ``unit`` numbered from 1 and ``seconds`` added).

    Raises:
        ValueError: ``path`` holds a state of other settings, or ``save_interval_s`` is negative or not finite.
    """
    check_save_interval(save_interval_s)
    history: list[dict[str, Any]] = []
    start = 0
    saved = load_state(Path(path), settings, what) if path is not None else None
    if saved is not None:
        missing = sorted(set(state) - set(saved["state"]))
        if missing:
            raise ValueError(f"{path}: the saved {what} state lacks {missing}; delete it to start over")
        for name, obj in state.items():
            obj.load_state_dict(saved["state"][name])
        start, history = saved["epoch"], list(saved["history"])
        if start < units:
            logger.info("%s: resuming %s after %s %d of %d", what, path, unit, start, units)
    last_save = _clock()
    for i in progress_bar(range(start, units), desc=what, disable=not progress or not is_main_process(),
                          initial=start, total=units):
        t0 = time.perf_counter()
        with epoch_rng(seed, i, device), cudnn_autotune(device):
            record = dict(step(i))
        record = {unit: i + 1, **record, "seconds": record.get("seconds", time.perf_counter() - t0)}
        history.append(record)
        if after_unit is not None:  # before the state: a crash in between re-runs the unit and rewrites its output
            after_unit(i, history)
        if path is not None and (i + 1 == units or _clock() - last_save >= save_interval_s):
            # "epoch" in the file: the units done, under the key state files of 0.2 already use
            save_state(Path(path), {"state": {name: obj.state_dict() for name, obj in state.items()},
                                    "epoch": i + 1, "history": history, "settings": dict(settings),
                                    "settings_digest": settings_digest(settings)})
            last_save = _clock()  # the interval runs from the end of a save
    return history


def run_epochs(*, epochs: int, after_epoch: Callable[[int, list[dict[str, Any]]], None] | None = None,
               **kwargs: Any) -> list[dict[str, Any]]:
    """Deprecated: :func:`run_resumable` (``epochs=`` is its ``units=``, ``after_epoch=`` its ``after_unit=``); the
    runner also runs classes and chunks."""
    warnings.warn("lightlabel.recipes.loop.run_epochs is deprecated: use run_resumable(units=..., after_unit=...)",
                  DeprecationWarning, stacklevel=2)
    return run_resumable(units=epochs, after_unit=after_epoch, **kwargs)


class Accumulator:
    """A list of per-unit results that :func:`run_resumable` saves and restores with the rest of a state."""

    def __init__(self, items: list[Any] | None = None) -> None:
        self.items: list[Any] = list(items or [])

    def state_dict(self) -> dict[str, Any]:
        return {"items": list(self.items)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.items = list(state["items"])


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, *, input_spec: InputSpec, batch_size: int = 256,
             device: torch.device | None = None) -> float:
    """Top-1 accuracy of ``model`` on a dataset of ``(float image in [0, 1] (3, H, W), label)``, each batch prepared
    with ``input_spec`` (:meth:`InputSpec.prepare`). Returns a fraction in [0, 1]."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    for images, labels in DataLoader(dataset, batch_size=batch_size):
        images, labels = images.to(device), labels.to(device)
        correct += int((model(input_spec.prepare(images)).argmax(1) == labels).sum())
        total += len(labels)
    model.train(was_training)
    return correct / max(total, 1)
