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
