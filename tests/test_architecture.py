"""The import floors of docs/architecture.md, checked on the source with `ast`.

Every module of src/modelport sits on a floor; a module may import modules on its own floor or
below, never above, and no group of modules may import each other in a cycle. Imports under
`if TYPE_CHECKING:` do not run and are not counted; imports inside functions are.

KNOWN_VIOLATIONS lists what is still wrong (each with why and the fix). The test fails on any
violation not listed, and on a listed one that no longer exists: the list only shrinks.
"""

from __future__ import annotations

import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"

# Floors, lowest first: (floor, module-name prefixes). The longest matching prefix decides.
# The root package `modelport` is the public facade: anything may import it (for __version__);
# its own imports are lazy re-exports (module __getattr__) and are not counted.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("schema", ("modelport.schema", "modelport.errors", "modelport")),
    ("base", ("modelport.atomic", "modelport.limits", "modelport.caffe_math",
              "modelport.caffe_rng", "modelport.optional", "modelport.zoo", "modelport.digest",
              "modelport.lazy")),
    ("ir", ("modelport.ir",)),
    ("formats", ("modelport.formats", "modelport.weights_file")),
    ("passes", ("modelport.passes",)),
    # formats.caffe.net_loader: the pipeline's old import path (an alias of modelport.pipeline)
    ("pipeline", ("modelport.pipeline", "modelport.formats.caffe.net_loader")),
    ("layers", ("modelport.layers", "modelport.fillers")),
    ("backends", ("modelport.backends", "modelport.inspect_shapes")),
    ("tools", ("modelport.optimize", "modelport.export", "modelport.verify", "modelport.train",
               "modelport.transfer", "modelport.inspect", "modelport.convert", "modelport.caffe",
               "modelport.tf")),
    ("commands", ("modelport.commands", "modelport.cli", "modelport.__main__",
                  "modelport.demo")),
]
RANK = {name: i for i, (name, _) in enumerate(FLOORS)}
FACADE = "modelport"

# Violations still to fix, each with what fixes it (none left: a new one fails the test).
KNOWN_VIOLATIONS: set[tuple[str, str] | frozenset[str]] = set()


def module_files() -> dict[str, pathlib.Path]:
    """Every module of src/modelport by dotted name (a package by its __init__)."""
    out = {}
    for path in sorted((SRC / "modelport").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """The modelport modules `name` imports when it runs (at import time or in a function)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit_node(other)
                continue
            visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "modelport")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            if base.split(".")[0] == "modelport":
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in modules else base)
        visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    found.discard(name)
    return found


def floor_of(name: str) -> str:
    best, floor = -1, ""
    for fl, prefixes in FLOORS:
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, floor = len(prefix), fl
    assert floor, f"{name} is on no floor: add it to FLOORS (and docs/architecture.md)"
    return floor


def graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: {m for m in imports_of(name, path, modules) if m in modules}
            if name != FACADE else set() for name, path in modules.items()}


def upward_imports(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(a, b) for a, targets in edges.items() for b in targets
            if RANK[floor_of(b)] > RANK[floor_of(a)]}


def cycles(edges: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: set[frozenset[str]] = set()

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                out.add(frozenset(group))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def _listing(found: set[tuple[str, str] | frozenset[str]]) -> list[str]:
    return sorted(" -> ".join(v) if isinstance(v, tuple) else "cycle " + " <-> ".join(sorted(v))
                  for v in found)


def test_every_module_is_on_a_floor() -> None:
    for name in module_files():
        floor_of(name)


def test_no_import_against_the_floors_and_no_cycle() -> None:
    edges = graph()
    found: set[tuple[str, str] | frozenset[str]] = set(upward_imports(edges)) | set(cycles(edges))
    new = found - KNOWN_VIOLATIONS
    assert not new, ("imports against docs/architecture.md's floors (importer, imported) or "
                     f"cycles: {_listing(new)}")
    gone = KNOWN_VIOLATIONS - found
    assert not gone, f"fixed: remove from KNOWN_VIOLATIONS: {_listing(gone)}"


def test_the_checker_sees_an_upward_import_and_a_cycle() -> None:
    edges = {"modelport.ir": {"modelport.layers.conv"}, "modelport.layers.conv": {"modelport.ir"},
             "modelport.schema": set()}
    assert upward_imports(edges) == {("modelport.ir", "modelport.layers.conv")}
    assert cycles(edges) == {frozenset({"modelport.ir", "modelport.layers.conv"})}


def test_type_checking_imports_do_not_count(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from modelport.backends import torch_module\n"
                    "def f():\n    from modelport.layers import conv\n")
    modules = {"modelport.backends.torch_module": path, "modelport.layers.conv": path}
    assert imports_of("modelport.m", path, modules) == {"modelport.layers.conv"}


def test_layers_do_no_file_io() -> None:
    """Converters read no files: a file a layer's parameters name (InfogainLoss's source) is
    read by the loader into the IR (formats/caffe/layer_files.py). The only formats module the
    layers use is `mapped` (views of the already mapped caffemodel)."""
    modules = module_files()
    for name, path in modules.items():
        if floor_of(name) != "layers":
            continue
        readers = {m for m in imports_of(name, path, modules) if m.startswith("modelport.formats")}
        assert readers <= {"modelport.formats.caffe.mapped"}, (name, readers)
        calls = {node.func.id for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        assert "open" not in calls, name
