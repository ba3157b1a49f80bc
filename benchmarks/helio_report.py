"""The HeLlO comparison's report: docs/results.md's ``helio-table`` section and the top-1-vs-bytes charts, built from
the committed cells under ``benchmarks/results/helio/`` alone (the grid's rows and setting from ``helio_grid.py``).

    python benchmarks/helio_report.py        # or: python benchmarks/helio_table.py --report
"""

from __future__ import annotations

import json
import statistics

from _common import ROOT, write_section
from _plot import _fmt, scatter_chart
from helio_grid import (
    FITTED,
    GRID,
    IMITATES,
    RANDOM,
    ROWS,
    SETTING,
    SETTING_OF,
    cell_files,
    current_trajectory,
    trajectory_path,
)

TRIAGE = ROOT / "benchmarks" / "results" / "triage"


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f} (1 seed)"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} ({len(values)} seeds)"


def _devices_line(cells: list[dict]) -> str:
    """Where a table's cells ran, and why its s / iteration is no speed comparison between rows."""
    cpu = [c for c in cells if not _on_gpu(c)]
    gpus = sorted({c["device"].removeprefix("cuda: ") for c in cells if _on_gpu(c)})
    parts = []
    if cpu:
        threads = " or ".join(map(str, sorted({c["torch_threads"] for c in cpu})))
        parts.append(f"{_cells(len(cpu))} ran on 2-core CPUs with {threads} torch thread(s), some alone and some while "
                     "other jobs shared the cores (the machines differ up to 2x in speed: 2.5-5 min per Imagenette "
                     "trajectory epoch)")
    if gpus:
        parts.append(f"{_cells(len(cells) - len(cpu))} ran on one {' or '.join(gpus)} (online labels under bf16 "
                     "autocast, the student in fp32), each alone on it")
    return ("; ".join(parts) + ". s / iteration here is not a speed comparison between rows; the speed of each "
            "label source is measured alone in 'Student iteration time by label source'.")


def _cells(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


def _on_gpu(cell: dict) -> bool:
    return cell.get("device", "cpu").startswith("cuda")


def _by_device(cells: list[dict], key: str, unit: float, fmt: str) -> str:
    """Mean of ``key`` over a row's cells, one figure per device kind (CPU and GPU figures never averaged)."""
    out = []
    for name, group in (("CPU", [c for c in cells if not _on_gpu(c)]), ("GPU", [c for c in cells if _on_gpu(c)])):
        if group:
            out.append(fmt.format(statistics.mean(c[key] for c in group) / unit) + f" ({name})")
    return ", ".join(out)


def triage_section() -> str:
    cells = [json.loads(p.read_text()) for p in sorted(TRIAGE.glob("cifar10-*.json"))]
    if not cells:
        return ""
    groups: dict[tuple, list[float]] = {}
    for c in cells:
        groups.setdefault((c["steps"], c["labels"], c["views"]), []).append(100 * c["top1"])
    views = {"rded_f1": "RDED's views (f = 1: no crop)", "rrc008": "RRC(0.08, 1) views (lightlabel 0.1)"}
    lines = ["| steps | labels | " + " | ".join(views.values()) + " |", "|---|---|---|---|"]
    for steps in sorted({k[0] for k in groups}):
        for labels in ("teacher", "hard"):
            cols = [_mean_std(groups[(steps, labels, v)]) if (steps, labels, v) in groups else "not run yet"
                    for v in views]
            name = "online ResNet-56" if labels == "teacher" else "hard"
            lines.append(f"| {steps} | {name} | " + " | ".join(cols) + " |")
    agree = []
    for v, title in views.items():
        p = TRIAGE / f"agreement-{v}.json"
        if p.is_file():
            a = json.loads(p.read_text())
            agree.append(f"| {title} | {100 * a['dominant_class']:.0f} % | {100 * a['either_source_class']:.0f} % | "
                         f"{a['mean_p_max']:.2f} |")
    commits = sorted({c["commit"][:7] for c in cells})
    sets = sorted({c["distilled_images_sha256"][:12] for c in cells})
    threads = sorted({c.get("threads", 2) for c in cells})
    return ("### Protocol triage (CIFAR-10, IPC 10)\n\n"
            "Top-1 % on the 10,000 CIFAR-10 test images, mean ± std over seeds, of a ResNet-18 "
            "student trained on one RDED IPC-10 set (300 candidates per class, 5 crops, ResNet-56 observer) with "
            "online ResNet-56 labels (MSE + 0.025 CE) or hard labels (CE on the CutMix targets), AdamW 1e-3 cosine, "
            "batch 100, so steps = epochs. Views: flip + CutMix, with or without RandomResizedCrop(0.08, 1).\n\n"
            + "\n".join(lines) + "\n\nThe real ResNet-56 on 1,000 views of each kind (seed 0): how often its argmax "
            "is the dominant class of the CutMix view, or either of its two source classes, and its mean max "
            "probability.\n\n| views | dominant class | either source class | mean p_max |\n|---|---|---|---|\n"
            + "\n".join(agree) + f"\n\nCommand: `python benchmarks/protocol_triage.py --out benchmarks/results/triage` "
            f"(cells ran against commits {', '.join(commits)} from a separate worktree, with {' or '.join(map(str, threads))} "
            f"torch thread(s); " + (f"every cell trained on the distilled set whose images hash to {sets[0]} (sha256 "
            "prefix), so the cells compare labels and views on the same images" if len(sets) == 1 else
            f"the cells trained on distilled sets whose images hash to {', '.join(sets)} (sha256 prefixes)")
            + "; a cell records its commit).")


def _sets_line(cells: list[dict]) -> str:
    """Which distilled set(s) the cells trained on: rows only compare labels alike when they share the images.

    A set rebuilt from other caches (a teacher retrained on another machine, say) hashes differently; mixing such cells
    in one table is then said in bold, with the rows on each set. Random-subset rows draw their images per seed by
    design (``ll.random_subset``), so their hashes are listed apart and never count as a mix.
    """
    by_set: dict[str, list[str]] = {}
    drawn: dict[int, set[str]] = {}
    own: list[str] = []
    for c in cells:
        if c["row"] in RANDOM:
            drawn.setdefault(c["seed"], set()).add(c["distilled_sha256"][:12])
            continue
        if c["row"] in GRID and GRID[c["row"]].own_images:  # images of its own by design (observer, Eq. 7)
            own.append(f"{c['row']} s{c['seed']} {c['distilled_sha256'][:12]}")
            continue
        by_set.setdefault(c["distilled_sha256"][:12], []).append(f"{c['row']} s{c['seed']}")
    random_note = ("" if not drawn else " The random-subset rows train on the real images each seed draws (the same "
                   "draw for every label source of a seed): "
                   + ", ".join(f"seed {s} " + (next(iter(shas)) if len(shas) == 1 else  # one seed, two draws: said plainly
                                              f"{' and '.join(sorted(shas))} (**{len(shas)} draws for one seed**)")
                               for s, shas in sorted(drawn.items())) + ".")
    if own:
        random_note += (" Rows on images of their own by design (another observer, or Eq. 7 refinement): "
                        + ", ".join(sorted(own)) + ".")
    if len(by_set) <= 1:
        return ("" if not by_set else f"Every distilled-image cell trained on the distilled set whose images hash to "
                f"{next(iter(by_set))} (sha256 prefix).") + random_note
    return (f"**These cells trained on {len(by_set)} different distilled sets** (rebuilt from other caches), so rows "
            "on different sets do not compare labels on the same images: "
            + "; ".join(f"{sha}: {', '.join(sorted(rows))}" for sha, rows in sorted(by_set.items())) + "."
            + random_note)


def not_run_reason(ds: str, ipc: int, row: str) -> str:
    """Why a random-subset cell has no result: the GPU-only stages it needs, its CPU cost, or not run yet."""
    if ipc == 50 and ds == "imagenette" and GRID[row].uses_trajectory(ds):
        return ("not run: 1,500 student steps with online labels, about 1.5 h per cell on the 2 CPU cores, and only "
                "where the distilled-image row's trajectory is cached (its checkpoints are not committed: a fresh "
                "machine trains another; in the GPU script)")
    if ipc == 50:
        return ("not run: 1,500 student steps, 40-110 min per cell on the 2 CPU cores (in the GPU script)")
    if ds == "imagenette" and row == "random_projector":
        return ("not run: needs the 20-epoch fit on all 9,469 images, about 2 h on the 2 CPU cores (in the GPU "
                "script)")
    if ds == "imagenette" and row != "random_hard":
        gpu = "; in the GPU script" if row in ("random_projector", "random_teacher") else ""
        return f"not run on this trajectory yet (about {5 if ipc == 1 else 20} min per cell on the 2 CPU cores{gpu})"
    return "not run yet"


def _refit_note(mine: list[dict], theirs: list[dict]) -> str:
    """Where the random side's adapter is not the one the distilled side used (the fit cache was rebuilt, e.g. on
    another machine, whose CPU arithmetic does not reproduce the fit bit for bit): the two fits' held-out agreement,
    so that a reader knows the gain includes the spread between two fits of one setting. Two cells used one adapter
    when their fits' agreement by epoch is identical."""
    fits = [{tuple(c["fit"]["agreement_by_epoch"]) for c in side if c.get("fit")} for side in (mine, theirs)]
    if not all(fits) or fits[0] & fits[1]:
        return ""
    final = [", ".join(f"{f[-1]:.3f}" for f in sorted(side)) for side in fits]
    return (f" (the random side's adapter is another fit of the same setting, held-out agreement {final[1]} against "
            f"{final[0]}: the gain includes the spread between fits)")


#: how the report names the checkpoints a fit imitates, by the grid's stage (SETUP's checkpoint lists)
_STAGE_WORDS = {"weak": "weak", "late": "later", "first": "first-checkpoint", "final": "last-checkpoint"}


def _random_gain(ds: str, ipc: int, rows: dict[str, list[dict]],
                 marked: dict[tuple[str, int, str], str] | None = None) -> str:
    """The distilled-over-random table: per label source, mean top-1 on the distilled set minus on random subsets;
    every random row of the grid is listed, with the reason where its cells are not run.

    This is DD-Ranking's IOR term (Acc(synthetic, soft) - Acc(random, soft)), the plain difference of means over the
    seeds run; DD-Ranking's LRS also needs a student trained on the full real set (its HLR term), not run here.
    """
    marked = marked or {}  # rows on another teacher trajectory than the table's: marked †, their gain not taken unless
    # both sides ran on the same trajectory or the random side depends on none
    out = []
    for random_row, by_dataset in RANDOM.items():
        if ds not in by_dataset or (GRID[random_row].only and (ds, ipc) not in GRID[random_row].only):
            continue  # a random row of other cells
        source = by_dataset[ds]
        mine, theirs = rows.get(source) or [], rows.get(random_row) or []
        d = [100 * c["top1"] for c in mine]
        old = [r for r in (source, random_row) if (ds, ipc, r) in marked]
        distilled = (_mean_std(d) + (" †" if source in old else "")) if d else "not run"
        if not theirs:
            out.append(f"| {source} | {distilled} | {not_run_reason(ds, ipc, random_row)} | - |")
            continue
        r = [100 * c["top1"] for c in theirs]
        gain = f"{statistics.mean(d) - statistics.mean(r):+.1f}" if d else "distilled row not run"
        teacher_side = GRID[random_row].uses_trajectory(ds)  # hard labels on real images use no trajectory
        if d and old and teacher_side and marked.get((ds, ipc, source)) != marked.get((ds, ipc, random_row)):
            gain = f"not taken: {' and '.join(old)} on another teacher trajectory (†) than the other side"
        elif d:
            if old:  # both sides on one earlier trajectory; or an earlier distilled set against random images with
                # no teacher, as it would compare on the current trajectory's set
                gain += (f" (both sides on trajectory {marked[(ds, ipc, source)]} †)" if teacher_side else
                         " (the distilled set of another trajectory †; the random side uses no teacher)")
            gain += _refit_note(mine, theirs)
        out.append(f"| {source} | {distilled} | {_mean_std(r)}{' †' if random_row in old else ''} | {gain} |")
    return ("Distilled over random, per label source: mean top-1 on the distilled set minus on random subsets (IPC "
            "real images per class, drawn by each seed; whole images, so their views have no patch grid), the same "
            "protocol; the seeds each side has are given. This is DD-Ranking's IOR term as a plain difference of means; "
            "its LRS would also need a student trained with hard labels on the whole real set (its HLR term; DD-Ranking "
            "0.2.0 caches that accuracy for ResNet-18 only on ImageNet-1k and Tiny-ImageNet), which is not run here.\n\n"
            "| labels | distilled images | random images | gain (points) |\n|---|---|---|---|\n" + "\n".join(out) + "\n\n")


def _mean(cells: list[dict]) -> float | None:
    return statistics.mean(100 * c["top1"] for c in cells) if cells else None


def _later(by_row: dict[str, list[dict]]) -> str:
    """What the cells say about the remedy for a stage gap: the later checkpoints online, and fitted to."""
    late, fitted = _mean(by_row["late_teachers"]), _mean(by_row["projector_late"])
    if late is None:
        return "the later checkpoints (`late_teachers`, `projector_late`) are not run here yet"
    return f"the later checkpoints teach {late:.1f} online" + (
        f", the projector fitted to them {fitted:.1f}" if fitted is not None else
        " (the projector fitted to them, `projector_late`, is not run yet)")


def _fit_setting(row: str) -> str:
    """A fitted row's fit in words: its epochs (else the short default fit), then what else it changes."""
    fit = GRID[row].fit
    words = [f"{fit['epochs']} epochs" if "epochs" in fit else "the short fit"]
    extra = {"per_class": lambda v: "all images" if v == 0 else f"{v} images per class",
             "image_rank": lambda v: f"LoRA rank {v}", "label_size": lambda v: f"{v} px", "seed": lambda v: f"fit seed {v}"}
    return ", ".join(words + [say(fit[key]) for key, say in extra.items() if key in fit])


def _by_fit_length(fitted: dict[str, float], ensemble: str) -> str:
    """The fits of one ensemble on one cell, shortest fit first, each with its setting, where there are two or more:
    whether a longer (or larger) fit closes an imitation gap."""
    rows = sorted((r for r in fitted if IMITATES[r] == ensemble), key=lambda r: (_fit_epochs(r), fitted[r]))
    if len(rows) < 2:
        return ""
    return "; its fits: " + ", ".join(f"`{r}` {fitted[r]:.1f} ({_fit_setting(r)})" for r in rows)


def _helio_length(ensemble: str) -> str | None:
    """The row that fits the projector to ``ensemble`` as HeLlO does (20 epochs on the whole training split), if the
    grid has one: ``projector_full`` for the weak checkpoints, ``projector_late`` for the later ones."""
    return next((r for r in IMITATES if IMITATES[r] == ensemble and SETTING_OF.get(r, r) == r
                 and GRID[r].fit.get("epochs") == 20 and GRID[r].fit.get("per_class") == 0), None)


def _fit_epochs(row: str) -> int:
    """A fitted row's fit epochs (its own setting, else the short default fit's: 3 on CIFAR-10, 2 on Imagenette, both
    below every set length; used as an order only)."""
    return GRID[row].fit.get("epochs", 3)


def _trajectories(ds: str, cells: list[dict]) -> list[str | None]:
    """The teacher trajectories a dataset's cells ran on, newest first: the current one (``trajectory_path``), then
    the earlier ones its record lists, latest replaced first, then any other id the cells carry. Only trajectories
    that one of ``cells`` of a row that depends on the trajectory ran on (a cell without an id counts as on the
    current one); the current one alone when no such cell is given."""
    current = current_trajectory(ds)
    path = trajectory_path(ds)
    earlier = list(json.loads(path.read_text()).get("earlier", {})) if path.is_file() else []
    order = [current] + earlier[::-1]
    ran = {c.get("trajectory", current) for c in cells if c["row"] in GRID and GRID[c["row"]].uses_trajectory(ds)}
    return [t for t in order if t in ran] + sorted(ran - set(order)) or [current]


def table_trajectory(ds: str, cells: list[dict]) -> str | None:
    """The trajectory one (dataset, IPC) table is read off: the newest on which the online teacher and a fitted
    projector row both ran (as each line of ``gap_table``), else the newest any of its trajectory rows ran on. A
    newer trajectory's first cells therefore leave the table as it was until it can compare the projector with the
    teacher, and a table with no cell on the newer trajectory is not touched by it."""
    order = _trajectories(ds, cells)
    return next((t for t in order if _compares({c["row"] for c in _on(ds, cells, t)})), order[0])


def _compares(rows) -> bool:
    """Whether rows run on one trajectory (names, or a mapping of name to its cells) hold an online teacher and a
    fitted projector: what a line of ``gap_table`` and a table's trajectory need."""
    ran = {r for r in rows if rows[r]} if isinstance(rows, dict) else set(rows)
    return "teacher" in ran and bool(ran & set(IMITATES))


def _on(ds: str, cells: list[dict], trajectory: str | None) -> list[dict]:
    """The cells of one trajectory: those run on it, and those of rows that use no trajectory (e.g. hard labels). A
    cell of a trajectory row that carries no id counts as on the current trajectory, as in ``on_one_trajectory``."""
    current = current_trajectory(ds)
    return [c for c in cells if c["row"] in GRID and (not GRID[c["row"]].uses_trajectory(ds)
                                                      or c.get("trajectory", current) == trajectory)]


def _newer(ds: str, trajectory: str | None, by_row: dict[str, list[dict]]) -> str:
    """What a newer trajectory's cells show, when a line is read off an earlier one because the newer one has no
    online teacher or no fitted projector yet (said which): its rows that depend on it (online teachers, fitted
    projectors, hard labels on its distilled set), each with its number of cells."""
    shown = [f"`{r}` {_mean(by_row[r]):.1f} ({_cells(len(by_row[r]))})" for r in ROWS
             if by_row[r] and GRID[r].uses_trajectory(ds)]
    missing = "no online teacher" if not by_row["teacher"] else "no fitted projector"
    return (f"; on the newer trajectory {trajectory} ({missing} there yet) its rows teach "
            + ", ".join(shown)) if shown else ""


def _older(trajectory: str | None, by_row: dict[str, list[dict]]) -> str:
    """An earlier trajectory's own line, in brief: its teacher, its best fitted setting and what that imitates."""
    _, fitted = _settings(by_row)
    best = max(fitted, key=fitted.get)
    ens = _mean(by_row[IMITATES[best]])
    return (f"; on the earlier trajectory {trajectory}: teacher {_mean(by_row['teacher']):.1f}, `{best}` "
            f"{fitted[best]:.1f}" + (f", the checkpoints it imitates {ens:.1f}" if ens is not None else ""))


def _settings(by_row: dict[str, list[dict]]) -> tuple[dict[str, list[str]], dict[str, float]]:
    """The fitted settings that ran: each setting's rows (one per fit seed), and its mean of the fits' means."""
    fits: dict[str, list[str]] = {}
    for r in IMITATES:
        if by_row[r]:
            fits.setdefault(SETTING_OF.get(r, r), []).append(r)
    return fits, {s: statistics.mean(_mean(by_row[r]) for r in rows) for s, rows in fits.items()}


def _random_column(ds: str, best: str, by_row: dict[str, list[dict]]) -> str:
    """The gap table's "random images: projector / teacher / hard": each label source's mean on random subsets. The
    projector's is the random row labelled by the line's best setting where it ran, else by another fitted row (named
    then); "-" where none ran."""
    def of(kind: str) -> str:
        rows = [r for r, by_dataset in RANDOM.items() if by_row.get(r) and ds in by_dataset
                and (by_dataset[ds] in FITTED if kind == "fit" else by_dataset[ds] == kind)]
        if not rows:
            return "-"
        if kind != "fit":
            return f"{_mean(by_row[rows[0]]):.1f}"
        same = [r for r in rows if SETTING_OF[RANDOM[r][ds]] == SETTING_OF[best]]
        r = (same or rows)[0]
        return f"{_mean(by_row[r]):.1f}" + ("" if same else f" (`{RANDOM[r][ds]}`)")
    return " / ".join(of(kind) for kind in ("fit", "teacher", "hard"))


def gap_table(cells: list[dict]) -> str:
    """Per (dataset, IPC): the online teacher, the best projector setting (its fits pooled), the gap, the ensemble it
    imitates, the random baselines, and the measured reason where the projector is not within 2 points of the
    teacher.

    Every figure of a line comes from one teacher trajectory: the newest on which both the teacher and a fitted
    projector row ran (``cells`` are all cells, of every trajectory). A newer trajectory without a fitted projector
    is then named in the line, with what its rows teach; an earlier one with a line of its own is summed up."""
    lines = ["| cell | online teacher | best projector setting (row) | gap | ensemble it imitates | random images: "
             "projector / teacher / hard | why |", "|---|---|---|---|---|---|---|"]
    for ds in ("cifar10", "imagenette"):
        for ipc in sorted({c["ipc"] for c in cells if c["dataset"] == ds}):
            here = [c for c in cells if c["dataset"] == ds and c["ipc"] == ipc]
            views = [(t, {r: [c for c in _on(ds, here, t) if c["row"] == r] for r in ROWS})
                     for t in _trajectories(ds, here)]
            complete = [i for i, (_, rows) in enumerate(views) if _compares(rows)]
            if not complete:
                continue
            trajectory, by_row = views[complete[0]]
            seen = views[:complete[0]]  # the newer trajectories passed over: no teacher or no fitted projector on them
            older = [views[i] for i in complete[1:]]  # earlier trajectories with a line of their own
            teacher = _mean(by_row["teacher"])
            fits, fitted = _settings(by_row)
            best = max(fitted, key=fitted.get)
            proj, ens = fitted[best], _mean(by_row[IMITATES[best]])
            gap = proj - teacher
            if gap >= -2:
                # within 2 points, the fits to the same ensemble say what closed the gap (fit length, rank)
                why = "within 2 points" if gap < 2 else "the projector leads"
                if ens is not None:  # a lead can come from a weak last checkpoint: how close the fit is to its ensemble
                    why += f" ({proj - ens:+.1f} against the ensemble it imitates)"
                why += _by_fit_length(fitted, IMITATES[best]) if gap < 2 else ""
            elif ens is not None and ens < teacher - 2:
                why = f"the checkpoints it imitates teach {ens:.1f} themselves: their stage, not the fit; " + _later(by_row)
            elif ens is not None:
                full = _helio_length(IMITATES[best])
                why = f"imitation: its ensemble teaches {ens:.1f}, the fit falls {ens - proj:.1f} short" + (
                    _by_fit_length(fitted, IMITATES[best]) + (
                        "" if full is None or by_row[full] else
                        f"; the HeLlO-length fit to it (`{full}`) is not run here yet"))
            else:
                why = "its ensemble's cell is not run on this trajectory yet"
            why += "".join(_newer(ds, t, rows) for t, rows in seen) + "".join(_older(t, rows) for t, rows in older)
            rnd = _random_column(ds, best, by_row)
            students = sum(len(by_row[r]) for r in fits[best])
            count = (f"{students} seed{'s' * (students > 1)}" if len(fits[best]) == 1 else
                     f"{len(fits[best])} fits, {students} students: "
                     + " / ".join(f"{_mean(by_row[r]):.1f}" for r in fits[best]))
            name = f"{ds} IPC {ipc}" + (f" (trajectory {trajectory})" if seen else "")
            lines.append(f"| {name} | {teacher:.1f} | {proj:.1f} (`{best}`, {count}) | {gap:+.1f} | "
                         f"{'-' if ens is None else f'{ens:.1f}'} | {rnd} | {why} |")
    return ("### The projector against the online teacher, cell by cell\n\nMean top-1 % over the seeds run (the "
            "tables below give each row's seeds and spread). \"Why\" is read off the measured cells: the ensemble of "
            "checkpoints the projector imitates, run online under the same protocol, shows whether the gap is the "
            "checkpoints' stage or the fit. A setting fitted more than once (rows that differ in the fit seed alone, "
            "e.g. `projector_fit20_seed1`) counts as the mean of its fits' means, each fit's mean listed, so the "
            "luckiest of several fits is never the one reported. Every line is read off one teacher trajectory: the "
            "newest on which the teacher and a fitted projector both ran; a line on an earlier one names it, and says "
            "what the newer one's rows teach.\n\n" + "\n".join(lines))


def on_one_trajectory(cells: list[dict]) -> tuple[list[dict], dict[tuple[str, int, str], str]]:
    """The cells a report compares: per (dataset, IPC, row) of a row that uses the trajectory, the cells run on the
    table's trajectory (``table_trajectory``) where there are any, else those of the newest trajectory the row ran
    on, marked with its id (never cells of two trajectories pooled in one mean).

    A trajectory retrained on another machine or torch version is another set of teachers (CPU training is not
    reproducible bit for bit across them), so a row on it is not comparable cell for cell with rows on the table's
    one. (The runner runs such a cell again on the current trajectory and moves the earlier one to
    ``helio_grid.earlier_cell_path``, where this still reads it.) Returns the kept cells and the marked groups, to
    the id of the trajectory they ran on.
    """
    kept, marked = [], {}
    for ds, ipc in sorted({(c["dataset"], c["ipc"]) for c in cells}):
        here = [c for c in cells if (c["dataset"], c["ipc"]) == (ds, ipc)]
        table, current = table_trajectory(ds, here), current_trajectory(ds)
        for row in dict.fromkeys(c["row"] for c in here):
            group = [c for c in here if c["row"] == row]
            if row not in GRID or not GRID[row].uses_trajectory(ds):
                kept += group
                continue
            newest = table if any(c.get("trajectory", current) == table for c in group) else \
                _trajectories(ds, group)[0]
            kept += [c for c in group if c.get("trajectory", current) == newest]
            if newest != table:
                marked[(ds, ipc, row)] = newest
    return kept, marked


def trajectory_line(ds: str, ipc: int, marked: dict[tuple[str, int, str], str], table: str | None = None) -> str:
    """The table's note on teacher trajectories: which one its rows ran on (``table``, from ``table_trajectory``;
    default the current one), and the rows on another one."""
    path = trajectory_path(ds)
    if not path.is_file():
        return ""
    record = json.loads(path.read_text())
    earlier = record.get("earlier", {})
    table = table or record["id"]

    def top1(r: dict) -> str:
        by_epoch = sorted(r["checkpoint_test_top1"].items(), key=lambda kv: int(kv[0]))
        return " / ".join(f"{100 * v:.1f}" for _, v in by_epoch) + " %" if by_epoch else "not recorded"

    rows = sorted(row for (d, i, row) in marked if (d, i) == (ds, ipc))
    known = {record["id"]: record, **earlier}
    line = (f"Teachers: the rows built on the {ds} trajectory ran on trajectory {table} (checkpoints' test "
            f"top-1 by epoch {top1(known[table]) if table in known else 'not recorded'})")
    if table != record["id"]:
        line += (f"; the runner's current trajectory, {record['id']} ({top1(record)}), does not have both an online "
                 f"teacher and a fitted projector in this table yet")
    if rows:
        ids = sorted({marked[(ds, ipc, r)] for r in rows})
        line += ("; **marked † are rows on another trajectory** ("
                 + ", ".join(f"{i}: {top1(known[i])}" if i in known else i for i in ids)
                 + "), not comparable cell for cell with the others: " + ", ".join(f"`{r}`" for r in rows))
    return line + "."


def report() -> None:
    every = [json.loads(p.read_text()) for p in cell_files()]
    cells, marked = on_one_trajectory(every)
    sections = [gap_table(every)]
    triage = triage_section()
    if triage:
        sections.append(triage)
    for ds in ("cifar10", "imagenette"):
        mine = [c for c in cells if c["dataset"] == ds]
        if not mine:
            continue
        for ipc in sorted({c["ipc"] for c in mine}):
            rows = {r: [c for c in mine if c["ipc"] == ipc and c["row"] == r] for r in ROWS}
            table = table_trajectory(ds, [c for c in every if (c["dataset"], c["ipc"]) == (ds, ipc)])
            lines = ["| labels | top-1 % (last epoch) | best of epochs 250, 300 | extra bytes | s / iteration | "
                     "peak memory (MiB) | label-view agreement: source / dominant / p_max |",
                     "|---|---|---|---|---|---|---|"]
            points: list[tuple[str, float, float]] = []
            for row, cs in rows.items():
                if not cs:
                    continue
                top = [100 * c["top1"] for c in cs]
                best = [100 * c["best_top1"] for c in cs]
                nbytes = int(statistics.mean(c["extra_storage_bytes"] for c in cs))
                a = cs[0].get("label_view_agreement")
                agree = (f"{100 * a['source_class']:.0f} % / {100 * a['dominant_class']:.0f} % / {a['mean_p_max']:.2f}"
                         if a else "n/a")
                dagger = " †" if (ds, ipc, row) in marked else ""
                lines.append(f"| {ROWS[row]}{dagger} | {_mean_std(top)} | {_mean_std(best)} | {nbytes:,} | "
                             f"{_by_device(cs, 'seconds_per_iter', 1, '{:.2f}')} | "
                             f"{_by_device(cs, 'peak_memory_bytes', 2**20, '{:,.0f}')} | {agree} |")
                points.append((f"{row} ({_fmt(nbytes, 'bytes') if nbytes else '0 bytes'})", max(nbytes, 1),
                               statistics.mean(top)))
            gain = _random_gain(ds, ipc, rows, marked)
            chart = f"helio-{ds}-ipc{ipc}-bytes.png"
            if points:
                scatter_chart(ROOT / "docs" / chart, points, title=f"{ds}, IPC {ipc}: student top-1 vs extra bytes "
                              "(hard labels plotted at 1 byte)", xlabel="extra bytes (log)", ylabel="top-1 %",
                              logx=True, xunit="bytes")
            steps = sorted({c["steps"] for c in mine if c["ipc"] == ipc})
            hours = sum(c["wall_seconds"] for c in mine if c["ipc"] == ipc) / 3600
            fit_line = ""
            for fit_row in FITTED:
                if any(FITTED[other] == FITTED[fit_row] for other in list(FITTED)[:list(FITTED).index(fit_row)]):
                    continue  # the same adapter as an earlier row's (on other images): said once
                fit = next((c["fit"] for c in mine if c["ipc"] == ipc and c["row"] == fit_row and "fit" in c), None)
                if fit:
                    curve = fit.get("agreement_by_epoch")
                    stage = _STAGE_WORDS[GRID[fit_row].fit.get("stage", "weak")]
                    one = fit["num_teachers"] == 1
                    fit_line += (
                        f"Adapter fit (`{fit_row}`): {fit['epochs']} epochs on {fit['samples']:,} images, "
                        f"{fit['num_teachers']} {stage} teacher{'' if one else 's'}; held-out top-1 agreement with "
                        f"{'it' if one else 'them'} "
                        f"{fit.get('final_agreement', float('nan')):.3f}"
                        + (f" (by epoch, from 0 = before fitting: {', '.join(f'{a:.3f}' for a in curve)})" if curve else "")
                        + f", projector top-1 {fit.get('final_top1', float('nan')):.3f}, {stage}-teacher{'' if one else ' ensemble'} top-1 "
                        f"{fit.get('final_teacher_top1', float('nan')):.3f}"
                        + (f", {fit['fit_seconds'] / 60:.0f} min of fitting" if fit.get("fit_seconds") else "") + ".\n\n")
            sections.append(f"### {ds}, IPC {ipc} ({', '.join(map(str, steps))} student steps)\n\n{fit_line}"
                            + "\n".join(lines) + f"\n\n{gain}![{ds} IPC {ipc}: top-1 vs bytes]({chart})\n\n"
                            f"{len([c for c in mine if c['ipc'] == ipc])} cells, {hours:.1f} hours of student wall time "
                            f"(a resumed cell counts its last process only). "
                            f"{_devices_line([c for c in mine if c['ipc'] == ipc])} "
                            f"{_sets_line([c for c in mine if c['ipc'] == ipc])} "
                            f"{trajectory_line(ds, ipc, marked, table)} "
                            f"Each cell: `python benchmarks/helio_table.py --dataset {ds} --ipc {ipc} --seeds S "
                            f"--rows ROW`; the files are in `benchmarks/results/helio/{ds}/ipc{ipc}/`.")
    write_section("helio-table", "## The HeLlO comparison on real data\n\nSetting:\n\n" + SETTING + "\n\n"
                  + "\n\n".join(sections))


def main() -> None:
    import argparse
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    report()


if __name__ == "__main__":
    main()
