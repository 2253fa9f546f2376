"""``graphinspect inspect MODEL``: what one model file holds.

Builds the ``graphinspect/inspect@1`` document::

    {"schema": "graphinspect/inspect@1", "tool": {...},
     "model": {"path", "format", "producer", "layers", "param_layers", "parameters",
               "bytes", "dtypes": {dtype: elements}, "inputs": [...], "outputs": [...],
               "metadata": {...}, "details": {...}},
     "layers": [{"name", "kind", "op_type", "attrs",
                 "params": [{"name", "tensor", "shape", "dtype", "min", "max", "mean",
                             "std", "abs_max", "nan", "inf"}]}]}

and renders it as a rich summary and table (``--format table``, the default) or JSON.
Statistics are over finite values; NaN/Inf are counted. Only layers with parameters are
listed unless ``--all`` is given.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from inspector.hookspecs import hookimpl
from inspector.ir import Layer, Model, TensorInfo
from inspector.output import (
    choose_format,
    document_header,
    emit,
    fmt_bytes,
    fmt_count,
    fmt_float,
    make_console,
    prepare_output,
)
from inspector.records import Reporter, Subcommand

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
        "dtypes": model.dtypes(),
        "inputs": [_tensor_info(info) for info in model.inputs],
        "outputs": [_tensor_info(info) for info in model.outputs],
        "metadata": dict(model.metadata),
        "details": _plain(model.details),
    }
    document["layers"] = [_layer_entry(layer) for layer in layers]
    return document


def _layer_entry(layer: Layer) -> dict[str, Any]:
    params = []
    for param in layer.params.values():
        stats = param.stats()
        params.append(
            {
                "name": param.name,
                "tensor": param.tensor_name,
                "shape": list(param.shape),
                "dtype": param.dtype,
                "min": stats.min,
                "max": stats.max,
                "mean": stats.mean,
                "std": stats.std,
                "abs_max": stats.abs_max,
                "nan": stats.nan,
                "inf": stats.inf,
            }
        )
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
    """The inspect document as a rich summary plus one table row per parameter."""
    from rich.table import Table
    from rich.text import Text

    console = make_console(stream, color=options.get("color"), width=options.get("width"))
    model = document["model"]
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("Model", Text(model["path"]))
    summary.add_row("Format", model["format"])
    wrapper = model["details"].get("wrapper_key")
    if wrapper:
        keys = ", ".join(str(key) for key in model["details"].get("checkpoint_keys", []))
        summary.add_row("Checkpoint", Text(f"a dict; the model is under {wrapper!r} (keys: {keys})"))
    if model["producer"]:
        summary.add_row("Producer", model["producer"])
    opset = model["details"].get("opset")
    if isinstance(opset, dict) and opset:
        summary.add_row("Opset", ", ".join(f"{domain or 'ai.onnx'} {version}" for domain, version in opset.items()))
    summary.add_row("Layers", f"{model['layers']} ({model['param_layers']} with parameters)")
    summary.add_row(
        "Parameters",
        f"{fmt_count(model['parameters'])} ({model['parameters']:,} elements, {fmt_bytes(model['bytes'])})",
    )
    if model["dtypes"]:
        summary.add_row(
            "Dtypes", ", ".join(f"{dtype} {fmt_count(count)}" for dtype, count in sorted(model["dtypes"].items()))
        )
    for kind, infos in (("Inputs", model["inputs"]), ("Outputs", model["outputs"])):
        if infos:
            summary.add_row(kind, Text(", ".join(_describe_tensor(info) for info in infos)))
    for key, value in model["metadata"].items():
        text = str(value)
        summary.add_row(Text(f"  {key}"), Text(text if len(text) <= 100 else text[:97] + "..."))
    console.print(summary)
    console.print()

    rows = [(layer, _param_cells(param)) for layer in document["layers"] for param in layer["params"] or [None]]
    natural = sum(
        max([len(header)] + [len(str(cells[i])) for _, cells in rows]) + 2
        for i, (header, _) in enumerate(_PARAM_HEADERS)
    ) + sum(
        max([len(header)] + [len(str(layer[key])) for layer, _ in rows]) + 2
        for header, key in (("Layer", "name"), ("Kind", "kind"), ("Type", "op_type"))
    )
    if natural <= console.width:
        console.print(_wide_table(rows))
    else:
        _print_stacked(console, document["layers"], rows)


_PARAM_HEADERS = (
    ("Param", "left"),
    ("Shape", "left"),
    ("Dtype", "left"),
    ("Min", "right"),
    ("Max", "right"),
    ("Mean", "right"),
    ("Std", "right"),
    ("NaN/Inf", "right"),
)


def _param_cells(param: dict[str, Any] | None) -> list:
    from rich.text import Text

    if param is None:
        return [""] * len(_PARAM_HEADERS)
    bad = param["nan"] + param["inf"]
    return [
        Text(param["name"]),
        "x".join(str(d) for d in param["shape"]) or "scalar",
        param["dtype"],
        fmt_float(param["min"]),
        fmt_float(param["max"]),
        fmt_float(param["mean"]),
        fmt_float(param["std"]),
        Text(f"{param['nan']}/{param['inf']}", style="red" if bad else ""),
    ]


def _wide_table(rows):
    """One row per parameter; the layer's columns on its first row only."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for header, justify in (("Layer", "left"), ("Kind", "left"), ("Type", "left"), *_PARAM_HEADERS):
        table.add_column(header, justify=justify, no_wrap=True)
    previous = None
    for layer, cells in rows:
        first = layer is not previous
        previous = layer
        table.add_row(
            Text(layer["name"]) if first else "",
            layer["kind"] if first else "",
            Text(layer["op_type"]) if first else "",
            *cells,
        )
    return table


def _print_stacked(console, layers, rows) -> None:
    """For narrow consoles: each layer's name on a line of its own, its parameters under
    it, every block with the same column widths so the numbers stay aligned."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    widths = [
        max([len(header)] + [len(str(cells[i])) for _, cells in rows]) for i, (header, _) in enumerate(_PARAM_HEADERS)
    ]
    widths[0] += 2  # parameters are indented under their layer

    def block(show_header: bool) -> Table:
        table = Table(
            header_style="bold",
            box=box.SIMPLE_HEAD if show_header else None,
            pad_edge=False,
            show_header=show_header,
            show_edge=False,
        )
        for (header, justify), width in zip(_PARAM_HEADERS, widths):
            table.add_column(header, justify=justify, no_wrap=True, min_width=width, max_width=width)
        return table

    console.print(block(show_header=True))
    for layer in layers:
        console.print(Text.assemble((layer["name"], "bold"), "  ", layer["kind"], " ", (layer["op_type"], "dim")))
        table = block(show_header=False)
        for owner, cells in rows:
            if owner is layer and any(str(cell) for cell in cells):
                table.add_row(Text.assemble("  ", cells[0]), *cells[1:])
        if table.row_count:
            console.print(table)


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
