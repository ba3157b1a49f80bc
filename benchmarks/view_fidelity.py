"""Which measure of an adapter's imitation predicts the student it teaches? (CIFAR-10, IPC 10, issue 30.)

Every fitted projector row of the HeLlO table imitates the same weak-teacher ensemble (epochs 1-3 of the committed
trajectory), and their 3-seed students do not order by the fit's own held-out agreement: the HeLlO-length fit
(`projector_full`, agreement 0.843) teaches 46.0 ± 0.9 against `projector_fit20`'s 47.5 ± 0.2 (0.830). The fit
scores agreement on clean held-out training images; the student regresses onto labels of CutMixed views of the
distilled images (HeLlO Algorithm 1, line 14: MSE on the labeller's logits + 0.025 CE). This measures each adapter
against the ensemble on both, with the same tensors for every adapter:

- **clean**: ``--clean`` real CIFAR-10 test images per class (``ll.random_subset``, seed 0), no augmentation;
- **views**: the first ``--views`` views the student of seed 0 trains on (the distilled set of the committed cells,
  HeLlO's protocol, :func:`lightlabel.labeling.augment.epoch_views`).

On each: top-1 agreement with the ensemble's argmax, KL(ensemble || adapter) in nats, the MSE between the two
logit vectors (the student's regression target moved by this much, per class), and the ratio of the adapters'
logit spread (std over classes) to the ensemble's. Then Spearman's rank correlation of each measure with the
adapters' mean student top-1 (the committed cells, seeds 0-2, on the current trajectory). Adapters with fewer than
three committed cells are left out. An adapter whose fit is not in the benchmark cache is fitted again with the
cells' settings (minutes to two hours on 2 cores; ``--rows`` picks the adapters): a refit on another machine or
torch is close to, not bit-identical with, the one that taught the students, so the table gives the held-out
agreement of both. With ``--rows``, the adapters measured join the committed table (measured on the same
images), replacing only their own rows.

    python benchmarks/view_fidelity.py [--views 1000] [--clean 100] [--rows ROW ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics

from _common import ROOT, command, commit, compare, logits_of, parse_run_args, student_views, write_section
from helio_grid import GRID, trajectory_cells
from helio_table import Run

import lightlabel as ll
from lightlabel.labeling.stored import images_digest
from lightlabel.utils.files import atomic_write_text

OUT = ROOT / "benchmarks" / "results" / "helio" / "cifar10" / "ipc10" / "diagnostics" / "view-fidelity.json"
#: the fitted rows compared, derived from the grid: every fitted row that imitates the weak ensemble and trains on the
#: distilled images of the teacher row at CIFAR-10 IPC 10 (a new refit or setting joins without an edit here)
ADAPTERS = tuple(name for name, row in GRID.items() if row.labels == "fit" and row.imitates == "weak_teachers"
                 and not row.own_images and row.runs("cifar10", 10, 0))
MEASURES = ("agree", "kl", "mse", "spread")  # compare()'s


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties), in [-1, 1]."""
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return num / den if den else float("nan")


def measure(views: int, clean: int, rows: list[str], args: argparse.Namespace) -> dict:
    run = Run("cifar10", args)
    distilled = run.distilled(10)
    protocol = run.protocol("projector")
    images = {"clean": ll.random_subset(run.val, clean, seed=0).images.float() / 255,
              "views": student_views(distilled, protocol, views)}
    ensemble = [ll.load_teacher(p) for p in run.checkpoints("weak")]
    reference = {k: logits_of(ensemble, v, 10) for k, v in images.items()}
    out = {}
    for row in rows:
        cells = trajectory_cells("cifar10", 10, row)
        if len(cells) < 3:
            logging.info("%s: %d of 3 seeds committed; left out", row, len(cells))
            continue
        projector = run.fit(**GRID[row].fit)
        out[row] = {"student": [100 * c["top1"] for c in cells], "fit": cells[0]["fit"],
                    "measured_fit_agreement": projector.fit_info.get("final_agreement"),
                    **{k: compare(logits_of(projector, v, 10), reference[k]) for k, v in images.items()}}
        logging.info("%s: %s", row, out[row])
    return {"rows": out, "views": views, "clean_per_class": clean, "distilled_sha256": images_digest(distilled.images),
            "ensemble_spread": {k: float(v.std(-1).mean()) for k, v in reference.items()}}


def section(result: dict) -> str:
    rows = result["rows"]
    table = ["| adapter | fit: epochs, images, rank, size, seed | fit's held-out agreement: the cells' / this adapter's | clean: agreement / KL / "
             "MSE / spread | student views: agreement / KL / MSE / spread | student top-1 % (3 seeds) |",
             "|---|---|---|---|---|---|"]
    for row, r in sorted(rows.items(), key=lambda kv: statistics.mean(kv[1]["student"])):
        f, spec = r["fit"], GRID[row].fit
        cols = [" / ".join(f"{r[k][m]:.3f}" for m in MEASURES) for k in ("clean", "views")]
        table.append(f"| `{row}` | {f['epochs']}, {f['samples']:,}, {spec.get('image_rank', 8)}, "
                     f"{spec.get('label_size') or 64} px, {spec.get('seed', 0)} | {f['final_agreement']:.3f} / {r['measured_fit_agreement']:.3f} | {cols[0]} | {cols[1]} | "
                     f"{statistics.mean(r['student']):.1f} ± {statistics.stdev(r['student']):.1f} |")
    top = [statistics.mean(r["student"]) for r in rows.values()]
    corr = {"fit's held-out agreement": spearman([r["fit"]["final_agreement"] for r in rows.values()], top)}
    for k in ("clean", "views"):
        for m in MEASURES:
            corr[f"{k} {m}"] = spearman([r[k][m] for r in rows.values()], top)
    best = max(corr, key=lambda c: abs(corr[c]))
    lines = "\n".join(f"| {name} | {rho:+.2f} |" for name, rho in corr.items())
    return (
        "## Which measure of imitation predicts the student (CIFAR-10, IPC 10)\n\n"
        "Every fitted adapter of the IPC 10 table against the weak-teacher ensemble it imitates, on "
        f"{result['clean_per_class']} clean test images per class and on the first {result['views']} views a "
        "seed-0 student trains on (distilled set sha256 "
        f"{result['distilled_sha256'][:12]}). Agreement: top-1 agreement with the ensemble's argmax; KL: "
        "KL(ensemble || adapter), nats; MSE: between the logit vectors (HeLlO's student loss regresses onto the "
        "adapter's logits); spread: the adapter's mean logit std over classes over the ensemble's (the ensemble's: "
        f"{result['ensemble_spread']['clean']:.2f} clean, {result['ensemble_spread']['views']:.2f} on views).\n\n"
        + "\n".join(table)
        + f"\n\nSpearman's rank correlation with the mean student top-1, over the {len(rows)} adapters "
        "(agreement should correlate positively, KL and MSE negatively):\n\n| measure | rho |\n|---|---|\n"
        + lines
        + f"\n\nThe strongest: {best} ({corr[best]:+.2f}).\n\nCommands: "
        + "; ".join(f"`{c}`" for c in result["commands"]) + "; "
        "the student cells: `python benchmarks/helio_table.py --dataset cifar10 --ipc 10 --seeds 0 1 2 --rows "
        + " ".join(rows) + "`."
    )


def merged(result: dict) -> dict:
    """``result`` with the committed adapters it did not measure, when the committed file measured the same images
    (views, clean images per class, distilled set): ``--rows`` then adds adapters to the table instead of replacing
    it. Measured on other images, the committed file is replaced whole."""
    if not OUT.exists():
        return result
    old = json.loads(OUT.read_text())
    if any(old.get(k) != result[k] for k in ("views", "clean_per_class", "distilled_sha256")):
        logging.warning("%s measured other images; replaced", OUT)
        return result
    rows = {k: v for k, v in old["rows"].items() if k not in result["rows"]}
    return {**result, "rows": {**rows, **result["rows"]},
            "commands": old["commands"] + result["commands"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=1000, help="student views to label (default 1000)")
    parser.add_argument("--clean", type=int, default=100, help="clean test images per class (default 100)")
    parser.add_argument("--rows", nargs="+", default=list(ADAPTERS), choices=ADAPTERS,
                        help="the adapters to measure (default: all)")
    parser.add_argument("--report", action="store_true", help="only rebuild the section from the committed JSON")
    args = parse_run_args(parser)
    if args.report:
        result = json.loads(OUT.read_text())
    else:
        result = merged({**measure(args.views, args.clean, args.rows, args), "commands": [command()],
                         "commit": commit()})
        atomic_write_text(OUT, json.dumps(result, indent=1))
    write_section("view-fidelity", section(result))


if __name__ == "__main__":
    main()
