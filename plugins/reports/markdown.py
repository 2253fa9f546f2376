"""The ``markdown`` reporter for the diff document: a report to paste into a pull request.

Renders a ``graphinspect/diff@1`` document (see :mod:`inspector.report`) as GitHub-
flavoured Markdown, in the order of every format: a title with the verdict and the
verdict line, the two models, the summary in words, the problems table (one row per
parameter of each layer that differs or is unmatched; an unmatched layer's reason in
its Transform cell), the error and warning findings; then, folded in ``<details>``, the
layers that are fine with the notes they share, the info findings and the PyTorch
layers the export does not use; and the tool that wrote it.

Size: a GitHub comment holds at most 65,536 characters, so the report never exceeds
:data:`MAX_CHARS`. When it would, lists are cut, each with a line that counts what was
left out: the ok layers first, then the unused PyTorch layers and the findings, the
problem rows last.

Paths: a model path given as an absolute path is written relative to the working
directory (``options["cwd"]``, else the process's), so a report leaks no home folder.

Safety: every string from the document is made :func:`~inspector.output.visible` first
(a ``\\r`` or ``\\n`` in a node name cannot start a line, a heading or raw HTML), names
go into code spans fenced longer than any backtick run they hold (``|`` escaped in
tables, which GitHub honours inside code spans), and other text is backslash-escaped,
so nothing from a model becomes a link, a table column, emphasis or HTML.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from inspector.hookspecs import hookimpl
from inspector.output import visible
from inspector.records import Reporter
from plugins.reports._wording import (
    LAYER_HEADERS,
    PROBLEM_SEVERITIES,
    SCHEMA,
    SEVERITY_TITLES,
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
    shown_path,
    status_label,
    tolerance_text,
    transform_text,
    verdict_label,
    verdict_line,
)

MAX_CHARS = 65_536
"""The most characters a GitHub issue or pull-request comment accepts."""

_RESERVE = 512
"""Characters kept free for the lines that say what was cut."""

# Characters that could start Markdown or HTML syntax; "_" only at a word's edge,
# since GitHub never reads an underscore inside a word (fold_batchnorm) as emphasis.
_MARKDOWN_SPECIAL = re.compile(r"[\\`*\[\]<>|#&~]|(?<!\w)_|_(?!\w)")


def text(value: str) -> str:
    """``value`` as literal Markdown text on one line (also safe in a table cell)."""
    return _MARKDOWN_SPECIAL.sub(lambda match: "\\" + match.group(0), visible(value))


def code(value: str, in_table: bool = False) -> str:
    """``value`` as a code span, fenced by more backticks than any run it holds; in a
    table its "|" is escaped, which GitHub honours even inside code spans."""
    value = visible(value)
    if not value:
        return "(empty)"
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {value} " if longest or value.startswith((" ", "`")) or value.endswith((" ", "`")) else value
    span = f"{fence}{padded}{fence}"
    return span.replace("|", "\\|") if in_table else span


@dataclass
class _Cut:
    """A list that may be cut to fit the size limit: its items (a layer's rows are one
    item of several lines), ``render`` making an item's text, and the line that counts
    the items left out. :func:`_fit` renders the items of the list it cuts first only
    as far as they fit (10,000 ok layers took 0.3 s, nearly all for rows cut again)."""

    items: Sequence[Any]
    more: Callable[[int], str]
    rank: int  # lower ranks keep their lines longer
    render: Callable[[Any], str] = str
    kept: int = -1
    lines: list[str] = field(default_factory=list)
    """The rendered items, in order."""


def render(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """Write the diff document as GitHub-flavoured Markdown to ``stream``, at most
    :data:`MAX_CHARS` characters."""
    summary = document["summary"]
    notes = shared_notes(document["layers"])
    beside = layer_findings(document)
    problems = [layer for layer in document["layers"] if is_problem(layer)]
    fine = [layer for layer in document["layers"] if not is_problem(layer)]
    parts: list[str | _Cut] = [
        f"## graphinspect diff: {verdict_label(summary['verdict'])}",
        "",
        f"**{text(verdict_line(document))}**",
        "",
    ]
    for label, key in (("Source", "source"), ("Target", "target")):
        model = document[key]
        parts.append(f"- **{label}:** {code(shown_path(model['path'], options.get('cwd')))} {text(model_facts(model))}")
    parts += ["", text(summary["text"]), "", text(counts_text(summary)) + "  ", text(tolerance_text(document)), ""]

    if problems:
        parts += [f"### Problems ({_layers(len(problems))})", "", *_table_head()]
        rows = _Cut(
            problems,
            lambda n: f"\n{_more_layers(n)} not shown (the JSON report lists them all).",
            3,
            lambda layer: "\n".join(_layer_rows(layer, notes, beside.get(layer["target"], []))),
        )
        parts += [rows, ""]
    for severity, findings in findings_by_severity(document, PROBLEM_SEVERITIES, skip_layer_findings=True):
        parts += [f"### {text(SEVERITY_TITLES.get(severity, severity))} ({len(findings)})", ""]
        parts += [_Cut([_finding(f) for f in findings], lambda n: f"- ... and {n} more", 2), ""]
    if not document["layers"]:
        parts += ["No layers to show.", ""]
    if hidden_layers_text(document):
        parts += [f"{hidden_layers_text(document)}.", ""]

    if fine:
        title = f"OK: {_layers(len(fine))} re-computed within tolerance"
        parts += ["<details>", f"<summary>{title}</summary>", "", *_table_head()]
        more = f"not shown here, to stay under {MAX_CHARS:,} characters (the JSON or HTML report lists them all)."
        rows = _Cut(
            fine, lambda n: f"\n{_more_layers(n)} {more}", 0, lambda layer: "\n".join(_layer_rows(layer, notes, []))
        )
        parts += [rows, ""]
        counts = note_counts(document["layers"])
        used = [(number, note) for note, number in notes.items() if any(layer.get("note") == note for layer in fine)]
        parts += [f"\\[{number}\\] {text(note)} ({_layers(counts[note])})  " for number, note in used]
        parts += ["", "</details>", ""]
    for severity, findings in findings_by_severity(document, other_severities(document), skip_layer_findings=True):
        title = f"{SEVERITY_TITLES.get(severity, 'Findings')} ({len(findings)})"
        parts += ["<details>", f"<summary>{title}</summary>", ""]
        parts += [_Cut([_finding(f) for f in findings], lambda n: f"- ... and {n} more", 1), "", "</details>", ""]
    unmatched = document["unmatched_source"]
    if unmatched:
        plural = "s" if len(unmatched) != 1 else ""
        parts += ["<details>", f"<summary>{len(unmatched)} PyTorch layer{plural} not used by the export</summary>", ""]
        parts += [_Cut([f"- {code(name)}" for name in unmatched], lambda n: f"- ... and {n} more", 1), ""]
        parts += ["</details>", ""]

    tool = document["tool"]
    parts += ["---", "", f"Written by {text(tool['name'])} {text(tool['version'])} ({code(document['schema'])})."]
    stream.write(_fit(parts) + "\n")


def _layers(count: int) -> str:
    return f"{count} layer{'s' if count != 1 else ''}"


def _more_layers(count: int) -> str:
    return f"{count} more layer{'s' if count != 1 else ''}"


def _fit(parts: list[str | _Cut]) -> str:
    """The parts joined by newlines, the cut lists shortened (lowest rank first, each
    from its end) until the whole is within :data:`MAX_CHARS`.

    The list cut first keeps the longest run of its first items that fits beside
    everything else (what cutting it from its end keeps), so it is rendered only that
    far; the others are rendered whole."""
    cuts = sorted((part for part in parts if isinstance(part, _Cut)), key=lambda cut: cut.rank)
    fixed = sum(len(part) + 1 for part in parts if isinstance(part, str))
    for cut in cuts[1:]:
        cut.lines = [cut.render(item) for item in cut.items]
    excess = sum(len(line) + 1 for cut in cuts[1:] for line in cut.lines) - (MAX_CHARS - _RESERVE - fixed)
    if cuts:
        first = cuts[0]
        for item in first.items:
            line = first.render(item)
            if excess + len(line) + 1 > 0:
                break
            first.lines.append(line)
            excess += len(line) + 1
        first.kept = len(first.lines)
    for cut in cuts[1:]:
        cut.kept = len(cut.lines)
        while excess > 0 and cut.kept > 0:
            cut.kept -= 1
            excess -= len(cut.lines[cut.kept]) + 1
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        else:
            out += part.lines[: part.kept]
            if part.kept < len(part.items):
                out.append(part.more(len(part.items) - part.kept))
    return "\n".join(out)


def _table_head() -> list[str]:
    header = "| " + " | ".join(LAYER_HEADERS) + " |"
    rule = "|" + "|".join("---:" if name.startswith("max ") else "---" for name in LAYER_HEADERS) + "|"
    return [header, rule]


def _layer_rows(layer: dict[str, Any], notes: dict[str, int], findings: list[dict[str, Any]]) -> list[str]:
    """One row per parameter, the layer's own cells on its first row only; an unmatched
    layer's reason (and what else is said about a problem layer) in its Transform cell."""
    rows = []
    reasons = layer_reasons(layer, findings)
    for position, param in enumerate(layer_param_rows(layer)):
        first = position == 0
        status = ""
        if first:
            label = text(status_label(layer["status"]))
            status = f"**{label}**" if is_problem(layer) else label
        if param is not None and param.get("status") == "mismatch" and channels_text(param):
            status = f"{status} {text(channels_text(param))}".strip()
        if param is None:
            param_columns = ["-", "", "", "", "", ""]
        else:
            name, *numbers = param_cells(param)
            # Numbers and ranges are ours ("[-0.3, 0.3]" is no link without a definition).
            param_columns = [code(name, in_table=True), *numbers]
        if first:
            sources = "<br>".join(code(source or "(root module)", in_table=True) for source in layer["sources"]) or "-"
            transform = text(transform_text(layer, notes))
            if reasons:
                transform = "<br>".join(([transform] if layer["transform"] else []) + [text(r) for r in reasons])
            layer_cells = [code(layer["target"], in_table=True), text(layer["op"])]
            tail = [sources, transform]
        else:
            layer_cells, tail = ["", ""], ["", ""]
        rows.append("| " + " | ".join([status, *layer_cells, *param_columns, *tail]) + " |")
    return rows


def _finding(finding: dict[str, Any]) -> str:
    where = f"{code(finding['layer'])}: " if finding.get("layer") else ""
    return f"- {where}{text(finding['message'])} ({code(finding['code'])})"


@hookimpl
def graphinspect_reporters():
    yield Reporter(
        "markdown",
        "GitHub-flavoured Markdown for a pull request: verdict, summary, problems; ok layers folded; under 64 KiB.",
        (SCHEMA,),
        render,
        suffixes=(".md", ".markdown"),
    )
