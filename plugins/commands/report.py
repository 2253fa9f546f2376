"""``graphinspect report RESULT.json``: render a saved document again, in any format.

Every command writes its document with ``--format json`` (``-o result.json``); ``report``
reads it back and renders it with any reporter that renders its schema, built-in or a
plugin's, exactly as the command would have::

    graphinspect diff model.pt model.onnx -o result.json        # once, in CI
    graphinspect report result.json                              # the table
    graphinspect report result.json --format html -o report.html
    graphinspect report result.json --format sarif -o graphinspect.sarif

``RESULT`` may be ``-`` (standard input). ``--format`` and ``-o`` work as in every command
(the format follows the suffix of ``-o``; the table by default).

A file that is not a document is refused before anything is written, in one line naming
the file, with exit status 2: not readable, not UTF-8 JSON, not an object, no
``"schema"``, a schema no reporter renders or a newer major version of one of
graphinspect's, a document that
lacks a field its shipped JSON Schema (:mod:`inspector.schemas`) requires at the top,
or one a reporter cannot render. Exit status 0 when the document is rendered, whatever
its verdict: the verdict's exit status belongs to the command that computed it.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any

from inspector import __version__
from inspector.errors import InputError
from inspector.hookspecs import hookimpl
from inspector.output import choose_format, prepare_output, say
from inspector.records import Subcommand
from inspector.schemas import known_schemas, load_schema

STDIN = "-"


def configure_parser(parser) -> None:
    parser.add_argument("result", metavar="RESULT.json", help="a document saved with --format json ('-': stdin)")
    parser.add_argument("--format", help="any reporter that renders the document's schema (default: table)")
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write the report to FILE (format from its suffix unless --format)"
    )


def run(args, plugins) -> int:
    output = prepare_output(args.output, inputs=[] if args.result == STDIN else [args.result])
    document = read_document(args.result)
    schema = document["schema"]
    check_version(schema, args.result)
    formats = sorted({reporter.name for reporter in plugins.reporters() if reporter.renders(schema)})
    if not formats:
        known = sorted({pattern for reporter in plugins.reporters() for pattern in reporter.schemas})
        raise InputError(
            _shown(args.result),
            f"is a document of schema {schema}, which no reporter renders (reporters render: {', '.join(known)})",
        )
    fmt = choose_format(args.format, output, plugins, schema, default="table" if "table" in formats else "json")
    check_required(document, args.result)
    to_stdout = output is None or output.is_stdout
    # Rendered whole into memory before a byte is written (also to stdout, unlike
    # inspector.output.emit): a document that breaks a reporter is the file's fault,
    # said in one line, with nothing written.
    rendering = _Rendering(sys.stdout if to_stdout else None)
    options = {"color": False if args.no_color else None, "to_file": not to_stdout}
    try:
        plugins.reporter(fmt, schema).render(document, rendering, options)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InputError(_shown(args.result), f"is not a valid {schema} document ({_problem(exc)})") from exc
    if to_stdout:
        sys.stdout.write(rendering.getvalue())
        sys.stdout.flush()
    else:
        output.write_text(rendering.getvalue())
        verdict = verdict_of(document)
        if verdict is not None:
            say(f"{verdict[0]}; report written to {output.given}", verdict[1])
    return 0


def verdict_of(document: dict[str, Any]) -> tuple[str, str] | None:
    """The verdict line of a diff or verify document and its style, as the command that
    wrote it says it beside a report written to a file; None for other documents."""
    name = document["schema"].rpartition("@")[0]
    try:
        if name == "graphinspect/diff":
            from plugins.reports._wording import verdict_and_style

            return verdict_and_style(document)
        if name == "graphinspect/verify":
            from plugins.commands.verify.report import verdict_and_style

            return verdict_and_style(document)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return None  # the report rendered; a line about it is not worth failing for
    return None


class _Rendering(io.StringIO):
    """Text kept in memory that answers ``isatty`` as the terminal it will be printed on
    does, so a reporter chooses colour and width as it would writing there directly."""

    def __init__(self, terminal=None) -> None:
        super().__init__()
        self._terminal = terminal

    def isatty(self) -> bool:
        return bool(self._terminal is not None and self._terminal.isatty())


def read_document(given: str) -> dict[str, Any]:
    """The document in ``given`` (a path or ``-``), or :class:`InputError` saying why not."""
    name = _shown(given)
    try:
        if given == STDIN:
            data = sys.stdin.buffer.read()
        else:
            if os.path.isdir(given):
                raise InputError(name, "is a directory, not a saved result")
            with open(given, "rb") as stream:
                data = stream.read()
    except FileNotFoundError:
        raise InputError(name, "no such file") from None
    except OSError as exc:
        raise InputError(name, f"cannot be read: {(exc.strerror or str(exc)).lower()}") from None
    if not data.strip():
        raise InputError(name, "is empty")
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(name, "is not a saved result (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise InputError(name, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(document, dict):
        raise InputError(name, f"is not a graphinspect document (the JSON is a {type(document).__name__})")
    schema = document.get("schema")
    if not isinstance(schema, str) or not schema:
        raise InputError(name, 'is not a graphinspect document (no "schema" field)')
    return document


def check_version(schema: str, given: str) -> None:
    """Refuse one of graphinspect's documents in a major version this graphinspect does
    not know (written by a newer one): its fields may mean other things."""
    name = schema.rpartition("@")[0]
    versions = [known for known in known_schemas() if known.rpartition("@")[0] == name]
    if versions and schema not in versions:
        raise InputError(
            _shown(given),
            f"is a {schema} document; graphinspect {__version__} reads {', '.join(versions)} (was it written by a "
            "newer graphinspect?)",
        )


def check_required(document: dict[str, Any], given: str) -> None:
    """Refuse a document without a top-level field its shipped JSON Schema requires (a
    file cut short, or edited by hand); a plugin's schema without a shipped file passes."""
    schema = load_schema(document["schema"])
    if schema is None:
        return
    missing = [key for key in schema.get("required", []) if key not in document]
    if missing:
        raise InputError(
            _shown(given),
            f"is not a whole {document['schema']} document (missing: {', '.join(missing)})",
        )


def _problem(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no field {exc.args[0]!r} where a reporter needs one"
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _shown(given: str) -> str:
    return "<stdin>" if given == STDIN else given


@hookimpl
def graphinspect_subcommands():
    yield Subcommand(
        "report",
        "Render a saved result (--format json) again in any format: table, markdown, html, junit, sarif, ...",
        configure_parser,
        run,
    )
