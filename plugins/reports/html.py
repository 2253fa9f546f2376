"""The ``html`` reporter for the diff document: one offline page, pictures first.

Renders a ``graphinspect/diff@1`` document (see :mod:`inspector.report`) as one
self-contained HTML5 page (no network: no URL outside the page, no font, image, style
sheet or script loaded), top down:

1. the verdict banner with the verdict line and the two models, the summary in words;
2. the error strip: one bar per layer in graph order, its height the layer's largest
   relative error on a log scale, with the tolerance line; a mismatch (red) and an
   unmatched layer (amber, full height) are bands across the strip, named above it;
3. a card per problem layer: what it is, why (an unmatched layer's reason), the error
   of each output channel of a mismatched parameter (from ``channel_errors``; the bad
   channels red and named), and its PyTorch, ONNX and re-computed ranges side by side;
4. the findings of severity error and warning;
5. the layer table, sortable (click a header) and filterable (status check boxes, a
   search field), the errors before the ranges, a small ranges picture on each row and
   an unmatched layer's reason in its row;
6. the notes layers share, the info findings, the unused PyTorch layers.

The pictures are inline SVG whose geometry is computed in :mod:`._pictures`; the page is the
Jinja2 template in :mod:`._html_page`, rendered with autoescaping, so every string
from the document is escaped (and first made :func:`~inspector.output.visible`).
Jinja2 is a dependency for this: a well-kept, escaping-by-default template engine is
smaller and safer than hand-built markup.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from inspector.hookspecs import hookimpl
from inspector.output import fmt_float, visible
from inspector.records import Reporter
from plugins.reports._pictures import channel_bars, ranges, strip
from plugins.reports._wording import (
    PROBLEM_SEVERITIES,
    SCHEMA,
    SEVERITY_TITLES,
    STATUS_LABELS,
    counts_text,
    findings_by_severity,
    hidden_layers_text,
    is_problem,
    layer_findings,
    layer_reasons,
    model_facts,
    note_counts,
    other_severities,
    shared_notes,
    shown_path,
    sources_text,
    status_label,
    tolerance_text,
    verdict_label,
    verdict_line,
)

DEFAULT_RTOL = 1e-4
"""The tolerance line drawn when the document used the per-dtype defaults: fp32's."""

MAX_CARDS = 12
"""Problem layers given a card; the others are in the table."""

_template = None


def render(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """Write the diff document as one self-contained HTML5 page to ``stream``."""
    from markupsafe import Markup

    from plugins.reports._html_page import SCRIPT, STYLE
    from plugins.reports._html_rows import layer_tbody

    summary = document["summary"]
    verdict = summary["verdict"]
    layers = document["layers"]
    notes = shared_notes(layers)
    beside = layer_findings(document)
    problems = [layer for layer in layers if is_problem(layer)]
    rtol = (document.get("tolerance") or {}).get("rtol")
    tolerance = (rtol, f"tolerance: rtol {fmt_float(rtol)}") if rtol else (DEFAULT_RTOL, "rtol 1e-4 (fp32 default)")
    anchors = {id(layer): f"L{index}" for index, layer in enumerate(layers)}
    source, target = document["source"], document["target"]
    cwd = options.get("cwd")
    names = f"{shown_path(source['path'], cwd)} vs {shown_path(target['path'], cwd)}"
    context = {
        "title": visible(f"graphinspect diff: {verdict_label(verdict)} ({names})"),
        "style": Markup(STYLE),
        "script": Markup(SCRIPT),
        "verdict": verdict if verdict in ("faithful", "differs", "incomplete") else "differs",
        "verdict_label": visible(verdict_label(verdict)),
        "verdict_line": visible(verdict_line(document)),
        "source": {"path": visible(shown_path(source["path"], cwd)), "facts": model_facts(source)},
        "target": {"path": visible(shown_path(target["path"], cwd)), "facts": model_facts(target)},
        "summary": visible(summary["text"]),
        "counts": visible(counts_text(summary)),
        "tolerance": tolerance_text(document),
        "strip": strip(layers, anchors, tolerance) if layers else None,
        "cards": [
            _card(layer, anchors[id(layer)], beside.get(layer["target"], []), tolerance)
            for layer in problems[:MAX_CARDS]
        ],
        "problem_count": f"{len(problems)} layer{'s' if len(problems) != 1 else ''}",
        "more_problems": max(0, len(problems) - MAX_CARDS),
        "problem_findings": _finding_groups(document, PROBLEM_SEVERITIES),
        "statuses": [
            {"name": status, "label": status_label(status), "count": count}
            for status in STATUS_LABELS
            if (count := sum(1 for layer in layers if layer["status"] == status))
        ],
        "columns": COLUMNS,
        "has_rows": bool(layers),
        "rows": (  # made as the page is written, each row once
            layer_tbody(index, layer, anchors[id(layer)], notes, beside.get(layer["target"], []))
            for index, layer in enumerate(layers)
        ),
        "hidden": hidden_layers_text(document),
        "notes": _notes(layers, notes),
        "other_findings": _finding_groups(document, other_severities(document)),
        "unmatched_source": [visible(name) for name in document["unmatched_source"]],
        "tool": {"name": visible(document["tool"]["name"]), "version": visible(document["tool"]["version"])},
        "schema": visible(document["schema"]),
    }
    write_streamed(_page().generate(context), stream)


WRITE_EVERY = 1024
"""Pieces of the page :func:`write_streamed` gathers before it writes them."""


def write_streamed(pieces: Iterable[str], stream) -> None:
    """Write a page from the pieces a template generates, without leading whitespace and
    with a final newline, about a thousand at a time: the page of a 30,000-layer model is
    60 MiB, and the rows it is made of as much again, so neither is held whole."""
    pending: list[str] = []
    started = False
    for piece in pieces:
        if not started:
            piece = piece.lstrip()
            started = bool(piece)
        pending.append(piece)
        if len(pending) >= WRITE_EVERY:
            stream.write("".join(pending))
            pending.clear()
    pending.append("\n")
    stream.write("".join(pending))


def _page():
    """The compiled template (compiled once per process)."""
    global _template
    if _template is None:
        from jinja2 import Environment, StrictUndefined

        from plugins.reports._html_page import MACROS, TEMPLATE

        environment = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        _template = environment.from_string(MACROS + TEMPLATE)
    return _template


COLUMNS = [
    {"title": "#", "sort": "index", "numeric": True},
    {"title": "Status", "sort": "status", "numeric": True},
    {"title": "ONNX node", "sort": "name", "numeric": False},
    {"title": "Op", "sort": "op", "numeric": False},
    {"title": "Param", "sort": None, "numeric": False},
    {"title": "max rel err", "sort": "rel", "numeric": True},
    {"title": "max abs err", "sort": "abs", "numeric": True},
    {"title": "PyTorch / ONNX / re-computed range", "sort": None, "numeric": False},
    {"title": "PyTorch module(s)", "sort": None, "numeric": False},
    {"title": "Transform", "sort": None, "numeric": False},
]
"""The layer table's columns; ``sort`` names the ``data-`` attribute a click sorts by."""


# ----------------------------------------------------------------- the cards


def _card(
    layer: dict[str, Any], anchor: str, findings: list[dict[str, Any]], tolerance: tuple[float, str]
) -> dict[str, Any]:
    mismatched = [p for p in layer["params"] if p.get("status") == "mismatch"]
    sentence = next((f["message"] for f in findings if f["code"] == "mismatch"), "")
    return {
        "status": layer["status"],
        "label": status_label(layer["status"]),
        "anchor": anchor,
        "name": visible(layer["target"]),
        "op": visible(layer["op"]),
        "sources": visible(sources_text(layer)) if layer["sources"] else "",
        "transform": visible(layer["transform"] or ""),
        "reasons": [visible(reason) for reason in layer_reasons(layer, findings)],
        "sentence": visible(sentence),
        "channels": [channel_bars(p, tolerance[0]) for p in mismatched if p.get("channel_errors")],
        "ranges": [ranges(p, 520, 12, 6, labels=True) for p in (mismatched or layer["params"])],
    }


def _notes(layers: list[dict[str, Any]], notes: dict[str, int]) -> list[dict[str, Any]]:
    counts = note_counts(layers)
    return [
        {"number": number, "text": visible(note), "count": f"{counts[note]} layers"} for note, number in notes.items()
    ]


def _finding_groups(document: dict[str, Any], severities: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {
            "severity": visible(severity),
            "title": visible(SEVERITY_TITLES.get(severity, severity)),
            "findings": [
                {"layer": visible(f["layer"] or ""), "message": visible(f["message"]), "code": visible(f["code"])}
                for f in findings
            ],
        }
        for severity, findings in findings_by_severity(document, severities, skip_layer_findings=True)
    ]


@hookimpl
def graphinspect_reporters():
    yield Reporter(
        "html",
        "One offline HTML page: verdict, error strip, per-channel errors and ranges of each problem, sortable table.",
        (SCHEMA,),
        render,
        suffixes=(".html", ".htm"),
    )
