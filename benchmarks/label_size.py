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
  and ``projector_fit20_32px`` (32 px, 10 and 20 fit epochs), ``projector_fit20`` (64 px, 20: one fit length for both)
  (``benchmarks/helio_table.py --dataset cifar10 --ipc 10 --seeds S --rows ROW``), the same distilled set, protocol
  and seeds. The target: the 32 px adapter's mean within the 64 px adapter's 3-seed spread (mean +- 1 std, or its
  min..max range where that is wider), at less than half its labelling time.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from _common import bench_projector, interleaved_timings, parse_run_args, write_section
from helio_grid import cell_path, current_trajectory

from lightlabel.core.proxy import PROXY_BASE
from lightlabel.labeling.sources import ModelLabels


def labelling_seconds(batch: int, repeat: int, calls: int) -> dict[int, list[float]]:
    """Seconds per batch of each labelling size, the two sizes' timings interleaved."""
    device = torch.device("cpu")
    labellers = {}
    for size in (64, 32):
        projector, _ = bench_projector(PROXY_BASE, 10, 16, device=device, label_size=None if size == 64 else size)
        projector.merge()
        labellers[size] = ModelLabels(projector).optimized(device)
    views = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    # interleaved: a load change on the shared cores hits both sizes alike
    return interleaved_timings({size: (lambda labeller=labeller: labeller.label(views))
                                for size, labeller in labellers.items()}, repeat=repeat, calls=calls)


def student_cells(row: str) -> list[dict]:
    """A row's IPC-10 cells on the current CIFAR-10 trajectory (the adapters must imitate the same teachers to
    compare)."""
    current = current_trajectory("cifar10")
    cells = [json.loads(cell_path("cifar10", 10, row, s).read_text()) for s in (0, 1, 2)
             if cell_path("cifar10", 10, row, s).is_file()]
    return [c for c in cells if c.get("trajectory") == current]


#: (row, labelling size in px, fit epochs); the rows of ``benchmarks/helio_grid.py`` compared here
ADAPTERS = (("projector_fit10", 64, 10), ("projector_fit10_32px", 32, 10), ("projector_fit20_32px", 32, 20),
            ("projector_fit20", 64, 20))
STRIDE = 32  # the proxy base's image tower: a 64 px input ends in a 2 x 2 grid, 32 px in 1 x 1


def summary(v: list[float]) -> str:
    if not v:
        return "not run yet"
    return f"{statistics.mean(v):.1f}" + (f" ± {statistics.stdev(v):.1f}" if len(v) > 1 else "") + \
        f" ({len(v)} seed{'s' * (len(v) > 1)}: {', '.join(f'{x:.1f}' for x in v)})"


def adapter_rows(cells: dict[str, list[dict]]) -> list[str]:
    """One row per adapter: the fit's imitation of its teachers on held-out images (recorded by ``fit_adapter`` in
    each cell; the same fit for every seed) and the students' top-1."""
    out = []
    for row, size, epochs in ADAPTERS:
        fit = cells[row][0]["fit"] if cells[row] else {}
        agree = f"{fit['final_agreement']:.3f}" if fit else "-"
        kl = f"{fit['final_kl']:.3f}" if fit else "-"
        out.append(f"| `{row}` | {size} px ({size // STRIDE} x {size // STRIDE}) | {epochs} | {agree} | {kl} | "
                   f"{summary([100 * c['top1'] for c in cells[row]])} |")
    return out


def verdict(cells: dict[str, list[dict]], ratio: float) -> str:
    full = [100 * c["top1"] for c in cells["projector_fit10"]]
    if len(full) < 2:
        return f"The 64 px cells are not all run yet; the 32 px labeller takes {ratio:.2f} of the 64 px time."
    mean, sd = statistics.mean(full), statistics.stdev(full)
    low, high = min(mean - sd, min(full)), max(mean + sd, max(full))
    lines = []
    for row, size, epochs in ADAPTERS[1:]:
        small = [100 * c["top1"] for c in cells[row]]
        if not small or size == 64:
            continue
        m = statistics.mean(small)
        where = "inside" if low <= m <= high else ("above" if m > high else "below")
        line = (f"The 32 px adapter fitted {epochs} epochs: mean {m:.1f}, {where} the 10-epoch 64 px adapter's "
                f"3-seed spread ({low:.1f}-{high:.1f})" + ("" if len(small) == 3 else
                                                          f" (on {len(small)} of 3 seeds so far)"))
        same = [100 * c["top1"] for c in cells["projector_fit20"]]
        if epochs == 20 and same:
            line += (f"; the 64 px adapter fitted as long gives {statistics.mean(same):.1f} ({len(same)} seed"
                     f"{'s' * (len(same) > 1)}), {m - statistics.mean(same):+.1f} for 32 px at one fit length")
        lines.append(line + ".")
    lines.append(f"At 32 px it labels in {ratio:.2f} of the 64 px time ({'less' if ratio < 0.5 else 'not less'} than "
                 "half).")
    return " ".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5)
    args = parse_run_args(parser, quiet=False)  # --threads: run it on idle cores (a busy core stalls both threads)
    torch.manual_seed(0)
    secs = labelling_seconds(args.batch, args.repeat, args.calls)
    med = {s: statistics.median(v) for s, v in secs.items()}
    ratio = med[32] / med[64]
    rows = [f"| {s} px | {1e3 * med[s]:.1f} ({1e3 * min(v):.1f}-{1e3 * max(v):.1f}) | {args.batch / med[s]:,.0f} | "
            f"{med[s] / med[64]:.2f} |" for s, v in secs.items()]
    cells = {row: student_cells(row) for row, _, _ in ADAPTERS}
    write_section("label-size", "## Label fidelity at a reduced labelling size (CIFAR-10, IPC 10)\n\n"
                  "The proxy-base adapter fitted and labelling at 32 px (`AdapterConfig(label_size=32)`: the attention "
                  "pool's positional embedding resampled, the size recorded in the adapter header) against the one "
                  "at the base's native 64 px. Labelling: 10 classes, head rank 16, LoRA merged, `ModelLabels."
                  f"optimized`, batch {args.batch} of 32 px views, CPU ({args.threads} torch threads; run it on idle "
                  f"cores), interleaved, median of {args.repeat} timings of {args.calls} batches (range).\n\n"
                  "| labelling size | ms / batch | labels / s | time vs 64 px |\n|---|---|---|---|\n" + "\n".join(rows)
                  + "\n\nThe adapters: the fit's agreement (top-1) with the ensemble it imitates and its KL "
                  "(teachers || projector, nats), on the fit's held-out 5 % of its 10,000 images, as `fit_adapter` "
                  "records them; then the students (HeLlO protocol, 300 steps, top-1 %). The tower's stride is "
                  f"{STRIDE}, so the final grid the attention pool reads is given beside the size.\n\n"
                  "| adapter | labelling size (final grid) | fit epochs | agreement | KL | student top-1 % |\n"
                  "|---|---|---|---|---|---|\n" + "\n".join(adapter_rows(cells)) + "\n\n" + verdict(cells, ratio)
                  + "\n\nCommand: `python benchmarks/label_size.py`; the student cells: `python benchmarks/"
                  "helio_table.py --dataset cifar10 --ipc 10 --seeds S --rows " + " ".join(r for r, _, _ in ADAPTERS)
                  + "`.")
    tops = {row: summary([100 * c["top1"] for c in v]) for row, v in cells.items()}
    print(f"32 px / 64 px labelling time: {ratio:.2f}; students {tops}")


if __name__ == "__main__":
    main()
