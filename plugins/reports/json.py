"""The ``json`` reporter: any graphinspect document, as indented standard JSON.

Every command builds its result as one versioned document (``"schema":
"graphinspect/<command>@<major>"``); this reporter writes it unchanged, except that
NaN and ±Inf (which JSON cannot carry) become ``null``.
"""

from __future__ import annotations

from inspector.hookspecs import hookimpl
from inspector.output import dump_json
from inspector.records import Reporter

SCHEMAS = ("graphinspect/*",)
"""Every document of every command, built-in or a plugin's."""


def render(document, stream, options) -> None:
    dump_json(document, stream)


@hookimpl
def graphinspect_reporters():
    yield Reporter("json", "The document as JSON.", SCHEMAS, render, suffixes=(".json",))
