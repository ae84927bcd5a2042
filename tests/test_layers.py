"""The import graph of owngrad/: every import counts (module level, inside functions, under TYPE_CHECKING).

The capture engine's lower half -- traced values, the recorder (the engine's record of a step), the
guards and the plan compiler -- sits below every tensor, graph and gradient module and imports none of them. There is no
import cycle anywhere: the layers below the graph name it only through protocols (graph_api.GraphAPI,
node.NodeOwner), and the tensor's mixins name their own class as ``Self``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "owngrad"

#: the core, bottom to top: each imports only modules before it in this list (and the bottom layers)
CORE = ["node", "graph_api", "handle", "operands", "tensor_math", "tensor_views", "inplace", "tensor", "grads",
        "backward", "factory", "graph"]
ENGINE_RECORD = {"traced", "tracer", "guards", "plancode"}
#: the layers below the core: they import no tensor, graph, gradient or training module
BOTTOM = {"errors", "sites", "backend", "shapes", "ledger", "views", "rules", "roles", "modes"} | ENGINE_RECORD
UPPER = set(CORE) | {"capture", "ops", "nn", "optim", "training", "data", "io", "distributed"}


def _module(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the owngrad modules it imports, anywhere in its source (mypy_plugin excluded: mypy loads it)."""
    files = {_module(p): p for p in PKG.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        if mod.partition(".")[0] == "mypy_plugin":  # loaded by mypy, not part of the runtime's layers
            continue
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                here = mod.split(".") if is_pkg else mod.split(".")[:-1]
                if node.level:
                    base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                    prefix = [p for p in base if p] + ([node.module] if node.module else [])
                elif node.module and node.module.startswith("owngrad"):
                    prefix = node.module.split(".")[1:]
                else:
                    continue
                for alias in node.names:
                    cand = ".".join([*prefix, alias.name])
                    target = cand if cand in files else ".".join(prefix)
                    if target in files and target != mod:
                        edges[mod].add(target)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("owngrad."):
                        target = alias.name[len("owngrad."):]
                        if target in files:
                            edges[mod].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.add(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(comp)
    return out


def _reach(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for w in edges[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_import_graph_is_read_from_every_import() -> None:
    edges = import_graph()
    assert "roles" in edges["handle"] and "graph" in edges["capture"]  # module-level imports
    assert "graph_api" in edges["handle"]  # an import under TYPE_CHECKING counts too


def test_the_bottom_layers_and_the_engine_record_import_no_tensor_graph_or_gradient_module() -> None:
    edges = import_graph()
    for mod in BOTTOM:
        assert not {m.split(".")[0] for m in _reach(edges, mod)} & UPPER, (mod, sorted(_reach(edges, mod)))


def test_there_is_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_core_is_a_stack() -> None:
    edges = import_graph()
    for i, mod in enumerate(CORE):
        above = set(CORE[i + 1:])
        assert not edges[mod] & above, (mod, sorted(edges[mod] & above))


def test_below_the_graph_nothing_names_it() -> None:
    edges = import_graph()
    for mod in CORE[:-1]:
        assert "graph" not in _reach(edges, mod), mod


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_function_is_longer_than_sixty_lines() -> None:
    """Small functions: the engine, the core and everything above them (the mypy plugin included)."""
    long = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > 60:
                    long.append(f"{path.relative_to(PKG)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long
