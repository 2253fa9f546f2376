"""The ``table`` reporter for the diff document: a rich header, layer table and verdict.

Renders a ``graphinspect/diff@1`` document (see :mod:`inspector.report`) as text: the
two models, the layers, the summary in words, the counts, the findings by severity, the
PyTorch layers the export does not use, and the verdict last. It shows only what the
document holds.

The layers are one table row per target parameter with every column of
:data:`LAYER_HEADERS` (the layer's columns only on its first row) when that fits the
console; on a narrower one (real node names are long) each layer becomes a heading line
over its parameter rows, so names and numbers are never folded mid-word.

The wording (labels, channel lists, counts) comes from :mod:`plugins.reports._wording`,
shared with the Markdown and HTML reporters.
"""

from __future__ import annotations

import io
from typing import Any

from inspector.hookspecs import hookimpl
from inspector.output import make_console
from inspector.records import Reporter
from plugins.reports._wording import (
    LAYER_HEADERS,
    SCHEMA,
    SEVERITY_STYLES,
    SEVERITY_TITLES,
    STATUS_STYLES,
    SUMMARY_WIDTH,
    TABLE_UNMATCHED_SOURCE,
    VERDICT_STYLES,
    channels_text,
    counts_text,
    findings_by_severity,
    hidden_layers_text,
    layer_param_rows,
    model_text,
    param_cells,
    status_label,
    tolerance_text,
    verdict_label,
)

# ----------------------------------------------------------------- rendering


def render(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """Write the diff document as rich text to ``stream`` (``color``/``width`` from options)."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    console = make_console(stream, color=options.get("color"), width=options.get("width"))
    # Render into memory and drop the padding rich leaves at line ends, so files and
    # golden copies hold no trailing blanks (colour was decided on the real stream).
    buffer = io.StringIO()
    console.file = buffer
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    header.add_row("Source", Text(model_text(document["source"])))
    header.add_row("Target", Text(model_text(document["target"])))
    console.print(header)
    console.print()

    if document["layers"]:
        console.print(_layer_view(document["layers"], console))
    else:
        console.print("No layers to show.")
    if hidden_layers_text(document):
        console.print(Text(f"({hidden_layers_text(document)})", style="dim"))
    console.print()

    summary = document["summary"]
    console.print(Text(summary["text"]), width=min(console.width, SUMMARY_WIDTH))
    console.print()
    console.print(Text(counts_text(summary)))
    console.print(Text(tolerance_text(document), style="dim"))

    for severity, findings in findings_by_severity(document):
        console.print()
        style = SEVERITY_STYLES.get(severity, "")
        console.print(Text(f"{SEVERITY_TITLES.get(severity, severity)} ({len(findings)})", style=f"bold {style}"))
        for finding in findings:
            line = Text("- ")
            if finding.get("layer"):
                line.append(finding["layer"], style="bold")
                line.append(": ")
            line.append(finding["message"])
            line.append(f" [{finding['code']}]", style="dim")
            console.print(Padding(line, (0, 0, 0, 2)))

    unmatched = document["unmatched_source"]
    if unmatched:
        console.print()
        console.print(Text(f"PyTorch layers not used by the export ({len(unmatched)})", style="bold"))
        shown = unmatched[:TABLE_UNMATCHED_SOURCE]
        lines = [Text(f"  {name}") for name in shown]
        if len(unmatched) > len(shown):
            lines.append(Text(f"  +{len(unmatched) - len(shown)} more", style="dim"))
        console.print(Group(*lines))

    console.print()
    verdict = summary["verdict"]
    style = VERDICT_STYLES.get(verdict, "bold")
    console.print(Panel.fit(Text(f"Verdict: {verdict_label(verdict)}", style=style), border_style=style))
    stream.write("".join(line.rstrip(" ") + "\n" for line in buffer.getvalue().splitlines()))


def _layer_view(layers: list[dict[str, Any]], console):
    """The layers as one wide table when it fits the console without wrapping, else
    stacked: folded names and numbers split over lines are unreadable."""
    from rich.measure import Measurement

    wide = _wide_table(layers)
    natural = Measurement.get(console, console.options.update_width(1_000_000), wide).maximum
    if natural <= console.width:
        return wide
    return _stacked_layers(layers, console.width)


def _status_cell(layer: dict[str, Any], param: dict[str, Any] | None, first: bool):
    """The layer's status on its first row; a mismatched parameter's bad channels on its own."""
    from rich.text import Text

    cell = Text(status_label(layer["status"]) if first else "", style=STATUS_STYLES.get(layer["status"], ""))
    where = channels_text(param) if param is not None and param.get("status") == "mismatch" else ""
    if where:
        cell.append(("\n" if first else "") + where, style="red")
    return cell


def _param_values(param: dict[str, Any] | None) -> list:
    from rich.text import Text

    if param is None:
        return [Text("-"), "", "", "", "", ""]
    values = [Text(cell) for cell in param_cells(param)]
    if param.get("status") == "mismatch":
        values[4].stylize("red")
        values[5].stylize("red")
    return values


def _table(headers: list[str], show_header: bool = True, split_headers: bool = False):
    """A borderless table under a rule; ``split_headers`` puts "err" on a second line."""
    from rich import box
    from rich.table import Table

    table = Table(
        box=box.SIMPLE_HEAD,
        header_style="bold",
        show_header=show_header,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    for header in headers:
        numeric = header.startswith("max ")
        title = header.replace(" err", "\nerr") if numeric and split_headers else header
        table.add_column(title, justify="right" if numeric else "left", overflow="fold")
    return table


def _wide_table(layers: list[dict[str, Any]]):
    """Every column of :data:`LAYER_HEADERS`, one row per parameter, the layer's own
    columns only on its first row."""
    from rich.text import Text

    table = _table(list(LAYER_HEADERS), split_headers=True)
    # A transform's note wraps under its name rather than widen the table.
    table.columns[4].max_width = max(len(layer["transform"] or "-") for layer in [{"transform": "Transform"}, *layers])
    for layer in layers:
        rows = list(layer_param_rows(layer))
        for position, param in enumerate(rows):
            layer_cells = ["", "", "", ""]
            if position == 0:
                transform = Text(layer["transform"] or "-")
                if layer.get("note"):
                    transform.append("\n" + layer["note"], style="dim")
                layer_cells = [
                    Text(layer["target"]),
                    Text(layer["op"]),
                    Text("\n".join(layer["sources"]) or "-"),
                    transform,
                ]
            cells = [_status_cell(layer, param, position == 0), *layer_cells, *_param_values(param)]
            table.add_row(*cells, end_section=position == len(rows) - 1)
    return table


def _stacked_layers(layers: list[dict[str, Any]], width: int):
    """Each layer as a heading (status, ONNX node, op, PyTorch modules, transform, note)
    over its parameter rows; the parameter columns have the same widths in every layer,
    so they line up under one header."""
    from rich.console import Group
    from rich.text import Text

    param_headers = ["", *LAYER_HEADERS[5:]]
    # Every parameter row as plain text, to size the columns once for all layers.
    plain_rows = []
    for layer in layers:
        for param in layer_param_rows(layer):
            cells = [_status_cell(layer, param, True), *_param_values(param)]
            plain_rows.append([getattr(cell, "plain", cell) for cell in cells])
    columns = [[header, *(row[i] for row in plain_rows)] for i, header in enumerate(param_headers)]
    widths = [max(len(line) for text in column for line in text.split("\n")) for column in columns]
    widths[0] = max(widths[0], len("Status"))
    if sum(widths) + 2 * len(widths) > width:
        # Still too wide: each range on two lines ("[-2.926," over "3.297]").
        for i in (2, 3, 4):
            widths[i] = max(len(word) for text in columns[i] for word in text.split())

    def layer_line(status, text):
        grid = _table(["", ""], show_header=False)
        grid.columns[0].width = widths[0]
        grid.add_row(status, text)
        return grid

    def param_table(show_header: bool):
        table = _table(param_headers, show_header)
        for column, column_width in zip(table.columns, widths):
            column.width = column_width
        return table

    parts = [
        layer_line(
            Text("Status", style="bold"), Text("ONNX node  Op  from PyTorch module(s)  via Transform", style="bold")
        ),
        param_table(show_header=True),
    ]
    for layer in layers:
        heading = Text(layer["target"], style="bold")
        heading.append(f"  {layer['op']}")
        if layer["sources"]:
            heading.append("  from " + " + ".join(layer["sources"]))
        if layer["transform"]:
            heading.append(f"  via {layer['transform']}")
        if layer.get("note"):
            heading.append(f" ({layer['note']})", style="dim")
        table = param_table(show_header=False)
        for param in layer_param_rows(layer):
            table.add_row(_status_cell(layer, param, False), *_param_values(param))
        parts += [layer_line(_status_cell(layer, None, True), heading), table, Text("")]
    return Group(*parts[:-1])


@hookimpl
def graphinspect_reporters():
    yield Reporter(
        "table",
        "A rich table: one row per parameter, the summary, findings and the verdict.",
        (SCHEMA,),
        render,
        suffixes=(".txt",),
    )
