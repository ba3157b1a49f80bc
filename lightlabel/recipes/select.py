"""Which checkpoints of a teacher trajectory the adapter should imitate, chosen by measurement.

HeLlO fits its adapter to early checkpoints of one training run ("weak teachers") and picks them per setting by
hand (its Table 4, right): early checkpoints teach a data-starved student better than the converged teacher at
small IPC, and worse at larger IPC. :func:`select_teachers` makes that choice for a given distilled set and
protocol by measuring it: each candidate ensemble labels a short student run online (the protocol compressed to
a fraction of its steps, schedule included), scored on held-out real images, and the best is chosen. The result
carries the evidence and goes straight into :func:`~lightlabel.fit_adapter` (``teachers=selection``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..configs import EvalProtocol
from ..labeling.teachers import TeacherEnsemble
from ..models import load_teacher
from ..sets import DistilledSet
from ..utils.progress import progress_bar
from .student import default_protocol, train_student

__all__ = ["TeacherSelection", "select_teachers", "trajectory_windows"]


@dataclass
class TeacherSelection:
    """The outcome of :func:`select_teachers`.

    Attributes:
        choice: indices (into the trajectory) of the chosen checkpoints.
        teachers: the chosen checkpoints (paths or modules, as given), ready for ``fit_adapter(teachers=...)``.
        evidence: one record per candidate: ``{"candidate", "top1", "best_top1", "steps", "seconds"}``, top-1 in
            [0, 1] on the held-out images after the short run, mean over ``seeds``.
        steps: student steps per candidate and seed; full_steps: the protocol's steps.
        seconds: wall time of the whole selection.
    """

    choice: tuple[int, ...]
    teachers: list[Any]
    evidence: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    full_steps: int = 0
    seconds: float = 0.0

    @property
    def cost_fraction(self) -> float:
        """Student steps spent, as a fraction of running every candidate under the full protocol."""
        return self.steps / self.full_steps if self.full_steps else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["teachers"] = [str(t) if isinstance(t, (str, os.PathLike)) else type(t).__name__ for t in self.teachers]
        out["cost_fraction"] = self.cost_fraction
        return out


def trajectory_windows(num_checkpoints: int, sizes: Sequence[int] = (1, 3)) -> list[tuple[int, ...]]:
    """Every run of consecutive checkpoints of the given sizes: the candidate ensembles of a trajectory.

    Example:
        >>> trajectory_windows(4, sizes=(1, 3))
        [(0,), (1,), (2,), (3,), (0, 1, 2), (1, 2, 3)]
    """
    return [tuple(range(i, i + k)) for k in sizes for i in range(num_checkpoints - k + 1)]


def _checked_candidates(num_checkpoints: int, candidates: Sequence[Sequence[int]] | None, fraction: float,
                        seeds: Sequence[int]) -> list[tuple[int, ...]]:
    """:func:`select_teachers`' arguments checked; the candidates as tuples (default: every window of 1 and 3)."""
    if not num_checkpoints:
        raise ValueError("`trajectory` is empty")
    candidates = [tuple(c) for c in (candidates if candidates is not None else trajectory_windows(num_checkpoints))]
    if not candidates or any(not c for c in candidates):
        raise ValueError(f"`candidates` must be non-empty groups of checkpoint indices, got {candidates}")
    bad = [c for c in candidates if any(not 0 <= i < num_checkpoints for i in c)]
    if bad:
        raise ValueError(f"`candidates` {bad} index outside the trajectory of {num_checkpoints} checkpoints")
    twice = [c for c in candidates if len(set(c)) < len(c)]
    if twice:
        raise ValueError(f"`candidates` {twice} name a checkpoint twice: each candidate is an ensemble of distinct "
                         f"checkpoints")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"`fraction` must be in (0, 1], got {fraction!r}")
    if not seeds:
        raise ValueError("`seeds` is empty")
    return candidates


def select_teachers(
    trajectory: Sequence[nn.Module | str | os.PathLike],
    distilled: DistilledSet,
    protocol: EvalProtocol | None = None,
    *,
    val_set: Dataset,
    candidates: Sequence[Sequence[int]] | None = None,
    fraction: float = 1 / 6,
    seeds: Sequence[int] = (0,),
    device: torch.device | str | None = None,
    progress: bool = True,
) -> TeacherSelection:
    """Choose the checkpoints of a trajectory whose ensemble teaches this distilled set best under this protocol.

    Each candidate (a group of checkpoints, labelling with their mean logits: HeLlO Eq. 1) trains a student
    online under ``protocol`` compressed to ``fraction`` of its epochs (the schedule compressed with it); the
    candidate with the best mean top-1 on ``val_set`` wins (ties: the earlier candidate). The cost is ``fraction``
    of running every candidate under the full protocol.

    Args:
        trajectory: the checkpoints of one training run, in training order (paths, names or modules carrying
            an ``input_spec``).
        distilled: the distilled set the adapter will label.
        protocol: the student protocol (default: HeLlO's on RDED's views for the set's patch grid).
        val_set: held-out **real training** images to score on (never the test split: the choice would then be
            fitted to the test set), a dataset of ``(image, label)``.
        candidates: groups of trajectory indices (default: :func:`trajectory_windows` with sizes 1 and 3).
        fraction: of the protocol's epochs, in (0, 1]; at least one epoch. A short run measures how fast a
            student learns a candidate's labels, which is not always how well they teach over the full protocol:
            on Imagenette IPC 10 (one trajectory, seed 0) the short runs ranked the early checkpoints (epochs 2-4,
            the smallest logits) first at 1/6 and at 1/2 of the epochs, while under the full protocol the later
            ones (epochs 6-8) taught 3.6 points more. Where candidates span early and late checkpoints, check the
            choice with full runs of the top candidates.
        seeds: student seeds to average each candidate's short run over. One seed is enough when the candidates
            differ by more than a student's seed-to-seed spread; at very small IPC they may not: on CIFAR-10 IPC 1
            (10 images) one seed's short runs chose, on one of three seeds, a candidate 3.9 points below the best
            (full-protocol means over 3 seeds), while ``seeds=(0, 1, 2)`` (three times the cost) chose one 0.2
            points below it. At IPC 10 one seed's choice was at most 1.2 points below the best (the same means).
        device: default CUDA when available.

    Returns:
        A :class:`TeacherSelection` with the choice and the evidence.

    Raises:
        ValueError: an empty trajectory or candidate list, an index outside the trajectory, a candidate naming a
            checkpoint twice, a ``fraction`` outside (0, 1], or no seeds.

    Source: HeLlO Sec. 4.4.3 and Table 4 (right): the teachers' stage decides how well the labels teach.
    """
    trajectory = list(trajectory)
    candidates = _checked_candidates(len(trajectory), candidates, fraction, seeds)
    protocol = protocol or default_protocol(distilled)
    short = protocol.replace(epochs=max(1, math.ceil(protocol.epochs * fraction)),
                             eval_every=max(1, math.ceil(protocol.epochs * fraction)))
    modules = [t if isinstance(t, nn.Module) else load_teacher(t) for t in trajectory]  # each loaded once
    t0 = time.perf_counter()
    evidence, steps = [], 0
    for candidate in progress_bar(candidates, desc="teacher candidates", disable=not progress):
        ensemble = TeacherEnsemble([modules[i] for i in candidate])
        runs = [train_student(distilled, ensemble, short, val_set=val_set, seed=s, device=device, progress=False)
                for s in seeds]
        steps += sum(r.iterations for r in runs)
        evidence.append({"candidate": list(candidate), "top1": sum(r.top1 for r in runs) / len(runs),
                         "best_top1": sum(r.best_top1 for r in runs) / len(runs), "steps": runs[0].iterations,
                         "seconds": sum(r.seconds_per_iter * r.iterations for r in runs)})
    best = max(range(len(candidates)), key=lambda i: (evidence[i]["top1"], -i))
    full = protocol.total_steps(distilled.num_epoch_images) * len(candidates) * len(seeds)
    return TeacherSelection(choice=candidates[best], teachers=[trajectory[i] for i in candidates[best]],
                            evidence=evidence, steps=steps, full_steps=full, seconds=time.perf_counter() - t0)
