"""Writing results: rich consoles, reporter selection, rendering to stdout or a file.

Commands render through :func:`emit`, so every command treats ``--format`` and ``-o``
the same way: the reporter is chosen by name (or by the output file's suffix), the
document is rendered in memory, and only then written through
:class:`~inspector.output_file.OutputFile` (atomically for regular files, in place for
devices, FIFOs and sockets), so a failed command leaves nothing half-written. When the
report goes to a file, the command's verdict line still goes to the terminal, on stderr.

Consoles come from :func:`make_console`: colour per ``--color`` (:func:`set_color_mode`)
and ``NO_COLOR``/``FORCE_COLOR`` (:func:`wants_color`), rich markup never read. Text from
a model goes through :func:`visible` before it reaches a terminal.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from inspector.errors import UsageError
from inspector.output_file import OutputFile

if TYPE_CHECKING:
    from rich.console import Console

    from inspector.manager import Plugins

DEFAULT_FILE_WIDTH = 160

COLOR_MODES = ("auto", "always", "never")
_color_mode = "auto"


def set_color_mode(mode: str) -> None:
    """The command line's ``--color`` (``--no-color`` is ``never``), for every console made after."""
    global _color_mode
    if mode not in COLOR_MODES:
        raise ValueError(f"colour mode {mode!r} is not one of {COLOR_MODES}")
    _color_mode = mode


def wants_color(stream: TextIO | None) -> bool:
    """Whether text for ``stream`` is coloured: ``--color always``/``never`` decide; under
    ``auto`` a non-empty ``NO_COLOR`` turns colour off, a ``FORCE_COLOR`` other than
    ""/"0"/"false" turns it on (in pipes too), and otherwise only a terminal gets colour.
    Files written with ``-o`` are never coloured (:func:`emit`)."""
    if _color_mode != "auto":
        return _color_mode == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR", "").strip().lower() not in ("", "0", "false"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


def make_console(stream: TextIO | None = None, *, color: bool | None = None, width: int | None = None) -> "Console":
    """A rich Console on ``stream`` (stdout by default).

    Colour: ``color`` when given, else :func:`wants_color`. The width is ``width``, else
    ``COLUMNS``, else the terminal's, else :data:`DEFAULT_FILE_WIDTH` for files and pipes
    (tables are wide). Rich markup and emoji codes are off: text that comes from a model
    ("[link=...]", "[/]") is printed as it is, never interpreted; control characters in
    it are the caller's to make :func:`visible`.
    """
    from rich.console import Console

    stream = stream if stream is not None else sys.stdout
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    if color is None:
        color = wants_color(stream)
    if width is None:
        env_width = os.environ.get("COLUMNS", "")
        width = (
            int(env_width) if env_width.isdigit() and int(env_width) > 0 else (None if is_tty else DEFAULT_FILE_WIDTH)
        )
    console = Console(
        file=stream,
        width=width,
        no_color=not color,
        color_system="auto" if color else None,
        force_terminal=color if color else False,
        markup=False,
        highlight=False,
        emoji=False,
        soft_wrap=False,
        legacy_windows=False,
    )
    if color and console.color_system is None:
        console = Console(  # TERM=dumb or unset, and colour asked for: the 16 standard colours
            file=stream,
            width=width,
            color_system="standard",
            force_terminal=True,
            markup=False,
            highlight=False,
            emoji=False,
            soft_wrap=False,
            legacy_windows=False,
        )
    return console


def visible(text: str) -> str:
    """``text`` with every character that is not printable shown as its escape: an ESC
    as ``\\x1b``, a newline as ``\\n``, a right-to-left override as ``\\u202e``. Names and
    messages from a model go through it before they reach a terminal, so a model can
    neither move the cursor, recolour nor erase a line, nor start a new one. Cheap for
    the usual printable text (one C-level check)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def say(line: str, style: str = "") -> None:
    """One line on stderr (styled when stderr gets colour): what a command tells the
    person at the terminal beside its report, such as the verdict when ``-o`` took the
    report to a file. The line is made :func:`visible`."""
    from rich.text import Text

    console = make_console(sys.stderr, width=10_000)
    console.print(Text(visible(line), style=style), soft_wrap=True)


def choose_format(
    requested: str | None, output: "str | OutputFile | None", plugins: "Plugins", schema: str, default: str
) -> str:
    """The reporter name for ``--format``/``-o``: explicit, else by suffix, else ``default``."""
    suffix = output.suffix if isinstance(output, OutputFile) else (Path(output).suffix.lower() if output else "")
    reporters = [r for r in plugins.reporters() if r.renders(schema)]
    names = sorted({r.name for r in reporters})
    if requested:
        if requested not in names:
            raise UsageError(f"unknown --format {requested!r} (choose from: {', '.join(names)})")
        return requested
    if suffix:
        for reporter in reporters:
            if suffix and suffix in reporter.suffixes:
                return reporter.name
    return default


def emit(
    document: dict[str, Any],
    fmt: str,
    output: OutputFile | None,
    plugins: "Plugins",
    options: dict[str, Any],
    verdict: tuple[str, str] | None = None,
) -> None:
    """Render ``document`` with the reporter ``fmt`` to stdout (``output`` None or ``-``)
    or to ``output`` (without colour, whatever ``--color`` says), which is replaced only
    once the reporter has finished (:meth:`OutputFile.open_text`).

    ``verdict`` is a command's verdict line and its rich style: when the report goes to
    a file, that line still goes to the terminal, on stderr (so that stdout stays empty
    for scripts, and clean when ``-o`` is a file and a pipe reads stdout)."""
    reporter = plugins.reporter(fmt, document["schema"])
    if output is None or output.is_stdout:
        reporter.render(document, sys.stdout, options)
        sys.stdout.flush()
        return
    with output.open_text() as stream:
        reporter.render(document, stream, {**options, "to_file": True, "color": False})
    if verdict is not None:
        say(f"{verdict[0]}; report written to {output.given}", verdict[1])


def prepare_output(given: str | None, inputs=(), option: str = "-o") -> OutputFile | None:
    """The checked :class:`OutputFile` for an optional ``-o`` value (None when not given)."""
    return None if given is None else OutputFile.prepare(given, option, inputs)


def json_safe(value: Any) -> Any:
    """``value`` with NaN/±Inf floats replaced by None, so the JSON is standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


_ONE_LINE = json.JSONEncoder(allow_nan=False, separators=(", ", ": "))


def dump_json(document: dict[str, Any], stream: TextIO) -> None:
    """``document`` as standard JSON: objects indented by two spaces, and each object in
    a list (a layer, a constant, a finding) on a line of its own.

    One line per entry keeps a 10,000-layer report greppable, and lets the C encoder
    write it: the indented encoder is pure Python (1.2 s for 10k Conv+BN blocks, against
    a tenth of that). The text is written every :data:`WRITE_EVERY` entries, never held
    whole (10 MiB at 10k blocks, and the pieces it is joined from as much again).
    """
    parts: list[str] = []
    _indented(document, "", parts, stream)
    parts.append("\n")
    stream.write("".join(parts))


WRITE_EVERY = 1024
"""List entries (each a line) :func:`dump_json` gathers before it writes them."""


def _indented(value: Any, indent: str, parts: list[str], stream: TextIO) -> None:
    inner = indent + "  "
    if isinstance(value, dict) and value:
        parts.append("{")
        for position, (key, item) in enumerate(value.items()):
            parts.append(f"{',' if position else ''}\n{inner}{_ONE_LINE.encode(str(key))}: ")
            _indented(item, inner, parts, stream)
        parts.append(f"\n{indent}}}")
    elif isinstance(value, list) and any(isinstance(item, dict) for item in value):
        parts.append("[")
        for position, item in enumerate(value):
            parts.append(f"{',' if position else ''}\n{inner}{_encoded(item)}")
            if len(parts) >= WRITE_EVERY:
                stream.write("".join(parts))
                parts.clear()
        parts.append(f"\n{indent}]")
    else:
        parts.append(_encoded(value))


def _encoded(value: Any) -> str:
    try:
        return _ONE_LINE.encode(value)
    except ValueError:  # a NaN or infinity somewhere in it: written as null (json_safe)
        return _ONE_LINE.encode(json_safe(value))


def fmt_float(value: float | None, digits: int = 4) -> str:
    """A compact number for tables: 4 significant digits, '-' for None, 'nan'/'inf' spelled."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e5:
        return f"{value:.{digits}g}"
    return f"{value:.{max(digits - 2, 1)}e}"


def fmt_range(lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None:
        return "-"
    return f"[{fmt_float(lo)}, {fmt_float(hi)}]"


def fmt_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def fmt_count(count: int) -> str:
    """12_345_678 -> '12.3M'; small counts as they are."""
    if count >= 1_000_000_000:
        return f"{count / 1e9:.2f}G"
    if count >= 1_000_000:
        return f"{count / 1e6:.2f}M"
    if count >= 10_000:
        return f"{count / 1e3:.1f}K"
    return str(count)


def document_header(schema: str) -> dict[str, Any]:
    """The first two keys of every document: its schema and the tool that wrote it."""
    from inspector import PROJECT_NAME, __version__

    return {"schema": schema, "tool": {"name": PROJECT_NAME, "version": __version__}}
