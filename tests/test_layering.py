"""The package's shape: layers that import only downwards, no import cycle, a light top-level import, and a
public API that the examples use without private modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import lightlabel as ll

ROOT = Path(ll.__file__).resolve().parent
PROJECT = ROOT.parent

#: Each unit may import only from its own layer and the layers before it.
LAYERS = [
    {"version", "errors", "utils", "inputs", "configs", "storage", "data", "classes"},
    {"io"},
    {"core"},
    {"models", "pretrained"},
    {"sets"},
    {"labeling"},
    {"recipes"},
    {"cli", "demo", "testing", "__main__"},
]
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every lightlabel module imported by ``path`` (top level and inside functions), fully qualified."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("lightlabel"):
                found.add(module)
                found.update(f"{module}.{a.name}" for a in node.names if (ROOT.parent / f"{module}.{a.name}".replace(".", "/")).with_suffix(".py").exists())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lightlabel"))
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in ROOT.rglob("*.py")}


def test_every_module_sits_in_a_layer():
    units = {_unit(_module_name(p)) for p in ROOT.rglob("*.py")} - {""}
    assert units <= set(LAYER_OF), f"modules outside the declared layers: {sorted(units - set(LAYER_OF))}"


def test_layers_import_only_downwards():
    bad = []
    for module, imports in _graph().items():
        unit = _unit(module)
        if not unit:  # lightlabel/__init__.py: the lazy facade over everything
            continue
        for target in imports:
            other = _unit(target)
            if other and LAYER_OF[other] > LAYER_OF[unit]:
                bad.append(f"{module} -> {target}")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))
    graph = _graph()
    core = [t for m, ts in graph.items() if _unit(m) == "core" for t in ts if _unit(t) in ("labeling", "recipes")]
    assert not core, f"core imports from labeling or recipes: {core}"


def test_no_import_cycle():
    graph = {m: {t for t in ts if t in _graph() and t != m and _unit(t)} for m, ts in _graph().items() if _unit(m)}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(nxt_ := node, set())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]) if nxt in stack
                                     else f"import cycle through {nxt_} -> {nxt}")
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_import_is_light_and_the_cli_answers_without_torch():
    code = ("import sys, lightlabel, lightlabel.cli; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_examples_import_no_private_module():
    bad = []
    for folder in ("examples", "docs"):
        for path in (PROJECT / folder).glob("*.py"):
            for module in _imports(path):
                if any(part.startswith("_") and part != "__init__" for part in module.split(".")[1:]):
                    bad.append(f"{path.relative_to(PROJECT)}: {module}")
    assert not bad, bad


def test_every_direct_import_is_declared():
    import tomllib

    declared = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower().replace("_", "-") for d in declared}
    distributions = {"torch": "torch", "torchvision": "torchvision", "open_clip": "open-clip-torch", "PIL": "pillow",
                     "safetensors": "safetensors", "huggingface_hub": "huggingface-hub", "einops": "einops",
                     "tqdm": "tqdm", "timm": "timm"}
    used = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else [])
            used.update(n.split(".")[0] for n in names)
    third_party = used - set(sys.stdlib_module_names) - {"lightlabel"}
    unknown = sorted(third_party - set(distributions))
    assert not unknown, f"imports with no known distribution (add them to pyproject.toml and this map): {unknown}"
    missing = sorted(distributions[m] for m in third_party if distributions[m] not in declared)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_one_list_of_public_names():
    """``_EXPORTS`` is the list: ``__all__`` is derived from it, every name resolves to the module it names, and the
    TYPE_CHECKING imports (for static tools) name exactly the same set."""
    init = ROOT / "__init__.py"
    assert set(ll.__all__) == set(ll._EXPORTS) | {"__version__"}
    for name, (module, line) in ll._EXPORTS.items():
        value = getattr(ll, name)
        assert isinstance(value, tuple) or value.__module__ == f"lightlabel.{module}", name  # tuples: templates
        assert line and name in ll.__doc__
    checking = next(n for n in ast.walk(ast.parse(init.read_text()))
                    if isinstance(n, ast.If) and getattr(n.test, "id", None) == "TYPE_CHECKING")
    imported = {a.asname or a.name for node in checking.body for a in node.names}
    assert imported == set(ll._EXPORTS)


def test_no_function_is_longer_than_80_lines():
    """Recipes read as short top-level functions over named helpers: no function or method in the library, nested
    ones included, spans more than 80 lines (decorators and docstring counted)."""
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - first + 1 > 80:
                    long.append(f"{path.relative_to(PROJECT)}:{first} {node.name} ({node.end_lineno - first + 1} lines)")
    assert not long, long
