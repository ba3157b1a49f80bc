"""Label fidelity at a reduced labelling size (issue 31): the CIFAR-10 adapter fitted and labelling at 32 px against
the one at the proxy base's native 64 px.

    python benchmarks/label_size.py [--batch 100] [--repeat 7] [--calls 5]

Two figures, measured in this run or read from committed cells:
- **Labelling time**: the proxy-base projector (10 classes, head rank 16, LoRA merged, on its fast path
  ``ModelLabels.optimized``) labelling a batch of ``(B, 3, 32, 32)`` views in [0, 1] as ``train_student`` calls it,
  at ``label_size=32`` and at the native 64 (the views are resized to 64 by the input spec there). Both labellers are
  timed in the same run, interleaved, median of ``--repeat`` timings of ``--calls`` back-to-back batches; random
  weights (speed does not depend on the values).
- **Student top-1 and fit fidelity**: the committed HeLlO-table cells ``projector_fit10`` (64 px), ``projector_fit10_32px``
  and ``projector_fit20_32px`` (32 px, 10 and 20 fit epochs), ``projector_fit20`` (64 px, 20: one fit length for both),
  and at LoRA rank 32 instead of 8 ``projector_fit20_32px_r32`` and ``projector_fit20_r32`` (32 and 64 px, 20 epochs)
  (``benchmarks/helio_table.py --dataset cifar10 --ipc 10 --seeds S --rows ROW``), the same distilled set, protocol
  and seeds. The target: the 32 px adapter's mean within the 64 px adapter's 3-seed spread (mean +- 1 std, or its
  min..max range where that is wider), at less than half its labelling time.
- **Where 32 px loses** (measured in this run, on real images): the frozen proxy base at each size, before any fit:
  zero-shot top-1 of its text head, and linear probes on its L2-normalised image features (multinomial logistic
  regression, L-BFGS) trained on ``--probe-train`` CIFAR-10 training images per class and scored on ``--probe-test`` test
  images per class (both drawn by ``ll.random_subset``, seed 0), once against the true classes and once against the argmax of the weak-teacher
  ensemble the adapters imitate (the committed trajectory's epochs 1-3). A probe that drops at 32 px says the
  frozen tower's features hold less of what the fit needs there, before LoRA adapts them.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _common import (
    bench_projector,
    dataset,
    digest,
    in_batches,
    interleaved_timings,
    parse_run_args,
    probe_accuracy,
    write_section,
)
from helio_grid import GRID, trajectory_cells, trajectory_key, trajectory_path

import lightlabel as ll
from lightlabel.core.proxy import PROXY_BASE
from lightlabel.labeling.sources import ModelLabels
from lightlabel.labeling.stored import images_digest

#: the weak teachers the cells' adapters imitate: epochs 1-3 of the committed CIFAR-10 trajectory
WEAK_EPOCHS = (1, 2, 3)


def labelling_seconds(batch: int, repeat: int, calls: int) -> dict[int, list[float]]:
    """Seconds per batch of each labelling size, the two sizes' timings interleaved."""
    device = torch.device("cpu")
    labellers = {}
    for size in (64, 32):
        projector, _ = bench_projector(
            PROXY_BASE, 10, 16, device=device, label_size=None if size == 64 else size
        )
        projector.merge()
        labellers[size] = ModelLabels(projector).optimized(device)
    views = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    # interleaved: a load change on the shared cores hits both sizes alike
    return interleaved_timings(
        {size: (lambda labeller=labeller: labeller.label(views)) for size, labeller in labellers.items()},
        repeat=repeat,
        calls=calls,
    )


def frozen_base_probe(per_class: int, test_per_class: int) -> dict[int, dict[str, float]]:
    """The unfitted proxy base at 64 and 32 px on real CIFAR-10: zero-shot top-1, and linear-probe accuracy on its
    image features against the true classes and against the weak-teacher ensemble's argmax (see the docstring)."""
    train, test = dataset("cifar10", "train"), dataset("cifar10", "test")
    # the library's random-subset draw (the splits are stored sorted by class, so a prefix would be one class)
    splits = {k: (subset.images.float() / 255, subset.labels) for k, subset in
              (("train", ll.random_subset(train, per_class, seed=0)), ("test", ll.random_subset(test, test_per_class,
                                                                                                seed=0)))}
    folder = trajectory_path("cifar10").parent / trajectory_key("cifar10", digest(images_digest(train.images),
                                                                                  train.classes))
    paths = [folder / f"teacher-epoch{e:03d}.pt" for e in WEAK_EPOCHS]
    if not all(p.is_file() for p in paths):
        raise SystemExit(
            f"the committed weak teachers are missing from {folder}: run benchmarks/helio_table.py "
            "--dataset cifar10 --keep-trajectory first"
        )
    ensemble = ll.load_teachers(paths).eval()
    with torch.no_grad():
        imitated = {k: in_batches(lambda v: ensemble(ensemble.input_spec.prepare(v)).argmax(1), x)
                    for k, (x, _) in splits.items()}
    out = {}
    for size in (64, 32):
        projector = ll.Projector.packaged(
            list(train.classes), config=ll.AdapterConfig(label_size=None if size == 64 else size)
        ).eval()
        grid: list[torch.Tensor] = []  # the last conv stage's output averaged over its grid: before the pool
        hook = projector.visual.attnpool.register_forward_pre_hook(
            lambda _, a, grid=grid: grid.append(a[0].mean((2, 3)))
        )
        with torch.no_grad():
            feats = {k: in_batches(lambda v, p=projector: p.encode_image(p.input_spec.prepare(v)), x).float()
                     for k, (x, _) in splits.items()}
            zero_shot = (projector.head(feats["test"]).argmax(1) == splits["test"][1]).float().mean().item()
        hook.remove()
        n_train = len(splits["train"][0])
        pooled = torch.cat(grid).float()
        out[size] = {
            "zero_shot": zero_shot,
            "grid": int(projector.visual.attnpool.positional_embedding.shape[0] - 1),
        }
        for name, f in (("pool", feats), ("conv", {"train": pooled[:n_train], "test": pooled[n_train:]})):
            f = {k: torch.nn.functional.normalize(v, dim=1) for k, v in f.items()}
            for target, y in (("true", {k: v[1] for k, v in splits.items()}), ("teachers", imitated)):
                out[size][f"{name}_{target}"] = probe_accuracy(
                    f["train"], y["train"], f["test"], y["test"], len(train.classes)
                )
    return out


#: the rows of ``benchmarks/helio_grid.py`` compared here; their settings are read from the grid (:func:`settings`).
#: Rank 32 merges into the same labeller as rank 8 (the same labelling time); only the adapter file grows.
ADAPTERS = ("projector_fit10", "projector_fit10_32px", "projector_fit20_32px", "projector_fit20",
            "projector_fit20_32px_r32", "projector_fit20_r32")


def settings(row: str) -> tuple[int, int, int]:
    """(labelling size in px, fit epochs, the tower's LoRA rank) of a grid row's fit."""
    fit = GRID[row].fit
    return fit.get("label_size") or 64, fit["epochs"], fit.get("image_rank", ll.AdapterConfig.image_rank)


def find(size: int, epochs: int, rank: int) -> str | None:
    """The compared row with these settings, if any."""
    return next((r for r in ADAPTERS if settings(r) == (size, epochs, rank)), None)


def spread(values: list[float]) -> tuple[float, float]:
    """A 3-seed spread: mean +- 1 std, or the min..max range where that is wider."""
    mean, sd = statistics.mean(values), statistics.stdev(values)
    return min(mean - sd, min(values)), max(mean + sd, max(values))


def where(m: float, low: float, high: float) -> str:
    return "inside" if low <= m <= high else ("above" if m > high else "below")


STRIDE = 32  # the proxy base's image tower: a 64 px input ends in a 2 x 2 grid, 32 px in 1 x 1


def summary(v: list[float]) -> str:
    if not v:
        return "not run yet"
    return (
        f"{statistics.mean(v):.1f}"
        + (f" ± {statistics.stdev(v):.1f}" if len(v) > 1 else "")
        + f" ({len(v)} seed{'s' * (len(v) > 1)}: {', '.join(f'{x:.1f}' for x in v)})"
    )


def adapter_rows(cells: dict[str, list[dict]]) -> list[str]:
    """One row per adapter: the fit's imitation of its teachers on held-out images (recorded by ``fit_adapter`` in
    each cell; the same fit for every seed) and the students' top-1."""
    out = []
    for row in ADAPTERS:
        size, epochs, rank = settings(row)
        fit = cells[row][0]["fit"] if cells[row] else {}
        agree = f"{fit['final_agreement']:.3f}" if fit else "-"
        kl = f"{fit['final_kl']:.3f}" if fit else "-"
        out.append(
            f"| `{row}` | {size} px ({size // STRIDE} x {size // STRIDE}) | {epochs} | {rank} | {agree} | {kl} | "
            f"{summary([100 * c['top1'] for c in cells[row]])} |"
        )
    return out


def verdict(cells: dict[str, list[dict]], ratio: float) -> str:
    full = [100 * c["top1"] for c in cells["projector_fit10"]]
    if len(full) < 2:
        return f"The 64 px cells are not all run yet; the 32 px labeller takes {ratio:.2f} of the 64 px time."
    low, high = spread(full)
    lines = []
    for row in ADAPTERS[1:]:
        size, epochs, rank = settings(row)
        small = [100 * c["top1"] for c in cells[row]]
        if not small or size == 64:
            continue
        m = statistics.mean(small)
        line = (
            f"The 32 px adapter fitted {epochs} epochs at LoRA rank {rank}: mean {m:.1f}, {where(m, low, high)} the "
            f"10-epoch rank-8 64 px adapter's 3-seed spread ({low:.1f}-{high:.1f})"
            + ("" if len(small) == 3 else f" (on {len(small)} of 3 seeds so far)")
        )
        twin = find(64, epochs, rank)
        same = [100 * c["top1"] for c in cells[twin]] if twin and twin != ADAPTERS[0] else []
        if same:
            line += (
                f"; the 64 px adapter fitted as long at the same rank gives {statistics.mean(same):.1f} ({len(same)} "
                f"seed{'s' * (len(same) > 1)}), {m - statistics.mean(same):+.1f} for 32 px at one fit length and rank"
            )
        default = find(64, epochs, ll.AdapterConfig.image_rank)
        base = [100 * c["top1"] for c in cells[default]] if default and default != twin else []
        if len(base) > 1:
            lo, hi = spread(base)
            line += (
                f"; against the 64 px adapter fitted as long at the default rank 8 ({statistics.mean(base):.1f}, "
                f"spread {lo:.1f}-{hi:.1f}) it is {where(m, lo, hi)} the spread, labelling at the same cost as any "
                f"32 px adapter once merged"
            )
        lines.append(line + ".")
    lines.append(
        f"At 32 px it labels in {ratio:.2f} of the 64 px time ({'less' if ratio < 0.5 else 'not less'} than "
        "half)."
    )
    return " ".join(lines)


def probe_section(probe: dict[int, dict[str, float]], per_class: int, test_per_class: int) -> str:
    """Where the 32 px adapter loses: the frozen base's features at each size (see the module docstring)."""
    rows = [
        f"| {size} px ({p['grid']} token{'s' * (p['grid'] > 1)}) | {100 * p['zero_shot']:.1f} | "
        f"{100 * p['pool_true']:.1f} | {100 * p['pool_teachers']:.1f} | {100 * p['conv_true']:.1f} | "
        f"{100 * p['conv_teachers']:.1f} |"
        for size, p in probe.items()
    ]
    drop = {
        k: 100 * (probe[64][k] - probe[32][k])
        for k in ("pool_true", "pool_teachers", "conv_true", "conv_teachers")
    }
    return (
        "Where 32 px loses: the frozen proxy base before any fit (no LoRA), on real CIFAR-10. Zero-shot top-1 of "
        "its text head, and linear probes (logistic regression on L2-normalised features) trained on "
        f"{per_class} training images per class and scored on {test_per_class} test images per class, against the "
        "true classes and against the argmax of the weak-teacher ensemble the adapters imitate; on the attention "
        "pool's output (the features the head reads) and on the last conv stage's output averaged over its grid "
        "(before the pool).\n\n"
        "| size (pool tokens) | zero-shot % | probe on pool: true % | probe on pool: teachers % | probe on conv "
        "mean: true % | probe on conv mean: teachers % |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nAt 32 px the frozen features predict the teachers' argmax {drop['pool_teachers']:.1f} points less "
        f"often (true classes: {drop['pool_true']:.1f}). {drop['conv_teachers']:.1f} of those points "
        f"({drop['conv_true']:.1f} for the true classes) are already lost in the conv stages' output, before the "
        "attention pool; the pool's resampled positional embedding accounts for the rest at most. The tower was "
        "trained at 64 px, and CIFAR-10's 32 px images hold the same pixels at both sizes, so at 32 px every stage "
        "sees objects at half the scale it learnt. The fit starts from these features; a rank-8 LoRA recovers part "
        "of the loss and a rank-32 one more (the agreements above), at the same labelling cost once merged."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument(
        "--probe-train", type=int, default=500, help="training images per class for the probes"
    )
    parser.add_argument("--probe-test", type=int, default=200, help="test images per class for the probes")
    args = parse_run_args(
        parser, quiet=False
    )  # --threads: run it on idle cores (a busy core stalls both threads)
    torch.manual_seed(0)
    secs = labelling_seconds(args.batch, args.repeat, args.calls)
    med = {s: statistics.median(v) for s, v in secs.items()}
    ratio = med[32] / med[64]
    rows = [
        f"| {s} px | {1e3 * med[s]:.1f} ({1e3 * min(v):.1f}-{1e3 * max(v):.1f}) | {args.batch / med[s]:,.0f} | "
        f"{med[s] / med[64]:.2f} |"
        for s, v in secs.items()
    ]
    cells = {row: trajectory_cells("cifar10", 10, row) for row in ADAPTERS}
    probe = frozen_base_probe(args.probe_train, args.probe_test)
    write_section(
        "label-size",
        "## Label fidelity at a reduced labelling size (CIFAR-10, IPC 10)\n\n"
        "The proxy-base adapter fitted and labelling at 32 px (`AdapterConfig(label_size=32)`: the attention "
        "pool's positional embedding resampled, the size recorded in the adapter header) against the one "
        "at the base's native 64 px. Labelling: 10 classes, head rank 16, LoRA merged, `ModelLabels."
        f"optimized`, batch {args.batch} of 32 px views, CPU ({args.threads} torch threads; run it on idle "
        f"cores), interleaved, median of {args.repeat} timings of {args.calls} batches (range).\n\n"
        "| labelling size | ms / batch | labels / s | time vs 64 px |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\nThe adapters: the fit's agreement (top-1) with the ensemble it imitates and its KL "
        "(teachers || projector, nats), on the fit's held-out 5 % of its 10,000 images, as `fit_adapter` "
        "records them; then the students (HeLlO protocol, 300 steps, top-1 %). The tower's stride is "
        f"{STRIDE}, so the final grid the attention pool reads is given beside the size.\n\n"
        "| adapter | labelling size (final grid) | fit epochs | LoRA rank (tower) | agreement | KL | student top-1 % |\n"
        "|---|---|---|---|---|---|---|\n"
        + "\n".join(adapter_rows(cells))
        + "\n\n"
        + verdict(cells, ratio)
        + "\n\n"
        + probe_section(probe, args.probe_train, args.probe_test)
        + "\n\nCommand: `python benchmarks/label_size.py`; the student cells: `python benchmarks/"
        "helio_table.py --dataset cifar10 --ipc 10 --seeds S --rows "
        + " ".join(ADAPTERS)
        + "`.",
    )
    tops = {row: summary([100 * c["top1"] for c in v]) for row, v in cells.items()}
    print(f"32 px / 64 px labelling time: {ratio:.2f}; students {tops}")


if __name__ == "__main__":
    main()
