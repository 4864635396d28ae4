"""The package's shape: no import cycles, small modules and functions, names spelled in one place.

The import graph counts every import: module level, inside functions, and under ``if TYPE_CHECKING:`` (a
type-only import still means one module needs the other to be read). No function runs over 60 lines; the
run directory's names are spelled only in ``rundir.py`` (and ``transcript.py``, which owns the transcript);
``checkpoint.py`` holds the checkpointer and nothing else; mechanism names and guarantee strings are compared
only inside the registry. Each check has a negative control on a planted example, so a checker that sees
nothing cannot pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from paczero import rundir
from paczero.mechanisms import MECHANISMS, Guarantee

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 400
MAX_FUNCTION_LINES = 60


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module → the modules of ``root`` it imports (lazy and type-only imports included)."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            deps.update(r for t in targets if (r := resolve(t)) and r != module)
        graph[module] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_src_has_no_import_cycle():
    assert cycles(import_graph(SRC)) == []


def test_the_cycle_check_finds_planted_cycles_type_only_ones_included(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")  # lazy: runs, so it counts
    (pkg / "b.py").write_text("from pkg.c import x\n")
    (pkg / "c.py").write_text("from . import a\nx = 1\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n")
    (pkg / "e.py").write_text("import pkg.d\n")
    (pkg / "f.py").write_text("x = 1\n")  # imported by g, imports nothing: no cycle
    (pkg / "g.py").write_text("from pkg.f import x\n")
    assert sorted(cycles(import_graph(tmp_path))) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.d", "pkg.e"]]


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def _name_comparisons(tree: ast.AST, names: set[str]) -> list[int]:
    """Lines where a string literal in ``names`` is compared (==, !=, in, not in) or matched."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            literals = [node.left, *node.comparators]
            literals += [
                e for c in node.comparators if isinstance(c, ast.Tuple | ast.List | ast.Set) for e in c.elts
            ]
            if any(isinstance(x, ast.Constant) and x.value in names for x in literals):
                lines.append(node.lineno)
        if isinstance(node, ast.MatchValue) and getattr(node.value, "value", None) in names:
            lines.append(node.lineno)
    return lines


NAMES = {cls.name for cls in MECHANISMS.values()} | {g.value for g in Guarantee}


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_mechanism_name_or_guarantee_string_is_compared_outside_the_registry(path):
    assert _name_comparisons(ast.parse(path.read_text()), NAMES) == []


def test_the_name_check_catches_a_planted_comparison():
    planted = "if cfg.privacy.mechanism == 'paczero-mi':\n    pass\nok = guarantee in ('dp', 'none')\n"
    assert _name_comparisons(ast.parse(planted), NAMES) == [1, 3]


def long_functions(tree: ast.AST, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """Every function or method over ``limit`` lines (from ``def`` to its last line), with its length."""
    return {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= limit
    }


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_function_is_over_60_lines(path):
    rel = path.relative_to(SRC).as_posix()
    found = long_functions(ast.parse(path.read_text()))
    assert found == {}, f"{rel}: split {found}"


def test_the_length_check_catches_a_planted_long_function():
    body = "".join(f"        x{i} = {i}\n" for i in range(59))
    planted = f"def fits():\n{body}\nclass C:\n    def too_long(self):\n{body}        return 1\n"
    assert long_functions(ast.parse(planted)) == {"too_long": 61}  # ``fits`` is 60 lines: allowed


# The run directory's names as rundir.py spells them: files anywhere in a string, folders as path parts.
RUN_FILES = {
    Path(name).name
    for name in (
        *rundir.PUBLIC_FILES,
        rundir.MODEL_CARD,
        rundir.SECRET,
        rundir.STATE,
        rundir.TIMING,
        rundir.MIA,
        rundir.MIA_NOTES,
        rundir.CHECKPOINT_STATE,
        rundir.CHECKPOINT_PRIVATE,
        rundir.CHECKPOINT_WEIGHTS,
        rundir.CHECKPOINT_BEST,
    )
} - {"README.md"}  # the model card's name is the Hub's convention, spelled by the model writers too
RUN_DIRS = {*rundir.PUBLIC_DIRS, rundir.PRIVATE, rundir.AUDIT, rundir.TENSORBOARD, rundir.CHECKPOINTS}
NAME_OWNERS = {"paczero/rundir.py", "paczero/transcript.py"}


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef)]
    return {
        id(n.body[0].value)
        for n in nodes
        if n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)
    }


def run_dir_names(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) where a run-directory name is spelled in code: a file name as a string or its last path
    part, a folder name as a path operand (``run_dir / "model"``), a ``private_dir`` argument or a path part.
    Docstrings and prose (strings with spaces: messages, help texts) may name files and are not counted."""
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and right.value in RUN_DIRS:
                found.append((node.lineno, right.value))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "private_dir":
            found += [(a.lineno, a.value) for a in node.args[1:] if isinstance(a, ast.Constant)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if any(c.isspace() for c in node.value):  # prose (a message, a help text) may name a file
                continue
            parts = node.value.split("/")
            if parts[-1] in RUN_FILES or (len(parts) > 1 and any(p in RUN_DIRS for p in parts[:-1])):
                found.append((node.lineno, node.value))
    return sorted(found)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_run_directory_names_are_spelled_only_in_rundir(path):
    if path.relative_to(SRC).as_posix() in NAME_OWNERS:
        return
    assert run_dir_names(ast.parse(path.read_text())) == []


def test_the_name_check_catches_planted_run_directory_names():
    planted = (
        '"""Reads summary.json (a docstring may name it)."""\n'
        'a = run_dir / "summary.json"\n'
        'b = run_dir / "model" / name\n'
        'c = f"{run_dir}/private/secret.json"\n'
        'd = private_dir(run_dir, "audit")\n'
        'e = {"model": cfg.model.name, "report": 1}\n'
        'f = "see steps.jsonl for the per-step values, written to DIR/private/report"\n'
    )
    found = run_dir_names(ast.parse(planted))
    assert [line for line, _ in found] == [2, 3, 4, 5]


def public_definitions(tree: ast.Module) -> set[str]:
    """The public functions and classes a module defines at its top level."""
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_")
    }


CHECKPOINTER = {"Checkpointer", "CheckpointError", "Snapshot"}


def test_checkpoint_py_holds_only_the_checkpointer():
    assert public_definitions(ast.parse((SRC / "paczero" / "checkpoint.py").read_text())) == CHECKPOINTER


def test_the_checkpointer_check_catches_a_planted_guard():
    planted = ast.parse("class Checkpointer: ...\ndef check_run_dir(path): ...\ndef _load(path): ...\n")
    assert public_definitions(planted) - CHECKPOINTER == {"check_run_dir"}
