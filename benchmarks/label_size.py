"""Label fidelity at a reduced labelling size (issue 31): the CIFAR-10 adapter fitted and labelling at 32 px against
the one at the proxy base's native 64 px.

    python benchmarks/label_size.py [--batch 100] [--repeat 7] [--calls 5]

Two figures, measured in this run or read from committed cells:
- **Labelling time**: the proxy-base projector (10 classes, head rank 16, LoRA merged, on its fast path
  ``ModelLabels.optimized``) labelling a batch of ``(B, 3, 32, 32)`` views in [0, 1] as ``train_student`` calls it,
  at ``label_size=32`` and at the native 64 (the views are resized to 64 by the input spec there). Both labellers are
  timed in the same run, interleaved, median of ``--repeat`` timings of ``--calls`` back-to-back batches; random
  weights (speed does not depend on the values).
- **Student top-1**: the committed HeLlO-table cells ``projector_fit10`` (64 px) and ``projector_fit10_32px``
  (``benchmarks/helio_table.py --dataset cifar10 --ipc 10 --seeds S --rows ROW``), the same distilled set, protocol
  and seeds. The target: the 32 px adapter's mean within the 64 px adapter's 3-seed spread (mean +- 1 std, or its
  min..max range where that is wider), at less than half its labelling time.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from _common import bench_projector, parse_run_args, timings, write_section
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
    out = {size: [] for size in labellers}
    for _ in range(repeat):  # interleaved: a load change on the shared cores hits both sizes alike
        for size, labeller in labellers.items():
            out[size] += timings(lambda labeller=labeller: labeller.label(views), repeat=1, calls=calls)
    return out


def student_cells(row: str) -> list[float]:
    """Test top-1 % of a row's IPC-10 cells on the current CIFAR-10 trajectory (the two adapters must imitate the same
    teachers to compare)."""
    current = current_trajectory("cifar10")
    cells = [json.loads(cell_path("cifar10", 10, row, s).read_text()) for s in (0, 1, 2)
             if cell_path("cifar10", 10, row, s).is_file()]
    return [100 * c["top1"] for c in cells if c.get("trajectory") == current]


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
    full, small = student_cells("projector_fit10"), student_cells("projector_fit10_32px")

    def summary(v: list[float]) -> str:
        if not v:
            return "not run yet"
        return f"{statistics.mean(v):.1f}" + (f" ± {statistics.stdev(v):.1f}" if len(v) > 1 else "") + \
            f" ({len(v)} seed{'s' * (len(v) > 1)}: {', '.join(f'{x:.1f}' for x in v)})"

    if len(full) >= 2 and small:
        mean, sd = statistics.mean(full), statistics.stdev(full)
        low, high = min(mean - sd, min(full)), max(mean + sd, max(full))
        inside = low <= statistics.mean(small) <= high
        verdict = (f"The 32 px adapter's mean, {statistics.mean(small):.1f}, is {'inside' if inside else 'outside'} "
                   f"the 64 px adapter's 3-seed spread ({low:.1f}-{high:.1f})"
                   + ("" if len(small) == 3 else f" (on {len(small)} of 3 seeds so far)") +
                   f"; it labels in {ratio:.2f} of the 64 px time ({'less' if ratio < 0.5 else 'not less'} than half).")
    else:
        verdict = f"The student cells are not all run yet; the 32 px labeller takes {ratio:.2f} of the 64 px time."
    write_section("label-size", "## Label fidelity at a reduced labelling size (CIFAR-10, IPC 10)\n\n"
                  "The proxy-base adapter fitted and labelling at 32 px (`AdapterConfig(label_size=32)`: the attention "
                  "pool's positional embedding resampled, the size recorded in the adapter header) against the one "
                  "at the base's native 64 px. Labelling: 10 classes, head rank 16, LoRA merged, `ModelLabels."
                  f"optimized`, batch {args.batch} of 32 px views, CPU ({args.threads} torch threads; run it on idle cores), interleaved, median of "
                  f"{args.repeat} timings of {args.calls} batches (range).\n\n"
                  "| labelling size | ms / batch | labels / s | time vs 64 px |\n|---|---|---|---|\n" + "\n".join(rows)
                  + "\n\n| adapter | student top-1 % (HeLlO protocol, 300 steps) |\n|---|---|\n"
                  f"| `projector_fit10` (64 px) | {summary(full)} |\n| `projector_fit10_32px` (32 px) | "
                  f"{summary(small)} |\n\n" + verdict + "\n\nCommand: `python benchmarks/label_size.py`; the student "
                  "cells: `python benchmarks/helio_table.py --dataset cifar10 --ipc 10 --seeds S --rows "
                  "projector_fit10 projector_fit10_32px`.")
    print(f"32 px / 64 px labelling time: {ratio:.2f}; students 64 px {summary(full)}, 32 px {summary(small)}")


if __name__ == "__main__":
    main()
