"""The JSON Schemas of the documents graphinspect writes, shipped with the package.

Every command builds one versioned document (``"schema": "graphinspect/<name>@<major>"``)
whose contract is described where it is built; the files here state the same contracts in
JSON Schema (draft 2020-12), one file per schema and major version, named
``<name>-<major>.schema.json``. They list every field a document of that version always
has, with its type; within a major version fields are only ever added, so the schemas
allow fields they do not name. A user's tool can validate a saved result with any JSON
Schema validator::

    import json, jsonschema
    from inspector.schemas import load_schema

    document = json.load(open("result.json"))
    jsonschema.validate(document, load_schema(document["schema"]))

``graphinspect report`` reads the required top-level fields from here to refuse a file
that is not a whole document before any reporter sees it.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

_SCHEMA_NAME = re.compile(r"graphinspect/(?P<name>[a-z][a-z0-9_-]*)@(?P<major>[0-9]+)")


def schema_file(schema: str) -> str | None:
    """The file name of ``schema``'s JSON Schema (``"graphinspect/diff@1"`` ->
    ``"diff-1.schema.json"``), or None when the name is not one of graphinspect's."""
    match = _SCHEMA_NAME.fullmatch(schema)
    return None if match is None else f"{match['name']}-{match['major']}.schema.json"


def known_schemas() -> list[str]:
    """Every document schema shipped here, as ``graphinspect/<name>@<major>``."""
    names = []
    for entry in resources.files(__name__).iterdir():
        if entry.name.endswith(".schema.json"):
            name, _, major = entry.name.removesuffix(".schema.json").rpartition("-")
            names.append(f"graphinspect/{name}@{major}")
    return sorted(names)


@cache
def load_schema(schema: str) -> dict[str, Any] | None:
    """The JSON Schema of the document ``schema`` (a dict), or None when none is shipped
    (a plugin's own document, or a version this graphinspect does not know)."""
    name = schema_file(schema)
    if name is None:
        return None
    entry = resources.files(__name__).joinpath(name)
    if not entry.is_file():
        return None
    return json.loads(entry.read_text(encoding="utf-8"))
