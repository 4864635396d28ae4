"""The package's shape: no import cycles, small modules, names compared only inside the registry.

The import graph counts every import that runs (module level and inside functions); imports under
``if TYPE_CHECKING:`` never run and only name types, so they are not edges. Each check has a negative control
on a planted example, so a checker that sees nothing cannot pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from paczero.mechanisms import MECHANISMS, Guarantee

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 400


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """module → the modules of ``root`` it imports when it runs (lazy imports included)."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        deps: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text())):
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


def test_the_cycle_check_finds_a_planted_cycle_and_ignores_type_only_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")  # lazy: runs, so it counts
    (pkg / "b.py").write_text("from pkg.c import x\n")
    (pkg / "c.py").write_text("from . import a\nx = 1\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n")
    (pkg / "e.py").write_text("import pkg.d\n")
    assert cycles(import_graph(tmp_path)) == [["pkg.a", "pkg.b", "pkg.c"]]


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
