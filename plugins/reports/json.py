"""The ``json`` reporter: any graphinspect document, as indented standard JSON.

Every command builds its result as one versioned document (``"schema":
"graphinspect/<command>@<major>"``); this reporter writes it unchanged, except that
NaN and ±Inf (which JSON cannot carry) become ``null``.
"""

from __future__ import annotations

from inspector.hookspecs import hookimpl
from inspector.output import dump_json
from inspector.records import Reporter

SCHEMAS = (
    "graphinspect/inspect@1",
    "graphinspect/plugins@1",
    "graphinspect/diff@1",
    "graphinspect/fuse@1",
    "graphinspect/verify@1",
)


def render(document, stream, options) -> None:
    dump_json(document, stream)


@hookimpl
def graphinspect_reporters():
    yield Reporter("json", "The document as JSON.", SCHEMAS, render, suffixes=(".json",))
