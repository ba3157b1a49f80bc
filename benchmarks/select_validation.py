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
from fractions import Fraction

from _common import ROOT, commit, device_name, parse_run_args, write_section
from helio_grid import EVAL_EVERY, RESULTS
from helio_table import Run

import lightlabel as ll
from lightlabel.recipes.select import predicted_top1
from lightlabel.utils.files import atomic_write_text

OUT = ROOT / "benchmarks" / "results" / "select"
#: candidate name -> (the HeLlO-table row of its full-protocol cells, the SETUP stage of its checkpoints)
CANDIDATES = {
    "cifar10": {"epochs 1-3": ("weak_teachers", "weak"), "epochs 2-4": ("late_teachers", "late"),
                "epoch 1": ("first_checkpoint", "first"), "epoch 4": ("final_checkpoint", "final")},
    # Imagenette's last checkpoint is the full teacher itself, so its full-protocol cells are the ``teacher`` row's
    "imagenette": {"epochs 2-4": ("weak_teachers", "weak"), "epochs 6-8": ("late_teachers", "late"),
                   "epoch 8": ("teacher", "final")},
}

DEFAULT_FRACTION = Fraction(1, 6)
#: held-out training images per class a selection run scores on, unless ``--heldout-per-class`` says otherwise
DEFAULT_HELDOUT = 100


def heldout(run: Run, distilled: ll.DistilledSet, per_class: int = DEFAULT_HELDOUT) -> ll.data.TensorImageDataset:
    """The last ``per_class`` training images of each class that no distilled image was cut from."""
    used = {s for sources in distilled.sources for s in sources}
    keep = []
    for c in range(len(run.train.classes)):
        pool = [i for i, t in enumerate(run.train.targets) if t == c and run.train.ids[i] not in used]
        keep += pool[-per_class:]
    return run.train.subset(keep).with_transform(lambda x: x.float() / 255)


def measure(dataset: str, ipc: int, seed: int, fraction: float, quiet: bool, short_seeds: list[int] | None = None,
            heldout_per_class: int = DEFAULT_HELDOUT) -> dict:
    """One selection run; with ``short_seeds``, its short runs are averaged over those student seeds; scored on
    ``heldout_per_class`` held-out images of each class."""
    seeds = tuple(short_seeds or [seed])
    suffix = f"seed{seed}" if len(seeds) == 1 else "seeds" + "-".join(map(str, seeds))
    if _share(fraction) != DEFAULT_FRACTION:
        suffix += f"-fraction{_share(fraction).numerator}-{_share(fraction).denominator}"
    if heldout_per_class != DEFAULT_HELDOUT:
        suffix += f"-heldout{heldout_per_class}"
    run = Run(dataset, argparse.Namespace(quiet=quiet))
    distilled = run.distilled(ipc)
    names = list(CANDIDATES[dataset])
    paths = sorted({p for _, stage in CANDIDATES[dataset].values() for p in run.checkpoints(stage)})
    groups = [tuple(paths.index(p) for p in run.checkpoints(stage)) for _, stage in CANDIDATES[dataset].values()]
    protocol = ll.EvalProtocol.helio(patches_per_side=int(run.cfg["ppi"] ** 0.5), eval_every=EVAL_EVERY)
    val = heldout(run, distilled, heldout_per_class)
    t0 = time.time()
    selection = ll.select_teachers(paths, distilled, protocol, val_set=val, candidates=groups, fraction=fraction,
                                   seeds=seeds, progress=not quiet)
    record = selection.to_dict()
    record.update(candidates=names, checkpoints=[p.name for p in paths], chosen=names[groups.index(selection.choice)],
                  dataset=dataset, ipc=ipc, seed=seeds[0], short_seeds=list(seeds), fraction=fraction,
                  heldout_images=len(val), heldout_per_class=heldout_per_class, trajectory=run.trajectory_id,
                  wall_seconds=time.time() - t0, commit=commit(), device=device_name(),
                  command=f"python benchmarks/select_validation.py --dataset {dataset} --ipc {ipc} " + (
                      f"--seed {seed}" if len(seeds) == 1 else f"--short-seeds {' '.join(map(str, seeds))}") + (
                      "" if _share(fraction) == DEFAULT_FRACTION else f" --fraction {fraction:g}") + (
                      "" if heldout_per_class == DEFAULT_HELDOUT else f" --heldout-per-class {heldout_per_class}"))
    path = OUT / f"{dataset}-ipc{ipc}-{suffix}.json"
    _keep_earlier(dataset, ipc, run.trajectory_id)
    atomic_write_text(path, json.dumps(record, indent=1, default=str))
    logging.info("%s: chose %s", path.relative_to(ROOT), record["chosen"])
    return record


def _keep_earlier(dataset: str, ipc: int, trajectory: str) -> None:
    """Move every selection run of (dataset, IPC) made on another trajectory to ``trajectory-<its id>/``, so that a
    run on a new trajectory never sits beside them and the report still shows their validation against their own
    trajectory's cells (as ``helio_grid.earlier_cell_path`` keeps cells)."""
    for path in sorted(OUT.glob("*.json")):
        r = json.loads(path.read_text())
        if (r.get("dataset"), r.get("ipc")) == (dataset, ipc) and (old := r.get("trajectory")) != trajectory:
            (OUT / f"trajectory-{old}").mkdir(exist_ok=True)
            path.rename(OUT / f"trajectory-{old}" / path.name)
            logging.info("kept %s, a selection run of trajectory %s, under trajectory-%s/", path.name, old, old)


def _full(dataset: str, ipc: int, row: str, trajectory: str) -> dict[int, float]:
    """Full-protocol test top-1 % of a HeLlO-table row, by seed, of the cells run on the selection's trajectory (a
    candidate's cells on another are other teachers; where a newer trajectory replaced it, its cells were moved to
    ``trajectory-<id>/``)."""
    folder = RESULTS / dataset / f"ipc{ipc}"
    paths = sorted(folder.glob(f"{row}-seed*.json")) + sorted(folder.glob(f"trajectory-{trajectory}/{row}-seed*.json"))
    cells = [json.loads(p.read_text()) for p in paths]
    return {c["seed"]: 100 * c["top1"] for c in cells if c.get("trajectory") == trajectory}


def _share(fraction: float) -> Fraction:
    """A short run's share of the protocol's epochs as a fraction (1/6, 1/2)."""
    return Fraction(fraction).limit_denominator(12)


def _horizon(run: dict) -> str:
    """", 1/2 of the epochs" for a run at another share than the default, ", extrapolated from 1/6 and 1/3 of the
    epochs" for a selection combined from several, else ""."""
    if "fractions" in run:
        return f", extrapolated from {' and '.join(str(_share(f)) for f in run['fractions'])} of the epochs"
    share = _share(run.get("fraction", 1 / 6))
    return "" if share == DEFAULT_FRACTION else f", {share} of the epochs"


def _extrapolated(runs: list[dict]) -> list[dict]:
    """The selections ``ll.select_teachers(fraction=(1/6, f))`` makes from a seed's committed single-seed runs at
    the default share and at a longer share f: each candidate's top-1 extrapolated to the full protocol
    (``predicted_top1``), at the cost of both runs. Where several seeds have both, also the selection with
    ``seeds=`` those seeds: the mean of their extrapolations (the line's intercept is linear in the top-1s)."""
    out, by_share = [], {}
    runs = [r for r in runs if not _heldout(r)]  # combined only with runs scored on the same held-out images
    for first in (r for r in runs if not _averaged(r) and not _horizon(r)):
        for longer in sorted((r for r in runs if not _averaged(r) and r["seed"] == first["seed"] and _horizon(r)),
                             key=lambda r: r["fraction"]):
            fractions = [first.get("fraction", 1 / 6), longer["fraction"]]
            predicted = [predicted_top1(list(zip(fractions, (a["top1"], b["top1"]))))
                         for a, b in zip(first["evidence"], longer["evidence"])]
            out.append(_combined(first, (first, longer), fractions, predicted))
            by_share.setdefault(_share(longer["fraction"]), []).append(out[-1])
    for singles in by_share.values():
        if len(singles) > 1:
            seeds = [r["seed"] for r in singles]
            predicted = [sum(r["evidence"][i]["top1"] for r in singles) / len(singles)
                         for i in range(len(singles[0]["evidence"]))]
            record = _combined(singles[0], singles, singles[0]["fractions"], predicted)
            out.append({**record, "short_seeds": seeds, "full_steps": singles[0]["full_steps"] * len(seeds),
                        "cost_fraction": record["steps"] / (singles[0]["full_steps"] * len(seeds))})
    return out


def _combined(first: dict, parts: tuple[dict, ...] | list[dict], fractions: list[float], predicted: list[float]
              ) -> dict:
    """A selection made from committed runs: their predicted top-1 per candidate, their summed cost."""
    chosen = max(range(len(predicted)), key=lambda i: (predicted[i], -i))
    return {**first, "fractions": fractions, "evidence": [{"top1": t} for t in predicted],
            "chosen": first["candidates"][chosen], "steps": sum(r["steps"] for r in parts),
            "cost_fraction": sum(r["steps"] for r in parts) / first["full_steps"],
            "wall_seconds": sum(r["wall_seconds"] for r in parts),
            "commit": " and ".join(dict.fromkeys(c for r in parts for c in r["commit"].split(" and "))),
            "command": " + ".join(r["command"] for r in parts)}


def _heldout(run: dict) -> str:
    """", scored on 10,000 held-out images" for a run scored on another held-out set than the default, else ""."""
    if run.get("heldout_per_class", DEFAULT_HELDOUT) == DEFAULT_HELDOUT:
        return ""
    return f", scored on {run['heldout_images']:,} held-out images"


def _averaged(run: dict) -> bool:
    """Whether a selection run averaged its short runs over several seeds (files before --short-seeds had one)."""
    return len(run.get("short_seeds", [0])) > 1


def _margin(run: dict) -> str:
    """" (predicted 0.72 points above the runner-up)" for an extrapolated selection, else ""."""
    tops = sorted((e["top1"] for e in run["evidence"]), reverse=True)
    return f" (predicted {100 * (tops[0] - tops[1]):.2f} points above the runner-up)" if "fractions" in run else ""


def _section(dataset: str, ipc: int, runs: list[dict], earlier: bool = False) -> str:
    """One (dataset, IPC) table: every selection run (one per seed) against every candidate's full-protocol cells;
    ``earlier`` for the runs kept from a trajectory the dataset's cells have since moved on from."""
    names = runs[0]["candidates"]
    commands = [r["command"] for r in runs]
    runs = runs + _extrapolated(runs)
    if len({r["trajectory"] for r in runs}) > 1:
        raise ValueError(f"{dataset} IPC {ipc}: selection runs on different trajectories "
                         f"{sorted({r['trajectory'] for r in runs})}; run them again on one")
    full = {name: _full(dataset, ipc, CANDIDATES[dataset][name][0], runs[0]["trajectory"]) for name in names}
    label = lambda r: (f"short run, seed {r['seed']}" if not _averaged(r) else  # noqa: E731
                       f"short runs averaged over seeds {', '.join(map(str, r['short_seeds']))}"
                       ) + _horizon(r) + _heldout(r)
    unit = lambda r: "held-out top-1 % predicted in full" if "fractions" in r else "held-out top-1 %"  # noqa: E731
    lines = ["| candidate | " + " | ".join(f"{label(r)}: {unit(r)}" for r in runs) +
             " | full protocol: test top-1 % (seeds) |", "|---" * (len(runs) + 2) + "|"]
    for i, name in enumerate(names):
        short = " | ".join(f"{100 * r['evidence'][i]['top1']:.1f}" + (" **(chosen)**" if r["chosen"] == name else "")
                           for r in runs)
        values = list(full[name].values())
        spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
        shown = (f"{statistics.mean(values):.1f}{spread} ({', '.join(map(str, full[name]))})" if values
                 else "not run on this trajectory yet")
        lines.append(f"| {name} | {short} | {shown} |")
    common = sorted(set.intersection(*(set(v) for v in full.values())))
    mean = {name: statistics.mean(v[s] for s in common) for name, v in full.items()} if common else {}
    # the default share and held-out set, one seed each
    single = [r for r in runs if not _averaged(r) and not _horizon(r) and not _heldout(r)]
    verdicts, gaps, extrapolated_gaps, heldout_gaps = [], [], [], {}
    for r in runs:
        cost = (f"{r['steps']} short-run steps against {r['full_steps']} for every candidate in full "
                f"({100 * r['cost_fraction']:.0f} %), {r['wall_seconds'] / 60:.0f} min on {r['device']}, commit "
                f"{r['commit']}.")
        if _averaged(r):  # averaged over seeds: judged on the mean over the seeds every candidate has
            if len(common) < 2:
                verdicts.append(f"- {label(r)}: chose {r['chosen']}; its verdict waits for every candidate's cells.")
                continue
            gap = max(mean.values()) - mean[r["chosen"]]
            verdicts.append(f"- {label(r)}: chose {r['chosen']}{_margin(r)}, whose mean full-protocol top-1 over seeds "
                            f"{', '.join(map(str, common))} is {gap:.2f} points below the best candidate's "
                            f"({'within' if gap <= 1 else 'NOT within'} the 1-point target); {cost}")
            continue
        s = r["seed"]
        if not all(s in v for v in full.values()):
            verdicts.append(f"- seed {s}{_horizon(r)}{_heldout(r)}: chose {r['chosen']}; not every candidate has a "
                            f"seed-{s} full-protocol cell yet, so its verdict is open.")
            continue
        best = max(v[s] for v in full.values())
        gap = best - full[r["chosen"]][s]
        if _heldout(r) and not _horizon(r):
            heldout_gaps.setdefault(r["heldout_images"], []).append(gap)
        elif not _horizon(r):
            gaps.append(gap)
        elif "fractions" in r:
            extrapolated_gaps.append(gap)
        verdicts.append(f"- seed {s}{_horizon(r)}{_heldout(r)}: chose {r['chosen']}{_margin(r)}, whose seed-{s} "
                        f"full-protocol top-1 is {gap:.2f} points below "
                        f"the best candidate's on that seed ({'within' if gap <= 1 else 'NOT within'} the 1-point "
                        f"target); {cost}")
    summary = (f"Single-seed selection within 1 point on {sum(g <= 1 for g in gaps)} of {len(gaps)} seeds "
               f"(largest gap {max(gaps):.2f})." if gaps else "No selection seed has every candidate's cell yet.")
    if len(common) > 1 and single:  # one seed's cell is noisy: the most frequent choice on the mean over seeds
        choices = [r["chosen"] for r in single]
        chosen = max(dict.fromkeys(choices), key=choices.count)
        gap = max(mean.values()) - mean[chosen]
        summary += (f" On the mean over seeds {', '.join(map(str, common))}, which every candidate has, the most "
                    f"frequent single-seed choice ({chosen}, {choices.count(chosen)} of {len(single)} runs) is "
                    f"{gap:.2f} points below the best candidate ({max(mean, key=mean.get)}; "
                    f"{'within' if gap <= 1 else 'NOT within'} the 1-point target).")
    if extrapolated_gaps:
        summary += (f" Extrapolated from two short runs (`fraction=(1/6, f)`, the committed runs at each share "
                    f"combined): within 1 point on {sum(g <= 1 for g in extrapolated_gaps)} of "
                    f"{len(extrapolated_gaps)} selections (largest gap {max(extrapolated_gaps):.2f}).")
    for count, g in sorted(heldout_gaps.items()):
        summary += (f" Short runs with the same seeds and steps, scored on {count:,} held-out images instead of "
                    f"{runs[0]['heldout_images']:,}: within 1 point on {sum(x <= 1 for x in g)} of {len(g)} seeds "
                    f"(largest gap {max(g):.2f}).")
    summary += (f" Every figure here is of teacher trajectory {runs[0]['trajectory']}: the selection runs' "
                "checkpoints and the candidates' full-protocol cells alike.")
    cells = " ".join(str(s) for s in common) or "0"
    title = f"### {dataset}, IPC {ipc}" + (f" (earlier trajectory {runs[0]['trajectory']})" if earlier else "")
    return (f"{title}\n\n" + "\n".join(lines) + "\n\n" + "\n".join(verdicts) + f"\n\n{summary} "
            f"Held-out: {runs[0]['heldout_images']} training images that no distilled image came from. Commands: "
            + ", ".join(f"`{c}`" for c in commands) + f"; the full-protocol cells: `python "
            f"benchmarks/helio_table.py --dataset {dataset} --ipc {ipc} --seeds {cells} --rows "
            + " ".join(CANDIDATES[dataset][name][0] for name in names) + "`.")


def report() -> None:
    groups: dict[tuple[str, int, bool, str], list[dict]] = {}
    for path in sorted(OUT.glob("*.json")) + sorted(OUT.glob("trajectory-*/*.json")):
        r = json.loads(path.read_text())
        # a (dataset, IPC)'s current runs first, then those kept from earlier trajectories
        groups.setdefault((r["dataset"], r["ipc"], path.parent != OUT, r["trajectory"]), []).append(r)
    sections = [_section(dataset, ipc, sorted(runs, key=lambda r: (bool(_heldout(r)), _averaged(r),
                                                                   r.get("fraction", 1 / 6), r["seed"])), earlier)
                for (dataset, ipc, earlier, _), runs in sorted(groups.items())]
    write_section("select-validation", "## Choosing the teachers by measurement (`ll.select_teachers`)\n\n"
                  "Short student runs with each candidate group of trajectory checkpoints online (HeLlO's protocol "
                  "compressed to 1/6 of its epochs, or the share a column names), scored on held-out training "
                  "images, against the full protocol on the test split. A column \"extrapolated from 1/6 and f\" "
                  "is the selection `ll.select_teachers(fraction=(1/6, f))` makes from that seed's committed runs at "
                  "the two shares: each candidate's top-1 read at the full protocol off the line through them "
                  "against the log of the share (`lightlabel.recipes.select.predicted_top1`), at the cost of both "
                  "runs. A selection run with seed s is judged on the candidates' seed-s full-protocol cells.\n\n"
                  + ("\n\n".join(sections) or "No validation run committed yet."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(CANDIDATES), default="cifar10")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--short-seeds", type=int, nargs="+", default=None,
                        help="average each candidate's short run over these student seeds (default: --seed alone)")
    parser.add_argument("--fraction", type=float, default=1 / 6)
    parser.add_argument("--heldout-per-class", type=int, default=DEFAULT_HELDOUT,
                        help="held-out training images per class to score the short runs on")
    parser.add_argument("--report", action="store_true")
    args = parse_run_args(parser)
    if not args.report:
        measure(args.dataset, args.ipc, args.seed, args.fraction, args.quiet, args.short_seeds, args.heldout_per_class)
    report()


if __name__ == "__main__":
    main()
