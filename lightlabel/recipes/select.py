"""Which checkpoints of a teacher trajectory the adapter should imitate, chosen by measurement.

HeLlO fits its adapter to early checkpoints of one training run ("weak teachers") and picks them per setting by
hand (its Table 4, right): early checkpoints teach a data-starved student better than the converged teacher at
small IPC, and worse at larger IPC. :func:`select_teachers` makes that choice for a given distilled set and
protocol by measuring it: each candidate ensemble labels a short student run online (the protocol compressed to
a fraction of its steps, schedule included), scored on held-out real images, and the best is chosen. One short
run can favour early checkpoints (a student that has seen little learns easy labels fastest); given several
fractions, each candidate's top-1 is extrapolated to the full protocol along its measured learning curve
(:func:`predicted_top1`) before the choice. The result carries the evidence and goes straight into
:func:`~lightlabel.fit_adapter` (``teachers=selection``).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
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

__all__ = ["TeacherSelection", "predicted_top1", "select_teachers", "trajectory_windows"]


@dataclass
class TeacherSelection:
    """The outcome of :func:`select_teachers`.

    Attributes:
        choice: indices (into the trajectory) of the chosen checkpoints.
        teachers: the chosen checkpoints (paths or modules, as given), ready for ``fit_adapter(teachers=...)``.
        evidence: one record per candidate: ``{"candidate", "top1", "best_top1", "top1_by_fraction",
            "predicted_top1", "steps", "seconds"}``. Top-1 in [0, 1] on the held-out images, mean over ``seeds``:
            ``top1`` and ``best_top1`` after the longest short run; ``top1_by_fraction`` as ``[fraction, top1]``
            pairs, one per short run, the fraction being the share of the epochs it had (rounded up to whole
            epochs); ``predicted_top1`` what the choice compares (:func:`predicted_top1` of those pairs; with one
            fraction, ``top1`` itself). ``steps`` is per seed, all fractions together.
        steps: student steps of the whole selection; full_steps: those of running every candidate and seed under
            the full protocol.
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

    @property
    def margin(self) -> float:
        """The choice's ``predicted_top1`` minus the runner-up's, in [0, 1] top-1 units (``nan`` with fewer than two
        candidates). A margin below a short run's seed-to-seed spread (0.5-2 points of top-1 in the validation of
        issue 30) means the evidence does not separate the two: add ``seeds`` or a longer ``fraction``."""
        scores = sorted((e["predicted_top1"] for e in self.evidence if "predicted_top1" in e), reverse=True)
        return scores[0] - scores[1] if len(scores) > 1 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["teachers"] = [str(t) if isinstance(t, (str, os.PathLike)) else type(t).__name__ for t in self.teachers]
        out["cost_fraction"] = self.cost_fraction
        out["margin"] = self.margin
        return out


def trajectory_windows(num_checkpoints: int, sizes: Sequence[int] = (1, 3)) -> list[tuple[int, ...]]:
    """Every run of consecutive checkpoints of the given sizes: the candidate ensembles of a trajectory.

    Example:
        >>> trajectory_windows(4, sizes=(1, 3))
        [(0,), (1,), (2,), (3,), (0, 1, 2), (1, 2, 3)]
    """
    return [tuple(range(i, i + k)) for k in sizes for i in range(num_checkpoints - k + 1)]


def predicted_top1(top1_by_fraction: Mapping[float, float] | Sequence[tuple[float, float]]) -> float:
    """A candidate's full-protocol top-1 predicted from short runs at several fractions of the protocol's epochs.

    The least-squares line of top-1 against ``ln(fraction)``, read at fraction 1 (``ln 1 = 0``): a learning curve
    that gains the same top-1 each time the training length multiplies by the same factor. Two runs at 1/6 and 1/3
    of the epochs read the gain of one doubling off the curve and add it ``log2(3)`` more times. With one
    fraction, that run's top-1 (no extrapolation).

    Args:
        top1_by_fraction: fraction of the epochs, in (0, 1], to top-1 after the run compressed to it (any unit:
            [0, 1] or %); a mapping or ``(fraction, top1)`` pairs with distinct fractions.

    Returns:
        The predicted top-1 at fraction 1, in the input's unit; not clipped to its range.

    Raises:
        ValueError: no runs, a fraction outside (0, 1], or a fraction twice.

    Example:
        >>> round(predicted_top1({1 / 6: 0.45, 1 / 3: 0.50}), 4)  # + log2(3) doublings of 0.05
        0.5792

    Source: the log-linear learning curve is an assumption, checked against full-protocol runs in the validation
    of :func:`select_teachers` (issue 30); HeLlO picks the checkpoints by hand (Table 4, right).
    """
    pairs = list(top1_by_fraction.items() if isinstance(top1_by_fraction, Mapping) else top1_by_fraction)
    x = [math.log(f) for f in _shares([f for f, _ in pairs], "top1_by_fraction")]
    y = [float(t) for _, t in pairs]
    if len(pairs) == 1:
        return y[0]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)
    return my - slope * mx


def _checked_fractions(fraction: float | Sequence[float]) -> tuple[float, ...]:
    """``fraction`` as an ascending tuple of distinct shares in (0, 1]."""
    return tuple(sorted(_shares([fraction] if isinstance(fraction, (int, float)) else list(fraction), "fraction")))


def _shares(fractions: list, name: str) -> list[float]:
    """``fractions`` checked: at least one, each a number in (0, 1], none twice (``name``: the argument, for errors)."""
    if not fractions:
        raise ValueError(f"`{name}` is empty: give at least one fraction of the epochs")
    if any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1 for f in fractions):
        raise ValueError(f"`{name}` fractions must be in (0, 1], got {fractions}")
    if len(set(fractions)) < len(fractions):
        raise ValueError(f"`{name}` names a fraction twice: {fractions}")
    return fractions


def _short_epochs(epochs: int, fractions: tuple[float, ...]) -> list[int]:
    """The epochs of each short run (at least one); fractions that round to the same count run once, with a warning."""
    counts = [max(1, math.ceil(epochs * f)) for f in fractions]
    if len(set(counts)) < len(counts):
        warnings.warn(f"`fraction` {fractions} of the protocol's {epochs} epochs gives short runs of {counts} epochs: "
                      f"each count runs once", stacklevel=3)
    return sorted(set(counts))


def _checked_candidates(num_checkpoints: int, candidates: Sequence[Sequence[int]] | None,
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
    fraction: float | Sequence[float] = 1 / 6,
    seeds: Sequence[int] = (0,),
    device: torch.device | str | None = None,
    progress: bool = True,
) -> TeacherSelection:
    """Choose the checkpoints of a trajectory whose ensemble teaches this distilled set best under this protocol.

    Each candidate (a group of checkpoints, labelling with their mean logits: HeLlO Eq. 1) trains a student
    online under ``protocol`` compressed to ``fraction`` of its epochs (the schedule compressed with it); the
    candidate with the best mean top-1 on ``val_set`` wins (ties: the earlier candidate). Given several fractions,
    each candidate runs at each, and the choice compares the top-1 extrapolated to the full protocol
    (:func:`predicted_top1`). The cost is the sum of the fractions, of running every candidate under the full
    protocol.

    Args:
        trajectory: the checkpoints of one training run, in training order (paths, names or modules carrying
            an ``input_spec``).
        distilled: the distilled set the adapter will label.
        protocol: the student protocol (default: HeLlO's on RDED's views for the set's patch grid).
        val_set: held-out **real training** images to score on (never the test split: the choice would then be
            fitted to the test set), a dataset of ``(image, label)``. Its size is not what limits the choice: the
            same short runs scored on 10,000 images instead of 1,000 chose the same candidates on CIFAR-10 IPC 1
            and IPC 10 (3 seeds each). Short runs rank close candidates differently from full ones: at IPC 10
            (seed 0, 10,000 images) the top three were within 0.3 points at 1/6 of the epochs and 4.2 apart in full.
        candidates: groups of trajectory indices (default: :func:`trajectory_windows` with sizes 1 and 3).
        fraction: of the protocol's epochs, in (0, 1], each run at least one epoch; or several such fractions,
            whose top-1s are extrapolated to the full protocol (``(1 / 6, 1 / 3)`` costs half of running every
            candidate in full, one 1/6 run a sixth). One short run measures how fast a student learns a candidate's
            labels, which is not always how well they teach over the full protocol: on Imagenette IPC 10 (two
            trajectories) every single run at 1/6, 1/3 or 1/2 of the epochs ranked the early checkpoints (epochs
            2-4) first, 3.6 to 7.5 points below the later ones (epochs 6-8) in full (four seeds at 1/6), and on
            CIFAR-10 IPC 10 (seed 0) those at 1/6 and 1/3 chose 1.0 point below the best. Extrapolated from 1/6 and
            1/3, each chose the best candidate, on Imagenette by predicted margins of 0.06 to 9.1 points; but on CIFAR-10 IPC 10 seed 1, where one 1/6 run chose the best, the extrapolation chose 2.2
            points below it (on seed 2 0.4 below, and from the three seeds' runs averaged 1.2 below, where one 1/6
            run averaged chose the best). Neither rule wins on every cell measured; read
            :attr:`TeacherSelection.margin`, and check a close choice with full runs of the top candidates.
        seeds: student seeds to average each candidate's short runs over. One seed is enough when the candidates
            differ by more than a student's seed-to-seed spread; at very small IPC they may not, and extrapolation
            amplifies a single run's noise: on CIFAR-10 IPC 1 (10 images) one seed's extrapolated choice was, on
            one of three seeds, 5.3 points below that seed's best (margin 0.53 points), while the three seeds
            averaged chose the best candidate (full-protocol means over 3 seeds). One run at 1/6 chose, on one of
            three seeds, 3.9 points below the best (3-seed means). At IPC 10 it was at most 1.2 points below it.
        device: default CUDA when available.

    Returns:
        A :class:`TeacherSelection` with the choice and the evidence.

    Raises:
        ValueError: an empty trajectory or candidate list, an index outside the trajectory, a candidate naming a
            checkpoint twice, a ``fraction`` outside (0, 1] or given twice, or no seeds.

    Source: HeLlO Sec. 4.4.3 and Table 4 (right): the teachers' stage decides how well the labels teach.
    """
    trajectory = list(trajectory)
    candidates = _checked_candidates(len(trajectory), candidates, seeds)
    fractions = _checked_fractions(fraction)
    protocol = protocol or default_protocol(distilled)
    modules = [t if isinstance(t, nn.Module) else load_teacher(t) for t in trajectory]  # each loaded once
    t0 = time.perf_counter()
    evidence, steps = [], 0
    for candidate in progress_bar(candidates, desc="teacher candidates", disable=not progress):
        ensemble = TeacherEnsemble([modules[i] for i in candidate])
        record = _short_runs(ensemble, distilled, protocol, fractions, val_set, seeds, device)
        steps += record.pop("all_steps")
        evidence.append({"candidate": list(candidate), **record})
    best = max(range(len(candidates)), key=lambda i: (evidence[i]["predicted_top1"], -i))
    full = protocol.total_steps(distilled.num_epoch_images) * len(candidates) * len(seeds)
    return TeacherSelection(choice=candidates[best], teachers=[trajectory[i] for i in candidates[best]],
                            evidence=evidence, steps=steps, full_steps=full, seconds=time.perf_counter() - t0)


def _short_runs(ensemble: TeacherEnsemble, distilled: DistilledSet, protocol: EvalProtocol,
                fractions: tuple[float, ...], val_set: Dataset, seeds: Sequence[int],
                device: torch.device | str | None) -> dict[str, Any]:
    """One candidate's students at each fraction and seed: its evidence record (``all_steps``: every run's). The
    line is fitted to the share of the epochs each run had (``epochs / protocol.epochs``, after rounding up)."""
    by_fraction = []
    for epochs in _short_epochs(protocol.epochs, fractions):
        f = epochs / protocol.epochs
        short = protocol.replace(epochs=epochs, eval_every=epochs)
        runs = [train_student(distilled, ensemble, short, val_set=val_set, seed=s, device=device, progress=False)
                for s in seeds]
        by_fraction.append((f, sum(r.top1 for r in runs) / len(runs), runs))
    every = [r for _, _, rs in by_fraction for r in rs]
    longest = by_fraction[-1][2]
    return {"top1": by_fraction[-1][1], "best_top1": sum(r.best_top1 for r in longest) / len(longest),
            "top1_by_fraction": [[f, t] for f, t, _ in by_fraction],
            "predicted_top1": predicted_top1([(f, t) for f, t, _ in by_fraction]),
            "steps": sum(rs[0].iterations for _, _, rs in by_fraction),
            "seconds": sum(r.seconds_per_iter * r.iterations for r in every),
            "all_steps": sum(r.iterations for r in every)}
