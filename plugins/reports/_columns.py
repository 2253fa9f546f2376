"""Plain-text columns that fit a width, for the terminal tables of every command.

rich's ``Table`` measures every cell of every row, about 1.7 ms a row: 17 s for a
10,000-layer diff. The tables here have cells of one line each whose widths are known
from their text, so the columns are sized once and each row is a padded string, with
colour from rich's own :class:`~rich.style.Style` (so ``--color``, ``NO_COLOR`` and the
terminal's colour system are honoured as everywhere else).

Nothing is ever cropped or folded mid-word. When the columns do not fit, the ones with
the highest ``drop`` rank go first, whole, and :func:`fit` says which ("max abs err,
Re-computed range"), for the caller to print. Text that is not a column (a layer's
heading line) is wrapped between words by :func:`wrap`.

A cell is its text, or (text, rich style). Every cell's text must already be
:func:`~inspector.output.visible` (no control characters): a cell is as wide as its text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.cells import cell_len as _rich_cell_len

if TYPE_CHECKING:
    from rich.console import Console

GAP = 2
"""Spaces between two columns."""

_SPACES = re.compile(r"( +)")


def cell_len(text: str) -> int:
    """The columns ``text`` takes on a terminal: its length when it is printable ASCII
    (every cell of numbers, nearly every name: one column a character), else rich's
    count (wide, zero-width and control characters)."""
    return len(text) if text.isascii() and text.isprintable() else _rich_cell_len(text)


@dataclass(frozen=True, slots=True)
class Column:
    """A column: its header, whether numbers align right, and its ``drop`` rank (0: never
    dropped; when the row is too wide, the highest rank goes first)."""

    header: str
    right: bool = False
    drop: int = 0


class Painter:
    """Turns (text, style) into text for ``console``'s stream: ANSI-coloured when the
    console has colour, else the text as it is."""

    def __init__(self, console: "Console") -> None:
        from rich.console import COLOR_SYSTEMS

        self.color_system = COLOR_SYSTEMS.get(console.color_system) if console.color_system else None
        self._styles: dict[str, object] = {}

    def __call__(self, text: str, style: str = "") -> str:
        if not style or self.color_system is None or not text:
            return text
        rendered = self._styles.get(style)
        if rendered is None:
            from rich.style import Style

            rendered = self._styles[style] = Style.parse(style)
        return rendered.render(text, color_system=self.color_system)


def text_of(cell) -> str:
    return cell[0] if isinstance(cell, tuple) else cell


def measure(columns: Sequence[Column], rows: Sequence[Sequence]) -> list[int]:
    """Each column's width: its widest cell or header."""
    widths = [cell_len(column.header) for column in columns]
    for row in rows:
        for i, cell in enumerate(row):
            width = cell_len(text_of(cell))
            if width > widths[i]:
                widths[i] = width
    return widths


def fit(columns: Sequence[Column], widths: Sequence[int], width: int, indent: int = 0) -> list[int]:
    """The indexes of the columns kept so that a row fits ``width``: droppable columns go
    whole, highest rank first, until it fits (or nothing droppable is left)."""
    kept = list(range(len(columns)))
    ranks = sorted({c.drop for c in columns if c.drop}, reverse=True)

    def total() -> int:
        return indent + sum(widths[i] for i in kept) + GAP * (len(kept) - 1)

    for rank in ranks:
        if total() <= width:
            break
        for i in [i for i in kept if columns[i].drop == rank][::-1]:
            kept.remove(i)
            if total() <= width:
                break
    return kept


def dropped_text(columns: Sequence[Column], kept: Sequence[int]) -> str:
    """ "max abs err, Re-computed range": the headers of the columns :func:`fit` dropped."""
    return ", ".join(column.header for i, column in enumerate(columns) if i not in kept)


def pad(text: str, width: int, right: bool = False) -> str:
    space = " " * max(0, width - cell_len(text))
    return space + text if right else text + space


def row_line(columns: Sequence[Column], widths: Sequence[int], kept: Sequence[int], row, paint: Painter) -> str:
    """One row as a line: the kept cells padded to their widths (the last one not padded
    on the right), painted."""
    parts = []
    last = kept[-1] if kept else -1
    for i in kept:
        cell = row[i]
        text, style = cell if isinstance(cell, tuple) else (cell, "")
        padded = pad(text, widths[i], columns[i].right) if (i != last or columns[i].right) else text
        if style:
            stripped = padded.strip(" ")
            start = padded.index(stripped) if stripped else 0
            padded = padded[:start] + paint(stripped, style) + padded[start + len(stripped) :]
        parts.append(padded)
    return (" " * GAP).join(parts).rstrip(" ")


def header_lines(columns: Sequence[Column], widths: Sequence[int], kept: Sequence[int], paint: Painter) -> list[str]:
    """The header row in bold and a rule under it as wide as the row."""
    header = row_line(columns, widths, kept, [(c.header, "bold") for c in columns], paint)
    width = sum(widths[i] for i in kept) + GAP * (len(kept) - 1)
    return [header, "\u2500" * width]


def wrap(parts: Sequence, width: int, indent: int, paint: Painter) -> list[str]:
    """Text made of (text, style) parts as lines of at most ``width`` cells, broken
    between words only (a word wider than the line gets a line of its own, whole), the
    lines after the first indented by ``indent``. Runs of spaces are kept inside a line
    (two spaces separate the fields of a heading) and dropped where it breaks."""
    tokens: list[tuple[str, str]] = []
    for part in parts:
        text, style = part if isinstance(part, tuple) else (part, "")
        tokens.extend((piece, style) for piece in _SPACES.split(text) if piece)
    lines: list[str] = []
    line, used, pending, has_word = "", 0, "", False
    for text, style in tokens:
        if text[0] == " ":
            pending += text
            continue
        size = cell_len(text)
        if has_word and used + len(pending) + size > width:
            lines.append(line)
            line, used, pending = " " * indent, indent, ""
        line += pending + paint(text, style)
        used += len(pending) + size
        pending, has_word = "", True
    if has_word:
        lines.append(line)
    return lines
