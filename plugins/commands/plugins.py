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
from inspector.output import choose_format, document_header, emit, make_console, prepare_output
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
    from rich.table import Table
    from rich.text import Text

    console = make_console(stream, color=options.get("color"), width=options.get("width"))
    table = Table(header_style="bold")
    for header in ("Plugin", "Source", "Distribution", "Version", "Hooks", "Status"):
        table.add_column(header, overflow="fold")
    for plugin in document["plugins"]:
        table.add_row(
            Text(plugin["name"]),
            plugin["source"],
            Text(plugin["distribution"] or "-"),
            Text(plugin["version"] or "-"),
            ", ".join(hook.removeprefix("graphinspect_") for hook in plugin["hooks"]) or "-",
            Text(plugin["status"], style="green" if plugin["status"] == "loaded" else "red"),
        )
    console.print(table)
    if not document["autoload"]:
        console.print(f"Third-party plugins were not loaded ({DISABLE_AUTOLOAD_ENV} is set).")


@hookimpl
def graphinspect_subcommands():
    yield Subcommand(
        "plugins", "List the loaded plugins, their versions and the hooks they implement.", configure_parser, run
    )


@hookimpl
def graphinspect_reporters():
    yield Reporter("table", "A rich table.", (SCHEMA,), render_table)
