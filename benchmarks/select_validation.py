"""Validation of ``ll.select_teachers`` against full-protocol runs of every candidate (issue 30).

    python benchmarks/select_validation.py --dataset cifar10 --ipc 10      # the short runs (cached per candidate)
    python benchmarks/select_validation.py --report                        # docs/results.md from the committed files

The trajectory, the distilled set and the protocol are the HeLlO table's (``helio_table.Run``). The candidates are
groups of the trajectory's checkpoints; each one's full-protocol student top-1 on the test split comes from the
HeLlO table's committed cells (rows ``weak_teachers``, ``late_teachers``, ``first_checkpoint``,
``final_checkpoint``; run them with ``helio_table.py --rows ...``). The selection scores the same candidates with
short runs (the protocol compressed to ``--fraction`` of its epochs) on held-out **training** images: the last 100
training images of each class that are not a source of the distilled set. The chosen candidate passes if its
full-protocol top-1 is within 1 point of the best candidate's. Each run writes
``benchmarks/results/select/<dataset>-ipc<N>-seed<S>.json`` (evidence, choice, cost, commit, command).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

from _common import ROOT, commit, device_name, parse_run_args, write_section
from helio_grid import EVAL_EVERY, RESULTS
from helio_table import Run

import lightlabel as ll
from lightlabel.utils.files import atomic_write_text

OUT = ROOT / "benchmarks" / "results" / "select"
#: candidate name -> (the HeLlO-table row of its full-protocol cells, the SETUP stage of its checkpoints)
CANDIDATES = {
    "cifar10": {"epochs 1-3": ("weak_teachers", "weak"), "epochs 2-4": ("late_teachers", "late"),
                "epoch 1": ("first_checkpoint", "first"), "epoch 4": ("final_checkpoint", "final")},
}


def heldout(run: Run, distilled: ll.DistilledSet, per_class: int = 100) -> ll.data.TensorImageDataset:
    """The last ``per_class`` training images of each class that no distilled image was cut from."""
    used = {s for sources in distilled.sources for s in sources}
    keep = []
    for c in range(len(run.train.classes)):
        pool = [i for i, t in enumerate(run.train.targets) if t == c and run.train.ids[i] not in used]
        keep += pool[-per_class:]
    return run.train.subset(keep).with_transform(lambda x: x.float() / 255)


def measure(dataset: str, ipc: int, seed: int, fraction: float, quiet: bool) -> dict:
    run = Run(dataset, argparse.Namespace(quiet=quiet))
    distilled = run.distilled(ipc)
    names = list(CANDIDATES[dataset])
    paths = sorted({p for _, stage in CANDIDATES[dataset].values() for p in run.checkpoints(stage)})
    groups = [tuple(paths.index(p) for p in run.checkpoints(stage)) for _, stage in CANDIDATES[dataset].values()]
    protocol = ll.EvalProtocol.helio(patches_per_side=int(run.cfg["ppi"] ** 0.5), eval_every=EVAL_EVERY)
    val = heldout(run, distilled)
    t0 = time.time()
    selection = ll.select_teachers(paths, distilled, protocol, val_set=val, candidates=groups, fraction=fraction,
                                   seeds=(seed,), progress=not quiet)
    record = selection.to_dict()
    record.update(candidates=names, checkpoints=[p.name for p in paths], chosen=names[groups.index(selection.choice)],
                  dataset=dataset, ipc=ipc, seed=seed, fraction=fraction, heldout_images=len(val),
                  wall_seconds=time.time() - t0, commit=commit(), device=device_name(),
                  command=f"python benchmarks/select_validation.py --dataset {dataset} --ipc {ipc} --seed {seed}")
    path = OUT / f"{dataset}-ipc{ipc}-seed{seed}.json"
    atomic_write_text(path, json.dumps(record, indent=1, default=str))
    logging.info("%s: chose %s", path.relative_to(ROOT), record["chosen"])
    return record


def _full(dataset: str, ipc: int, row: str) -> dict[int, float]:
    """Full-protocol test top-1 % of a HeLlO-table row, by seed."""
    return {json.loads(p.read_text())["seed"]: 100 * json.loads(p.read_text())["top1"]
            for p in sorted((RESULTS / dataset / f"ipc{ipc}").glob(f"{row}-seed*.json"))}


def report() -> None:
    sections = []
    for path in sorted(OUT.glob("*.json")):
        r = json.loads(path.read_text())
        full = {name: _full(r["dataset"], r["ipc"], CANDIDATES[r["dataset"]][name][0]) for name in r["candidates"]}
        # the verdict compares every candidate on the seeds all of them have, so no candidate gains from a lucky seed
        common = sorted(set.intersection(*(set(v) for v in full.values()))) if all(full.values()) else []
        lines = ["| candidate | short run: held-out top-1 % | full protocol: test top-1 %, mean over the seeds run "
                 "(seeds) | on the seeds every candidate has |", "|---|---|---|---|"]
        on_common = {name: statistics.mean(v[s] for s in common) for name, v in full.items()} if common else {}
        for name, evidence in zip(r["candidates"], r["evidence"]):
            values = list(full[name].values())
            shown = f"{statistics.mean(values):.1f} ({len(values)})" if values else "not run yet"
            mark = " **(chosen)**" if name == r["chosen"] else ""
            same = f"{on_common[name]:.1f}" if on_common else "-"
            lines.append(f"| {name}{mark} | {100 * evidence['top1']:.1f} | {shown} | {same} |")
        if on_common:
            best = max(on_common.values())
            gap = best - on_common[r["chosen"]]
            verdict = (f"On seed{'s' * (len(common) > 1)} {', '.join(map(str, common))}, which every candidate has, the "
                       f"chosen candidate's full-protocol top-1 is {gap:.1f} points below the best candidate's "
                       f"({'within' if gap <= 1 else 'NOT within'} the 1-point target).")
        else:
            verdict = "Not every candidate has its full-protocol cells yet, so the verdict is open."
        sections.append(
            f"### {r['dataset']}, IPC {r['ipc']}, seed {r['seed']}\n\n" + "\n".join(lines) + "\n\n" + verdict +
            f" The selection ran {r['steps']} student steps against {r['full_steps']} for every candidate in full "
            f"({100 * r['cost_fraction']:.0f} %), {r['wall_seconds'] / 60:.0f} min on {r['device']}; held-out: "
            f"{r['heldout_images']} training images that no distilled image came from. Command: `{r['command']}` "
            f"(commit {r['commit']}); the full-protocol cells: `python benchmarks/helio_table.py --dataset "
            f"{r['dataset']} --ipc {r['ipc']} --seeds 0 --rows weak_teachers late_teachers first_checkpoint "
            f"final_checkpoint`.")
    write_section("select-validation", "## Choosing the teachers by measurement (`ll.select_teachers`)\n\n"
                  "Short student runs with each candidate group of trajectory checkpoints online (HeLlO's protocol "
                  "compressed to 1/6 of its epochs), scored on held-out training images, against the full protocol "
                  "on the test split.\n\n" + ("\n\n".join(sections) or "No validation run committed yet."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(CANDIDATES), default="cifar10")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction", type=float, default=1 / 6)
    parser.add_argument("--report", action="store_true")
    args = parse_run_args(parser)
    if not args.report:
        measure(args.dataset, args.ipc, args.seed, args.fraction, args.quiet)
    report()


if __name__ == "__main__":
    main()
