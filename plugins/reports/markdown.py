"""The ``markdown`` reporter for the diff document: a GitHub-flavoured Markdown report.

Renders a ``graphinspect/diff@1`` document (see :mod:`inspector.report`) as: a title
with the verdict, the two models, the summary in words, a counts table, the layer table
(one row per target parameter, the same columns as the ``table`` reporter), the
findings by severity, the unused PyTorch layers in a collapsed ``<details>`` list, and
the tool that wrote it. It shows only what the document holds.

Names go into code spans and other text is backslash-escaped, so a layer called
``m[0]|cv1`` or ``<script>`` is shown as it is and never becomes a link, a table
column or HTML.
"""

from __future__ import annotations

import re
from typing import Any

from inspector.hookspecs import hookimpl
from inspector.records import Reporter
from plugins.reports._wording import (
    LAYER_HEADERS,
    SCHEMA,
    SEVERITY_TITLES,
    channels_text,
    findings_by_severity,
    hidden_layers_text,
    layer_param_rows,
    model_facts,
    param_cells,
    status_label,
    tolerance_text,
    verdict_label,
)

# Characters that could start Markdown or HTML syntax; "_" only at a word's edge,
# since GitHub never reads an underscore inside a word (fold_batchnorm) as emphasis.
_MARKDOWN_SPECIAL = re.compile(r"[\\`*\[\]<>|#]|(?<!\w)_|_(?!\w)")


def text(value: str) -> str:
    """``value`` as literal Markdown text (also safe in a table cell)."""
    return _MARKDOWN_SPECIAL.sub(lambda match: "\\" + match.group(0), value).replace("\n", " ")


def code(value: str, in_table: bool = False) -> str:
    """``value`` as a code span; in a table its "|" is escaped, which GitHub honours
    even inside code spans."""
    value = value.replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {value} " if longest or value.startswith(" ") or value.endswith(" ") else value
    span = f"{fence}{padded}{fence}"
    return span.replace("|", "\\|") if in_table else span


def render(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """Write the diff document as GitHub-flavoured Markdown to ``stream``."""
    summary = document["summary"]
    lines: list[str] = []
    lines.append(f"# graphinspect diff: {verdict_label(summary['verdict'])}")
    lines.append("")
    for label, key in (("Source", "source"), ("Target", "target")):
        model = document[key]
        lines.append(f"- **{label}:** {code(model['path'])} {text(model_facts(model))}")
    lines.append("")
    lines.append(text(summary["text"]))
    lines.append("")

    lines.append("## Counts")
    lines.append("")
    lines.append("| | layers |")
    lines.append("|---|---:|")
    for label, key in (
        ("matched", "matched"),
        ("mismatched", "mismatched"),
        ("unmatched target (ONNX)", "unmatched_target"),
        ("unmatched source (PyTorch)", "unmatched_source"),
    ):
        lines.append(f"| {label} | {summary[key]} |")
    for name, count in summary["by_transform"].items():
        lines.append(f"| by transform: {code(name, in_table=True)} | {count} |")
    lines.append("")
    lines.append(text(tolerance_text(document)))
    lines.append("")

    lines.extend(_layer_section(document))

    groups = findings_by_severity(document)
    if groups:
        lines.append("## Findings")
        lines.append("")
        for severity, findings in groups:
            lines.append(f"### {text(SEVERITY_TITLES.get(severity, severity))} ({len(findings)})")
            lines.append("")
            for finding in findings:
                where = f"{code(finding['layer'])}: " if finding.get("layer") else ""
                lines.append(f"- {where}{text(finding['message'])} ({code(finding['code'])})")
            lines.append("")

    unmatched = document["unmatched_source"]
    if unmatched:
        lines.append("## Unmatched PyTorch layers")
        lines.append("")
        lines.append("<details>")
        lines.append(
            f"<summary>{len(unmatched)} PyTorch layer{'s' if len(unmatched) != 1 else ''} not used by the "
            "export</summary>"
        )
        lines.append("")
        lines.extend(f"- {code(name)}" for name in unmatched)
        lines.append("")
        lines.append("</details>")
        lines.append("")

    tool = document["tool"]
    lines.append("---")
    lines.append("")
    lines.append(f"Written by {text(tool['name'])} {text(tool['version'])} ({code(document['schema'])}).")
    stream.write("\n".join(lines) + "\n")


def _layer_section(document: dict[str, Any]) -> list[str]:
    """The Layers section: the table (or a line saying it is empty) and how many layers
    the command left out."""
    layers = document["layers"]
    lines = ["## Layers", ""]
    if not layers:
        lines.extend(["No layers to show.", ""])
    else:
        lines.extend(_layer_table(layers))
        lines.append("")
    if hidden_layers_text(document):
        lines.extend([f"{hidden_layers_text(document)}.", ""])
    return lines


def _layer_table(layers: list[dict[str, Any]]) -> list[str]:
    """One row per parameter, the layer's own columns only on its first row."""
    lines = ["| " + " | ".join(LAYER_HEADERS) + " |"]
    lines.append("|" + "|".join("---:" if header.startswith("max ") else "---" for header in LAYER_HEADERS) + "|")
    for layer in layers:
        for position, param in enumerate(layer_param_rows(layer)):
            status = ""
            if position == 0:
                label = status_label(layer["status"])
                status = f"**{label}**" if layer["status"] == "mismatch" else label
            if param is not None and param.get("status") == "mismatch" and channels_text(param):
                status = f"{status} {channels_text(param)}".strip()
            if position == 0:
                sources = "<br>".join(code(source, in_table=True) for source in layer["sources"]) or "-"
                transform = code(layer["transform"], in_table=True) if layer["transform"] else "-"
                if layer.get("note"):
                    transform += f"<br>{text(layer['note'])}"
                layer_cells = [code(layer["target"], in_table=True), text(layer["op"]), sources, transform]
            else:
                layer_cells = ["", "", "", ""]
            if param is None:
                param_columns = ["-", "", "", "", "", ""]
            else:
                name, *numbers = param_cells(param)
                # Numbers and ranges are ours ("[-0.3, 0.3]" is no link without a definition).
                param_columns = [code(name, in_table=True), *numbers]
            lines.append("| " + " | ".join([status, *layer_cells, *param_columns]) + " |")
    return lines


@hookimpl
def graphinspect_reporters():
    yield Reporter(
        "markdown",
        "A GitHub-flavoured Markdown report: verdict, summary, counts, layer table, findings.",
        (SCHEMA,),
        render,
        suffixes=(".md", ".markdown"),
    )
