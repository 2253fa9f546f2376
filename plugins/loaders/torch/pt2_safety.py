"""What must hold before torch itself may load and run a .pt2 (``verify``).

``torch.export.load`` is no safe reader. For every program under ``models/`` it
unpickles the sample inputs and any pickled weight or constant with
``torch.load(weights_only=False)``, TorchBind custom objects with TorchScript's unpickler
and opaque objects with ``pickle.loads``; it loads the shared libraries of an
AOTInductor package (``data/aotinductor/``); it parses shape expressions with
``sympy.sympify``, which evaluates Python; and the program's ``guards_code`` is compiled
into a Python function. Running the program then calls whatever its nodes name, and the
deserializer resolves a node's target by attribute lookups from ``torch``,
``_operator`` or ``math``: ``torch.os.system`` is a valid target.

:func:`run_concerns` lists each of these that the archive does not keep benign:

- every pickled part (sample inputs, pickled weights and constants, of every program)
  passes :func:`~plugins.loaders.torch.pickle_budget.check_pickled_part`;
- no custom or opaque objects, no AOTInductor files, no guards code;
- every node target (nested graphs included) is one of torch's own ops (ATen, prims,
  higher-order, quantized_decomposed) other than the ones that touch files
  (:data:`FILE_OPS`), or one of the plain arithmetic functions of
  :data:`PLAIN_FUNCTIONS`; nothing with "__" in it;
- every shape expression is made of short numbers, operators (no ``**``), symbol names
  and the names of the sympy classes torch writes (:func:`sympy_names`, no powers): no
  attribute access, no subscripts, no other names, so that ``sympify`` can only build a
  small expression;
- every raw weight's view lies inside its storage (as the loader checks for the program
  it reads).

An empty list means torch may load and run it; anything else needs the user's consent.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from plugins.loaders.torch.tensors import view_problem
from plugins.loaders.torch.zips import Archive, normalise, open_archive, top_folder

OP_NAMESPACES = ("torch.ops.aten.", "torch.ops.prims.", "torch.ops.higher_order.", "torch.ops.quantized_decomposed.")
FILE_OPS = frozenset({"from_file", "save", "_load_for_mobile", "load_tensor"})
"""ATen/prims op names that read or write files."""

PLAIN_FUNCTIONS = frozenset(
    {f"_operator.{name}" for name in ("getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg")}
    | {f"_operator.{name}" for name in ("pos", "abs", "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_")}
    | {f"_operator.{name}" for name in ("xor", "invert", "lshift", "rshift", "matmul", "index", "truth")}
    | {f"math.{name}" for name in ("ceil", "floor", "trunc", "sqrt", "exp", "log", "log2", "pow", "fabs", "isnan")}
    | {f"torch.{name}" for name in ("sym_int", "sym_float", "sym_max", "sym_min", "sym_not", "sym_ite", "sym_sqrt")}
    | {"torch.sym_sum", "torch._sym_sqrt", "torch.sym_constrain_range_for_size", "torch._assert_scalar"}
)
"""Python functions a program's nodes may call besides ops: arithmetic on sizes."""

KEYWORDS = frozenset({"True", "False", "None"})


SYMPY_CLASSES = frozenset(
    "Symbol Dummy Integer Rational Float Add Mul Max Min Mod floor ceiling Abs sign Eq Ne Lt Le Gt Ge "
    "StrictLessThan LessThan StrictGreaterThan GreaterThan Equality Unequality And Or Not Xor true false "
    "BooleanTrue BooleanFalse oo zoo nan Infinity NegativeInfinity NegativeOne One Zero Half Piecewise "
    "ExprCondPair Tuple".split()
)
"""The sympy classes torch's shape expressions are written with (``srepr`` form). Not
``Pow`` or the like: ``Pow(2, 10**18)`` would be evaluated, a time bomb."""


@functools.lru_cache(maxsize=1)
def sympy_names() -> frozenset[str]:
    """The names a shape expression may use: :data:`SYMPY_CLASSES`, torch's own sympy
    functions (``FloorDiv``, ``ModularIndexing``; no powers or shifts), the assumption
    keywords (``positive``, ``integer``) and True/False/None. Constructing any of these
    builds an expression and runs nothing else."""
    from sympy.core.assumptions import _assume_defined

    names = set(KEYWORDS) | set(_assume_defined) | SYMPY_CLASSES
    try:
        import sympy
        import torch.utils._sympy.functions as torch_functions
    except ImportError:
        return frozenset(names)
    for name in dir(torch_functions):
        value = getattr(torch_functions, name)
        expensive = "Pow" in name or "Shift" in name  # 2**n and 1 << n with a literal n
        if not name.startswith("_") and not expensive and isinstance(value, type) and issubclass(value, sympy.Basic):
            names.add(name)
    return frozenset(names)


_SYMBOL = re.compile(r"^[a-z]{1,4}\d+$")
_TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<number>\d{1,20}(?:\.\d{0,20})?)"
    r"|(?P<string>'[A-Za-z_][A-Za-z0-9_]*')|(?P<op>//|==|!=|<=|>=|[-+*/%(),<>=&|~]))"
)


def run_concerns(path: Path) -> list[str]:
    """Why torch must not load and run the .pt2 at ``path`` unasked (module docstring);
    empty when it may. Raises what :func:`open_archive` raises for a refused archive."""
    from plugins.loaders.torch.pickle_budget import check_pickled_part
    from plugins.loaders.torch.torch_export import program_names, read_json

    concerns: list[str] = []
    with open_archive(path) as archive:
        names = archive.namelist()
        folder = top_folder(names, "archive_format")
        if folder is None:
            return ["it is a torch.export archive of an older layout, which torch unpickles whole"]
        if any(normalise(name).startswith(normalise(f"{folder}data/aotinductor/")) for name in names):
            concerns.append("it holds AOTInductor code (shared libraries torch would load)")
        for model in program_names(archive, folder):
            where = "" if model == "model" else f" (program {model!r})"
            sample = archive.find(f"{folder}data/sample_inputs/{model}.pt")
            if sample is not None:
                problem = check_pickled_part(archive.read(sample))
                if problem:
                    concerns.append(f"its sample inputs{where} {problem}")
            program = read_json(archive, f"{folder}models/{model}.json")
            concerns += [f"{concern}{where}" for concern in _program_concerns(program)]
            for kind in ("weights", "constants"):
                concerns += [f"{concern}{where}" for concern in _payload_concerns(archive, folder, kind, model)]
    return concerns


def _payload_concerns(archive: Archive, folder: str, kind: str, model: str) -> list[str]:
    from plugins.loaders.torch.pickle_budget import check_pickled_part
    from plugins.loaders.torch.torch_export import read_json

    config_name = f"{folder}data/{kind}/{model}_{kind}_config.json"
    if archive.find(config_name) is None:
        return []
    concerns = []
    for fqn, payload in read_json(archive, config_name).get("config", {}).items():
        name = str(payload.get("path_name", ""))
        entry = archive.find(f"{folder}data/{kind}/{name}")
        if name.startswith("custom_obj_"):
            concerns.append(f"its constant {fqn!r} is a TorchBind custom object (TorchScript code)")
        elif name.startswith("opaque_obj_"):
            concerns.append(f"its constant {fqn!r} is an opaque Python object (a pickle)")
        elif payload.get("use_pickle"):
            problem = check_pickled_part(archive.read(entry)) if entry is not None else None
            if problem:
                concerns.append(f"its {kind[:-1]} {fqn!r} {problem}")
        elif entry is not None:
            meta = payload.get("tensor_meta") or {}
            try:
                shape = tuple(size["as_int"] for size in meta["sizes"])
                strides = tuple(stride["as_int"] for stride in meta["strides"])
                offset = (meta.get("storage_offset") or {}).get("as_int", 0)
            except (KeyError, TypeError):
                concerns.append(f"its {kind[:-1]} {fqn!r} has no readable sizes and strides")
                continue
            # Elements, not bytes: the itemsize is at least 1, so this is a necessary bound.
            problem = view_problem(shape, strides, offset, entry.file_size)
            if problem:
                concerns.append(f"its {kind[:-1]} {fqn!r} {problem}")
    return concerns


def _program_concerns(program: Any) -> list[str]:
    concerns = []
    if not isinstance(program, dict):
        return ["its program is not a JSON object"]
    if program.get("guards_code"):
        concerns.append("it holds guards code (Python that torch compiles when loading)")
    graph_module = program.get("graph_module") or {}
    if (graph_module.get("graph") or {}).get("custom_obj_values"):
        concerns.append("its graph uses TorchBind custom objects")
    for target in sorted(set(_targets(program))):
        if not is_plain_target(target):
            concerns.append(f"its graph calls {target!r}, which is not a plain tensor op")
            break
    for expression in [*_expressions(program), *(program.get("range_constraints") or {})]:
        if not is_plain_expression(expression):
            shown = expression if len(expression) <= 60 else expression[:57] + "..."
            concerns.append(f"its shape expression {shown!r} is not plain arithmetic (sympy would evaluate it)")
            break
    return concerns


def is_plain_target(target: str) -> bool:
    """An ATen/prims/higher-order op that touches no file, or a function of
    :data:`PLAIN_FUNCTIONS`."""
    if "__" in target:
        return False
    if target in PLAIN_FUNCTIONS:
        return True
    namespace = next((prefix for prefix in OP_NAMESPACES if target.startswith(prefix)), None)
    if namespace is None:
        return False
    parts = target[len(namespace) :].split(".")
    return 1 <= len(parts) <= 2 and all(part.isidentifier() for part in parts) and parts[0] not in FILE_OPS


def is_plain_expression(text: object) -> bool:
    """Numbers, operators, parentheses, commas, quoted symbol names, symbol names and the
    names of :func:`sympy_names`, nothing else (in particular no "." and no "[")."""
    if not isinstance(text, str) or len(text) > 10_000 or "**" in text:
        return False
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            return not text[position:].strip()
        name = match.group("name")
        if name is not None and name not in sympy_names() and not _SYMBOL.match(name):
            return False
        position = match.end()
    return True


def _targets(value: Any, depth: int = 0):
    """Every node target in a serialized program, nested graphs included."""
    if depth > 200:
        yield "<nested too deeply>"
        return
    if isinstance(value, dict):
        target = value.get("target")
        if isinstance(target, str) and "inputs" in value:
            yield target
        for item in value.values():
            yield from _targets(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _targets(item, depth + 1)


def _expressions(value: Any, depth: int = 0):
    if depth > 200:
        yield "<nested too deeply>"
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "expr_str":
                yield item if isinstance(item, str) else json.dumps(item)
            else:
                yield from _expressions(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _expressions(item, depth + 1)
