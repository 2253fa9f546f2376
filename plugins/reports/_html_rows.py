"""The HTML page's layer table, one ``<tbody>`` per layer, written by Python.

The table is the page's most repeated part (every layer, every parameter): through the
template it cost 0.3 ms a layer (3 s for 10,000 Conv blocks), nearly all of it in
creating and escaping a Markup object per value. This writes exactly what the template
wrote (tests/golden/diff_report.html is unchanged), escaping each value once, as Jinja's
autoescape does (``markupsafe``'s escaping, values with ``__html__`` kept as they are).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import markupsafe

# The C escaper behind markupsafe.escape, without the Markup object around its result;
# markupsafe.escape where a version does not have it.
escape_text = getattr(markupsafe, "_escape_inner", None) or (lambda text: str(markupsafe.escape(text)))


def _html(value: Any) -> str:
    """``{{ value }}`` with autoescape: markup as it is, anything else escaped."""
    if hasattr(value, "__html__"):
        return str(value.__html__())
    return escape_text(str(value))


def layer_rows(layer: SimpleNamespace) -> markupsafe.Markup:
    """The ``<tbody>`` of one layer (a row namespace made by ``html._row``)."""
    span = _html(layer.span)
    parts = [
        f'<tbody class="status-{_html(layer.status)}" id="{_html(layer.anchor)}" data-index="{_html(layer.index)}"\n'
        f' data-name="{_html(layer.name)}" data-op="{_html(layer.op)}" data-status="{_html(layer.status_rank)}"\n'
        f' data-rel="{_html(layer.rel)}" data-abs="{_html(layer.abs)}" data-search="{_html(layer.search)}">\n'
    ]
    for position, row in enumerate(layer.params):
        first = position == 0
        parts.append('<tr class="param-mismatch">\n' if row.mismatch else "<tr>\n")
        if first:
            parts.append(f'<td class="num"{span}>{_html(layer.index)}</td>')
        parts.append(f'<td class="status">{_html(layer.label) if first else ""}')
        if row.where:
            parts.append(f' <span class="where">{_html(row.where)}</span>')
        parts.append("</td>\n")
        if first:
            parts.append(f'<td class="name"{span}><code>{_html(layer.name_html)}</code></td>\n')
            parts.append(f"<td{span}>{_html(layer.op)}</td>\n")
        name = f"<code>{_html(row.name)}</code>" if row.name else "-"
        parts.append(
            f'<td class="param">{name}</td>\n'
            f'<td class="num">{_html(row.rel)}</td><td class="num">{_html(row.abs)}</td>\n'
            f'<td class="ranges">{_html(row.ranges)}\n'
            f'<span class="r-text"><span class="t-source">{_html(row.source)}</span><br>'
            f'<span class="t-target">{_html(row.target)}</span>'
            f'<br><span class="t-reproduced">{_html(row.reproduced)}</span></span></td>\n'
        )
        if first:
            sources = "<br>".join(f"<code>{_html(source)}</code>" for source in layer.sources) or "-"
            parts.append(f'<td class="sources"{span}>{sources}</td>\n')
            transform = f"<code>{_html(layer.transform)}</code>" if layer.transform else "-"
            parts.append(f"<td{span}>{transform}")
            if layer.note_number:
                parts.append(f' <span class="note" title="{_html(layer.note)}">[{_html(layer.note_number)}]</span>')
            elif layer.note:
                parts.append(f'<br><span class="note">{_html(layer.note)}</span>')
            parts.extend(f'<br><span class="reason">{_html(reason)}</span>' for reason in layer.reasons)
            parts.append("</td>\n")
        parts.append("</tr>\n")
    parts.append("</tbody>\n")
    return markupsafe.Markup("".join(parts))
