"""The benchmarks' own checks (in pytest's testpaths, so `python -m pytest` runs them; the library's tests never read this
folder): they import the library's public API and documented submodules only, never a private module."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

# the reports draw charts: the bench extra (pip install -e ".[bench]"), which the README's test command installs
pytest.importorskip("matplotlib", reason="the benchmark reports need matplotlib: pip install -e '.[bench]'")

BENCHMARKS = Path(__file__).resolve().parents[1]


def test_benchmarks_import_no_private_module():
    bad = []
    for path in BENCHMARKS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else ([module] if module else [])
            for name in names:
                parts = name.split(".")
                if parts[0] == "lightlabel" and any(p.startswith("_") and p != "__init__" for p in parts[1:]):
                    bad.append(f"{path.name}: {name}")
    assert not bad, bad


def _module(name: str):
    import importlib
    import sys
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_sets_line_keeps_random_draws_apart_and_flags_a_real_mix():
    sets_line = _module("helio_report")._sets_line
    cell = lambda row, seed, sha: {"row": row, "seed": seed, "distilled_sha256": sha * 12}  # noqa: E731
    one = sets_line([cell("hard", 0, "a"), cell("teacher", 1, "a"), cell("random_hard", 0, "b"),
                     cell("random_teacher", 0, "b"), cell("random_hard", 1, "c")])
    assert "Every distilled-image cell" in one and "different distilled sets" not in one
    assert "seed 0 bbbbbbbbbbbb, seed 1 cccccccccccc" in one
    mixed = sets_line([cell("hard", 0, "a"), cell("teacher", 0, "d")])
    assert "**These cells trained on 2 different distilled sets**" in mixed
    two_draws = sets_line([cell("random_hard", 0, "b"), cell("random_teacher", 0, "e")])
    assert "**2 draws for one seed**" in two_draws


def test_the_random_gain_lists_every_random_row_and_says_why_a_cell_is_missing():
    gain = _module("helio_report")._random_gain
    cell = lambda top1: {"top1": top1}  # noqa: E731
    text = gain("cifar10", 10, {"projector_fit10": [cell(0.4), cell(0.5)], "random_projector": [cell(0.3)],
                                "hard": [cell(0.3)]})
    assert "| projector_fit10 | 45.0 ± 7.1 (2 seeds) | 30.0 (1 seed) | +15.0 |" in text
    assert "| hard | 30.0 (1 seed) | not run yet | - |" in text
    assert "| teacher | not run | not run yet | - |" in text
    imagenette = gain("imagenette", 10, {"random_hard": [cell(0.3)]})
    assert "| projector_full | not run | not run: needs the 20-epoch fit on all 9,469 images" in imagenette
    assert "| teacher | not run | not run on this trajectory yet (about 20 min per cell" in imagenette
    assert "| hard | not run | 30.0 (1 seed) | distilled row not run |" in imagenette
    assert "| projector_late_fit10 | not run | not run on this trajectory yet (about 20 min per cell on the 2 CPU " \
           "cores) |" in imagenette
    assert "(about 5 min per cell on the 2 CPU cores; in the GPU script)" in gain("imagenette", 1, {})
    assert "40-110 min per cell" in gain("cifar10", 50, {})
    assert "only where the distilled-image row's trajectory is cached" in gain("imagenette", 50, {})
    # a distilled row on an earlier trajectory: its gain over a random row that uses the trajectory is not taken,
    # over one that uses none (hard labels on real images) it is, and says whose distilled set it is
    old = {("imagenette", 50, "hard"): "5deecbb", ("imagenette", 50, "teacher"): "5deecbb"}
    marked = gain("imagenette", 50, {"hard": [cell(0.55)], "random_hard": [cell(0.44)], "teacher": [cell(0.6)],
                                     "random_teacher": [cell(0.5)]}, old)
    assert "| hard | 55.0 (1 seed) † | 44.0 (1 seed) | +11.0 (the distilled set of another trajectory †" in marked
    assert "| teacher | 60.0 (1 seed) † | 50.0 (1 seed) | not taken: teacher on another teacher trajectory" in marked
    # both sides on the same earlier trajectory: the gain is taken, and names it
    both = {("imagenette", 10, "projector_late"): "79091", ("imagenette", 10, "random_projector_late"): "79091",
            ("imagenette", 10, "random_teacher"): "79091"}
    one = gain("imagenette", 10, {"projector_late": [cell(0.58)], "random_projector_late": [cell(0.54)],
                                  "teacher": [cell(0.56)], "random_teacher": [cell(0.53)]}, both)
    assert "| projector_late | 58.0 (1 seed) † | 54.0 (1 seed) † | +4.0 (both sides on trajectory 79091 †) |" in one
    assert "| teacher | 56.0 (1 seed) | 53.0 (1 seed) † | not taken: random_teacher on another teacher" in one
    # the random side's adapter refitted (another machine): the gain says so; the same adapter: it does not
    fit = lambda top1, agreement: {"top1": top1, "fit": {"agreement_by_epoch": [0.2, agreement]}}  # noqa: E731
    same = gain("cifar10", 10, {"projector_fit10": [fit(0.5, 0.8)], "random_projector": [fit(0.4, 0.8)]})
    assert "| projector_fit10 | 50.0 (1 seed) | 40.0 (1 seed) | +10.0 |" in same
    refit = gain("cifar10", 10, {"projector_fit10": [fit(0.5, 0.8), fit(0.6, 0.8)], "random_projector": [fit(0.4, 0.7)]})
    assert ("| +15.0 (the random side's adapter is another fit of the same setting, held-out agreement 0.700 against "
            "0.800: the gain includes the spread between fits) |") in refit


def test_the_grid_is_consistent_data():
    import inspect
    grid = _module("helio_grid")
    run_fit = inspect.signature(_module("helio_table").Run.fit).parameters
    for name, row in grid.GRID.items():
        for other in [*row.labels_of.values(), row.stored_from, row.imitates]:
            assert other is None or other in grid.GRID, (name, other)
        if row.imitates:
            assert grid.GRID[row.imitates].labels == "ensemble", name
        assert set(row.fit) <= set(run_fit), (name, row.fit)
        if row.labels == "ensemble":
            assert all(row.stage in setup or row.only for setup in grid.SETUP.values()), name
        assert (row.labels == "stored") == (row.compression is not None), name
        assert (row.labels == "row") == bool(row.labels_of) == (row.images == "random"), name


def test_the_grid_selects_the_cells_of_the_table():
    grid = _module("helio_grid")
    cells = {(ds, ipc, seed, name) for name, row in grid.GRID.items() for ds in grid.SETUP for ipc in (1, 10, 50)
             for seed in (0, 1, 2) if row.runs(ds, ipc, seed)}
    assert ("cifar10", 50, 1, "projector") not in cells and ("cifar10", 50, 0, "projector") in cells
    assert {c[3] for c in cells if c[:3] == ("cifar10", 50, 1)} == {"teacher", "projector_fit20_r32",
                                                                     "projector_fit20_r32_seed1",
                                                                     "projector_late_fit20_r32",
                                                                     "projector_late_fit20_r32_seed1"}
    assert not any(c[1] == 50 and c[2] == 2 for c in cells)
    assert ("cifar10", 50, 0, "stored") not in cells and ("cifar10", 10, 2, "stored") in cells
    assert ("cifar10", 10, 1, "teacher_kl") not in cells and ("imagenette", 10, 0, "teacher_kl") in cells
    assert ("imagenette", 10, 0, "stored_top3") not in cells and ("cifar10", 10, 2, "stored_top3") in cells
    assert ("cifar10", 10, 1, "stored_weak") not in cells and ("cifar10", 10, 0, "stored_weak") in cells
    assert ("imagenette", 10, 2, "projector_late_r32") in cells and ("cifar10", 10, 0, "projector_late_r32") not in cells
    assert {c[3] for c in cells if c[:3] == ("cifar10", 50, 0)} == {
        "projector", "projector_fit10", "projector_full", "teacher", "hard", "weak_teachers", "late_teachers",
        "projector_late", "random_projector", "random_teacher", "random_hard", "projector_fit20", "projector_fit20_r32",
        "projector_fit20_r32_seed1", "random_projector_fit20_r32", "projector_late_fit20_r32",
        "projector_final_fit20_r32", "projector_final_fit20_r32_seed1", "projector_late_fit20_r32_seed1",
        "random_projector_final_fit20_r32", "random_projector_late_fit20_r32", "first_checkpoint", "final_checkpoint"}
    import lightlabel as ll
    try:
        grid.Row("x", "teacher", images="mosaic")
    except ValueError as e:
        assert "`images`" in str(e)
    else:
        raise AssertionError("a bad images kind was accepted")
    assert isinstance(grid.GRID["stored_top3_int8"].compression, ll.LabelCompression)


def test_rows_asked_for_by_name_outside_the_grid_are_refused_not_skipped_silently():
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "helio_table.py", "--dataset", "cifar10", "--ipc", "50", "--seeds", "1",
                          "--rows", "projector_fit20"], cwd=BENCHMARKS, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert "no cell to run" in run.stderr and "projector_fit20 IPC 50 seed 1" in run.stderr


def test_the_demo_teachers_tool_trains_the_grids_cifar10_trajectory():
    import importlib
    import sys
    tools = str(BENCHMARKS.parent / "tools")
    sys.path.insert(0, tools)
    try:
        config = importlib.import_module("demo_teachers").CONFIG
    finally:
        sys.path.remove(tools)
    assert config == _module("helio_grid").trajectory_config("cifar10")


def test_a_report_reads_each_table_off_one_trajectory_and_marks_rows_on_another(tmp_path, monkeypatch):
    report = _module("helio_report")
    (tmp_path / "imagenette").mkdir()
    (tmp_path / "imagenette" / "trajectory.json").write_text(json.dumps({
        "id": "new", "checkpoint_test_top1": {"1": 0.49, "2": 0.53},
        "earlier": {"older": {"id": "older", "checkpoint_test_top1": {}},
                    "old": {"id": "old", "checkpoint_test_top1": {"1": 0.506, "2": 0.575}}}}))
    for module in (report, _module("helio_grid")):
        monkeypatch.setattr(module, "trajectory_path", lambda ds: tmp_path / ds / "trajectory.json")
    cell = lambda row, seed, traj, ipc=10: {"dataset": "imagenette", "ipc": ipc, "row": row,  # noqa: E731
                                            "seed": seed, **({"trajectory": traj} if traj else {})}
    ipc10 = [cell("teacher", 0, "old"), cell("teacher", 1, "older"), cell("projector_full", 0, "old"),
             cell("weak_teachers", 0, "older"), cell("weak_teachers", 1, "older"), cell("random_hard", 0, None)]
    # the newer trajectory has an online teacher but no fitted projector yet: the table stays on "old"; a row with
    # no cell there shows the newest trajectory it has ("older", both cells), marked, never pooled with another
    kept, marked = report.on_one_trajectory(ipc10 + [cell("teacher", 0, "new")])
    assert sorted((c["row"], c["seed"], c.get("trajectory")) for c in kept) == [
        ("projector_full", 0, "old"), ("random_hard", 0, None), ("teacher", 0, "old"), ("weak_teachers", 0, "older"),
        ("weak_teachers", 1, "older")]
    assert marked == {("imagenette", 10, "weak_teachers"): "older"}
    line = report.trajectory_line("imagenette", 10, marked, "old")
    assert "ran on trajectory old (checkpoints' test top-1 by epoch 50.6 / 57.5 %); the runner's current " \
           "trajectory, new (49.0 / 53.0 %), does not have both an online teacher and a fitted projector in this " \
           "table yet" in line
    assert "rows on another trajectory** (older: not recorded)" in line and "`weak_teachers`" in line
    # once a fitted projector runs on the newer trajectory, the table moves there and the rest is marked
    kept, marked = report.on_one_trajectory(ipc10 + [cell("teacher", 0, "new"), cell("projector_late", 0, "new")])
    assert {k[2]: v for k, v in marked.items()} == {"projector_full": "old", "weak_teachers": "older"}
    assert [c["trajectory"] for c in kept if c["row"] == "teacher"] == ["new"]
    # a table with no cell on the newer trajectory (IPC 1 here) is not touched by it: nothing marked
    kept, marked = report.on_one_trajectory([cell("teacher", 0, "old", 1), cell("projector_fit10", 0, "old", 1),
                                             cell("teacher", 0, "new")])
    assert not marked and len(kept) == 3
    assert report.table_trajectory("imagenette", [cell("teacher", 0, "old", 1)]) == "old"
    assert "(trajectory old)" not in report.gap_table([cell("teacher", 0, "old", 1) | {"top1": 0.3},
                                                      cell("projector_fit10", 0, "old", 1) | {"top1": 0.35},
                                                      cell("random_hard", 0, None, 1) | {"top1": 0.2}])


def test_which_rows_depend_on_the_trajectory():
    grid = _module("helio_grid").GRID
    on = {row for row, spec in grid.items() if spec.uses_trajectory("cifar10")}
    assert {"weak_teachers", "late_teachers", "projector_fit10", "stored_weak", "random_projector"} <= on
    assert not on & {"teacher", "hard", "clip", "stored", "random_teacher", "random_hard", "teacher_kl"}
    assert grid["teacher"].uses_trajectory("imagenette") and not grid["random_hard"].uses_trajectory("imagenette")


def test_rows_on_their_own_images_are_listed_apart_and_need_a_fitted_labeller():
    grid, report = _module("helio_grid"), _module("helio_report")
    assert grid.GRID["projector_observer"].own_images and grid.GRID["projector_eq7"].own_images
    assert not grid.GRID["projector_fit10"].own_images
    cell = lambda row, sha: {"row": row, "seed": 0, "distilled_sha256": sha * 12}  # noqa: E731
    line = report._sets_line([cell("projector_fit10", "a"), cell("projector_eq7", "f")])
    assert "different distilled sets" not in line and "projector_eq7 s0 ffffffffffff" in line
    for bad in (dict(labels="teacher", observer="labeller"), dict(labels="hard", refine=True)):
        try:
            grid.Row("x", **bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


def test_select_validation_reads_a_candidates_cells_moved_aside_by_a_newer_trajectory(tmp_path, monkeypatch):
    sv = _module("select_validation")
    monkeypatch.setattr(sv, "RESULTS", tmp_path)
    folder = tmp_path / "imagenette" / "ipc10"
    (folder / "trajectory-old").mkdir(parents=True)
    cell = lambda seed, top1, traj: json.dumps({"seed": seed, "top1": top1, "trajectory": traj})  # noqa: E731
    (folder / "teacher-seed0.json").write_text(cell(0, 0.5, "new"))
    (folder / "teacher-seed2.json").write_text(cell(2, 0.60, "old"))
    (folder / "trajectory-old" / "teacher-seed0.json").write_text(cell(0, 0.59, "old"))
    assert sv._full("imagenette", 10, "teacher", "old") == {0: 59.0, 2: 60.0}
    assert sv._full("imagenette", 10, "teacher", "new") == {0: 50.0}


def test_select_validation_keeps_a_run_of_an_earlier_trajectory_and_reports_both(tmp_path, monkeypatch):
    sv = _module("select_validation")
    monkeypatch.setattr(sv, "OUT", tmp_path)
    run = lambda traj, ipc=10: {"dataset": "imagenette", "ipc": ipc, "seed": 0, "trajectory": traj}  # noqa: E731
    path, longer = tmp_path / "imagenette-ipc10-seed0.json", tmp_path / "imagenette-ipc10-seed0-fraction1-2.json"
    other = tmp_path / "imagenette-ipc1-seed0.json"
    for p, record in ((path, run("old")), (longer, run("old")), (other, run("old", ipc=1))):
        p.write_text(json.dumps(record))
    sv._keep_earlier("imagenette", 10, "old")  # the same trajectory: nothing moves
    assert path.is_file() and longer.is_file() and not (tmp_path / "trajectory-old").exists()
    sv._keep_earlier("imagenette", 10, "new")  # every run of that (dataset, IPC) moves; another IPC's stays
    assert not path.exists() and not longer.exists() and other.is_file()
    assert json.loads((tmp_path / "trajectory-old" / path.name).read_text()) == run("old")
    assert (tmp_path / "trajectory-old" / longer.name).is_file()
    other.unlink()
    # the report: one section per (dataset, IPC) and trajectory, the current one first, the earlier one titled
    path.write_text(json.dumps(run("new")))
    sections, written = [], {}
    monkeypatch.setattr(sv, "_section", lambda d, i, runs, earlier=False: sections.append(
        (runs[0]["trajectory"], earlier)) or f"section {runs[0]['trajectory']}")
    monkeypatch.setattr(sv, "write_section", lambda name, text: written.update({name: text}))
    sv.report()
    assert sections == [("new", False), ("old", True)]
    assert written["select-validation"].index("section new") < written["select-validation"].index("section old")


def test_select_validation_judges_each_selection_seed_on_its_own_seeds_cells(monkeypatch):
    sv = _module("select_validation")
    full = {"weak_teachers": {0: 46.0, 1: 45.0}, "late_teachers": {0: 46.5, 1: 43.0},
            "first_checkpoint": {0: 43.0, 1: 42.0}, "final_checkpoint": {0: 45.0}}
    monkeypatch.setattr(sv, "_full", lambda dataset, ipc, row, trajectory: full[row])
    run = lambda seed, chosen: {  # noqa: E731
        "seed": seed, "chosen": chosen, "candidates": list(sv.CANDIDATES["cifar10"]),
        "evidence": [{"top1": t} for t in (0.38, 0.39, 0.35, 0.38)], "steps": 200, "full_steps": 1200,
        "cost_fraction": 1 / 6, "wall_seconds": 600, "device": "cpu", "commit": "abc", "heldout_images": 1000,
        "trajectory": "t1",
        "command": f"python benchmarks/select_validation.py --seed {seed}"}
    text = sv._section("cifar10", 10, [run(0, "epochs 2-4"), run(1, "epochs 2-4")])
    assert "seed 0: chose epochs 2-4, whose seed-0 full-protocol top-1 is 0.00 points below" in text
    # seed 1 lacks the final checkpoint's cell: its verdict stays open instead of comparing on other seeds
    assert "seed 1: chose epochs 2-4; not every candidate has a seed-1 full-protocol cell yet" in text
    assert "Single-seed selection within 1 point on 1 of 1 seeds" in text and "--seeds 0 --rows" in text
    full["final_checkpoint"][1] = 44.0
    text = sv._section("cifar10", 10, [run(0, "epochs 2-4"), run(1, "epochs 2-4")])
    assert "2.00 points below the best candidate's on that seed (NOT within" in text
    assert ("On the mean over seeds 0, 1, which every candidate has, the most frequent single-seed choice (epochs "
            "2-4, 2 of 2 runs) is 0.75 points below the best candidate (epochs 1-3; within the 1-point target)." in text)
    averaged = {**run(0, "epochs 1-3"), "short_seeds": [0, 1, 2]}
    text = sv._section("cifar10", 10, [run(0, "epochs 2-4"), averaged])
    assert "| short runs averaged over seeds 0, 1, 2: held-out top-1 % |" in text
    assert "- short runs averaged over seeds 0, 1, 2: chose epochs 1-3, whose mean full-protocol top-1 over seeds 0, 1" \
           " is 0.00 points below the best candidate's (within" in text
    with pytest.raises(ValueError, match="different trajectories"):
        sv._section("cifar10", 10, [run(0, "epochs 2-4"), {**run(1, "epochs 2-4"), "trajectory": "t2"}])
    # a run at another share of the epochs: its own column and verdict, outside the default share's summary
    longer = {**run(0, "epochs 1-3"), "fraction": 0.5}
    text = sv._section("cifar10", 10, [run(0, "epochs 2-4"), run(1, "epochs 2-4"), longer])
    assert "| short run, seed 0, 1/2 of the epochs: held-out top-1 % |" in text
    assert "- seed 0, 1/2 of the epochs: chose epochs 1-3, whose seed-0 full-protocol top-1 is 0.50 points below" in text
    assert "Single-seed selection within 1 point on 1 of 2 seeds" in text and "2 of 2 runs" in text
    # the default share and a longer one of the same seed combine into the extrapolated selection: each
    # candidate's top-1 read at the full protocol off the line through both against the log of the share
    late = {**run(0, "epochs 1-3"), "fraction": 0.5, "steps": 600,
            "evidence": [{"top1": t} for t in (0.40, 0.45, 0.36, 0.39)]}
    text = sv._section("cifar10", 10, [run(0, "epochs 2-4"), late])
    assert ("| short run, seed 0, extrapolated from 1/6 and 1/2 of the epochs: held-out top-1 % predicted in full |"
            in text)
    # 0.39 -> 0.45 over log(3): +0.06 * log(2) / log(3) more to the full protocol, 48.8 % (epochs 2-4 chosen)
    assert "| epochs 2-4 | 39.0 **(chosen)** | 45.0 | 48.8 **(chosen)** |" in text
    assert ("- seed 0, extrapolated from 1/6 and 1/2 of the epochs: chose epochs 2-4 (predicted 7.52 points above the "
            "runner-up), whose seed-0 full-protocol "
            "top-1 is 0.00 points below the best candidate's on that seed (within the 1-point target); 800 "
            "short-run steps against 1200 for every candidate in full (67 %), 20 min" in text)
    assert "within 1 point on 1 of 1 selections (largest gap 0.00)" in text
    assert text.count("python benchmarks/select_validation.py --seed 0`") == 2  # each committed run named once
    # two seeds with both shares: also the selection with seeds=(0, 1), the mean of their extrapolations
    late1 = {**late, "seed": 1, "evidence": [{"top1": t} for t in (0.45, 0.40, 0.36, 0.39)]}
    text = sv._section("cifar10", 10, [run(0, "epochs 2-4"), run(1, "epochs 2-4"), late, late1])
    line = next(x for x in text.splitlines()
                if x.startswith("- short runs averaged over seeds 0, 1, extrapolated from 1/6 and 1/2"))
    # seed 1: epochs 1-3 0.38 -> 0.45 predicts 49.4, epochs 2-4 0.39 -> 0.40 predicts 40.6; averaged 45.3 / 44.7
    assert "chose epochs 1-3 (predicted 0.63 points above the runner-up)" in line
    assert "1600 short-run steps against 2400 for every candidate in full (67 %)" in line


def test_the_gap_table_says_what_the_cells_show_about_each_gap():
    gap_table = _module("helio_report").gap_table
    cell = lambda ds, ipc, row, top1: {"dataset": ds, "ipc": ipc, "row": row, "top1": top1, "seed": 0}  # noqa: E731
    cells = [cell("imagenette", 10, "teacher", 0.568), cell("imagenette", 10, "projector_full", 0.470),
             cell("imagenette", 10, "weak_teachers", 0.504),
             cell("cifar10", 50, "teacher", 0.623), cell("cifar10", 50, "projector_fit10", 0.554),
             cell("cifar10", 50, "weak_teachers", 0.635),
             cell("cifar10", 10, "teacher", 0.367), cell("cifar10", 10, "projector", 0.380),
             cell("cifar10", 10, "weak_teachers", 0.461)]
    text = gap_table(cells)
    assert "| cifar10 IPC 10 | 36.7 | 38.0 (`projector`, 1 seed) | +1.3 | 46.1 |" in text and "within 2 points" in text
    # a lead says how close the fit is to its ensemble (a lead can come from a weak last checkpoint)
    lead = gap_table([cell("imagenette", 10, "teacher", 0.556), cell("imagenette", 10, "late_teachers", 0.619),
                      cell("imagenette", 10, "projector_late_r32", 0.593)])
    assert "| +3.7 | 61.9 | - / - / - | the projector leads (-2.6 against the ensemble it imitates) |" in lead
    assert "the fit falls 8.1 short; the HeLlO-length fit to it (`projector_full`) is not run here yet" in text
    longer = gap_table(cells + [cell("cifar10", 50, "projector_fit20", 0.581), cell("cifar10", 50, "projector", 0.509)])
    assert ("| cifar10 IPC 50 | 62.3 | 58.1 (`projector_fit20`, 1 seed) | -4.2 | 63.5 | - / - / - | imitation: its "
            "ensemble teaches 63.5, the fit falls 5.4 short; its fits: `projector` 50.9 (the short fit), "
            "`projector_fit10` 55.4 (10 epochs), `projector_fit20` 58.1 (20 epochs); the HeLlO-length fit to it "
            "(`projector_full`)" in longer)
    ranked = gap_table(cells + [cell("cifar10", 50, "projector_fit20_r32", 0.585)])
    assert "`projector_fit20_r32` 58.5 (20 epochs, LoRA rank 32)" in ranked
    assert "teach 50.4 themselves: their stage, not the fit; the later checkpoints (`late_teachers`, " in text
    text = gap_table(cells + [cell("imagenette", 10, "late_teachers", 0.552)])
    assert "the later checkpoints teach 55.2 online (the projector fitted to them, `projector_late`, is not run" in text
    text = gap_table(cells + [cell("imagenette", 10, "late_teachers", 0.552),
                              cell("imagenette", 10, "projector_late", 0.531)])
    # the late fit becomes the best projector row; its own ensemble is then the one it is judged against
    assert ("| imagenette IPC 10 | 56.8 | 53.1 (`projector_late`, 1 seed) | -3.7 | 55.2 | - / - / - | imitation: its "
            "ensemble teaches 55.2, the fit falls 2.1 short" in text)
    # within 2 points, the line still lists the fits to that ensemble: what closed the gap
    text = gap_table(cells + [cell("imagenette", 10, "late_teachers", 0.552),
                              cell("imagenette", 10, "projector_late_fit10", 0.491),
                              cell("imagenette", 10, "projector_late", 0.555)])
    assert ("-1.3 | 55.2 | - / - / - | within 2 points (+0.3 against the ensemble it imitates); its fits: `projector_late_fit10` 49.1 (10 epochs), "
            "`projector_late` 55.5 (20 epochs, "
            "all images)" in text)
    text = gap_table(cells + [cell("imagenette", 10, "late_teachers", 0.552),
                              cell("imagenette", 10, "projector_late_fit10", 0.491)])
    assert ("| imagenette IPC 10 | 56.8 | 49.1 (`projector_late_fit10`, 1 seed) | -7.7 | 55.2 | - / - / - | imitation: "
            "its ensemble teaches 55.2, the fit falls 6.1 short; the HeLlO-length fit to it (`projector_late`) is not "
            "run here yet |" in text)
    # the random column: the projector's random row is the one labelled by the line's best setting, else named
    random = [cell("imagenette", 10, "late_teachers", 0.552), cell("imagenette", 10, "random_teacher", 0.40),
              cell("imagenette", 10, "random_hard", 0.30)]
    text = gap_table(cells + random + [cell("imagenette", 10, "projector_late_fit10", 0.491),
                                       cell("imagenette", 10, "random_projector_late_fit10", 0.45)])
    assert "| 55.2 | 45.0 / 40.0 / 30.0 | imitation" in text
    text = gap_table(cells + random + [cell("imagenette", 10, "random_projector_late_fit10", 0.45)])
    assert "| 50.4 | 45.0 (`projector_late_fit10`) / 40.0 / 30.0 |" in text


def test_a_random_row_of_one_dataset_stays_out_of_the_others_cells():
    grid, gain = _module("helio_grid").GRID, _module("helio_report")._random_gain
    row = grid["random_projector_late_fit10"]
    assert row.runs("imagenette", 10, 0) and not row.runs("cifar10", 10, 0) and not row.runs("imagenette", 50, 0)
    assert not row.uses_trajectory("cifar10") and row.uses_trajectory("imagenette")
    assert "projector_late_fit10" not in gain("cifar10", 10, {}) and "projector_late_fit10" not in gain(
        "imagenette", 50, {})
    assert "| projector_late_fit10 | 49.1 (1 seed) | 45.0 (1 seed) | +4.1 |" in gain(
        "imagenette", 10, {"projector_late_fit10": [{"top1": 0.491}], "random_projector_late_fit10": [{"top1": 0.45}]})


def test_the_gap_table_reads_each_line_off_one_trajectory(tmp_path, monkeypatch):
    report = _module("helio_report")
    (tmp_path / "imagenette").mkdir()
    (tmp_path / "imagenette" / "trajectory.json").write_text(json.dumps({
        "id": "new", "checkpoint_test_top1": {}, "earlier": {"old": {"id": "old", "checkpoint_test_top1": {}}}}))
    for module in (report, _module("helio_grid")):
        monkeypatch.setattr(module, "trajectory_path", lambda ds: tmp_path / ds / "trajectory.json")
    cell = lambda row, top1, traj, seed=0: {"dataset": "imagenette", "ipc": 10, "row": row, "top1": top1,  # noqa: E731
                                            "seed": seed, **({"trajectory": traj} if traj else {})}
    old = [cell("teacher", 0.568, "old"), cell("teacher", 0.570, "old", 1), cell("projector_full", 0.470, "old"),
           cell("weak_teachers", 0.504, "old"), cell("hard", 0.40, "old"), cell("random_hard", 0.30, None)]
    new = [cell("teacher", 0.522, "new"), cell("late_teachers", 0.610, "new"), cell("weak_teachers", 0.542, "new")]
    # the newer trajectory has no fitted projector: the whole line stays on the old one (never 47.0 against 52.2),
    # and names what the newer one's online rows teach
    text = report.gap_table(old + new)
    assert ("| imagenette IPC 10 (trajectory old) | 56.9 | 47.0 (`projector_full`, 1 seed) | -9.9 | 50.4 |" in text)
    assert ("| - / - / 30.0 | the checkpoints it imitates teach 50.4 themselves: their stage, not the fit; the later "
            "checkpoints (`late_teachers`, `projector_late`) are not run here yet; on the newer trajectory new (no "
            "fitted projector there yet) its rows teach `teacher` 52.2 (1 cell), `weak_teachers` 54.2 (1 cell), "
            "`late_teachers` 61.0 (1 cell) |") in text
    # once a fitted row runs on the newer trajectory, the line moves there; hard labels on random images (no
    # trajectory) go with it
    text = report.gap_table(old + new + [cell("projector_late", 0.580, "new")])
    assert "| imagenette IPC 10 | 52.2 | 58.0 (`projector_late`, 1 seed) | +5.8 | 61.0 | - / - / 30.0 |" in text
    assert text.count("| imagenette IPC 10") == 1 and (
        "; on the earlier trajectory old: teacher 56.9, `projector_full` 47.0, the checkpoints it imitates 50.4 |" in text)
    assert "(trajectory old)" not in text and "newer trajectory" not in text
    # an ensemble run only on the other trajectory is not borrowed
    text = report.gap_table([c for c in old + new if c["row"] != "weak_teachers"] + [cell("projector", 0.45, "new")])
    assert "| imagenette IPC 10 | 52.2 | 45.0 (`projector`, 1 seed) | -7.2 | - |" in text
    assert "its ensemble's cell is not run on this trajectory yet" in text


def test_a_cell_rerun_on_a_newer_trajectory_keeps_the_earlier_one_apart(tmp_path, monkeypatch):
    grid = _module("helio_grid")
    monkeypatch.setattr(grid, "RESULTS", tmp_path)
    for path in (grid.cell_path("cifar10", 10, "teacher", 0),
                 grid.earlier_cell_path("cifar10", 10, "teacher", 0, "old"), tmp_path / "cifar10" / "trajectory.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    assert [p.relative_to(tmp_path).as_posix() for p in grid.cell_files()] == [
        "cifar10/ipc10/teacher-seed0.json", "cifar10/ipc10/trajectory-old/teacher-seed0.json"]


def test_the_gap_table_pools_the_fits_of_one_setting_instead_of_picking_the_luckiest():
    grid, gap_table = _module("helio_grid"), _module("helio_report").gap_table
    assert grid.SETTING_OF["projector_fit20_seed2"] == grid.SETTING_OF["projector_fit20"] == "projector_fit20"
    assert grid.SETTING_OF["projector_fit20_r32_seed1"] == "projector_fit20_r32"
    assert grid.SETTING_OF["projector_full"] == "projector_full"  # another setting, not a refit
    cell = lambda row, top1, seed=0: {"dataset": "cifar10", "ipc": 10, "row": row, "top1": top1, "seed": seed}  # noqa: E731
    cells = [cell("teacher", 0.40), cell("weak_teachers", 0.50), cell("projector_fit20", 0.44),
             cell("projector_fit20", 0.46, 1), cell("projector_fit20_seed1", 0.52), cell("projector_fit20_r32", 0.47)]
    # fit 0 (45.0 over 2 seeds) and fit 1 (52.0): the setting is 48.5, above rank 32's single fit (47.0); fit 1 alone
    # (52.0, the luckiest) is never reported
    assert ("| cifar10 IPC 10 | 40.0 | 48.5 (`projector_fit20`, 2 fits, 3 students: 45.0 / 52.0) | +8.5 | 50.0 |"
            in gap_table(cells))
    assert "| cifar10 IPC 10 | 40.0 | 47.0 (`projector_fit20_r32`, 1 seed) | +7.0 |" in gap_table(
        cells[:-2] + [cell("projector_fit20_seed1", 0.42), cells[-1]])


def test_a_newer_trajectory_without_a_teacher_cell_is_named_with_its_fitted_rows(monkeypatch):
    report = _module("helio_report")
    monkeypatch.setattr(report, "current_trajectory", lambda ds: "new")
    monkeypatch.setattr(report, "trajectory_path", lambda ds: Path("/nonexistent/trajectory.json"))
    cell = lambda row, top1, trajectory: {"dataset": "imagenette", "ipc": 50, "row": row, "top1": top1,  # noqa: E731
                                          "seed": 0, "trajectory": trajectory}
    cells = [cell("teacher", 0.646, "old"), cell("weak_teachers", 0.531, "old"), cell("projector_full", 0.521, "old"),
             cell("projector_late", 0.681, "new")]
    line = next(x for x in report.gap_table(cells).splitlines() if x.startswith("| imagenette IPC 50"))
    assert line.startswith("| imagenette IPC 50 (trajectory old) | 64.6 | 52.1 (`projector_full`")
    assert "on the newer trajectory new (no online teacher there yet) its rows teach `projector_late` 68.1" in line
    cells.append(cell("teacher", 0.60, "new"))  # the teacher lands: the line moves to the newer trajectory
    line = next(x for x in report.gap_table(cells).splitlines() if x.startswith("| imagenette IPC 50"))
    assert line.startswith("| imagenette IPC 50 | 60.0 | 68.1 (`projector_late`, 1 seed) | +8.1 |")


def test_every_selection_candidate_names_a_grid_row_and_a_stage_of_its_dataset():
    sv, grid = _module("select_validation"), _module("helio_grid")
    for dataset, candidates in sv.CANDIDATES.items():
        epochs = grid.trajectory_config(dataset).save_epochs
        for row, stage in candidates.values():
            assert row in grid.GRID and set(grid.SETUP[dataset][stage]) <= set(epochs), (dataset, row, stage)


def test_interleaved_timings_take_turns_in_a_rotating_order():
    common = _module("_common")
    order = []
    fns = {name: (lambda name=name: order.append(name)) for name in "abc"}
    out = common.interleaved_timings(fns, repeat=3, warmup=1, calls=2)
    assert {k: len(v) for k, v in out.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 0 for v in out.values() for t in v)
    timed = order[3:]  # after one warm-up call each
    assert timed == list("aabbcc" "bbccaa" "ccaabb")


def test_the_label_size_verdict_compares_each_32px_adapter_with_the_64px_one_of_its_fit_length_and_rank():
    label_size = _module("label_size")
    assert {label_size.settings(r) for r in label_size.ADAPTERS} >= {(32, 20, 32), (64, 20, 32)}

    def cells(*tops):
        return [{"top1": t / 100} for t in tops]

    table = {row: [] for row in label_size.ADAPTERS}
    table.update(projector_fit10=cells(45.0, 46.0, 45.5), projector_fit20=cells(47.5, 47.5, 47.5),
                 projector_fit20_32px=cells(46.5), projector_fit20_32px_r32=cells(48.0, 48.0, 48.0),
                 projector_fit20_r32=cells(49.0, 49.0))
    text = label_size.verdict(table, 0.25)
    assert "fitted 20 epochs at LoRA rank 8: mean 46.5, above" in text and "(on 1 of 3 seeds so far)" in text
    assert "gives 47.5 (3 seeds), -1.0 for 32 px" in text
    assert "fitted 20 epochs at LoRA rank 32: mean 48.0, above" in text and "gives 49.0 (2 seeds), -1.0 for" in text
    assert "at the default rank 8 (47.5, spread 47.5-47.5) it is above the spread" in text
    assert "fitted 10 epochs" not in text  # the 32 px 10-epoch row has no cells: no sentence


def test_view_fidelity_measures_and_rank_correlation():
    import torch
    vf = _module("view_fidelity")
    assert vf.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert vf.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert vf.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254)  # tied ranks share their mean
    ensemble = torch.tensor([[2.0, 0.0, -2.0], [0.0, 1.0, 0.0]])
    same = vf.compare(ensemble.clone(), ensemble)
    assert same == pytest.approx({"agree": 1.0, "kl": 0.0, "mse": 0.0, "spread": 1.0}, abs=1e-6)
    flat = vf.compare(ensemble / 2, ensemble)
    assert flat["agree"] == 1.0 and flat["kl"] > 0 and flat["spread"] == pytest.approx(0.5)
    assert flat["mse"] == pytest.approx(float(((ensemble / 2 - ensemble) ** 2).mean()))
    assert vf.compare(-ensemble, ensemble)["agree"] == 0.0


def test_view_fidelity_adds_the_rows_it_measured_to_a_table_of_the_same_images(tmp_path, monkeypatch):
    vf = _module("view_fidelity")
    monkeypatch.setattr(vf, "OUT", tmp_path / "vf.json")
    images = {"views": 1000, "clean_per_class": 100, "distilled_sha256": "ab" * 32}
    old = {**images, "rows": {"a": 1, "b": 2}, "commands": ["python view_fidelity.py --rows a b"]}
    new = {**images, "rows": {"b": 3, "c": 4}, "commands": ["python view_fidelity.py --rows b c"]}
    assert vf.merged(new) == new  # nothing committed yet
    vf.OUT.write_text(json.dumps(old))
    out = vf.merged(new)
    assert out["rows"] == {"a": 1, "b": 3, "c": 4}
    assert out["commands"] == ["python view_fidelity.py --rows a b", "python view_fidelity.py --rows b c"]
    other = {**new, "views": 500}  # other images: the committed table is not mixed in
    assert vf.merged(other) == other


def test_a_run_built_from_another_scripts_namespace_has_every_option_a_stage_reads(monkeypatch):
    import argparse
    import types
    table = _module("helio_table")
    fake = types.SimpleNamespace(classes=["a", "b"], images=None, with_transform=lambda f: None)
    monkeypatch.setattr(table, "dataset", lambda *a, **k: fake)
    monkeypatch.setattr(table, "cifar_text_embeddings", lambda names: None)
    monkeypatch.setattr(table, "images_digest", lambda images: "x")
    run = table.Run("cifar10", argparse.Namespace(quiet=False))  # select_validation's namespace
    assert (run.args.quiet, run.args.keep_trajectory, run.args.workers) == (False, False, 0)
    assert table.Run("cifar10", argparse.Namespace(quiet=True, workers=3)).args.workers == 3


def test_the_base_ceiling_section_compares_the_probes_on_the_early_and_later_ensembles():
    targets = lambda a, b, c: {"true class": a, "epochs 2-4": b, "epochs 6-8": c}  # noqa: E731
    result = {"ensembles": {"epochs 2-4": 0.55, "epochs 6-8": 0.7}, "logit_std": {"epochs 2-4": 2.0, "epochs 6-8": 4.5},
              "p_max": {"epochs 2-4": 0.5, "epochs 6-8": 0.8},
              "probes": {"frozen proxy base": targets(0.5, 0.6, 0.45), "fitted": targets(0.6, 0.7, 0.7)},
              "fitted_head": targets(0.62, 0.6, 0.73), "per_class": 150, "test_per_class": 100, "trajectory": "t"}
    text = _module("base_ceiling").section(result)
    assert "| features | true class | epochs 2-4' argmax | epochs 6-8' argmax |" in text
    assert "| linear probe on the frozen proxy base | 50.0 | 60.0 | 45.0 |" in text
    assert "| the fitted adapter's own head | 62.0 | 60.0 | 73.0 |" in text
    assert "epochs 2-4 2.00 / 0.50, epochs 6-8 4.50 / 0.80" in text
    assert "the later ensemble 15.0 points less often than the early one (45.0 against 60.0)" in text
    assert "a probe matches the ensemble it imitates -3.0 points against the adapter's own head" in text


def test_the_view_gap_section_reads_the_drop_from_clean_images_to_views():
    m = lambda a, k, s, sp: {"agree": a, "kl": k, "mse": s, "spread": sp, "ensemble_spread": 2.0}  # noqa: E731
    result = {"cells": [{"ipc": 1, "row": "projector_fit10", "ensemble": "weak_teachers", "student": 34.3,
                         "ensemble_student": 38.6, "clean": m(0.8, 0.1, 0.5, 0.9), "views": m(0.75, 0.2, 0.6, 0.9)},
                        {"ipc": 10, "row": "projector_late_fit10", "ensemble": "late_teachers", "student": None,
                         "ensemble_student": 61.1, "clean": m(0.7, 0.2, 0.8, 1.0), "views": m(0.5, 0.4, 1.1, 0.8)}],
              "views": 1000, "clean_per_class": 100, "trajectory": "t", "command": "python benchmarks/view_gap.py"}
    text = _module("view_gap").section(result)
    assert ("| 1 | `projector_fit10` (`weak_teachers`) | 0.800 / 0.100 / 0.500 / 0.900 | 0.750 / 0.200 / 0.600 / "
            "0.900 | 2.00 / 2.00 | 0.150 | 34.3 / 38.6 |") in text
    assert "| 10 | `projector_late_fit10` (`late_teachers`) |" in text and "| - / 61.1 |" in text
    assert "`projector_late_fit10` at IPC 10, 20.0 points (70.0 to 50.0 %)" in text


def test_the_step_benchmark_runs_rdeds_2x2_views_through_every_source():
    """Issue 31: the step benchmark timed 1-patch views only; f = 2 runs the batched mosaic path (patches shuffled,
    RandomResizedCrop(1/2, 1)) for every label source and through train_student."""
    import torch

    train_step = _module("train_step")
    torch.manual_seed(0)
    times, warmup = train_step.measure("proxy", 4, 2, 1, torch.device("cpu"), f=2)
    assert set(times) == {"hard", "teacher", "projector@64", "projector@32", "projector via train_student"}
    assert all(len(ts) == 1 and ts[0] > 0 for ts in times.values()) and set(warmup) < set(times)


def test_the_per_image_view_baseline_makes_the_batched_paths_views_and_unpatches_the_library():
    import torch

    import lightlabel as ll
    from lightlabel.labeling import augment
    speed = _module("augment_speed")
    aug = augment.Augmenter(ll.AugmentConfig.rded(2), num_classes=10)
    images, targets = torch.rand(6, 3, 32, 32), torch.arange(6) % 10
    params = speed.old_sample(aug, 6, 32, 32, torch.Generator().manual_seed(0))
    old, new = speed.old_apply(aug, images, targets, params), aug.apply(images, targets, params)
    torch.testing.assert_close(old[0], new[0], atol=1e-5, rtol=0)
    assert torch.equal(old[1], new[1])
    assert augment.resized_crops is not speed._per_image_crops
    assert params["crop"].shape == (6, 4) and params["rows"].shape == (6, 2)


def test_the_factorised_report_names_a_copied_cell_that_the_helio_table_has_since_rerun(tmp_path):
    import json
    table = _module("factorized_table")
    now = tmp_path / "projector_fit10-seed0.json"
    now.write_text(json.dumps({"commit": "bbb", "top1": 0.461, "trajectory": "t2"}))
    copy = {"cell": "rded10_projector", "commit": "aaa", "top1": 0.442, "same_as": str(now)}
    note = table.rerun_note([copy, {"cell": "haba5_hard", "commit": "ccc", "top1": 0.17}])
    assert "commit aaa (44.2 %)" in note and "commit bbb on teacher trajectory t2 (46.1 %)" in note
    assert table.rerun_note([dict(copy, commit="bbb")]) == ""


def test_the_normalisation_check_counts_changed_argmaxes_against_the_host_spec(monkeypatch):
    import torch

    import lightlabel as ll
    scale = _module("teacher_scale")
    projector = ll.Projector.packaged(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                       "truck"]).eval()
    pixels = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    flips = scale.normalisation_flips(projector, pixels)
    assert set(flips) == {"true_std", "unconverted"} and all(0 <= v <= 1 for v in flips.values())
    # with the host's statistics equal to the projector's own, nothing needs converting: nothing changes
    own = projector.input_spec
    monkeypatch.setattr(ll.InputSpec, "cifar10_dd", staticmethod(lambda: ll.InputSpec(own.mean, own.std, (32, 32))))
    monkeypatch.setattr(ll.InputSpec, "cifar10", staticmethod(lambda: ll.InputSpec(own.mean, own.std, (32, 32))))
    assert scale.normalisation_flips(projector, pixels) == {"true_std": 0.0, "unconverted": 0.0}
    table = scale._flips_table({"true_std": 0.167, "unconverted": 0.198}, 2000)
    assert "| 16.7 % |" in table and "| 19.8 % |" in table and "2000 views" in table
