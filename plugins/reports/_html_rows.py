"""The HTML page's layer table, one ``<tbody>`` per layer, written by Python.

The table is the page's most repeated part (every layer, every parameter): through the
template it cost 0.3 ms a layer (3 s for 10,000 Conv blocks), nearly all of it in
creating and escaping a Markup object per value. This writes exactly what the template
wrote (tests/golden/diff_report.html is unchanged) as one string a layer: text from the
model is escaped once, as Jinja's autoescape does (``markupsafe``'s escaping); numbers
and the markup made here are written as they are.
"""

from __future__ import annotations

import math
import re
from typing import Any

import markupsafe

from inspector.output import fmt_float, visible
from plugins.reports._pictures import STATUS_RANK, layer_error, range_bars
from plugins.reports._wording import channels_text, layer_reasons, range_text, status_label

# The C escaper behind markupsafe.escape, without the Markup object around its result;
# markupsafe.escape where a version does not have it.
escape_text = getattr(markupsafe, "_escape_inner", None) or (lambda text: str(markupsafe.escape(text)))

_BREAKS = re.compile(r"[^/.]*[/.]+|[^/.]+$")
_MINI = (120, 8, 5)
"""A table row's ranges picture: width, bar height, gap."""


def breakable(name: str) -> str:
    """A long dotted or slashed name, escaped, with a line break allowed (``<wbr>``)
    after each "/" and "." and nowhere inside a word."""
    return "<wbr>".join(escape_text(part) for part in _BREAKS.findall(name) or [name])


def miniranges(param: dict[str, Any]) -> str:
    """The ranges picture of a table row: the page's most repeated element (numbers
    only; the ranges are written beside it)."""
    picture = range_bars(param, *_MINI)
    if picture is None:
        return ""
    bars = "".join(
        f'<rect class="r-{bar["kind"]}" x="{bar["x"]}" y="{bar["y"]}" width="{bar["w"]}" height="{bar["h"]}"/>'
        for bar in picture["bars"]
    )
    width, height, zero = picture["width"], picture["height"], picture["zero"]
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-hidden="true">'
        f'<line class="zero" x1="{zero}" x2="{zero}" y1="0" y2="{height}"/>{bars}</svg>'
    )


def _sort_key(value: float | None, unmatched: bool) -> str:
    """A ``data-`` sort value: "Infinity" for an unmatched layer or an infinite error,
    -1 for none."""
    if unmatched or (value is not None and math.isinf(value)):
        return "Infinity"
    return "-1" if value is None else str(value)


def layer_tbody(
    index: int, layer: dict[str, Any], anchor: str, notes: dict[str, int], findings: list[dict[str, Any]]
) -> markupsafe.Markup:
    """The ``<tbody>`` of one layer of the document: a row per parameter (one for a
    layer without any), the layer's own cells spanning them."""
    status = layer["status"]
    unmatched = status == "unmatched"
    params = layer["params"] or [None]
    span = f' rowspan="{len(params)}"' if len(params) > 1 else ""
    name = escape_text(visible(layer["target"]))
    op = escape_text(visible(layer["op"]))
    search = escape_text(visible(" ".join([layer["target"], layer["op"], *layer["sources"]]).lower()))
    parts = [
        f'<tbody class="status-{escape_text(status if status in STATUS_RANK else "unmatched")}" '
        f'id="{escape_text(anchor)}" data-index="{index}"\n'
        f' data-name="{name}" data-op="{op}" data-status="{STATUS_RANK.get(status, 1)}"\n'
        f' data-rel="{_sort_key(layer_error(layer), unmatched)}" '
        f'data-abs="{_sort_key(layer_error(layer, "max_abs_err"), unmatched)}" data-search="{search}">\n'
    ]
    for position, param in enumerate(params):
        first = position == 0
        mismatch = param is not None and param.get("status") == "mismatch"
        parts.append('<tr class="param-mismatch">\n' if mismatch else "<tr>\n")
        if first:
            parts.append(f'<td class="num"{span}>{index}</td>')
        parts.append(f'<td class="status">{escape_text(visible(status_label(status))) if first else ""}')
        where = channels_text(param) if mismatch else ""
        if where:
            parts.append(f' <span class="where">{escape_text(where)}</span>')
        parts.append("</td>\n")
        if first:
            parts.append(f'<td class="name"{span}><code>{breakable(visible(layer["target"]))}</code></td>\n')
            parts.append(f"<td{span}>{op}</td>\n")
        if param is None:
            cells = ("-", "", "", "", "", "", "")
        else:
            param_name = escape_text(visible(param["name"]))
            cells = (
                f"<code>{param_name}</code>" if param_name else "-",
                fmt_float(param.get("max_rel_err")),
                fmt_float(param.get("max_abs_err")),
                miniranges(param),
                range_text(param.get("source_range")),
                range_text(param.get("target_range")),
                range_text(param.get("reproduced_range")),
            )
        param_cell, rel, abs_, picture, source, target, reproduced = cells
        parts.append(
            f'<td class="param">{param_cell}</td>\n'
            f'<td class="num">{rel}</td><td class="num">{abs_}</td>\n'
            f'<td class="ranges">{picture}\n'
            f'<span class="r-text"><span class="t-source">{source}</span><br>'
            f'<span class="t-target">{target}</span>'
            f'<br><span class="t-reproduced">{reproduced}</span></span></td>\n'
        )
        if first:
            parts.append(_layer_cells(layer, span, notes, findings))
        parts.append("</tr>\n")
    parts.append("</tbody>\n")
    return markupsafe.Markup("".join(parts))


def _layer_cells(layer: dict[str, Any], span: str, notes: dict[str, int], findings: list[dict[str, Any]]) -> str:
    """The layer's last cells, beside its first parameter: its PyTorch modules and its
    transform with the note and the reasons."""
    sources = "<br>".join(
        f"<code>{breakable(visible(source or '(root module)'))}</code>" for source in layer["sources"]
    )
    transform = escape_text(visible(layer["transform"] or ""))
    cells = [
        f'<td class="sources"{span}>{sources or "-"}</td>\n',
        f"<td{span}>{f'<code>{transform}</code>' if transform else '-'}",
    ]
    note = visible(layer.get("note") or "")
    number = notes.get(layer.get("note") or "")
    if number:
        cells.append(f' <span class="note" title="{escape_text(note)}">[{number}]</span>')
    elif note:
        cells.append(f'<br><span class="note">{escape_text(note)}</span>')
    cells.extend(
        f'<br><span class="reason">{escape_text(visible(reason))}</span>' for reason in layer_reasons(layer, findings)
    )
    cells.append("</td>\n")
    return "".join(cells)
