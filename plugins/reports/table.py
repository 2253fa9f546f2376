"""The ``table`` reporter for the diff document: what a person reads in a terminal.

Renders a ``graphinspect/diff@1`` document (see :mod:`inspector.report`) top down in
the order a reader needs it:

1. the verdict line (all that ``--quiet`` prints), the two models, the summary in words,
   the counts and the tolerance;
2. the problems: each layer that differs or is unmatched, with what is known about it
   (an unmatched layer's reason), then the findings of severity error and warning;
3. the layers that are fine, collapsed beyond a screenful (``options["height"]`` lines,
   by default the terminal's) unless ``options["all"]`` or the report goes to a file;
4. the notes several layers share, said once ("[1] eps 0.001 from the module (98
   layers)"), the findings of severity info, the PyTorch layers the export does not use.

Each layer is a heading line (status, ONNX node, op, PyTorch modules, transform) over
one row per parameter (errors first, then the ranges). Nothing is cropped and no number
is split: headings wrap between words; when the parameter columns do not fit the width,
whole columns are left out (max abs err first, then the re-computed range, then the
PyTorch range) and a line says which. Rows are formatted by :mod:`._columns`, not by
rich's Table, which takes about 1.7 ms a row.

Everything from the document is made :func:`~inspector.output.visible` first (a model
cannot move the cursor, recolour or erase a line) and never read as rich markup.
"""

from __future__ import annotations

from typing import Any

from inspector.hookspecs import hookimpl
from inspector.output import make_console, visible
from inspector.records import Reporter
from plugins.reports._columns import Column, Painter, dropped_text, fit, header_lines, measure, row_line, wrap
from plugins.reports._wording import (
    PARAM_HEADERS,
    PROBLEM_SEVERITIES,
    SCHEMA,
    SEVERITY_STYLES,
    SEVERITY_TITLES,
    STATUS_LABELS,
    STATUS_STYLES,
    SUMMARY_WIDTH,
    TABLE_UNMATCHED_SOURCE,
    VERDICT_STYLES,
    channels_text,
    counts_text,
    findings_by_severity,
    hidden_layers_text,
    is_problem,
    layer_findings,
    layer_param_rows,
    layer_reasons,
    model_facts,
    note_counts,
    other_severities,
    param_cells,
    shared_notes,
    sources_text,
    status_label,
    tolerance_text,
    transform_text,
    verdict_line,
)

COLUMNS = (
    Column("Status"),
    Column(PARAM_HEADERS[0]),
    Column(PARAM_HEADERS[1], right=True),
    Column(PARAM_HEADERS[2], right=True, drop=3),
    Column(PARAM_HEADERS[3], drop=1),
    Column(PARAM_HEADERS[4]),
    Column(PARAM_HEADERS[5], drop=2),
)
"""A parameter row's columns; ``drop`` ranks the ones left out on a narrow terminal."""

HEADING = "ONNX node  Op  from PyTorch module(s)  via Transform"
"""What a layer's heading line holds, said once above the table."""

MIN_SCREENFUL = 10
"""Lines of ok layers shown at least, however short the terminal."""


def render(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """Write the diff document as text to ``stream``. Options: ``color``, ``width``,
    ``height`` (lines of ok layers), ``all`` (every ok layer), ``quiet`` (the verdict
    line only), ``to_file`` (every ok layer)."""
    console = make_console(stream, color=options.get("color"), width=options.get("width"))
    paint = Painter(console)
    width = console.width
    summary = document["summary"]
    verdict = (visible(verdict_line(document)), VERDICT_STYLES.get(summary["verdict"], "bold"))
    if options.get("quiet"):  # one line, unwrapped, for scripts and logs
        stream.write(paint(*verdict) + "\n")
        return
    out: list[str] = wrap([verdict], width, len("Verdict: "), paint)

    for label, key in (("Source", "source"), ("Target", "target")):
        model = document[key]
        out += wrap(
            [(f"{label}  ", "bold"), visible(model["path"]), " " + model_facts(model)], width, len(label) + 2, paint
        )
    out.append("")
    out += wrap([visible(summary["text"])], min(width, SUMMARY_WIDTH), 0, paint)
    out.append("")
    out += wrap([visible(counts_text(summary))], width, 0, paint)
    out += wrap([(tolerance_text(document), "dim")], width, 0, paint)

    layers = document["layers"]
    problems = [layer for layer in layers if is_problem(layer)]
    fine = [layer for layer in layers if not is_problem(layer)]
    if options.get("all") or options.get("to_file"):
        shown_fine = fine
    else:
        height = options.get("height") or console.size.height
        shown_fine = _screenful(fine, max(MIN_SCREENFUL, height))
    table = _Layers(document, [*problems, *shown_fine], width, paint)

    if not layers:
        out += ["", "No layers to show."]
    if problems:
        out += ["", paint(f"Problems: {_layers(len(problems))}", "bold red")]
        out += table.header()
        for layer in problems:
            out += table.layer(layer)
    out += _findings(document, PROBLEM_SEVERITIES, paint, width)
    if fine:
        title = f"OK: {_layers(len(fine))} re-computed within tolerance"
        if len(shown_fine) < len(fine):
            title += f" (the first {len(shown_fine)} shown)"
        out += ["", paint(title, "bold green")]
        out += table.header()
        for layer in shown_fine:
            out += table.layer(layer)
        if len(shown_fine) < len(fine):
            out.append(paint(f"+{len(fine) - len(shown_fine)} more ok layers (--all lists them)", "dim"))
    if hidden_layers_text(document):
        out.append(paint(f"({hidden_layers_text(document)})", "dim"))
    out += table.notes()
    out += _findings(document, other_severities(document), paint, width)

    unmatched = document["unmatched_source"]
    if unmatched:
        out += ["", paint(f"PyTorch layers not used by the export ({len(unmatched)})", "bold")]
        out += [f"  {visible(name)}" for name in unmatched[:TABLE_UNMATCHED_SOURCE]]
        if len(unmatched) > TABLE_UNMATCHED_SOURCE:
            out.append(paint(f"  +{len(unmatched) - TABLE_UNMATCHED_SOURCE} more", "dim"))
    stream.write("\n".join(out) + "\n")


def _layers(count: int) -> str:
    return f"{count} layer{'s' if count != 1 else ''}"


def _screenful(layers: list[dict[str, Any]], lines: int) -> list[dict[str, Any]]:
    """The first layers that fit in ``lines`` (a heading and a row per parameter each)."""
    shown, used = [], 0
    for layer in layers:
        used += 1 + max(1, len(layer["params"]))
        if used > lines and shown:
            break
        shown.append(layer)
    return shown


class _Layers:
    """The layer blocks of one document, with the same columns in every section."""

    def __init__(self, document: dict[str, Any], shown: list[dict[str, Any]], width: int, paint: Painter) -> None:
        self.width = width
        self.paint = paint
        self.notes_by_number = shared_notes(document["layers"])
        self.note_counts = note_counts(document["layers"])
        self.used_notes: set[str] = set()
        self.findings = layer_findings(document)
        self.rows = {id(layer): [self._row(layer, param) for param in layer_param_rows(layer)] for layer in shown}
        all_rows = [row for rows in self.rows.values() for row in rows]
        self.widths = measure(COLUMNS, all_rows)
        self.widths[0] = max(self.widths[0], *(len(label) for label in STATUS_LABELS.values()))
        self.kept = fit(COLUMNS, self.widths, width)
        self.indent = self.widths[0] + 2

    def _row(self, layer: dict[str, Any], param: dict[str, Any] | None) -> list:
        if param is None:
            return ["", "-", "", "", "", "", ""]
        cells: list = [visible(cell) for cell in param_cells(param)]
        where = ""
        if param.get("status") == "mismatch":
            where = channels_text(param)
            cells[1] = (cells[1], "bold red")
            cells[2] = (cells[2], "red")
        return [(where, "red"), *cells]

    def header(self) -> list[str]:
        lines = []
        if len(self.kept) < len(COLUMNS):
            lines.append(self.paint(f"(not shown at {self.width} columns: {dropped_text(COLUMNS, self.kept)})", "dim"))
        lines.append(self.paint(" " * self.indent + HEADING, "bold"))
        return lines + header_lines(COLUMNS, self.widths, self.kept, self.paint)

    def layer(self, layer: dict[str, Any]) -> list[str]:
        status = layer["status"]
        parts: list = [
            (status_label(status).ljust(self.widths[0]), STATUS_STYLES.get(status, "")),
            "  ",
            (visible(layer["target"]), "bold"),
            "  " + visible(layer["op"]),
        ]
        if layer["sources"]:
            parts.append("  from " + visible(sources_text(layer)))
        if layer["transform"] or layer.get("note"):
            parts.append("  via " + visible(transform_text(layer, self.notes_by_number)))
            if layer.get("note") in self.notes_by_number:
                self.used_notes.add(layer["note"])
        lines = wrap(parts, self.width, self.indent, self.paint)
        lines += [row_line(COLUMNS, self.widths, self.kept, row, self.paint) for row in self.rows[id(layer)]]
        for reason in layer_reasons(layer, self.findings.get(layer["target"], [])):
            lines += wrap([" " * self.indent, (visible(reason), "yellow")], self.width, self.indent, self.paint)
        return lines

    def notes(self) -> list[str]:
        """The shared notes of the layers shown, in their numbers' order."""
        used = [(number, note) for note, number in self.notes_by_number.items() if note in self.used_notes]
        if not used:
            return []
        lines = ["", self.paint("Notes", "bold")]
        for number, note in used:
            lines += wrap(
                [f"  [{number}] {visible(note)}", (f" ({_layers(self.note_counts[note])})", "dim")],
                self.width,
                6,
                self.paint,
            )
        return lines


def _findings(document: dict[str, Any], severities: tuple[str, ...], paint: Painter, width: int) -> list[str]:
    """The findings of ``severities`` that are not said beside a layer, by severity."""
    lines: list[str] = []
    for severity, findings in findings_by_severity(document, severities, skip_layer_findings=True):
        style = SEVERITY_STYLES.get(severity, "")
        lines += ["", paint(f"{SEVERITY_TITLES.get(severity, visible(severity))} ({len(findings)})", f"bold {style}")]
        for finding in findings:
            parts: list = ["  - "]
            if finding.get("layer"):
                parts += [(visible(finding["layer"]), "bold"), ": "]
            parts += [visible(finding["message"]), (f" [{visible(finding['code'])}]", "dim")]
            lines += wrap(parts, width, 4, paint)
    return lines


@hookimpl
def graphinspect_reporters():
    yield Reporter(
        "table",
        "Text for a terminal: the verdict, the summary, the problems, then the layers that are fine.",
        (SCHEMA,),
        render,
        suffixes=(".txt",),
    )
