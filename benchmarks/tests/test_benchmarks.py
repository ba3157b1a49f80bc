"""The benchmarks' own checks (run with ``python -m pytest benchmarks/tests``; the library's suite never reads this
folder): they import the library's public API and documented submodules only, never a private module."""

from __future__ import annotations

import ast
from pathlib import Path

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


def _helio_table():
    import importlib.util
    import sys
    spec = importlib.util.spec_from_file_location("helio_table", BENCHMARKS / "helio_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def test_sets_line_keeps_random_draws_apart_and_flags_a_real_mix():
    sets_line = _helio_table()._sets_line
    cell = lambda row, seed, sha: {"row": row, "seed": seed, "distilled_sha256": sha * 12}  # noqa: E731
    one = sets_line([cell("hard", 0, "a"), cell("teacher", 1, "a"), cell("random_hard", 0, "b"),
                     cell("random_teacher", 0, "b"), cell("random_hard", 1, "c")])
    assert "Every distilled-image cell" in one and "different distilled sets" not in one
    assert "seed 0 bbbbbbbbbbbb, seed 1 cccccccccccc" in one
    mixed = sets_line([cell("hard", 0, "a"), cell("teacher", 0, "d")])
    assert "**These cells trained on 2 different distilled sets**" in mixed
    two_draws = sets_line([cell("random_hard", 0, "b"), cell("random_teacher", 0, "e")])
    assert "**2 draws for one seed**" in two_draws
