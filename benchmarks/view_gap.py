"""Does the projector's imitation gap widen on the student's views? Imagenette, the committed grid's trajectory.

Fitted to Imagenette's checkpoints, the projector teaches less than the ensemble it imitates: 3.5 points at IPC 1
(``projector_fit10``, epochs 2-4) and 11-12 at IPC 10 (``projector_late_fit10`` and its rank-32 twin, epochs 6-8),
while on CIFAR-10 (one patch per image) it comes within a point of its ensemble. The fit sees whole training images;
the student regresses onto labels of RDED's views: 2 x 2 grids of down-sampled patches, shuffled, cropped and
CutMixed (HeLlO Algorithm 1, line 14). This measures each adapter against the ensemble it imitates on both, with
``view_fidelity``'s measures (``_common.compare``: top-1 agreement, KL(ensemble || adapter), logit MSE, spread):

- **clean**: ``--clean`` real validation images per class, no augmentation;
- **views**: the first ``--views`` views the seed-0 student of that IPC trains on (the grid's distilled set).

A gap much wider on the views than on clean images puts the shortfall on what the fit sees, not on how closely
it imitates.

    python benchmarks/view_gap.py [--views 1000] [--clean 100]
"""

from __future__ import annotations

from _common import (
    ROOT,
    command,
    commit,
    compare,
    diagnostic_parser,
    logits_of,
    measure_or_report,
    parse_run_args,
    student_views,
)
from helio_grid import GRID, trajectory_cells
from helio_table import Run

import lightlabel as ll

OUT = ROOT / "benchmarks" / "results" / "helio" / "imagenette" / "diagnostics" / "view-gap.json"
#: (IPC, fitted row): each row is measured against the ensemble row it imitates, on that IPC's views
CELLS = ((1, "projector_fit10"), (10, "projector_late_fit10"), (10, "projector_late_fit10_r32"))
MEASURES = ("agree", "kl", "mse", "spread")


def _top1(ipc: int, row: str) -> float | None:
    cells = trajectory_cells("imagenette", ipc, row, seeds=(0,))
    return 100 * cells[0]["top1"] if cells else None


def measure(run: Run, views: int, clean: int) -> dict:
    classes = len(run.train.classes)
    out, ensembles = [], {}
    clean_images = ll.random_subset(run.val, clean, seed=0).images.float() / 255  # the same for every cell
    for ipc, row in CELLS:
        fit, ensemble_row = GRID[row].fit, GRID[row].imitates
        images = {"clean": clean_images, "views": student_views(run.distilled(ipc), run.protocol(row), views)}
        stage = fit.get("stage", "weak")
        if stage not in ensembles:  # the two IPC 10 fits imitate the same checkpoints: load them once
            ensembles[stage] = [ll.load_teacher(p) for p in run.checkpoints(stage)]
        ensemble = ensembles[stage]
        projector = run.fit(**fit).eval()
        result = {"ipc": ipc, "row": row, "ensemble": ensemble_row, "student": _top1(ipc, row),
                  "ensemble_student": _top1(ipc, ensemble_row)}
        for kind, x in images.items():
            reference = logits_of(ensemble, x, classes)
            result[kind] = {**compare(logits_of(projector, x, classes), reference),
                            "ensemble_spread": float(reference.std(-1).mean())}
        out.append(result)
    return {"cells": out, "views": views, "clean_per_class": clean, "trajectory": run.trajectory_id}


def section(r: dict) -> str:
    head = ("| IPC | adapter (imitates) | clean: agreement / KL / MSE / spread | student views: agreement / KL / MSE / "
            "spread | the ensemble's logit std: clean / views | views: MSE / the ensemble's std squared | student "
            "top-1 %, seed 0: adapter / ensemble |\n|---|---|---|---|---|---|---|")
    rows, widest = [], max(r["cells"], key=lambda c: c["clean"]["agree"] - c["views"]["agree"])
    for c in r["cells"]:
        cols = [" / ".join(f"{c[k][m]:.3f}" for m in MEASURES) for k in ("clean", "views")]
        top = " / ".join("-" if v is None else f"{v:.1f}" for v in (c["student"], c["ensemble_student"]))
        std = [c[k]["ensemble_spread"] for k in ("clean", "views")]
        rows.append(f"| {c['ipc']} | `{c['row']}` (`{c['ensemble']}`) | {cols[0]} | {cols[1]} | {std[0]:.2f} / "
                    f"{std[1]:.2f} | {c['views']['mse'] / std[1] ** 2:.3f} | {top} |")
    drop = 100 * (widest["clean"]["agree"] - widest["views"]["agree"])
    return (
        "## Does the imitation gap widen on the student's views? (Imagenette)\n\n"
        f"Each fitted adapter against the ensemble it imitates, on {r['clean_per_class']} clean validation images "
        f"per class and on the first {r['views']} views the seed-0 student of that IPC trains on (RDED's 2 x 2 "
        "patch grids, HeLlO's protocol). Agreement: top-1 agreement with the ensemble's argmax; KL: KL(ensemble || "
        "adapter), nats; MSE: between the logit vectors; spread: the adapter's mean logit std over classes over the "
        "ensemble's. The logit MSE grows with the square of the logits' scale, so it is also given over the ensemble's "
        "logit std squared.\n\n" + head + "\n" + "\n".join(rows) + "\n\n"
        f"The largest drop in agreement from clean images to views: `{widest['row']}` at IPC {widest['ipc']}, "
        f"{drop:.1f} points ({100 * widest['clean']['agree']:.1f} to {100 * widest['views']['agree']:.1f} %). "
        f"Trajectory {r['trajectory']}. Command: `{r['command']}`; results in "
        "`benchmarks/results/helio/imagenette/diagnostics/view-gap.json`.")


def main() -> None:
    parser = diagnostic_parser(__doc__)
    parser.add_argument("--views", type=int, default=1000, help="student views to label per IPC (default 1000)")
    parser.add_argument("--clean", type=int, default=100, help="clean validation images per class (default 100)")
    args = parse_run_args(parser)
    measure_or_report(args, OUT, "view-gap", lambda: {**measure(Run("imagenette", args), args.views, args.clean),
                                                      "command": command(), "commit": commit()}, section)

if __name__ == "__main__":
    main()
