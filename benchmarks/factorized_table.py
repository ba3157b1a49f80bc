"""Factorised images labelled online (issue 17): top-1 against total bytes on CIFAR-10, under the HeLlO protocol.

    python benchmarks/factorized_table.py --seeds 0            # run (and resume) every cell
    python benchmarks/factorized_table.py --report             # docs/results.md from the committed cells

Rows (total bytes = image file bytes + label bytes: the adapter file or the stored labels on disk):
- RDED images at IPC 5 and 10 with stored fp16 labels, and with projector labels;
- HaBa (factorize_images: DM + the adversarial cosine term) with 2 and 5 bases per class x 5 hallucinators, with
  projector labels;
- controls at 5 bases per class: hard labels, the bases alone with projector labels, and no adversary (built at
  the hallucinator rate 1e-3, so it pairs with the 1e-3 row below);
- two checks of the hallucinated views' drift at 5 bases per class: the set after one build iteration (identity
  hallucinators, so every view is its basis: if it teaches like the bases alone, the pipeline is sound and the drift
  is the build's), and hallucinators at the bases' Adam rate 1e-3 (HaBa Sec. 3.4 uses one rate for both), at 5 and
  at 2 bases per class.

The projector (the 10-epoch fit, row ``projector_fit10``), the teacher, the stored labels and the RDED sets are the
HeLlO table's (``benchmarks/helio_table.py``, same fingerprinted caches). Every finished cell is one JSON file under
``benchmarks/results/factorized/``.
The claim holds if factorised images + projector labels reach RDED IPC 10 + projector labels' top-1 with fewer
total bytes, by more than the seed spread.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

import torch
from _common import CACHE, ROOT, commit, digest, parse_run_args, write_section
from _plot import scatter_chart
from helio_grid import FITTED, cell_path
from helio_table import Run

import lightlabel as ll
from lightlabel.core.base import fingerprint
from lightlabel.utils.files import atomic_write_text

log = logging.getLogger("factorized_table")
RESULTS = ROOT / "benchmarks" / "results" / "factorized"

# Every row pins the hallucinators' Adam rate it was built with, so a change of FactorizeConfig's default never
# changes what a committed cell names (the cache key is the config's values, so pinning the value it had keeps it)
CELLS = {
    "rded5_stored": ("RDED IPC 5 + stored fp16 labels", dict(ipc=5), "stored"),
    "rded10_stored": ("RDED IPC 10 + stored fp16 labels", dict(ipc=10), "stored"),
    "rded5_projector": ("RDED IPC 5 + projector labels", dict(ipc=5), "projector"),
    "rded10_projector": ("RDED IPC 10 + projector labels", dict(ipc=10), "projector"),
    "haba2_projector": ("HaBa 2 bases/class x 5 hallucinators (lr 0.01) + projector", dict(bases=2, build=dict(lr=0.01)), "projector"),
    "haba5_projector": ("HaBa 5 bases/class x 5 hallucinators (lr 0.01) + projector", dict(bases=5, build=dict(lr=0.01)),
                        "projector"),
    "haba5_hard": ("HaBa 5 x 5 (lr 0.01) + hard labels (HaBa's own student)", dict(bases=5, build=dict(lr=0.01)), "hard"),
    "haba5_bases_only": ("the 5 bases/class alone (of the lr 0.01 build) + projector (control)", dict(bases=5, bases_only=True, build=dict(lr=0.01)),
                         "projector"),
    # the no-adversary control is paired with the best build, haba5_lr_same (lr 1e-3, FactorizeConfig's default)
    "haba5_no_adversary": ("HaBa 5 x 5 (lr 1e-3) without the adversary + projector (control for the lr 1e-3 row)",
                           dict(bases=5, build=dict(adversarial=False, lr=1e-3)), "projector"),
    "haba5_untrained": ("HaBa 5 x 5 after 1 build iteration at lr 0.01 (identity hallucinators: views = bases) + projector "
                        "(pipeline check)", dict(bases=5, build=dict(iterations=1, lr=0.01)), "projector"),
    "haba5_lr_same": ("HaBa 5 x 5 + projector, hallucinators at the bases' Adam lr 1e-3 (HaBa Sec. 3.4: same rates)",
                      dict(bases=5, build=dict(lr=1e-3)), "projector"),
    "haba2_lr_same": ("HaBa 2 bases/class x 5 hallucinators + projector, hallucinators at lr 1e-3 (the default)",
                      dict(bases=2, build=dict(lr=1e-3)), "projector"),
    "haba5_projector_bases_lr01": ("HaBa 5 x 5 + projector, random hallucinators and bases at Adam lr 0.01 (the first "
                                   "build)", dict(bases=5, build=dict(lr=0.01, bases_lr=0.01, hallucinator_init="random")),
                                   "projector"),
}


def factorized(run: Run, bases: int, iterations: int, **overrides) -> ll.FactorizedSet:
    """The factorised set of ``bases`` per class x 5 hallucinators; ``overrides`` are other FactorizeConfig fields."""
    config = ll.FactorizeConfig(bases_per_class=bases, hallucinators=5, iterations=iterations, **overrides)
    teacher = run.full_teacher()
    settings = config.to_dict()
    if not settings["lambda_range"]:  # off: the key of the sets built before the option existed, so they are reused
        del settings["lambda_range"]
    out = CACHE / "factorized" / f"set-{digest(settings, fingerprint(teacher), run.data_key)}"
    if (out / "factorized.safetensors").is_file():
        return ll.FactorizedSet.load(out / "factorized.safetensors")
    return ll.factorize_images(run.train, teacher, config, out_dir=out, progress=not run.args.quiet)


CLASSES, PIXELS = 10, 3 * 32 * 32  # CIFAR-10: classes, uint8 values per image

# The projector of every row here: the HeLlO table's 10-epoch fit (its 3-epoch ``projector`` row underfits the weak
# teachers it imitates by 3.5 points of student top-1; HeLlO fits for 20 epochs, supplementary Table 2)
PROJECTOR = "projector_fit10"
# RDED IPC 10 with projector or stored labels is exactly the HeLlO table's cell (same set, protocol, labels, seed)
SAME_AS_HELIO = {"rded10_projector": PROJECTOR, "rded10_stored": "stored"}


def from_helio(name: str, h: dict) -> dict:
    """The HeLlO table's cell record ``h`` for the same experiment, as this table's record."""
    return {"cell": name, "title": CELLS[name][0], "seed": h["seed"], "top1": h["top1"], "best_top1": h["best_top1"],
            "image_bytes": h["distilled_bytes"], "label_bytes": h["extra_storage_bytes"],
            "total_bytes": h["distilled_bytes"] + h["extra_storage_bytes"], "steps": h["steps"],
            "seconds_per_iter": h["seconds_per_iter"], "wall_seconds": h["wall_seconds"], "build": None,
            "protocol": h["protocol"], "commit": h["commit"], "torch_threads": h["torch_threads"],
            "command": h["command"],
            "same_as": str(cell_path("cifar10", 10, SAME_AS_HELIO[name], h["seed"]).relative_to(ROOT))}


def cell(run: Run, name: str, seed: int, iterations: int) -> dict:
    path = RESULTS / f"{name}-seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    if name in SAME_AS_HELIO:  # run (or reuse) the HeLlO table's cell, so one experiment has one record
        record = from_helio(name, run.cell(SAME_AS_HELIO[name], 10, seed))
        atomic_write_text(path, json.dumps(record, indent=1))
        log.info("cell %s: the HeLlO table's cell %s", name, record["same_as"])
        return record
    title, spec, labels_kind = CELLS[name]
    t0 = time.time()
    build = None
    if "ipc" in spec:
        data = run.distilled(spec["ipc"])
        image_bytes = data.storage_nbytes
    else:
        overrides = dict(spec.get("build", {}))
        fs = factorized(run, spec["bases"], overrides.pop("iterations", iterations), **overrides)  # a cell may fix its build length
        data = fs.bases_only() if spec.get("bases_only") else fs
        image_bytes = data.storage_nbytes
        build = fs.manifest["config"]
    protocol = run.protocol("projector")
    if labels_kind == "stored":
        labels = run.labels("stored", spec["ipc"], seed, data)
    elif labels_kind == "projector":
        labels = run.fit(**FITTED[PROJECTOR])
    else:
        labels = "hard"
    states = CACHE / "factorized" / "student-states" / f"{name}-seed{seed}-{digest(build)}"
    r = ll.train_student(data, labels, protocol, val_set=run.val_f, seed=seed, progress=not run.args.quiet,
                         out_dir=states)
    record = {"cell": name, "title": title, "seed": seed, "top1": r.top1, "best_top1": r.best_top1,
              "image_bytes": image_bytes, "label_bytes": r.extra_storage_bytes,
              "total_bytes": image_bytes + r.extra_storage_bytes, "steps": r.iterations,
              "seconds_per_iter": r.seconds_per_iter, "wall_seconds": time.time() - t0, "build": build,
              "protocol": r.protocol, "commit": commit(), "torch_threads": torch.get_num_threads(),
              "command": f"python benchmarks/factorized_table.py --seeds {seed} --cells {name} --iterations {iterations}"}
    atomic_write_text(path, json.dumps(record, indent=1))
    log.info("cell %s: top-1 %.4f, %d bytes (%.0f s)", name, r.top1, record["total_bytes"], time.time() - t0)
    return record


def raw_image_bytes(name: str, record: dict) -> int:
    """The images' bytes with every image as raw uint8 pixels, the encoding the factorised file uses for its bases.

    RDED's image bytes are lossless PNG files, which compress CIFAR-10 crops to about 70 %; a factorised file stores
    its bases raw (uint8) and its hallucinators in fp16. This column compares the two at the same pixel encoding.
    """
    spec = CELLS[name][1]
    if "ipc" in spec:
        return spec["ipc"] * CLASSES * PIXELS
    if spec.get("bases_only"):
        return spec["bases"] * CLASSES * PIXELS
    return record["image_bytes"]  # the factorised file: raw uint8 bases + fp16 hallucinators + its header


def rerun_note(cells: list[dict]) -> str:
    """A sentence for each copied HeLlO cell that the HeLlO table has since rerun (another commit): the copy stays,
    since the factorised rows beside it ran on the teachers of its time, and the rerun's figure is named."""
    out = []
    for c in cells:
        path = ROOT / c.get("same_as", "")
        if "same_as" not in c or not path.is_file():
            continue
        now = json.loads(path.read_text())
        if now["commit"] != c["commit"]:
            out.append(f" `{c['cell']}` is that cell as it was at commit {c['commit']} ({100 * c['top1']:.1f} %); the "
                       f"HeLlO table has since rerun it at commit {now['commit']} on teacher trajectory "
                       f"{now.get('trajectory', '(not recorded)')} ({100 * now['top1']:.1f} %). The factorised rows were "
                       "not rerun, so the copy stays: it ran on the same teachers as they did.")
    return "".join(out)


def report() -> None:
    cells = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    if not cells:
        return
    lines = ["| data + labels | top-1 % (last epoch) | total bytes | image bytes | label bytes | total bytes, raw pixels "
             "| seeds |", "|---|---|---|---|---|---|---|"]
    points = []
    for name, (title, _, _) in CELLS.items():
        cs = [c for c in cells if c["cell"] == name]
        if not cs:
            lines.append(f"| {title} | not run yet | | | | | 0 |")
            continue
        top = [100 * c["top1"] for c in cs]
        spread = f" ± {statistics.stdev(top):.1f}" if len(top) > 1 else ""
        total = int(statistics.mean(c["total_bytes"] for c in cs))
        raw = raw_image_bytes(name, cs[0]) + cs[0]["label_bytes"]
        lines.append(f"| {title} | {statistics.mean(top):.1f}{spread} | {total:,} | {cs[0]['image_bytes']:,} | "
                     f"{cs[0]['label_bytes']:,} | {raw:,} | {len(cs)} |")
        points.append((f"{title} ({total:,} bytes)", total, statistics.mean(top)))
    if points:
        scatter_chart(ROOT / "docs" / "factorized-cifar10.png", points, title="CIFAR-10: student top-1 vs total "
                      "bytes (images + labels)", xlabel="total bytes (log)", ylabel="top-1 %", logx=True, xunit="bytes")
    rows = __doc__.split("Rows (")[1].split("Every finished")[0].rstrip()
    reused = sorted({c["same_as"] for c in cells if "same_as" in c})
    note = (f" RDED IPC 10 is the HeLlO table's own cell ({', '.join(f'`{r}`' for r in reused)}): the same set, "
            "protocol, labels and seed, copied when it ran." if reused else "")
    note += rerun_note(cells)
    builds = sorted({c["build"]["iterations"] for c in cells if c.get("build")})
    if builds:
        note += f" The factorised sets were built for {' / '.join(map(str, builds))} iterations of DM (+ the adversary)."
    raw_note = ("\n\nImage bytes are the files: RDED's are lossless PNGs (about 70 % of the raw pixels at 32 px), the "
                "factorised file stores its bases as raw uint8 and its hallucinators in fp16. The raw-pixels column "
                "counts every image (and basis) as raw uint8, so both are compared at the same pixel encoding.")
    write_section("factorized-table", "## Factorised images labelled online (CIFAR-10)\n\nRows (" + rows + note
                  + "\n\n" + "\n".join(lines) + raw_note + "\n\nEach cell: `python benchmarks/factorized_table.py --seeds S "
                  "--cells CELL --iterations N` (N: its build's iterations; each file names its own command); the "
                  "files are in `benchmarks/results/factorized/`.\n\n"
                  "![top-1 vs total bytes](factorized-cifar10.png)")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--report", action="store_true")
    args = parse_run_args(parser)
    if not args.report:
        run = Run("cifar10", args)
        for seed in args.seeds:
            for name in args.cells:
                cell(run, name, seed, args.iterations)
    report()


if __name__ == "__main__":
    main()
