"""Validating a command's JSON document against the schema graphinspect ships for it."""

from __future__ import annotations

import pytest


def schema_errors(document: dict, schema: str | None = None) -> list[str]:
    """Every violation of the document's schema (its own ``schema`` field unless named;
    inspector/schemas), as "path: message"; an empty list when it validates."""
    jsonschema = pytest.importorskip("jsonschema")
    from inspector.schemas import load_schema

    validator = jsonschema.Draft202012Validator(load_schema(schema or document["schema"]))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
