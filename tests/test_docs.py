"""The user-facing text stays true: every command quoted in README and the quickstart parses, every python block in
the docs calls the API as it is, and the installed library never points at files an installed package does not have
(docs/, benchmarks/)."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from lightlabel.cli import _parser

PROJECT = Path(__file__).resolve().parent.parent
PAGES = [PROJECT / "README.md", PROJECT / "docs" / "quickstart.md"]


def _quoted_commands() -> list[tuple[str, str]]:
    """``(page, command)`` for every ``lightlabel ...`` and ``python examples/...`` command in a bash block."""
    out = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                for command in line.split("#")[0].split("&&"):
                    command = command.strip()
                    if command.startswith(("lightlabel ", "python examples/")):
                        out.append((page.name, command))
    return out


COMMANDS = _quoted_commands()


def test_the_pages_quote_commands():
    assert {page for page, _ in COMMANDS} == {p.name for p in PAGES} and len(COMMANDS) >= 6


class _Parsed(Exception):
    pass


@pytest.mark.parametrize("page,command", COMMANDS, ids=[c for _, c in COMMANDS])
def test_quoted_command_parses(page, command, monkeypatch):
    words = shlex.split(command)
    if words[0] == "lightlabel":
        args = _parser().parse_args(words[1:])  # the real parser: a stale flag or command is an error here
        assert args.command == words[1]
        with pytest.raises(SystemExit) as e:
            _parser().parse_args([words[1], "--help"])
        assert e.value.code == 0
        return
    script = PROJECT / words[1]
    assert script.is_file(), f"{page} quotes {script}, which does not exist"
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    with pytest.raises(_Parsed):
        module.main(words[2:])


def test_the_library_never_cites_repository_files():
    """docs/, benchmarks/ and tools/ are not in an installed package: docstrings and messages cite papers and
    figures."""
    cites = r"\b(docs|benchmarks|tools)/|\b(DESIGN|STYLE|CHANGELOG|CONTRIBUTING)\.md\b|\bresults\.md\b"
    hits = [f"{p.relative_to(PROJECT)}:{i}" for p in (PROJECT / "lightlabel").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(cites, line)]
    assert not hits, hits


def test_the_packaged_assets_name_the_release_tools_that_made_them_never_the_benchmarks():
    """The assets' provenance (README, registry) names the source repository's release tools, which use only the
    library; the research in benchmarks/ is never what a packaged file depends on."""
    texts = [p for p in (PROJECT / "lightlabel" / "assets").rglob("*") if p.suffix in (".md", ".json")]
    hits = [f"{p.relative_to(PROJECT)}:{i}" for p in texts
            for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\b(docs|benchmarks)/", line)]
    assert not hits, hits
    made_by = set(re.findall(r"python (tools/\w+\.py)", (PROJECT / "lightlabel" / "assets" / "README.md").read_text()))
    assert made_by == {"tools/proxy_base.py", "tools/demo_teachers.py", "tools/packaged_adapter.py"}
    assert all((PROJECT / tool).is_file() for tool in made_by)
    for tool in (PROJECT / "tools").glob("*.py"):
        assert not re.search(r"^\s*(from|import) (_common|helio_\w+|benchmarks)\b", tool.read_text(), re.M), tool


def test_the_assets_readme_gives_each_files_true_bytes_and_sha256():
    rows = [line for line in (PROJECT / "lightlabel" / "assets" / "README.md").read_text().splitlines()
            if re.match(r"\| `[^`]+\.(pt|safetensors|txt)`", line)]
    assert len(rows) >= 7
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        path = PROJECT / "lightlabel" / "assets" / cells[0].strip("`")
        nbytes = next(int(c.replace(",", "")) for c in cells[1:] if re.fullmatch(r"[\d,]+", c))
        sha = next(c.strip("`") for c in cells[1:] if re.fullmatch(r"`[0-9a-f]{64}`", c))
        assert (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()) == (nbytes, sha), path.name


def test_readme_starts_with_the_drop_in():
    lines = (PROJECT / "README.md").read_text().splitlines()
    assert next(i for i, line in enumerate(lines) if line.startswith("## Drop-in")) < 40


def test_the_readme_results_summary_is_at_most_15_lines_with_its_link():
    """The README is a manual first (issue 29): its results are a summary that links the full tables."""
    text = (PROJECT / "README.md").read_text()
    heading, body = re.search(r"\n(## Results[^\n]*)\n(.*?)\n## ", text, re.S).groups()
    assert "(docs/results.md)" in heading
    assert len([line for line in body.splitlines() if line.strip()]) <= 15, body


def test_the_readme_drop_in_runs_as_written_on_cpu():
    """The drop-in block, with "cuda" read as "cpu" and a two-batch loader, runs and trains a student."""
    import torch

    import lightlabel as ll

    text = (PROJECT / "README.md").read_text()
    block = re.search(r"## Drop-in\n+```python\n(.*?)```", text, re.S).group(1)
    code = block.replace('device="cuda"', 'device="cpu"').replace(".cuda()", "")
    spec = ll.InputSpec.cifar10_dd()
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    before = student[1].weight.detach().clone()
    loader = [(spec.normalize(torch.rand(4, 3, 32, 32)), torch.randint(0, 10, (4,))) for _ in range(2)]
    namespace = {"loader": loader, "student": student, "optimizer": torch.optim.SGD(student.parameters(), lr=0.1)}
    exec(compile(code, "README.md drop-in", "exec"), namespace)
    assert namespace["soft_logits"].shape == (4, 10) and not torch.equal(student[1].weight, before)


def test_nothing_but_the_results_pages_depends_on_the_benchmarks():
    """benchmarks/ stands apart: no test imports or runs it (the wheel test's exclusion check aside), and of the docs
    only results.md and reproduce.md name its commands."""
    uses = re.compile(r"benchmarks[/.]|import (helio_|_common|_plot)|from (helio_|_common|_plot)")
    tests = [f"{p.name}:{i}" for p in (PROJECT / "tests").glob("*.py") if p.name != "test_docs.py"
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if uses.search(line) and "startswith((" not in line]
    assert not tests, tests
    docs = [p.name for p in [PROJECT / "README.md", *(PROJECT / "docs").glob("*.md")]
            if "benchmarks" in p.read_text() and p.name not in ("results.md", "reproduce.md")]
    assert not docs, docs


def test_the_api_reference_is_what_its_generator_writes():
    spec = importlib.util.spec_from_file_location("_gen_api", PROJECT / "docs" / "_gen_api.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.render() == (PROJECT / "docs" / "api.md").read_text(), "docs/api.md is stale: run python docs/_gen_api.py"


DOC_PAGES = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]


def _python_blocks() -> list[tuple[str, int, str]]:
    """``(page, block number, code)`` for every ```python block of README and docs/."""
    return [(page.name, i, block) for page in DOC_PAGES
            for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))]


def _parse(code: str):
    import ast
    try:
        return ast.parse(code)
    except SyntaxError:  # an elided argument list (`f(a=1, ..., b=2)`) is prose; drop the ellipsis
        return ast.parse(re.sub(r",\s*\.\.\.(?=\s*,)", "", code))


def _api_calls(tree, variables: dict):
    """``(text, object, positional count, keyword names, is unbound method)`` for each call of ``ll.X[.Y]`` or of a
    method on a variable the pages use for one public type (``projector.save_pretrained(...)``)."""
    import ast
    import inspect

    import lightlabel as ll
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        chain, base = [], node.func
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        if not isinstance(base, ast.Name) or (base.id != "ll" and base.id not in variables):
            continue
        owner = ll if base.id == "ll" else variables[base.id]
        obj = owner
        for name in chain:
            assert hasattr(obj, name), f"{ast.unparse(node.func)}: {obj!r} has no attribute {name!r}"
            parent, obj = obj, getattr(obj, name)
        unbound = inspect.isclass(parent) and inspect.isfunction(inspect.getattr_static(parent, chain[-1]))
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            continue
        yield ast.unparse(node), obj, len(node.args), [k.arg for k in node.keywords], unbound


BLOCKS = _python_blocks()


@pytest.mark.parametrize("page, index, code", BLOCKS, ids=[f"{p}-{i}" for p, i, _ in BLOCKS])
def test_every_python_block_in_the_docs_calls_the_api_as_it_is(page, index, code):
    """Each ``ll.*`` call and each method call on ``projector``, ``distilled``, ``relabeler``, ``result`` or
    ``selection`` names a public attribute that exists and passes arguments its signature takes; attributes read
    off them exist."""
    import ast
    import dataclasses
    import inspect

    import lightlabel as ll
    variables = {"projector": ll.Projector, "distilled": ll.DistilledSet, "relabeler": ll.OnlineRelabeler,
                 "result": ll.StudentResult, "selection": ll.TeacherSelection}
    tree = _parse(code)
    from lightlabel.io.hub import model_card
    card = set(inspect.signature(model_card).parameters) - {"info", "adapter_nbytes", "num_parameters"}
    fields = lambda cls: {f.name for f in dataclasses.fields(cls)}  # noqa: E731
    forwarded = {  # where each public **kwargs goes, so a misspelt setting there fails here too
        ll.Projector.save_pretrained: card, ll.Projector.push_to_hub: card,
        ll.distill_images: fields(ll.DistillConfig), ll.factorize_images: fields(ll.FactorizeConfig),
        ll.train_teachers: fields(ll.TeacherConfig), ll.train_student: fields(ll.EvalProtocol),
        ll.EvalProtocol.helio: fields(ll.EvalProtocol), ll.EvalProtocol.rded: fields(ll.EvalProtocol),
        ll.EvalProtocol.preset: fields(ll.EvalProtocol), ll.EvalProtocol.replace: fields(ll.EvalProtocol)}
    for text, obj, positional, keywords, unbound in _api_calls(tree, variables):
        signature = inspect.signature(obj)
        try:
            bound = signature.bind_partial(*[None] * (positional + unbound), **dict.fromkeys(keywords))
        except TypeError as e:
            pytest.fail(f"{page}, python block {index}: `{text}` does not fit {obj.__qualname__}{signature}: {e}")
        extra = [k for name, p in signature.parameters.items() if p.kind is p.VAR_KEYWORD
                 for k in bound.arguments.get(name, {})]
        if extra:
            assert obj in forwarded, f"{page}, python block {index}: `{text}`: where do {extra} go? add it here"
            unknown = sorted(set(extra) - forwarded[obj])
            assert not unknown, f"{page}, python block {index}: `{text}`: {obj.__qualname__} takes no {unknown}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in variables:
            cls = variables[node.value.id]
            fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
            assert hasattr(cls, node.attr) or node.attr in fields, (
                f"{page}, python block {index}: {node.value.id}.{node.attr}: {cls.__name__} has no {node.attr!r}")


def test_the_docs_check_has_calls_to_check():
    """The block check above is not vacuous: the pages make at least 20 checked calls."""
    import lightlabel as ll
    variables = {"projector": ll.Projector, "distilled": ll.DistilledSet}
    assert sum(1 for _, _, code in BLOCKS for _ in _api_calls(_parse(code), variables)) >= 20


def test_every_test_the_docs_name_exists():
    """`test_x.py::test_y` in README or docs/ (reliability.md cites one per refusal) names a test that exists."""
    cited = {m for page in DOC_PAGES for m in re.findall(r"(test_\w+\.py)::(test_\w+)", page.read_text())}
    assert len(cited) >= 20
    missing = [f"{f}::{n}" for f, n in sorted(cited)
               if not re.search(rf"^def {n}\(", (PROJECT / "tests" / f).read_text(), re.M)]
    assert not missing, f"the docs cite tests that do not exist: {missing}"
