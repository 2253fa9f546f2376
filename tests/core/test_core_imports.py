"""The core's import graph runs one way, and the core stays light.

The engine's modules form a chain; a module may import only modules before it::

    ir -> transforms, targets -> results, anchors -> compare -> match -> diff -> report

What counts as an import (decided from what the code does today):

- every ``import``/``from ... import`` statement that can run: at module level and inside
  functions alike. A function-level import still runs (a lazy import delays a
  dependency, it does not remove it), so a back edge through one is still a cycle in the
  design. The core's deliberate lazy imports are all of third-party packages (rich in
  ``output``, torch/onnx in plugins), which the chain does not cover; the one lazy
  core-to-core import is ``cli.main`` -> ``manager``, the front end reaching down;
- not what sits under ``if TYPE_CHECKING:`` (never runs; type hints may point anywhere);
- not ``importlib.import_module("plugins")`` in ``manager`` (a name, resolved at run
  time): it is how the plugin manager finds the built-ins, and is checked at run time
  below instead.

Outside the chain: the helpers below it (``errors``, ``records``, ``output_file``, ``progress``,
``output``, ``resources`` and the package itself) import nothing of the chain, and the front end
(``manager``, ``hookspecs``, ``cli``, ``isolation``, ``__main__``) is imported by no
chain module. The public Python API on top of everything (``api``, ``testing``,
``pytest_plugin``) may use any core module and is imported by none, except the package's lazy ``__getattr__``, which
loads ``api`` on first use of one of its names.

At run time: ``import inspector.cli`` imports none of numpy, torch, onnx or onnxruntime;
the overview ``graphinspect --help`` registers the built-in commands only and imports
none of them either (the commands import their machinery when they run); a command's
own ``--help`` registers every plugin and imports numpy, but not torch or onnx.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from tests.support import REPO

CORE = REPO / "inspector"
CHAIN = {
    "ir": 0,
    "transforms": 1,
    "targets": 1,
    "results": 2,
    "anchors": 2,
    "compare": 3,
    "coverage": 3,
    "match": 4,
    "diff": 5,
    "report": 6,
}
HELPERS = {"__init__", "errors", "records", "output_file", "output", "progress", "resources"}
FRONT = {"manager", "hookspecs", "cli", "isolation", "__main__"}
API = {"api", "testing", "pytest_plugin"}
HEAVY = ("torch", "onnx", "onnxruntime", "onnx_graphsurgeon", "onnxscript")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """(imported module, module level?) for every import statement that can run."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.depth = 0
        self.found: list[tuple[str, bool, int]] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def _function(self, node) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, self.depth == 0, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.rsplit(".", node.level - 1)[0] if node.level > 1 else self.package
            module = f"{base}.{node.module}" if node.module else base
        else:
            module = node.module or ""
        # "from inspector import ir" imports the submodule inspector.ir.
        for alias in node.names:
            candidate = f"{module}.{alias.name}"
            if module == "inspector" and (CORE / f"{alias.name}.py").exists():
                self.found.append((candidate, self.depth == 0, node.lineno))
            else:
                self.found.append((module, self.depth == 0, node.lineno))


def _imports() -> dict[str, list[tuple[str, bool, int]]]:
    graph = {}
    for path in sorted(CORE.glob("*.py")):
        visitor = _Imports("inspector")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        graph[path.stem] = visitor.found
    return graph


def _core_edges(graph):
    """(importer, imported core module, line) for imports between core modules."""
    edges = []
    for importer, found in graph.items():
        for module, _, line in found:
            if module == "inspector":
                edges.append((importer, "__init__", line))
            elif module.startswith("inspector."):
                edges.append((importer, module.split(".")[1], line))
    return edges


GRAPH = _imports()
EDGES = _core_edges(GRAPH)


def test_the_parser_sees_the_known_edges():
    # Guards against a vacuous pass: these edges exist today and must be found.
    assert {
        ("match", "compare"),
        ("match", "targets"),
        ("diff", "match"),
        ("compare", "results"),
        ("report", "results"),
        ("cli", "manager"),
        ("output", "__init__"),
    } <= {(a, b) for a, b, _ in EDGES}
    # ... and what sits under TYPE_CHECKING is not one of them.
    assert ("results", "ir") not in {(a, b) for a, b, _ in EDGES}
    assert ("diff", "manager") not in {(a, b) for a, b, _ in EDGES}


def test_the_chain_has_no_back_edge():
    back = [
        f"inspector/{a}.py:{line} imports inspector.{b}"
        for a, b, line in EDGES
        if a in CHAIN and b in CHAIN and CHAIN[b] >= CHAIN[a]
    ]
    assert back == [], f"order {' -> '.join(CHAIN)}"


def test_results_imports_nothing_of_the_core_at_run_time():
    assert [b for a, b, _ in EDGES if a == "results"] == []


def test_helpers_import_nothing_of_the_chain():
    up = [
        f"inspector/{a}.py:{line} imports inspector.{b}"
        for a, b, line in EDGES
        if a in HELPERS and b in set(CHAIN) | FRONT
    ]
    assert up == []


def test_the_chain_does_not_know_the_front_end():
    up = [f"inspector/{a}.py:{line} imports inspector.{b}" for a, b, line in EDGES if a in CHAIN and b in FRONT]
    assert up == []


def test_every_core_module_is_classified():
    assert set(GRAPH) == set(CHAIN) | HELPERS | FRONT | API


def test_only_the_package_reaches_the_api_and_only_lazily():
    into_api = [
        (a, b, top)
        for a, found in GRAPH.items()
        for module, top, _ in found
        if module.startswith("inspector.") and (b := module.split(".")[1]) in API and a not in API
    ]
    assert into_api == [("__init__", "api", False)]


def test_no_core_module_imports_plugins():
    found = [
        f"inspector/{name}.py:{line} imports {module}" + ("" if top else " (in a function)")
        for name, imports in GRAPH.items()
        for module, top, line in imports
        if module == "plugins" or module.startswith("plugins.")
    ]
    assert found == []


def test_no_core_module_imports_torch_or_onnx_at_module_level():
    found = [
        f"inspector/{name}.py:{line} imports {module}"
        for name, imports in GRAPH.items()
        for module, top, line in imports
        if top and module.split(".")[0] in HEAVY
    ]
    assert found == []


# ----------------------------------------------------------------------------- at run time

_PROBE = """
import json, sys
heavy = ("torch", "onnx", "onnxruntime", "numpy", "plugins")
def loaded():
    return sorted(name for name in heavy if name in sys.modules)
report = {}
import inspector.cli
report["cli"] = loaded()
import importlib, pkgutil, inspector
for info in pkgutil.iter_modules(inspector.__path__):
    if info.name != "__main__":
        importlib.import_module(f"inspector.{info.name}")
report["core"] = loaded()
try:
    inspector.cli.main(["--help"])
except SystemExit:
    pass
report["help"] = loaded()
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def loaded_modules() -> dict[str, list[str]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GRAPHINSPECT_")}
    env.update(GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_package(loaded_modules):
    assert loaded_modules["cli"] == []


def test_importing_every_core_module_loads_no_plugin_torch_or_onnx(loaded_modules):
    assert loaded_modules["core"] == ["numpy"]  # ir, compare, targets... compute with numpy


def test_help_loads_neither_torch_nor_onnx(loaded_modules):
    assert not {"torch", "onnx", "onnxruntime"} & set(loaded_modules["help"])
    assert "plugins" in loaded_modules["help"]


_HELP_PROBE = """
import json, sys
from inspector.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in ("numpy", "torch", "onnx", "plugins"))))
"""


def _modules_after(*argv: str) -> tuple[str, list[str]]:
    """(stdout before the probe's line, the numpy/torch/onnx/plugins modules loaded) after
    ``main(argv)`` in a fresh interpreter."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GRAPHINSPECT_")}
    env.update(GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONPATH=str(REPO))
    run = subprocess.run(
        [sys.executable, "-c", _HELP_PROBE, *argv], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    *shown, last = run.stdout.splitlines()
    return "\n".join(shown), json.loads(last)


def test_the_overview_imports_no_numpy_and_registers_only_the_commands():
    shown, modules = _modules_after("--help")
    assert not {"numpy", "torch", "onnx"} & {name.split(".")[0] for name in modules}
    # Below the kind packages (which only list their modules): commands, and the tables'
    # private column helpers, which the commands' table reporters share.
    kinds = {name.split(".")[1] for name in modules if name.count(".") >= 2}
    assert kinds == {"commands", "reports"}
    assert {name for name in modules if name.startswith("plugins.reports.")} <= {
        "plugins.reports._columns",
        "plugins.reports._wording",
    }
    for command in ("inspect", "diff", "fuse", "verify", "report", "plugins"):
        assert f"    {command} " in shown


def test_a_commands_help_registers_every_plugin():
    shown, modules = _modules_after("diff", "--help")
    assert "--rtol" in shown
    assert "plugins.loaders.onnx" in modules and "plugins.transforms.fold_batchnorm" in modules
    assert not {"torch", "onnx"} & {name.split(".")[0] for name in modules}
