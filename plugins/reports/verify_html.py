"""The ``html`` reporter for the verify document: one offline page, the error curve first.

Renders a ``graphinspect/verify@*`` document (see :mod:`plugins.commands.verify`) as one
self-contained HTML5 page (no URL outside the page; the diff page's style), top down:

1. the verdict banner: SAME, DIFFERS or INCOMPLETE with its reason, the two models and
   how the PyTorch model was run;
2. with ``--per-layer``, the error growth curve: each compared layer's largest relative
   error (``max_rel_err``, per output channel) in ONNX execution order on a log axis,
   with the layer tolerance (``layer_rtol``) as a dashed line; a layer that differs is a
   red dot, the first divergent layer a red vertical line named above the plot, a layer
   that cannot be compared a gap in the line. Where the curve leaves the tolerance is
   where the outputs start to differ;
3. the outputs table (errors, cosine, top-1/top-k agreement, status and reason);
4. the inputs and the lints (a /225 or BGR input is said here);
5. with ``--per-layer``, the layer table: the error beside the error of the layer's
   inputs and the growth between them, the worst channel, and why a layer was not
   compared.

Every string from the document is escaped by the template's autoescaping after
:func:`~inspector.output.visible`; the curve's geometry is computed here and is numbers.
"""

from __future__ import annotations

import math
from typing import Any

from inspector.hookspecs import hookimpl
from inspector.output import fmt_float, visible
from inspector.records import Reporter
from plugins.reports._pictures import log_position, log_ticks, short_name
from plugins.reports._wording import shown_path

SCHEMAS = ("graphinspect/verify@*",)
VERDICT_CLASSES = {"same": "faithful", "differs": "differs", "incomplete": "incomplete"}
"""The banner's colour, by verdict: the diff page's classes."""

CURVE = {"width": 1320, "height": 220, "left": 48, "right": 1312, "top": 40, "bottom": 196}
"""The curve's canvas and plot box, in SVG units (the page scales it to its width)."""

_template = None


def render(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """Write the verify document as one self-contained HTML5 page to ``stream``."""
    from markupsafe import Markup

    from plugins.reports._html_page import STYLE

    verdict = document["verdict"]
    cwd = options.get("cwd")
    source, target = document["source"], document["target"]
    layers = document.get("layers") or []
    tolerance = document["tolerance"]
    context = {
        "title": visible(f"graphinspect verify: {verdict.upper()} ({shown_path(target['path'], cwd)})"),
        "style": Markup(STYLE + EXTRA_STYLE),
        "verdict_class": VERDICT_CLASSES.get(verdict, "differs"),
        "verdict": visible(verdict.upper()),
        "reason": visible(document.get("verdict_reason") or ""),
        "source": visible(f"{shown_path(source['path'], cwd)} ({source['format']}, run by {source['runner']})"),
        "target": visible(f"{shown_path(target['path'], cwd)} ({target['format']})"),
        "tolerance": visible(
            f"outputs: rtol {fmt_float(tolerance['rtol'])}, atol {fmt_float(tolerance['atol'])} "
            f"({tolerance['check_error_stat']} error); layers: rtol {fmt_float(tolerance['layer_rtol'])}"
        ),
        "curve": error_curve(layers, tolerance["layer_rtol"], document.get("first_divergent")) if layers else None,
        "first_divergent": visible(document.get("first_divergent") or ""),
        "divergence_reason": visible(document.get("divergence_reason") or ""),
        "outputs": [_output_row(output) for output in document["outputs"]],
        "inputs": [_input_row(entry, cwd) for entry in document["inputs"]],
        "lints": [
            {"severity": lint["severity"], "code": visible(lint["code"]), "message": visible(lint["message"])}
            for lint in document["lint"]
        ],
        "layers": [_layer_row(index, layer) for index, layer in enumerate(layers)],
        "tool": visible(f"{document['tool']['name']} {document['tool']['version']}, {document['schema']}"),
    }
    stream.write(_page().render(context).lstrip() + "\n")


def error_curve(layers: list[dict[str, Any]], layer_rtol: float, first_divergent: str | None) -> dict[str, Any]:
    """Geometry of the error growth curve (module docstring, 2.): x is the layer's
    position in execution order, y its ``max_rel_err`` on the diff strip's log axis
    (1e-10 to 10; zero at the bottom, non-finite at the top). Lines join consecutive
    compared layers only; a layer not compared breaks the line."""
    box = CURVE
    count = len(layers)
    step = (box["right"] - box["left"]) / max(count - 1, 1)
    points, segments, current = [], [], []
    marker = None
    for index, layer in enumerate(layers):
        x = round(box["left"] + index * step if count > 1 else (box["left"] + box["right"]) / 2, 1)
        name = visible(layer["target"])
        if layer["target"] == first_divergent:
            anchor = "start" if x < (box["left"] + box["right"]) / 2 else "end"
            marker = {"x": x, "text": short_name(name), "anchor": anchor}
        compared = layer["status"] in ("same", "differs")
        if not compared:
            if len(current) > 1:
                segments.append(" ".join(current))
            current = []
            continue
        error = layer.get("max_rel_err")
        value = math.inf if error is None else error
        y = log_position(value, box["bottom"], box["top"])
        current.append(f"{x},{y}")
        what = "not finite" if error is None else fmt_float(error)
        points.append({"x": x, "y": y, "status": layer["status"], "title": f"{name} ({layer['op']}): {what}"})
    if len(current) > 1:
        segments.append(" ".join(current))
    return {
        **box,
        "plot_height": box["bottom"] - box["top"],
        "ticks": log_ticks(box["bottom"], box["top"]),
        "tolerance": {"y": log_position(layer_rtol, box["bottom"], box["top"]), "label": f"layer rtol {layer_rtol:g}"},
        "points": points,
        "segments": segments,
        "marker": marker,
        "last": f"last layer ({count})",
        "label": "largest relative error of each layer's output (per channel), in execution order, log scale",
    }


def _output_row(output: dict[str, Any]) -> dict[str, Any]:
    agreement = output.get("top1_agreement")
    return {
        "name": visible(output["name"]),
        "shape": visible("x".join(str(d) for d in output["shape"])),
        "status": output["status"],
        "max_abs_err": fmt_float(output["max_abs_err"]),
        "max_rel_err": fmt_float(output["max_rel_err"]),
        "cosine": "" if output["cosine"] is None else f"{output['cosine']:.6f}",
        "top1": "" if agreement is None else f"{agreement:.1%}",
        "note": visible(
            "; ".join(
                part
                for part in (
                    "same rows, reordered" if output.get("sorted_rows") else "",
                    f"{output['unpaired_rows']} rows without an equal partner" if output.get("unpaired_rows") else "",
                    output.get("reason") or "",
                )
                if part
            )
        ),
    }


def _input_row(entry: dict[str, Any], cwd: str | None) -> dict[str, Any]:
    origin = entry["origin"] + (f" {shown_path(entry['path'], cwd)}" if entry.get("path") else "")
    return {
        "name": visible(entry["name"]),
        "shape": visible("x".join(str(d) for d in entry["shape"])),
        "dtype": visible(entry["dtype"]),
        "origin": visible(origin),
        "range": f"[{fmt_float(entry['min'])}, {fmt_float(entry['max'])}]",
    }


def _layer_row(index: int, layer: dict[str, Any]) -> dict[str, Any]:
    why = layer.get("reason") or ""
    if layer.get("suspects"):
        why = "; ".join(filter(None, [why, "not compared on the way: " + ", ".join(layer["suspects"])]))
    if layer.get("reordered_by"):
        why = "; ".join(filter(None, [why, "compared as rows (after " + ", ".join(layer["reordered_by"]) + ")"]))
    channel = layer.get("worst_channel")
    return {
        "index": index,
        "status": layer["status"],
        "target": visible(layer["target"]),
        "op": visible(layer["op"]),
        "module": visible(layer.get("module") or ", ".join(layer.get("sources") or [])),
        "max_rel_err": fmt_float(layer["max_rel_err"]) if layer["status"] != "not_comparable" else "",
        "input_error": fmt_float(layer.get("input_error")) if layer.get("input_error") is not None else "",
        "growth": fmt_float(layer.get("growth")) if layer.get("growth") is not None else "",
        "channel": "" if channel is None else str(channel),
        "why": visible(why),
    }


def _page():
    """The compiled template (compiled once per process)."""
    global _template
    if _template is None:
        from jinja2 import Environment, StrictUndefined

        environment = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        _template = environment.from_string(TEMPLATE)
    return _template


EXTRA_STYLE = """
svg .c-line { fill: none; stroke: #8c959f; stroke-width: 1.2; }
svg .c-same { fill: #57606a; }
svg .c-differs { fill: var(--red); }
svg .first { stroke: var(--red); stroke-width: 1.5; }
svg .first-label { fill: var(--red); font-weight: 600; }
tr.s-differs td.status, tr.s-incomplete td.status { color: var(--red); font-weight: bold; }
tr.s-same td.status { color: var(--green); }
tr.s-not_comparable td { color: #656d76; }
"""

TEMPLATE = """
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>{{ style }}</style>
</head>
<body>
<header class="verdict {{ verdict_class }}">
<h1>{{ verdict }}</h1>
{% if reason %}<p>{{ reason }}</p>{% endif %}
<p>PyTorch <code>{{ source }}</code> vs ONNX <code>{{ target }}</code></p>
</header>
<main>
<p class="facts">Tolerances: {{ tolerance }}</p>
{% if curve %}
<section class="strip" id="curve">
<h2>Error growth, layer by layer</h2>
{% if first_divergent %}<p>First divergent layer: <code>{{ first_divergent }}</code></p>
{% elif divergence_reason %}<p class="reason">{{ divergence_reason }}</p>{% endif %}
<svg viewBox="0 0 {{ curve.width }} {{ curve.height }}" role="img" aria-label="{{ curve.label }}">
{% for tick in curve.ticks %}
<line class="axis" x1="{{ curve.left }}" x2="{{ curve.right }}" y1="{{ tick.y }}" y2="{{ tick.y }}"/>
<text x="{{ curve.left - 4 }}" y="{{ tick.y + 4 }}" text-anchor="end">{{ tick.label }}</text>
{% endfor %}
<line class="tol" x1="{{ curve.left }}" x2="{{ curve.right }}"
  y1="{{ curve.tolerance.y }}" y2="{{ curve.tolerance.y }}"/>
<text class="tol-label" x="{{ curve.right }}" y="{{ curve.tolerance.y - 3 }}"
  text-anchor="end">{{ curve.tolerance.label }}</text>
{% if curve.marker %}
<line class="first" x1="{{ curve.marker.x }}" x2="{{ curve.marker.x }}" y1="{{ curve.top }}" y2="{{ curve.bottom }}"/>
<text class="first-label" x="{{ curve.marker.x }}" y="{{ curve.top - 8 }}"
  text-anchor="{{ curve.marker.anchor }}">first divergent: {{ curve.marker.text }}</text>
{% endif %}
{% for segment in curve.segments %}
<polyline class="c-line" points="{{ segment }}"/>
{% endfor %}
{% for point in curve.points %}
<circle class="c-{{ point.status }}" cx="{{ point.x }}" cy="{{ point.y }}"
  r="{{ 3.5 if point.status == 'differs' else 2 }}"><title>{{ point.title }}</title></circle>
{% endfor %}
<text x="{{ curve.left }}" y="{{ curve.height - 4 }}">first layer</text>
<text x="{{ curve.right }}" y="{{ curve.height - 4 }}" text-anchor="end">{{ curve.last }}</text>
</svg>
<p class="note">{{ curve.label }}</p>
</section>
{% endif %}
<h2>Outputs</h2>
<div class="scroll"><table id="outputs">
<thead><tr><th>Output</th><th>Shape</th><th>Status</th><th>max abs err</th><th>max rel err</th>
<th>cosine</th><th>top-1</th><th>Note</th></tr></thead>
<tbody>
{% for row in outputs %}
<tr class="s-{{ row.status }}"><td><code>{{ row.name }}</code></td><td>{{ row.shape }}</td>
<td class="status">{{ row.status }}</td><td class="num">{{ row.max_abs_err }}</td>
<td class="num">{{ row.max_rel_err }}</td><td class="num">{{ row.cosine }}</td>
<td class="num">{{ row.top1 }}</td><td>{{ row.note }}</td></tr>
{% endfor %}
</tbody></table></div>
<h2>Inputs</h2>
<ul>
{% for row in inputs %}
<li><code>{{ row.name }}</code> {{ row.shape }} {{ row.dtype }}, {{ row.origin }}, values in {{ row.range }}</li>
{% endfor %}
</ul>
{% if lints %}
<ul class="lints">
{% for lint in lints %}
<li class="severity-{{ lint.severity }}">{{ lint.severity }} <code>{{ lint.code }}</code>: {{ lint.message }}</li>
{% endfor %}
</ul>
{% endif %}
{% if layers %}
<h2>Layers</h2>
<div class="scroll"><table id="layers">
<thead><tr><th>#</th><th>Status</th><th>ONNX node</th><th>Op</th><th>PyTorch module</th><th>max rel err</th>
<th>input error</th><th>growth</th><th>worst channel</th><th>Why</th></tr></thead>
<tbody>
{% for row in layers %}
<tr class="s-{{ row.status }}"><td class="num">{{ row.index }}</td><td class="status">{{ row.status }}</td>
<td><code>{{ row.target }}</code></td><td>{{ row.op }}</td><td><code>{{ row.module }}</code></td>
<td class="num">{{ row.max_rel_err }}</td><td class="num">{{ row.input_error }}</td>
<td class="num">{{ row.growth }}</td><td class="num">{{ row.channel }}</td><td>{{ row.why }}</td></tr>
{% endfor %}
</tbody></table></div>
{% endif %}
<footer>{{ tool }}</footer>
</main>
</body>
</html>
"""


@hookimpl
def graphinspect_reporters():
    yield Reporter(
        "html",
        "One offline HTML page: verdict, the per-layer error growth curve, outputs, inputs and layers.",
        SCHEMAS,
        render,
        suffixes=(".html", ".htm"),
    )
