"""The package's shape: no import circle between optitui's modules, and files that fit in a head.

import-linter's contracts (pyproject) see packages; this walks every module's imports
with ``ast``, so a circle between two modules of one package is caught too. Every
import counts: at module level, under ``TYPE_CHECKING``, and inside functions (a lazy
import only hides a circle from the interpreter, not from a reader).
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "optitui"
#: product code: the package and the benchmarks (tests may be longer)
PRODUCT = [PACKAGE, REPO / "benchmarks"]
MAX_LINES = 500
#: circles being cut, and files being split: they may shrink, never grow
UNTANGLING: list[list[str]] = []
SHRINKING: dict[str, int] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The optitui modules ``name`` imports, each as the most specific module known."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:  # `from pkg import module` names a module
                sub = f"{base}.{a.name}"
                targets.append(sub if sub in known else base)
    out = set()
    for t in targets:
        while t and t not in known:
            t = t.rpartition(".")[0]
        if t and t != name:
            out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    part.append(m)
                    if m == node:
                        break
                if len(part) > 1:
                    found.append(sorted(part))
    return found


def test_the_walk_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_walk_reads_every_kind_of_import() -> None:
    graph = import_graph()
    # module level, and `from package import module`
    assert "optitui.store.layout" in graph["optitui.store.reader"]
    # inside a function (the lazy public API)
    assert any(m.startswith("optitui.trainer") for m in graph["optitui"])


def test_no_import_circle() -> None:
    found = circles(import_graph())
    new = [c for c in found if not any(set(c) <= set(old) for old in UNTANGLING)]
    shown = "\n".join(", ".join(c) for c in new)
    assert not new, f"import circles in optitui:\n{shown}"


def test_files_fit_in_a_head() -> None:
    long = {
        str(p.relative_to(REPO)): n
        for root in PRODUCT
        for p in root.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    grown = {f: n for f, n in long.items() if n > SHRINKING.get(f, MAX_LINES)}
    assert not grown, f"over {MAX_LINES} lines: {grown}"
