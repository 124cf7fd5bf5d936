"""Repository-wide structure rules, checked on the source text (AST; nothing is imported).

* no function or method in ``dbeta_hf/`` or ``examples/`` is longer than `MAX_FUNCTION_LINES` lines (from its
  ``def`` line to its last line, its docstring not counted);
* the module-level imports between the modules of ``dbeta_hf`` form no cycle;
* no function body in ``dbeta_hf/`` imports anything but an optional dependency (`OPTIONAL_IMPORTS`);
* no two modules of ``dbeta_hf`` share a file name (``__init__.py`` and ``__main__.py`` aside).

Every failure lists all offenders as ``path:line`` so that each one can be fixed from the message alone. The last
test plants one offender of each kind in a scratch tree and checks that every rule reports it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "dbeta_hf"
MAX_FUNCTION_LINES = 80

# Optional dependencies (setup.py `extras_require`, not `install_requires`) may be imported inside the function
# that needs them, so that the package imports and works without them. module name -> the extra that installs it.
OPTIONAL_IMPORTS: dict[str, str] = {
    "matplotlib": "plots",  # the figures of the evaluation commands (dbeta_hf.evaluation.plotting)
    "h5py": "hdf5",  # the CODE-15 test set is one HDF5 file (dbeta_hf.data.code15)
    "faiss": "faiss",  # the faiss search backend of the N3S index (dbeta_hf.pretraining.n3s)
    "deepfakeecg": "synthetic",  # the DeepFake-ECG generator of the synthetic corpus (dbeta_hf.data.synthetic)
}
# Required dependencies whose import is deferred inside the model bundle, so that `import dbeta_hf` (and a saved
# model's remote code) stays light; each names the module that defers it and why. module -> reason.
DEFERRED_IMPORTS: dict[str, str] = {
    "wfdb": "dbeta_hf/ecg_signal.py read_wfdb: wfdb imports pandas and matplotlib, about a second, for one function",
}
# module name -> the distribution name setup.py lists, where the two differ
DISTRIBUTION_NAMES = {"faiss": "faiss-cpu", "deepfakeecg": "deepfake-ecg"}
FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


# ----------------------------------------------------------------------------------------------- source helpers
def python_files(root: Path, *folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (root / folder).rglob("*.py"))


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _docstring_lines(node: ast.AST) -> int:
    first = node.body[0] if node.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.end_lineno - first.lineno + 1
    return 0


def function_lengths(tree: ast.Module):
    """``(node, lines)`` of every function and method: ``def`` line to last line, minus the docstring."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node, node.end_lineno - node.lineno + 1 - _docstring_lines(node)


def _is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def module_level_imports(tree: ast.Module):
    """The import statements that run when the module is imported: outside every function body and outside
    ``if TYPE_CHECKING:`` blocks (class bodies, ``try`` and plain ``if`` blocks included)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, FUNCTION_NODES) or _is_type_checking_block(node):
            continue
        else:
            stack.extend(ast.iter_child_nodes(node))


def function_body_imports(tree: ast.Module) -> list[tuple[ast.AST, ast.Import | ast.ImportFrom]]:
    """``(innermost function, import statement)`` for every import inside a function or method body, in line
    order."""
    owner: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):  # breadth first: an inner function comes after the functions around it
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    owner[inner] = node
    return sorted(((function, statement) for statement, function in owner.items()), key=lambda pair: pair[1].lineno)


def _imported_names(statement: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(statement, ast.Import):
        return [alias.name for alias in statement.names]
    if statement.level:
        return ["." * statement.level + (statement.module or "")]
    return [statement.module or ""]


def imported_targets(statement: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: set[str]):
    """The modules of `modules` an import statement of module `importer` names (``from pkg import submodule``
    names the submodule; ``from pkg import name`` names ``pkg``)."""
    if isinstance(statement, ast.Import):
        return [alias.name for alias in statement.names if alias.name in modules]
    base = statement.module or ""
    if statement.level:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        anchor = package[: len(package) - (statement.level - 1)]
        base = ".".join(anchor + ([statement.module] if statement.module else []))
    targets = []
    for alias in statement.names:
        if f"{base}.{alias.name}" in modules:
            targets.append(f"{base}.{alias.name}")
        elif base in modules:
            targets.append(base)
    return list(dict.fromkeys(targets))


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str  # path:line of the import statement


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, list[Edge]]:
    """Module-level import edges between the modules of `package`. A package ``__init__``'s lazy table
    (names imported by a module ``__getattr__`` on first use) is inside a function and so adds no edge."""
    files = {module_name(path, root): path for path in python_files(root, package)}
    modules = set(files)
    graph: dict[str, list[Edge]] = {name: [] for name in modules}
    for name, path in files.items():
        for statement in module_level_imports(parse(path)):
            for target in imported_targets(statement, name, path.name == "__init__.py", modules):
                graph[name].append(Edge(name, target, f"{relative(path, root)}:{statement.lineno}"))
    return graph


def import_cycles(graph: dict[str, list[Edge]]) -> list[list[Edge]]:
    """One cycle (a list of edges) per strongly connected component of the graph that has one (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph[node]:
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or any(e.target == node for e in graph[node]):
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(component, graph) for component in components]


def _cycle_in(component: set[str], graph: dict[str, list[Edge]]) -> list[Edge]:
    """A shortest cycle through the alphabetically first module of a strongly connected component (BFS)."""
    start = min(component)
    parents: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in graph[node]:
                if edge.target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, parents[path[0].source])
                    return path
                if edge.target in component and edge.target not in parents:
                    parents[edge.target] = edge
                    following.append(edge.target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - a component always has one


def setup_requirements(root: Path) -> tuple[set[str], set[str]]:
    """``(install_requires, extras_require)`` distribution names, read from setup.py's literals."""
    call = next(
        node for node in ast.walk(parse(root / "setup.py"))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup"
    )
    keywords = {
        kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg in ("install_requires", "extras_require")
    }

    def names(requirements) -> set[str]:
        return {req.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip().lower()
                for req in requirements}

    extras = set().union(*(names(reqs) for reqs in keywords.get("extras_require", {}).values()))
    return names(keywords.get("install_requires", [])), extras


# ----------------------------------------------------------------------------------------------- the rules
def long_functions(root: Path, folders=(PACKAGE, "examples"), limit: int = MAX_FUNCTION_LINES) -> list[str]:
    offenders = []
    for path in python_files(root, *folders):
        for node, lines in function_lengths(parse(path)):
            if lines > limit:
                offenders.append(f"{relative(path, root)}:{node.lineno} {node.name}: {lines} lines")
    return offenders


def function_imports(root: Path, package: str = PACKAGE) -> list[str]:
    offenders = []
    for path in python_files(root, package):
        for function, statement in function_body_imports(parse(path)):
            names = _imported_names(statement)
            if all(not n.startswith(".") and n.split(".")[0] in {**OPTIONAL_IMPORTS, **DEFERRED_IMPORTS} for n in names):
                continue
            where = f"{relative(path, root)}:{statement.lineno}"
            offenders.append(f"{where} in {function.name}(): imports {', '.join(names)}")
    return offenders


def duplicate_file_names(root: Path, package: str = PACKAGE) -> list[str]:
    by_name = defaultdict(list)
    for path in python_files(root, package):
        if path.name not in ("__init__.py", "__main__.py"):
            by_name[path.name].append(relative(path, root))
    return [f"{name}: {', '.join(paths)}" for name, paths in sorted(by_name.items()) if len(paths) > 1]


def _report(offenders: list[str], rule: str) -> str:
    return f"{len(offenders)} violation(s) of: {rule}\n  " + "\n  ".join(offenders)


def _format_cycle(cycle: list[Edge]) -> str:
    chain = " -> ".join([cycle[0].source] + [edge.target for edge in cycle])
    return chain + "\n    " + "\n    ".join(f"{edge.where}: {edge.source} imports {edge.target}" for edge in cycle)


# ----------------------------------------------------------------------------------------------- tests
def test_no_function_longer_than_the_limit():
    offenders = long_functions(ROOT)
    assert not offenders, _report(
        offenders, f"no function or method in {PACKAGE}/ or examples/ longer than {MAX_FUNCTION_LINES} lines "
        "(docstring excluded); split it into named steps"
    )


def test_package_import_graph_has_no_cycle():
    cycles = import_cycles(import_graph(ROOT))
    assert not cycles, _report(
        [_format_cycle(cycle) for cycle in cycles],
        f"the module-level imports between the modules of {PACKAGE} form no cycle; move the shared code into a "
        "module both can import",
    )


def test_no_import_inside_a_function_body():
    offenders = function_imports(ROOT)
    assert not offenders, _report(
        offenders, f"imports at module top in {PACKAGE}/; only the optional dependencies "
        f"{sorted(OPTIONAL_IMPORTS)} and the deferred {sorted(DEFERRED_IMPORTS)} may be imported inside the function "
        "that needs them",
    )


def test_optional_import_allowlist_matches_setup_extras():
    install_requires, extras = setup_requirements(ROOT)
    for module in OPTIONAL_IMPORTS:
        distribution = DISTRIBUTION_NAMES.get(module, module)
        assert distribution in extras, f"{module} is allowlisted as optional but no setup.py extra has {distribution}"
        assert distribution not in install_requires, f"{distribution} is a required dependency: import it at module top"


def test_no_two_modules_share_a_file_name():
    offenders = duplicate_file_names(ROOT)
    assert not offenders, _report(offenders, f"no two modules of {PACKAGE}/ share a file name")


def test_every_rule_reports_a_planted_offender(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .a import f\n")
    (package / "a.py").write_text(
        "import os\nfrom .sub import b\n\n\ndef f():\n    '''Doc\n    string.'''\n" + "    x = 1\n" * 80
        + "    import json\n    import matplotlib.pyplot\n    return x\n"
    )
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nfrom ..a import f\nif TYPE_CHECKING:\n"
                                          "    from .. import c\n")
    (package / "sub" / "a.py").write_text("def g():\n    '''Only a docstring.'''\n")
    (package / "c.py").write_text(
        "def h():\n    from .sub import b\n\n    def inner():\n        import json\n\n    return b\n"
    )

    assert long_functions(tmp_path, folders=("pkg",)) == ["pkg/a.py:5 f: 84 lines"]
    assert function_imports(tmp_path, "pkg") == [
        "pkg/a.py:88 in f(): imports json",
        "pkg/c.py:2 in h(): imports .sub",
        "pkg/c.py:5 in inner(): imports json",  # once, under the innermost function
    ]
    assert duplicate_file_names(tmp_path, "pkg") == ["a.py: pkg/a.py, pkg/sub/a.py"]
    graph = import_graph(tmp_path, "pkg")
    assert {(e.source, e.target) for edges in graph.values() for e in edges} == {
        ("pkg", "pkg.a"), ("pkg.a", "pkg.sub.b"), ("pkg.sub.b", "pkg.a"),  # no TYPE_CHECKING or function edge
    }
    cycles = import_cycles(graph)
    assert [[(e.source, e.target, e.where) for e in cycle] for cycle in cycles] == [
        [("pkg.a", "pkg.sub.b", "pkg/a.py:2"), ("pkg.sub.b", "pkg.a", "pkg/sub/b.py:2")]
    ]
    assert _format_cycle(cycles[0]).startswith("pkg.a -> pkg.sub.b -> pkg.a")


@pytest.mark.parametrize("source, expected", [
    ("from . import x", ["pkg.sub.x"]),
    ("from .. import y", ["pkg"]),
    ("from ..sub import x, z", ["pkg.sub.x", "pkg.sub"]),
    ("import pkg.sub.x, os", ["pkg.sub.x"]),
    ("from pkg.sub.x import name", ["pkg.sub.x"]),
])
def test_relative_and_absolute_imports_resolve(source, expected):
    modules = {"pkg", "pkg.sub", "pkg.sub.x", "pkg.sub.w"}
    statement = ast.parse(source).body[0]
    assert imported_targets(statement, "pkg.sub.w", False, modules) == expected
