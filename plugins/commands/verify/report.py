"""The ``graphinspect/verify@2`` document, and its "table" reporter.

The document is described in :mod:`plugins.commands.verify` (the package docstring); this
module builds it from the run's pieces and renders it as rich text. The table reporter
reads nothing but the document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inspector.ir import Model
from inspector.output import document_header, fmt_float, make_console
from plugins.commands.verify.metrics import DIFFER, SAME

if TYPE_CHECKING:
    from plugins.commands.verify.inputs import InputTensor
    from plugins.commands.verify.lint import Lint
    from plugins.commands.verify.metrics import OutputComparison, Tolerances
    from plugins.commands.verify.per_layer import LayerComparison

SCHEMA = "graphinspect/verify@2"


def build_document(
    source: Model,
    runner: str,
    target: Model,
    inputs: list["InputTensor"],
    lints: list["Lint"],
    tolerances: "Tolerances",
    outputs: list["OutputComparison"],
    layers: list["LayerComparison"] | None,
    first_divergent: str | None,
) -> dict[str, Any]:
    """The verify document; ``layers`` is None without --per-layer (the key is then absent)."""
    document = document_header(SCHEMA)
    document["source"] = {"path": source.path, "format": source.format, "runner": runner}
    document["target"] = {"path": target.path, "format": target.format}
    document["inputs"] = [_input_entry(tensor) for tensor in inputs]
    document["lint"] = [lint.entry() for lint in lints]
    document["tolerance"] = {
        "atol": tolerances.atol,
        "rtol": tolerances.rtol,
        "check_error_stat": tolerances.check_error_stat,
        "layer_rtol": tolerances.layer_rtol,
    }
    document["outputs"] = [output.entry() for output in outputs]
    document["verdict"] = SAME if outputs and all(output.status == SAME for output in outputs) else DIFFER
    if layers is not None:
        document["layers"] = [layer.entry() for layer in layers]
    document["first_divergent"] = first_divergent
    return document


def _input_entry(tensor: "InputTensor") -> dict[str, Any]:
    array = tensor.array
    numeric = array.size > 0 and array.dtype.kind in "fiub"
    return {
        "name": tensor.name,
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "origin": tensor.origin,
        "path": tensor.path,
        "min": float(array.min()) if numeric else None,
        "max": float(array.max()) if numeric else None,
    }


# ----------------------------------------------------------------------------- table


def render_table(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """The verify document as a rich summary, the outputs table and the layers table."""
    from rich.table import Table
    from rich.text import Text

    console = make_console(stream, color=options.get("color"), width=options.get("width"))
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    source, target, tolerance = document["source"], document["target"], document["tolerance"]
    summary.add_row("PyTorch", Text(f"{source['path']} ({source['format']}, run as {source['runner']})"))
    summary.add_row("ONNX", Text(f"{target['path']} (ONNX Runtime, CPU)"))
    for entry in document["inputs"]:
        shape = "x".join(str(d) for d in entry["shape"])
        origin = entry["origin"] + (f" {entry['path']}" if entry.get("path") else "")
        summary.add_row(
            "Input",
            Text(
                f"{entry['name']} {entry['dtype']}[{shape}] from {origin}, "
                f"range [{fmt_float(entry['min'])}, {fmt_float(entry['max'])}]"
            ),
        )
    rule = {"max": "every element", "mean": "mean error", "median": "median error"}[tolerance["check_error_stat"]]
    line = f"|onnx - torch| <= {fmt_float(tolerance['atol'])} + {fmt_float(tolerance['rtol'])} * |torch| ({rule})"
    if "layers" in document:
        line += f"; layers: max error <= {fmt_float(tolerance['layer_rtol'])} x the activation's max"
    summary.add_row("Tolerance", Text(line))
    console.print(summary)
    if document["lint"]:
        console.print()
        for lint in document["lint"]:
            style = {"error": "red", "warning": "yellow"}.get(lint["severity"], "cyan")
            console.print(Text.assemble((f"{lint['severity']}", style), f" [{lint['code']}] ", lint["message"]))
    console.print()

    table = Table(header_style="bold", title="Outputs", title_justify="left")
    for header, justify in (
        ("Output", "left"),
        ("Shape", "left"),
        ("Max abs", "right"),
        ("Max rel", "right"),
        ("Mean abs", "right"),
        ("Median abs", "right"),
        ("Cosine", "right"),
        ("Top-1", "right"),
        ("Top-k", "right"),
        ("Status", "left"),
    ):
        table.add_column(header, justify=justify, overflow="fold")
    for output in document["outputs"]:
        status = Text(
            output["status"] + (" (rows sorted)" if output["sorted_rows"] else ""),
            style="green" if output["status"] == SAME else "red",
        )
        topk = "-" if output["topk_agreement"] is None else f"{_percent(output['topk_agreement'])} (k={output['topk']})"
        table.add_row(
            Text(output["name"]),
            "x".join(str(d) for d in output["shape"]),
            fmt_float(output["max_abs_err"]),
            fmt_float(output["max_rel_err"]),
            fmt_float(output["mean_abs_err"]),
            fmt_float(output["median_abs_err"]),
            _cosine(output["cosine"]),
            _percent(output["top1_agreement"]),
            topk,
            status,
        )
    console.print(table)

    if "layers" in document:
        console.print()
        console.print(_layers_table(document["layers"], document["first_divergent"]))
    console.print()
    console.print(Text(verdict_sentence(document), style="bold green" if document["verdict"] == SAME else "bold red"))
    if "layers" in document:
        console.print(Text(divergence_sentence(document)))


def _layers_table(layers: list[dict[str, Any]], first_divergent: str | None):
    from rich.table import Table
    from rich.text import Text

    table = Table(header_style="bold", title="Layers (ONNX execution order)", title_justify="left")
    for header, justify in (
        ("#", "right"),
        ("ONNX node", "left"),
        ("PyTorch module", "left"),
        ("Weights (diff)", "left"),
        ("Max abs", "right"),
        ("Max rel", "right"),
        ("Cosine", "right"),
        ("Growth", "right"),
        ("Status", "left"),
    ):
        table.add_column(header, justify=justify, overflow="fold")
    for position, layer in enumerate(layers, 1):
        weights = f"{layer['transform'] or '-'}: {layer['diff_status']}"
        if layer["status"] == "not_comparable":
            status = Text(f"not comparable: {layer['reason']}", style="dim")
        else:
            marker = " <- first divergent" if layer["target"] == first_divergent else ""
            status = Text(layer["status"] + marker, style="green" if layer["status"] == SAME else "red")
        growth = "-" if layer["growth"] is None else f"x{fmt_float(layer['growth'], 3)}"
        table.add_row(
            str(position),
            Text(layer["target"]),
            Text(layer["module"] or "-"),
            Text(weights, style="red" if layer["diff_status"] == "mismatch" else ""),
            fmt_float(layer["max_abs_err"]),
            fmt_float(layer["max_rel_err"]),
            _cosine(layer["cosine"]),
            growth,
            status,
        )
    return table


def verdict_sentence(document: dict[str, Any]) -> str:
    outputs = document["outputs"]
    if document["verdict"] == SAME:
        sorted_names = [output["name"] for output in outputs if output["sorted_rows"]]
        extra = f" ({', '.join(sorted_names)}: same rows in another order)" if sorted_names else ""
        what = "the ONNX output matches" if len(outputs) == 1 else f"all {len(outputs)} ONNX outputs match"
        return f"SAME: {what} the PyTorch model's within tolerance{extra}."
    differing = [output["name"] for output in outputs if output["status"] != SAME]
    if not outputs:
        return "DIFFERS: no output could be compared."
    return f"DIFFERS: {', '.join(differing)} differ{'s' if len(differing) == 1 else ''} beyond tolerance."


def divergence_sentence(document: dict[str, Any]) -> str:
    layers = document["layers"]
    compared = [layer for layer in layers if layer["status"] != "not_comparable"]
    name = document["first_divergent"]
    if name is None:
        return f"Per layer: {len(compared)} of {len(layers)} layers compared, none beyond tolerance."
    layer = next(layer for layer in layers if layer["target"] == name)
    sources = " + ".join(layer["sources"]) or "?"
    weights = {
        "ok": "the diff re-computed its weights, so the difference is in the computation, not the weights",
        "mismatch": "the diff found its weights differ from the PyTorch ones",
        "unmatched": "the diff could not trace its weights",
    }.get(layer["diff_status"], f"diff status {layer['diff_status']}")
    return (
        f"First divergent layer: {name} (from {sources} via {layer['transform']}), max rel error "
        f"{fmt_float(layer['max_rel_err'])}; {weights}."
    )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _cosine(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6f}"
