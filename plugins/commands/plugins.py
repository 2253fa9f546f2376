"""``graphinspect plugins``: every plugin loaded, where it came from, and its hooks.

The ``graphinspect/plugins@1`` document::

    {"schema": "graphinspect/plugins@1", "tool": {...},
     "autoload": true,
     "plugins": [{"name", "source": "builtin" | "env" | "entry point", "distribution",
                  "version", "hooks": [...], "status": "loaded" | "failed: <why>"}]}
"""

from __future__ import annotations

import os
from typing import Any

from inspector.hookspecs import hookimpl
from inspector.manager import DISABLE_AUTOLOAD_ENV
from inspector.output import choose_format, document_header, emit, make_console, prepare_output, visible
from inspector.records import Reporter, Subcommand

SCHEMA = "graphinspect/plugins@1"


def configure_parser(parser) -> None:
    parser.add_argument("--format", help="table (default) or json")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the list to FILE instead of stdout")


def run(args, plugins) -> int:
    output = prepare_output(args.output)
    fmt = choose_format(args.format, output, plugins, SCHEMA, default="table")
    document = document_header(SCHEMA)
    document["autoload"] = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    document["plugins"] = plugins.describe()
    emit(document, fmt, output, plugins, {"color": False if args.no_color else None})
    return 0


def render_table(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """One row per plugin when the table fits the width; else each plugin on a line of
    its own with its hooks wrapped under it. Names come from installed packages' entry
    points: shown :func:`~inspector.output.visible`, never read as markup."""
    from plugins.reports._columns import Column, Painter, header_lines, measure, row_line, wrap

    console = make_console(stream, color=options.get("color"), width=options.get("width"))
    paint = Painter(console)
    columns = [Column(header) for header in ("Plugin", "Source", "Distribution", "Version", "Status", "Hooks")]
    rows = []
    for plugin in document["plugins"]:
        status = visible(plugin["status"])
        rows.append(
            [
                (visible(plugin["name"]), "bold"),
                visible(plugin["source"]),
                visible(plugin["distribution"] or "-"),
                visible(plugin["version"] or "-"),
                (status, "green" if plugin["status"] == "loaded" else "red"),
                ", ".join(visible(hook.removeprefix("graphinspect_")) for hook in plugin["hooks"]) or "-",
            ]
        )
    widths = measure(columns, rows)
    out: list[str] = []
    if sum(widths) + 2 * (len(widths) - 1) <= console.width:
        kept = list(range(len(columns)))
        out += header_lines(columns, widths, kept, paint)
        out += [row_line(columns, widths, kept, row, paint) for row in rows]
    else:
        for name, source, distribution, version, status, hooks in rows:
            out += wrap([name, f"  {source}  {distribution} {version}  ", status], console.width, 4, paint)
            out += wrap([("    hooks: ", "dim"), hooks], console.width, 4, paint)
    if not document["autoload"]:
        out.append(f"Third-party plugins were not loaded ({DISABLE_AUTOLOAD_ENV} is set).")
    stream.write("\n".join(out) + "\n")


@hookimpl
def graphinspect_subcommands():
    yield Subcommand(
        "plugins", "List the loaded plugins, their versions and the hooks they implement.", configure_parser, run
    )


@hookimpl
def graphinspect_reporters():
    yield Reporter("table", "A rich table.", (SCHEMA,), render_table)
