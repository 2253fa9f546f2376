"""``graphinspect inspect MODEL``: what one model file holds.

Builds the ``graphinspect/inspect@1`` document::

    {"schema": "graphinspect/inspect@1", "tool": {...},
     "model": {"path", "format", "producer", "layers", "param_layers", "parameters",
               "bytes", "stored_bytes", "dtypes": {dtype: elements}, "inputs": [...],
               "outputs": [...], "metadata": {...}, "details": {...}},
     "layers": [{"name", "kind", "op_type", "attrs",
                 "params": [{"name", "tensor", "shape", ["stored_shape",] "dtype", "min",
                             "max", "mean", "std", "abs_max", "nan", "inf"}]}]}

and renders it as a rich summary and table (``--format table``, the default) or JSON.
Statistics are over finite values; NaN/Inf are counted. ``parameters`` and ``bytes``
count every element a tensor's shape holds, as PyTorch does; ``stored_bytes`` counts what
the file stores. They differ only for a broadcast tensor (torch's ``expand`` saves one value
for a whole axis): such a param has a ``stored_shape``, the shape of the values stored, and
its statistics are those of the stored values, each repeated (NaN/Inf counts multiplied).
Only layers with parameters are
listed unless ``--all`` is given. Loading and reading the statistics show progress on
stderr when they take more than a moment (a terminal only; see :mod:`inspector.progress`).
"""

from __future__ import annotations

import fnmatch
import os
from typing import TYPE_CHECKING, Any

from inspector import progress
from inspector.hookspecs import hookimpl
from inspector.output import (
    choose_format,
    document_header,
    emit,
    fmt_bytes,
    fmt_count,
    fmt_float,
    make_console,
    prepare_output,
    visible,
)
from inspector.records import Reporter, Subcommand

if TYPE_CHECKING:
    from inspector.ir import Layer, Model, TensorInfo

SCHEMA = "graphinspect/inspect@1"


def configure_parser(parser) -> None:
    parser.add_argument("model", help="a PyTorch (.pt/.pth/.pt2/TorchScript), safetensors or ONNX file")
    parser.add_argument("--format", help="table (default) or json, or any reporter plugin's format")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    parser.add_argument("--all", action="store_true", help="list every layer, also those without parameters")
    parser.add_argument("--layer", metavar="GLOB", action="append", help="only layers whose name matches GLOB")


def run(args, plugins) -> int:
    output = prepare_output(args.output, inputs=[args.model])
    fmt = choose_format(args.format, output, plugins, SCHEMA, default="table")
    with progress.shown():
        with progress.step(f"Loading {os.path.basename(args.model)}"):
            model = plugins.load_model(args.model)
        if output is not None:
            output.protect(model.files)
        document = build_document(model, include_all=args.all, globs=args.layer)
    emit(document, fmt, output, plugins, {"color": False if args.no_color else None})
    return 0


def build_document(model: Model, include_all: bool = False, globs: list[str] | None = None) -> dict[str, Any]:
    """The inspect document of ``model`` (reads every listed parameter once)."""
    layers = [layer for layer in model.layers if include_all or layer.params]
    if globs:
        layers = [layer for layer in layers if any(fnmatch.fnmatchcase(layer.name, glob) for glob in globs)]
    document = document_header(SCHEMA)
    document["model"] = {
        "path": model.path,
        "format": model.format,
        "producer": model.producer,
        "layers": len(model.layers),
        "param_layers": len(model.param_layers()),
        "parameters": model.num_parameters,
        "bytes": model.nbytes,
        "stored_bytes": model.stored_nbytes,
        "dtypes": model.dtypes(),
        "inputs": [_tensor_info(info) for info in model.inputs],
        "outputs": [_tensor_info(info) for info in model.outputs],
        "metadata": dict(model.metadata),
        "details": _plain(model.details),
    }
    with progress.step("Reading parameter statistics", total=len(layers)) as step:
        document["layers"] = []
        for layer in layers:
            document["layers"].append(_layer_entry(layer))
            step.advance()
    return document


def _layer_entry(layer: Layer) -> dict[str, Any]:
    params = []
    for param in layer.params.values():
        stats = param.stats()
        entry = {"name": param.name, "tensor": param.tensor_name, "shape": list(param.shape)}
        if param.stored_shape is not None:
            entry["stored_shape"] = list(param.stored_shape)
        entry.update(
            dtype=param.dtype,
            min=stats.min,
            max=stats.max,
            mean=stats.mean,
            std=stats.std,
            abs_max=stats.abs_max,
            nan=stats.nan,
            inf=stats.inf,
        )
        params.append(entry)
    return {
        "name": layer.name,
        "kind": layer.kind,
        "op_type": layer.op_type,
        "attrs": _plain(layer.attrs),
        "params": params,
    }


def _tensor_info(info: TensorInfo) -> dict[str, Any]:
    shape = None if info.shape is None else list(info.shape)
    return {"name": info.name, "shape": shape, "dtype": info.dtype}


def _plain(value: Any) -> Any:
    """Attributes as JSON-compatible values (tuples -> lists, unknown objects -> str)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# ------------------------------------------------------------------------- table


def render_table(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """The inspect document as text: the model's facts, then one row per parameter.

    One wide table (the layer's name, kind and type on its first parameter row) when it
    fits the width; else each layer is a heading line over its parameter rows, and when
    those still do not fit, whole columns are left out (Mean, then Std, then Dtype) and a
    line says which. Nothing is cropped. Every string from the model is shown
    :func:`~inspector.output.visible` and never read as markup."""
    from plugins.reports._columns import Painter, dropped_text, fit, header_lines, measure, row_line, wrap

    console = make_console(stream, color=options.get("color"), width=options.get("width"))
    paint = Painter(console)
    width = console.width
    model = document["model"]
    facts = _facts(model)
    label_width = max(len(label) for label, _ in facts)
    out: list[str] = []
    for label, value in facts:
        out += wrap([(label.ljust(label_width), "bold"), "  " + visible(value)], width, label_width + 2, paint)
    out.append("")

    layers = document["layers"]
    rows = [(layer, _param_cells(param)) for layer in layers for param in layer["params"] or [None]]
    wide_columns = (*_LAYER_COLUMNS, *_PARAM_COLUMNS)
    wide_rows = []
    previous = None
    for layer, cells in rows:
        first = layer is not previous
        previous = layer
        names = [visible(layer["name"]), visible(layer["kind"]), visible(layer["op_type"])] if first else ["", "", ""]
        wide_rows.append([(names[0], "bold"), names[1], (names[2], "dim"), *cells])
    widths = measure(wide_columns, wide_rows)
    if sum(widths) + 2 * (len(widths) - 1) <= width:
        kept = list(range(len(wide_columns)))
        out += header_lines(wide_columns, widths, kept, paint)
        out += [row_line(wide_columns, widths, kept, row, paint) for row in wide_rows]
    else:
        param_rows = [[("  " + cells[0][0], cells[0][1]), *cells[1:]] for _, cells in rows]
        widths = measure(_PARAM_COLUMNS, param_rows)
        kept = fit(_PARAM_COLUMNS, widths, width)
        if len(kept) < len(_PARAM_COLUMNS):
            out.append(paint(f"(not shown at {width} columns: {dropped_text(_PARAM_COLUMNS, kept)})", "dim"))
        out.append(paint("Layer  Kind  Type", "bold"))
        out += header_lines(_PARAM_COLUMNS, widths, kept, paint)
        previous = None
        for (layer, cells), row in zip(rows, param_rows):
            if layer is not previous:
                heading = [
                    (visible(layer["name"]), "bold"),
                    "  " + visible(layer["kind"]),
                    ("  " + visible(layer["op_type"]), "dim"),
                ]
                out += wrap(heading, width, 2, paint)
                previous = layer
            if cells[0][0]:
                out.append(row_line(_PARAM_COLUMNS, widths, kept, row, paint))
    stream.write("\n".join(out) + "\n")


def _facts(model: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary above the table: (label, value) pairs, metadata entries indented."""
    facts = [("Model", model["path"]), ("Format", model["format"])]
    wrapper = model["details"].get("wrapper_key")
    if wrapper:
        keys = ", ".join(str(key) for key in model["details"].get("checkpoint_keys", []))
        facts.append(("Checkpoint", f"a dict; the model is under {wrapper!r} (keys: {keys})"))
    if model["producer"]:
        facts.append(("Producer", model["producer"]))
    opset = model["details"].get("opset")
    if isinstance(opset, dict) and opset:
        facts.append(("Opset", ", ".join(f"{domain or 'ai.onnx'} {version}" for domain, version in opset.items())))
    facts.append(("Layers", f"{model['layers']} ({model['param_layers']} with parameters)"))
    size = f"{fmt_count(model['parameters'])} ({model['parameters']:,} elements, {fmt_bytes(model['bytes'])})"
    stored = model.get("stored_bytes", model["bytes"])  # a document of an older version has none
    if stored != model["bytes"]:
        size += f"; the file stores {fmt_bytes(stored)}: broadcast tensors repeat their values"
    facts.append(("Parameters", size))
    if model["dtypes"]:
        facts.append(
            ("Dtypes", ", ".join(f"{dtype} {fmt_count(count)}" for dtype, count in sorted(model["dtypes"].items())))
        )
    for kind, infos in (("Inputs", model["inputs"]), ("Outputs", model["outputs"])):
        if infos:
            facts.append((kind, ", ".join(_describe_tensor(info) for info in infos)))
    for key, value in model["metadata"].items():
        text = visible(str(value))
        facts.append((f"  {visible(str(key))}", text if len(text) <= 100 else text[:97] + "..."))
    return facts


def _columns():
    from plugins.reports._columns import Column

    layer = (Column("Layer"), Column("Kind"), Column("Type"))
    params = (
        Column("Param"),
        Column("Shape"),
        Column("Dtype", drop=1),
        Column("Min", right=True),
        Column("Max", right=True),
        Column("Mean", right=True, drop=3),
        Column("Std", right=True, drop=2),
        Column("NaN/Inf", right=True),
    )
    return layer, params


_LAYER_COLUMNS, _PARAM_COLUMNS = _columns()


def _param_cells(param: dict[str, Any] | None) -> list:
    """A parameter's cells as (text, style); a layer without parameters gets blanks."""
    if param is None:
        return [("", "")] * len(_PARAM_COLUMNS)
    bad = param["nan"] + param["inf"]
    return [
        (visible(param["name"]), ""),
        (_shape_text(param), ""),
        (visible(param["dtype"]), ""),
        (fmt_float(param["min"]), ""),
        (fmt_float(param["max"]), ""),
        (fmt_float(param["mean"]), ""),
        (fmt_float(param["std"]), ""),
        (f"{param['nan']}/{param['inf']}", "red" if bad else ""),
    ]


def _shape_text(param: dict[str, Any]) -> str:
    """``4x1000``, or ``4x1000 (stores 4x1)`` for a broadcast tensor."""
    shape = "x".join(str(d) for d in param["shape"]) or "scalar"
    stored = param.get("stored_shape")
    if stored is None:
        return shape
    return f"{shape} (stores {'x'.join(str(d) for d in stored) or 'scalar'})"


def _describe_tensor(info: dict[str, Any]) -> str:
    shape = "?" if info["shape"] is None else "x".join("?" if d is None else str(d) for d in info["shape"])
    return f"{info['name']} {info['dtype']}[{shape}]"


@hookimpl
def graphinspect_subcommands():
    yield Subcommand(
        "inspect",
        "Show what a model file holds: layers, parameter shapes, dtypes and value statistics.",
        configure_parser,
        run,
    )


@hookimpl
def graphinspect_reporters():
    yield Reporter("table", "A rich summary and table.", (SCHEMA,), render_table, suffixes=(".txt",))
