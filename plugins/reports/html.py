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

The pictures are inline SVG whose geometry is computed here; the page itself is the
Jinja2 template in :mod:`._html_page`, rendered with autoescaping, so every string
from the document is escaped (and first made :func:`~inspector.output.visible`).
Jinja2 is a dependency for this: a well-kept, escaping-by-default template engine is
smaller and safer than hand-built markup.
"""

from __future__ import annotations

import math
import re
from types import SimpleNamespace
from typing import Any

from inspector.hookspecs import hookimpl
from inspector.output import fmt_float, visible
from inspector.records import Reporter
from plugins.reports._wording import (
    PROBLEM_SEVERITIES,
    SCHEMA,
    SEVERITY_TITLES,
    STATUS_LABELS,
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
    range_text,
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

LOG_FLOOR, LOG_CEILING = -10, 0
"""The error axes run from 1e-10 (and exact zero) to 1 (and beyond, clamped)."""

MAX_STRIP_BARS = 1200
"""Beyond this many layers, neighbours share a bar of the strip (the worst of them)."""

MAX_BAR_WIDTH = 14
"""A strip of few layers keeps thin bars (its meaning is the pattern, not the width)."""

MAX_CARDS = 12
"""Problem layers given a card; the others are in the table."""

MAX_STRIP_LABELS = 4
"""Problem layers named above the strip."""

STATUS_RANK = {"mismatch": 2, "unmatched": 1, "ok": 0}

_template = None
_BREAKS = re.compile(r"[^/.]*[/.]+|[^/.]+$")


def render(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """Write the diff document as one self-contained HTML5 page to ``stream``."""
    from markupsafe import Markup

    from plugins.reports._html_page import SCRIPT, STYLE

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
        "strip": _strip(layers, anchors, tolerance) if layers else None,
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
        "rows": [
            _row(index, layer, anchors[id(layer)], notes, beside.get(layer["target"], []))
            for index, layer in enumerate(layers)
        ],
        "hidden": hidden_layers_text(document),
        "notes": _notes(layers, notes),
        "other_findings": _finding_groups(document, other_severities(document)),
        "unmatched_source": [visible(name) for name in document["unmatched_source"]],
        "tool": {"name": visible(document["tool"]["name"]), "version": visible(document["tool"]["version"])},
        "schema": visible(document["schema"]),
    }
    stream.write(_page().render(context).lstrip() + "\n")


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


# ----------------------------------------------------------------- numbers to pixels


def _log_position(value: float | None, bottom: float, top: float, ceiling: int = LOG_CEILING) -> float:
    """The y of an error on a log axis from 1e-10 (bottom; exact zero too) to 10**ceiling."""
    if value is None or value <= 0:
        exponent = LOG_FLOOR
    elif not math.isfinite(value):
        exponent = ceiling
    else:
        exponent = min(max(math.log10(value), LOG_FLOOR), ceiling)
    return round(bottom - (exponent - LOG_FLOOR) / (ceiling - LOG_FLOOR) * (bottom - top), 1)


def _ticks(bottom: float, top: float, ceiling: int = LOG_CEILING) -> list[dict[str, Any]]:
    return [
        {"y": _log_position(10.0**exponent, bottom, top, ceiling), "label": _power(exponent)}
        for exponent in range(LOG_FLOOR, ceiling + 1, 2)
    ]


def _power(exponent: int) -> str:
    return {0: "1", -1: "0.1", -2: "0.01"}.get(exponent, f"1e{exponent}")


def _layer_error(layer: dict[str, Any], key: str = "max_rel_err") -> float | None:
    """The largest error of a layer's parameters; inf when one is non-finite (null)."""
    values = [p.get(key) for p in layer["params"] if p.get("status") != "unmatched"]
    if not values:
        return None
    if any(value is None for value in values):
        return math.inf
    return max(values)


def _breakable(name: str):
    """A long dotted or slashed name, escaped, with a line break allowed (``<wbr>``)
    after each "/" and "." and nowhere inside a word."""
    from markupsafe import Markup, escape

    return Markup("<wbr>").join(escape(part) for part in _BREAKS.findall(name) or [name])


def _short(name: str, limit: int = 48) -> str:
    """A long node name cut in its middle, for a label in a picture (the full name is
    in the card and the table)."""
    return name if len(name) <= limit else name[: limit // 2 - 1] + "\u2026" + name[-(limit // 2 - 1) :]


# ----------------------------------------------------------------- the strip


def _strip(layers: list[dict[str, Any]], anchors: dict[int, str], tolerance: tuple[float, str]) -> dict[str, Any]:
    """Geometry of the error strip (see the module docstring)."""
    width, height, left, right, top, bottom = 1320, 190, 48, 1312, 40, 170
    per_bar = max(1, math.ceil(len(layers) / MAX_STRIP_BARS))
    groups = [layers[start : start + per_bar] for start in range(0, len(layers), per_bar)]
    step = (right - left) / len(groups)
    bar_width = min(max(step - (1 if step > 3 else 0), 0.6), MAX_BAR_WIDTH)
    bars, bands, labelled = [], [], []
    for position, group in enumerate(groups):
        worst = max(group, key=lambda layer: (STATUS_RANK.get(layer["status"], 0), _layer_error(layer) or 0))
        status = worst["status"] if worst["status"] in STATUS_RANK else "ok"
        error = _layer_error(worst)
        x = left + position * step + (step - bar_width) / 2  # a thin bar in the middle of its slot
        y = top if status == "unmatched" else _log_position(error, bottom, top)
        name = visible(worst["target"])
        what = "unmatched" if status == "unmatched" else f"max rel err {fmt_float(error)}"
        title = f"{name}: {status_label(status)}, {what}"
        if status == "ok" and not error:
            status, y = "exact", bottom - 3  # re-computed to the last bit: a stub, not a bar
        if per_bar > 1:
            title = f"layers {position * per_bar}-{position * per_bar + len(group) - 1}, worst {title}"
        bars.append(
            {
                "x": round(x, 2),
                "y": y,
                "w": round(bar_width, 2),
                "h": round(max(bottom - y, 1.5), 1),
                "status": status,
                "title": title,
                "anchor": anchors[id(worst)],
            }
        )
        if status in ("mismatch", "unmatched"):
            band = max(bar_width + 4, 7.0)
            middle = x + bar_width / 2
            bands.append({"x": round(middle - band / 2, 2), "w": round(band, 2), "status": status})
            labelled.append((middle, worst, status))
    labels = []
    for number, (x, layer, status) in enumerate(labelled[:MAX_STRIP_LABELS]):
        where = ""
        if status == "mismatch":
            channels = [channels_text(p) for p in layer["params"] if p.get("status") == "mismatch" and channels_text(p)]
            where = f" {channels[0]}" if channels else ""
        anchor = "start" if x < (left + right) / 2 else "end"
        labels.append(
            {
                "x": round(x, 1),
                "y": 12 + 12 * (number % 2),
                "anchor": anchor,
                "text": _short(visible(layer["target"])) + visible(where),
                "status": status,
            }
        )
    if len(labelled) > MAX_STRIP_LABELS:
        labels.append(
            {
                "x": right,
                "y": 14,
                "anchor": "end",
                "text": f"+{len(labelled) - MAX_STRIP_LABELS} more problems",
                "status": "mismatch",
            }
        )
    rtol, label = tolerance
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": right,
        "top": top,
        "plot_height": bottom - top,
        "ticks": _ticks(bottom, top),
        "bars": bars,
        "bands": bands,
        "labels": labels,
        "tolerance": {"y": _log_position(rtol, bottom, top), "label": label},
        "first": "first layer",
        "last": f"last layer ({len(layers)})" + (f"; {per_bar} layers a bar" if per_bar > 1 else ""),
        "label": "largest relative error of each layer, in graph order, log scale",
    }


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
        "channels": [_channels(p, tolerance[0]) for p in mismatched if p.get("channel_errors")],
        "ranges": [_ranges(p, 520, 12, 6, labels=True) for p in (mismatched or layer["params"])],
    }


def _channels(param: dict[str, Any], rtol: float) -> dict[str, Any]:
    """Geometry of a mismatched parameter's per-channel error bars."""
    errors = param["channel_errors"]
    values = [math.inf if value is None else value for value in errors["max_rel_err"]]
    per, channels = errors["per_entry"], errors["channels"]
    largest = max((v for v in values if math.isfinite(v)), default=0.0)
    ceiling = max(LOG_CEILING, math.ceil(math.log10(largest))) if largest > 0 else LOG_CEILING
    width, height, left, right, top, bottom = 600, 150, 44, 594, 18, 132
    step = (right - left) / max(len(values), 1)
    listed = set(param.get("bad_channels") or [])
    everything_listed = (param.get("bad_channel_count") or 0) <= len(listed)
    bars = []
    for index, value in enumerate(values):
        first, last = index * per, min((index + 1) * per, channels) - 1
        in_list = any(channel in listed for channel in range(first, last + 1))
        bad = in_list or not math.isfinite(value) or (not everything_listed and value > rtol)
        y = _log_position(value, bottom, top, ceiling)
        where = f"channel {first}" if per == 1 else f"channels {first}-{last}"
        bars.append(
            {
                "x": round(left + index * step, 2),
                "y": y,
                "w": round(max(step * 0.85, 0.5), 2),
                "h": round(max(bottom - y, 1.0), 1),
                "status": "bad" if bad else "ok",
                "title": f"{where}: max rel err {fmt_float(value)}",
                "value": value,
                "where": where,
            }
        )
    worst = sorted((bar for bar in bars if bar["status"] == "bad"), key=lambda bar: -bar["value"])[:3]
    labels = [
        {
            "x": round(bar["x"] + bar["w"] / 2, 1),
            "y": max(bar["y"] - 3, 11),
            "text": bar["where"].replace("channel", "ch"),
        }
        for bar in worst
    ]
    shared = f", {per} channels a bar" if per > 1 else ""
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": right,
        "ticks": _ticks(bottom, top, ceiling),
        "bars": bars,
        "labels": labels,
        "tolerance": {"y": _log_position(rtol, bottom, top, ceiling)},
        "last": f"channel {channels - 1}",
        "caption": visible(
            f"{param['name']}: largest relative error of each of its {channels} output channels{shared} "
            f"(log scale; dashed: the tolerance)"
        ),
    }


def _ranges(param: dict[str, Any], width: int, bar: int, gap: int, labels: bool) -> dict[str, Any] | None:
    """Geometry of a parameter's PyTorch, ONNX and re-computed ranges on one axis (with
    zero marked), one bar under the other; ``labels`` writes the numbers beside them."""
    kinds = [
        ("source", "PyTorch", param.get("source_range")),
        ("target", "ONNX", param.get("target_range")),
        ("reproduced", "re-computed", param.get("reproduced_range")),
    ]
    ends = [v for _, _, pair in kinds if pair for v in pair if v is not None and math.isfinite(v)]
    if not ends:
        return None
    lo, hi = min(ends + [0.0]), max(ends + [0.0])
    if hi <= lo:
        hi = lo + 1.0
    text_width = 190 if labels else 0
    plot = width - text_width - 4

    def x_of(value: float) -> float:
        return round(2 + (value - lo) / (hi - lo) * plot, 2)

    bars = []
    for row, (kind, label, pair) in enumerate(kinds):
        if not pair or pair[0] is None or pair[1] is None or not all(math.isfinite(v) for v in pair):
            continue
        x0, x1 = x_of(pair[0]), x_of(pair[1])
        text = f"{label} {range_text(pair)}"
        bars.append(
            {
                "kind": kind,
                "x": x0,
                "y": 1 + row * (bar + gap),
                "w": round(max(x1 - x0, 1.0), 2),
                "h": bar,
                "title": text,
                "text": text if labels else "",
                "text_x": plot + 8,
            }
        )
    return {
        "width": width,
        "height": 3 * bar + 2 * gap + 2,
        "zero": x_of(0.0),
        "bars": bars,
        "label": visible(f"{param['name']}: " + "; ".join(bar["title"] for bar in bars)),
        "caption": visible(f"{param['name']}: the ranges side by side (zero marked)"),
    }


# ----------------------------------------------------------------- the table

_MINI = (120, 8, 5)
"""A table row's ranges picture: width, bar height, gap."""


def _mini_ranges(param: dict[str, Any]):
    """The ranges picture of a table row, made here rather than in the template: it is
    the page's most repeated element (numbers only; the ranges are written beside it)."""
    from markupsafe import Markup

    picture = _ranges(param, *_MINI, labels=False)
    if picture is None:
        return ""
    bars = "".join(
        f'<rect class="r-{bar["kind"]}" x="{bar["x"]}" y="{bar["y"]}" width="{bar["w"]}" height="{bar["h"]}"/>'
        for bar in picture["bars"]
    )
    width, height, zero = picture["width"], picture["height"], picture["zero"]
    return Markup(
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-hidden="true">'
        f'<line class="zero" x1="{zero}" x2="{zero}" y1="0" y2="{height}"/>{bars}</svg>'
    )


def _row(index: int, layer: dict[str, Any], anchor: str, notes: dict[str, int], findings: list[dict[str, Any]]):
    """One layer of the table, as attributes (the template reads a namespace faster than
    a dict: this is the page's hot path). Numbers are ours and marked safe as they are."""
    from markupsafe import Markup

    rel, abs_ = _layer_error(layer), _layer_error(layer, "max_abs_err")
    unmatched = layer["status"] == "unmatched"
    params = []
    for param in layer_param_rows(layer):
        if param is None:
            params.append(
                SimpleNamespace(
                    name="", rel="", abs="", source="", target="", reproduced="", ranges="", mismatch=False, where=""
                )
            )
            continue
        mismatch = param.get("status") == "mismatch"
        params.append(
            SimpleNamespace(
                name=visible(param["name"]),
                rel=Markup(fmt_float(param.get("max_rel_err"))),
                abs=Markup(fmt_float(param.get("max_abs_err"))),
                source=Markup(range_text(param.get("source_range"))),
                target=Markup(range_text(param.get("target_range"))),
                reproduced=Markup(range_text(param.get("reproduced_range"))),
                ranges=_mini_ranges(param),
                mismatch=mismatch,
                where=channels_text(param) if mismatch else "",
            )
        )
    note = layer.get("note") or ""
    sources = [_breakable(visible(source or "(root module)")) for source in layer["sources"]]
    return SimpleNamespace(
        index=index,
        anchor=anchor,
        name=visible(layer["target"]),
        name_html=_breakable(visible(layer["target"])),
        op=visible(layer["op"]),
        status=layer["status"] if layer["status"] in STATUS_RANK else "unmatched",
        status_rank=STATUS_RANK.get(layer["status"], 1),
        label=visible(status_label(layer["status"])),
        rel="Infinity" if unmatched else (-1 if rel is None else ("Infinity" if math.isinf(rel) else rel)),
        abs="Infinity" if unmatched else (-1 if abs_ is None else ("Infinity" if math.isinf(abs_) else abs_)),
        search=visible(" ".join([layer["target"], layer["op"], *layer["sources"]]).lower()),
        sources=sources,
        transform=visible(layer["transform"] or ""),
        note=visible(note),
        note_number=notes.get(note),
        reasons=[visible(reason) for reason in layer_reasons(layer, findings)],
        span=_rowspan(len(params)),
        params=params,
    )


def _rowspan(rows: int):
    from markupsafe import Markup

    return Markup(f' rowspan="{rows}"') if rows > 1 else ""


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
