"""The ``graphinspect/verify@2`` document, and its "table" reporter.

The document is described in :mod:`plugins.commands.verify` (the package docstring); this
module builds it from the run's pieces and renders it as rich text. The table reporter
reads nothing but the document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inspector.output import document_header, fmt_float, make_console
from plugins.commands.verify.words import DIFFER, INCOMPLETE, SAME, weights_words

if TYPE_CHECKING:
    from inspector.ir import Model
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
    divergence_reason: str | None = None,
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
    document["verdict"], document["verdict_reason"] = verdict_of(document["outputs"])
    if layers is not None:
        document["layers"] = [layer.entry() for layer in layers]
    document["first_divergent"] = first_divergent
    document["divergence_reason"] = divergence_reason
    return document


def verdict_of(outputs: list[dict[str, Any]]) -> tuple[str, str | None]:
    """ "differs" when a compared output differs; else "incomplete" when an output could not
    be compared (or there is none); else "same". With the reason when not "same"."""
    differing = [output["name"] for output in outputs if output["status"] == DIFFER]
    if differing:
        return DIFFER, f"{', '.join(differing)} beyond tolerance"
    unpaired = [output for output in outputs if output["status"] == INCOMPLETE]
    if unpaired:
        return INCOMPLETE, "; ".join(f"{output['name']}: {output['reason']}" for output in unpaired)
    if not outputs:
        return INCOMPLETE, "the ONNX model has no output to compare"
    return SAME, None


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
    """The verify document as the verdict, a rich summary, the outputs table and the layers table."""
    from rich.table import Table
    from rich.text import Text

    console = make_console(stream, color=options.get("color"), width=options.get("width"))
    # The verdict first (what the exit status says), then what it rests on.
    sentence, style = verdict_and_style(document)
    console.print(Text(sentence, style=style))
    if "layers" in document:
        console.print(Text(divergence_sentence(document)))
    console.print()
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column(overflow="fold")  # paths are long: fold them, never cut them
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
        line += f"; layers: max error <= {fmt_float(tolerance['layer_rtol'])} x each channel's max"
    summary.add_row("Tolerance", Text(line))
    console.print(summary)
    if document["lint"]:
        console.print()
        for lint in document["lint"]:
            style = {"error": "red", "warning": "yellow"}.get(lint["severity"], "cyan")
            console.print(Text.assemble((f"{lint['severity']}", style), f" [{lint['code']}] ", lint["message"]))
    console.print()
    console.print(_outputs_table(document["outputs"]))
    if "layers" in document and document["layers"]:
        console.print()
        table, notes = _layers_table(document["layers"], document["first_divergent"])
        console.print(table)
        for note in notes:
            console.print(Text(note, style="dim"))


def _table(title: str):
    """A table that fits 80 columns: a rule under the header, no frame; numbers never wrap."""
    from rich import box
    from rich.table import Table

    return Table(
        box=box.SIMPLE_HEAD,
        header_style="bold",
        title=title,
        title_justify="left",
        show_edge=False,
        pad_edge=False,
        padding=0,  # the box's blank divider is the one space between columns
    )


def _number_column(table, header: str, cells: list[str]) -> None:
    """A right-aligned column as wide as its widest cell, never wrapped or cut mid-number."""
    width = max([len(header), *(len(cell) for cell in cells)])
    table.add_column(header, justify="right", no_wrap=True, min_width=width)


def _outputs_table(outputs: list[dict[str, Any]]):
    from rich.text import Text

    table = _table("Outputs")
    rows = []
    for output in outputs:
        status = output["status"] + (" (rows reordered)" if output["sorted_rows"] else "")
        if output.get("unpaired_rows"):
            status += f" ({output['unpaired_rows']} rows unpaired)"
        rows.append(
            (
                output["name"],
                "x".join(str(d) for d in output["shape"]),
                fmt_float(output["max_abs_err"]),
                fmt_float(output["max_rel_err"]),
                fmt_float(output["mean_abs_err"]),
                fmt_float(output["median_abs_err"]),
                _cosine(output["cosine"]),
                _percent(output["top1_agreement"]),
                "-" if output["topk_agreement"] is None else _percent(output["topk_agreement"]),
                status,
            )
        )
    topk = next((output["topk"] for output in outputs if output["topk"]), 5)
    table.add_column("Output", overflow="fold")
    table.add_column("Shape", overflow="fold")
    for position, header in enumerate(("Max abs", "Max rel", "Mean abs", "Median", "Cosine", "Top-1", f"Top-{topk}")):
        _number_column(table, header, [row[2 + position] for row in rows])
    table.add_column("Status", overflow="fold")
    for output, row in zip(outputs, rows):
        style = {SAME: "green", INCOMPLETE: "yellow"}.get(output["status"], "red")
        table.add_row(Text(row[0]), row[1], *row[2:9], Text(row[9], style=style))
    return table


def _layers_table(layers: list[dict[str, Any]], first_divergent: str | None):
    """The layers table and its notes: the reasons of the layers not compared, numbered
    once each (a reason in every row would make the table tall)."""
    from rich.text import Text

    table = _table("Layers (ONNX execution order)")
    reasons: dict[str, int] = {}
    rows = []
    for position, layer in enumerate(layers, 1):
        if layer["status"] == "not_comparable":
            number = reasons.setdefault(layer["reason"] or "?", len(reasons) + 1)
            status = Text(f"not compared [{number}]", style="dim")
        else:
            words = layer["status"] + (" (rows reordered)" if layer.get("rows_reordered") else "")
            if layer["target"] == first_divergent:
                words += " <- first divergent"
            status = Text(words, style="green" if layer["status"] == SAME else "red")
        weights = layer["diff_status"] if layer["diff_status"] != "mismatch" else "MISMATCH"
        growth = "-" if layer["growth"] is None else f"x{fmt_float(layer['growth'], 3)}"
        rows.append(
            (
                str(position),
                Text(layer["target"]),
                Text(layer["module"] or "-"),
                Text(weights, style="red" if layer["diff_status"] == "mismatch" else ""),
                fmt_float(layer["max_rel_err"]),
                growth,
                status,
            )
        )
    _number_column(table, "#", [row[0] for row in rows])
    table.add_column("ONNX node", overflow="fold", ratio=3)
    table.add_column("PyTorch module", overflow="fold", ratio=2)
    table.add_column("Weights", no_wrap=True)
    _number_column(table, "Max rel", [row[4] for row in rows])
    _number_column(table, "Growth", [row[5] for row in rows])
    table.add_column("Status", ratio=2)
    for row in rows:
        table.add_row(*row)
    notes = [
        "Max rel: the largest error of an output channel relative to that channel's scale. Growth: that error "
        "over its inputs' error. Weights: what the diff found of the layer's weights."
    ]
    notes += [f"[{number}] not compared: {reason}" for reason, number in reasons.items()]
    return table, notes


def verdict_and_style(document: dict[str, Any]) -> tuple[str, str]:
    """(the verdict sentence, its rich style): what the terminal gets when ``-o`` took the
    report to a file, and the table's first line."""
    style = {SAME: "bold green", INCOMPLETE: "bold yellow"}.get(document["verdict"], "bold red")
    return verdict_sentence(document), style


def verdict_sentence(document: dict[str, Any]) -> str:
    outputs = document["outputs"]
    if document["verdict"] == SAME:
        reordered = [output["name"] for output in outputs if output["sorted_rows"]]
        extra = f" ({', '.join(reordered)}: the same rows in another order)" if reordered else ""
        what = "the ONNX output matches" if len(outputs) == 1 else f"all {len(outputs)} ONNX outputs match"
        return f"SAME: {what} the PyTorch model's within tolerance{extra}."
    if document["verdict"] == INCOMPLETE:
        return f"INCOMPLETE: {document.get('verdict_reason') or 'nothing could be compared'}."
    differing = [output["name"] for output in outputs if output["status"] == DIFFER]
    sentence = f"DIFFERS: {', '.join(differing)} differ{'s' if len(differing) == 1 else ''} beyond tolerance."
    unpaired = [output["name"] for output in outputs if output["status"] == INCOMPLETE]
    if unpaired:
        sentence += f" ({', '.join(unpaired)} could not be compared.)"
    return sentence


def divergence_sentence(document: dict[str, Any]) -> str:
    layers = document["layers"]
    compared = [layer for layer in layers if layer["status"] != "not_comparable"]
    name = document["first_divergent"]
    if name is None:
        if document.get("divergence_reason"):
            return f"No first divergent layer can be named: {document['divergence_reason']}."
        return f"Per layer: {len(compared)} of {len(layers)} layers compared, none where the models part."
    layer = next(layer for layer in layers if layer["target"] == name)
    sources = " + ".join(layer["sources"]) or "?"
    weights = weights_words(layer["diff_status"])
    where = f" in output channel {layer['worst_channel']}" if layer.get("worst_channel") is not None else ""
    growth = f", x{fmt_float(layer['growth'], 3)} its inputs' error" if layer.get("growth") is not None else ""
    suspects = layer.get("suspects") or []
    caveat = (
        f" Its input passes through {', '.join(suspects[:3])}, which could not be compared and whose weights the "
        "diff did not confirm."
        if suspects
        else ""
    )
    return (
        f"First divergent layer: {name} (from {sources} via {layer['transform']}), max rel error "
        f"{fmt_float(layer['max_rel_err'])}{where}{growth}; {weights}.{caveat}"
    )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _cosine(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6f}"
