"""The ``html`` reporter for the diff document: one self-contained HTML5 page.

Renders a ``graphinspect/diff@1`` document (see :mod:`inspector.report`) as a page with
inline CSS and no external assets or script: a verdict banner coloured by verdict, the
two models, the summary in words, the counts, the layer table (one ``<tbody>`` per
layer, classed by status, one row per target parameter), the findings by severity and
the unused PyTorch layers. Check boxes above the table hide layers by status with CSS
alone (``:has``); where a browser lacks it, every layer stays shown.

Every string from the document goes through :func:`html.escape`.
"""

from __future__ import annotations

from html import escape
from typing import Any

from inspector.hookspecs import hookimpl
from inspector.records import Reporter
from plugins.reports._wording import (
    LAYER_HEADERS,
    SCHEMA,
    SEVERITY_TITLES,
    STATUS_LABELS,
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

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328; background: #fff; }
main { padding: 0 24px 24px; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.verdict { padding: 16px 24px; color: #fff; }
.verdict h1 { margin: 0 0 4px; font-size: 24px; }
.verdict p { margin: 0; }
.verdict code { color: inherit; }
.verdict.faithful { background: #1a7f37; }
.verdict.differs { background: #cf222e; }
.verdict.incomplete { background: #9a6700; }
.summary { max-width: 110ch; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.range { white-space: nowrap; font-variant-numeric: tabular-nums; }
tbody.status-ok td.status { color: #1a7f37; }
tbody.status-mismatch { background: #ffebe9; }
tbody.status-mismatch td.status { color: #cf222e; font-weight: bold; }
tbody.status-unmatched { background: #fff8c5; }
tbody.status-unmatched td.status { color: #9a6700; }
tr.param-mismatch td.num { color: #cf222e; font-weight: bold; }
.where { color: #cf222e; white-space: nowrap; }
.note { color: #656d76; font-size: 12px; }
.filter { border: 0; padding: 0; margin: 0; }
.filter label { margin-right: 12px; }
body:has(#show-ok:not(:checked)) tbody.status-ok,
body:has(#show-mismatch:not(:checked)) tbody.status-mismatch,
body:has(#show-unmatched:not(:checked)) tbody.status-unmatched { display: none; }
.severity-error { color: #cf222e; }
.severity-warning { color: #9a6700; }
.severity-info { color: #0969da; }
footer { color: #656d76; font-size: 12px; margin-top: 24px; }
"""


def render(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """Write the diff document as one self-contained HTML5 page to ``stream``."""
    summary = document["summary"]
    verdict = summary["verdict"]
    source, target = document["source"], document["target"]
    title = f"graphinspect diff: {verdict_label(verdict)} ({source['path']} vs {target['path']})"
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f'<header class="verdict {escape(verdict)}">',
        f"<h1>graphinspect diff: {escape(verdict_label(verdict))}</h1>",
        f"<p>{_model(source)} &rarr; {_model(target)}</p>",
        "</header>",
        "<main>",
        "<h2>Summary</h2>",
        f'<p class="summary">{escape(summary["text"])}</p>',
    ]
    out.extend(_counts(document))
    out.extend(_layer_section(document))
    out.extend(_findings(document))
    unmatched = document["unmatched_source"]
    if unmatched:
        plural = "s" if len(unmatched) != 1 else ""
        out.append("<h2>Unmatched PyTorch layers</h2>")
        out.append(f"<details><summary>{len(unmatched)} PyTorch layer{plural} not used by the export</summary>")
        out.append("<ul>")
        out.extend(f"<li><code>{escape(name)}</code></li>" for name in unmatched)
        out.append("</ul>")
        out.append("</details>")
    tool = document["tool"]
    out.append(
        f"<footer>Written by {escape(tool['name'])} {escape(tool['version'])} "
        f"(<code>{escape(document['schema'])}</code>).</footer>"
    )
    out.extend(["</main>", "</body>", "</html>"])
    stream.write("\n".join(out) + "\n")


def _model(model: dict[str, Any]) -> str:
    return f"<code>{escape(model['path'])}</code> {escape(model_facts(model))}"


def _counts(document: dict[str, Any]) -> list[str]:
    summary = document["summary"]
    rows = [
        ("matched", summary["matched"]),
        ("mismatched", summary["mismatched"]),
        ("unmatched target (ONNX)", summary["unmatched_target"]),
        ("unmatched source (PyTorch)", summary["unmatched_source"]),
    ]
    out = ["<h2>Counts</h2>", '<table class="counts">', "<thead><tr><th></th><th>layers</th></tr></thead>", "<tbody>"]
    out.extend(f'<tr><td>{escape(label)}</td><td class="num">{count}</td></tr>' for label, count in rows)
    out.extend(
        f'<tr><td>by transform: <code>{escape(name)}</code></td><td class="num">{count}</td></tr>'
        for name, count in summary["by_transform"].items()
    )
    out.extend(["</tbody>", "</table>", f"<p>{escape(tolerance_text(document))}</p>"])
    return out


def _layer_section(document: dict[str, Any]) -> list[str]:
    """The Layers section: the table (or a line saying it is empty) and how many layers
    the command left out."""
    layers = document["layers"]
    out = ["<h2>Layers</h2>"]
    out.extend(_layer_table(layers) if layers else ["<p>No layers to show.</p>"])
    if hidden_layers_text(document):
        out.append(f"<p>{escape(hidden_layers_text(document))}.</p>")
    return out


def _layer_table(layers: list[dict[str, Any]]) -> list[str]:
    """Check boxes by status, then the table: a ``<tbody>`` per layer, so that a layer's
    rows show or hide together, and one row per parameter."""
    out = []
    counts = {status: sum(1 for layer in layers if layer["status"] == status) for status in STATUS_LABELS}
    out.append('<fieldset class="filter"><legend>Show layers</legend>')
    for status, count in counts.items():
        if count:
            out.append(
                f'<label><input type="checkbox" id="show-{status}" checked> {escape(status_label(status))} '
                f"({count})</label>"
            )
    out.append("</fieldset>")
    out.append('<table class="layers">')
    out.append("<thead><tr>" + "".join(f"<th>{escape(header)}</th>" for header in LAYER_HEADERS) + "</tr></thead>")
    for layer in layers:
        out.append(f'<tbody class="status-{escape(layer["status"])}">')
        rows = list(layer_param_rows(layer))
        for position, param in enumerate(rows):
            mismatched = param is not None and param.get("status") == "mismatch"
            status = escape(status_label(layer["status"])) if position == 0 else ""
            if mismatched and channels_text(param):
                status += f' <span class="where">{escape(channels_text(param))}</span>'
            cells = [f'<td class="status">{status.strip()}</td>']
            if position == 0:
                span = f' rowspan="{len(rows)}"' if len(rows) > 1 else ""
                sources = "<br>".join(f"<code>{escape(source)}</code>" for source in layer["sources"]) or "-"
                transform = f"<code>{escape(layer['transform'])}</code>" if layer["transform"] else "-"
                if layer.get("note"):
                    transform += f'<br><span class="note">{escape(layer["note"])}</span>'
                cells += [
                    f"<td{span}><code>{escape(layer['target'])}</code></td>",
                    f"<td{span}>{escape(layer['op'])}</td>",
                    f"<td{span}>{sources}</td>",
                    f"<td{span}>{transform}</td>",
                ]
            if param is None:
                cells += ["<td>-</td>"] + ["<td></td>"] * 5
            else:
                name, *ranges_and_errors = param_cells(param)
                cells.append(f"<td><code>{escape(name)}</code></td>")
                cells += [f'<td class="range">{escape(value)}</td>' for value in ranges_and_errors[:3]]
                cells += [f'<td class="num">{escape(value)}</td>' for value in ranges_and_errors[3:]]
            row_class = ' class="param-mismatch"' if mismatched else ""
            out.append(f"<tr{row_class}>" + "".join(cells) + "</tr>")
        out.append("</tbody>")
    out.append("</table>")
    return out


def _findings(document: dict[str, Any]) -> list[str]:
    groups = findings_by_severity(document)
    if not groups:
        return []
    out = ["<h2>Findings</h2>"]
    for severity, findings in groups:
        title = SEVERITY_TITLES.get(severity, severity)
        out.append(f'<h3 class="severity-{escape(severity)}">{escape(title)} ({len(findings)})</h3>')
        out.append("<ul>")
        for finding in findings:
            where = f"<code>{escape(finding['layer'])}</code>: " if finding.get("layer") else ""
            out.append(f"<li>{where}{escape(finding['message'])} (<code>{escape(finding['code'])}</code>)</li>")
        out.append("</ul>")
    return out


@hookimpl
def graphinspect_reporters():
    yield Reporter(
        "html",
        "One self-contained HTML page: verdict banner, summary, counts, layer table, findings.",
        (SCHEMA,),
        render,
        suffixes=(".html", ".htm"),
    )
