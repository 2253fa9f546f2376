"""The ``table`` reporter of the batch summary (``graphinspect/batch@1``, :mod:`._batch`).

One row per pair in manifest order, then the total line::

      #  Verdict     ok  mism  unm  cover   time  Source             Target
    ───────────────────────────────────────────────────────────────────────────
      1  FAITHFUL     7     0    0   100%   0.9s  …/rtdetr_stem.pt   …/rtdetr_stem.onnx
         report  reports/001-rtdetr_stem.onnx.json
      2  TROUBLE      -     -    -      -   0.0s  models/a.pt        models/a.onnx
         error   models/a.onnx: no such file

    2 pairs, 1 faithful, 0 differ, 0 incomplete, 1 trouble; 2 jobs, 1.2 s

``ok``, ``mism`` and ``unm`` count the pair's ONNX layers re-computed within tolerance,
mismatched and unmatched; ``cover`` is the share of the parameter elements the export
stores that were re-computed (rounded down: 100% means all). The paths share what is
left of the width (``COLUMNS``, the terminal's, 160 in files and pipes) and lose their
start, not their file name, when it is short (80 columns fit). Below each row: where its
report went, or the pair's one-line problem, wrapped between words. ``--quiet``: the
total line only. Rows are plain padded text (:mod:`plugins.reports._columns`), and
every path and message goes through :func:`~inspector.output.visible` first.
"""

from __future__ import annotations

import math
import os
from typing import Any

from inspector.output import make_console, visible
from plugins.reports._columns import GAP, Column, Painter, header_lines, measure, row_line, wrap
from plugins.reports._wording import VERDICT_STYLES

SCHEMA = "graphinspect/batch@1"
STYLES = {**VERDICT_STYLES, "trouble": "bold magenta"}
VERDICTS = ("faithful", "differs", "incomplete", "trouble")
COLUMNS = (
    Column("#", right=True),
    Column("Verdict"),
    Column("ok", right=True),
    Column("mism", right=True),
    Column("unm", right=True),
    Column("cover", right=True),
    Column("time", right=True),
    Column("Source"),
    Column("Target"),
)
PATHS = (7, 8)
"""The columns that share the width left over, shortened from the left."""
MIN_PATH = 12
INDENT = 5
ELLIPSIS = "\u2026"


def render(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """Write the batch summary as text to ``stream``. Options: ``color``, ``width``,
    ``quiet`` (the total line only)."""
    console = make_console(stream, color=options.get("color"), width=options.get("width"))
    paint = Painter(console)
    width = console.width
    lines: list[str] = []
    if not options.get("quiet"):
        rows = [_cells(entry) for entry in document["pairs"]]
        widths = measure(COLUMNS, rows)
        _share_paths(widths, width)
        rows = [[*row[: PATHS[0]], *(_tail(row[i], widths[i]) for i in PATHS)] for row in rows]
        kept = list(range(len(COLUMNS)))
        lines += header_lines(COLUMNS, widths, kept, paint)
        for entry, row in zip(document["pairs"], rows):
            lines.append(row_line(COLUMNS, widths, kept, row, paint))
            lines += _below(entry, document.get("out_dir"), width, paint)
        lines.append("")
    lines += wrap(_total(document, paint), width, 0, paint)
    stream.write("\n".join(lines) + "\n")


def _cells(entry: dict[str, Any]) -> list:
    layers = entry.get("layers") or {}
    verdict = entry["verdict"]
    return [
        str(entry["index"]),
        (verdict.upper(), STYLES.get(verdict, "bold")),
        *(str(layers[key]) if key in layers else "-" for key in ("ok", "mismatch", "unmatched")),
        _percent(entry.get("coverage")),
        f"{entry['seconds']:.1f}s",
        visible(entry["source"]),
        visible(entry["target"]),
    ]


def _percent(share: float | None) -> str:
    """99.97% -> '99.9%' (rounded down, so that 100% means every element); None -> '-'."""
    if share is None:
        return "-"
    tenths = math.floor(share * 1000 + 1e-9) / 10
    return f"{tenths:.0f}%" if tenths == int(tenths) else f"{tenths:.1f}%"


def _share_paths(widths: list[int], width: int) -> None:
    """Shrink the two path columns (in place) so that a row fits ``width``: the longer
    one gives first; neither below :data:`MIN_PATH` (nor below its own need)."""
    fixed = sum(widths[i] for i in range(len(widths)) if i not in PATHS) + GAP * (len(widths) - 1)
    room = width - fixed
    first, second = PATHS
    while widths[first] + widths[second] > room:
        longer = first if widths[first] >= widths[second] else second
        if widths[longer] <= MIN_PATH:
            break
        widths[longer] -= 1


def _tail(text: str, width: int) -> str:
    """``text`` shortened from the left to ``width`` cells, ``…`` marking the cut."""
    if len(text) <= width:
        return text
    return ELLIPSIS + text[len(text) - width + 1 :]


def _below(entry: dict[str, Any], out_dir: str | None, width: int, paint: Painter) -> list[str]:
    """The line(s) under a row: the report's path, or the pair's problem."""
    if entry.get("error"):
        label = ("error   ", "bold")
        return wrap([" " * INDENT, label, visible(entry["error"])], width, INDENT + len(label[0]), paint)
    if entry.get("report"):
        path = os.path.join(out_dir, entry["report"]) if out_dir else entry["report"]
        room = max(MIN_PATH, width - INDENT - len("report  "))
        return [" " * INDENT + paint("report  ", "dim") + _tail(visible(path), room)]
    return []


def _total(document: dict[str, Any], paint: Painter) -> list:
    """The one-line total: counts by verdict, jobs, time, where the reports are."""
    totals = document["totals"]
    parts: list = [f"{totals['pairs']} pair{'s' if totals['pairs'] != 1 else ''}: "]
    for i, word in enumerate(VERDICTS):
        text = f"{totals[word]} {word}"
        parts += [", " if i else "", (text, STYLES[word]) if totals[word] else text]
    jobs = document["jobs"]
    parts.append(f"; {jobs} job{'s' if jobs != 1 else ''}, {document['seconds']:.1f} s")
    if document.get("out_dir"):
        parts.append(f"; reports in {visible(document['out_dir'])}")
    return parts


def total_line(document: dict[str, Any]) -> str:
    """The total line as plain text (what goes to stderr when ``-o`` takes the table)."""
    return "".join(
        part[0] if isinstance(part, tuple) else part for part in _total(document, lambda text, style="": text)
    )


def verdict_of(document: dict[str, Any]) -> str:
    """The worst verdict of the batch: trouble, differs, incomplete, else faithful."""
    totals = document["totals"]
    return next((word for word in ("trouble", "differs", "incomplete") if totals[word]), "faithful")
