"""The ``sarif`` reporter: a diff or verify document as SARIF 2.1.0 for code scanning.

``graphinspect diff A.pt B.onnx --format sarif -o graphinspect.sarif`` writes a SARIF log
that GitHub code scanning (``github/codeql-action/upload-sarif``) and other SARIF viewers
read: one run whose tool is graphinspect, with one result per problem
(:mod:`plugins.reports._problems`): each mismatched and each unmatched ONNX layer,
unexplained stored floats, and the error and warning findings that no layer result says
already (verify: each differing output and layer, and the error and warning lint).

Every result is located in the ONNX file (``artifactLocation.uri``, relative to the
working directory when the file is inside it, as GitHub wants repository-relative paths;
``region.startLine`` 1, since code scanning needs a line and an ONNX file has none) and,
for a layer, names the ONNX node as a logical location. Rule ids are
``graphinspect/<kind>``; each result carries a ``partialFingerprints`` entry made of the
rule and the node (not the numbers), so an alert stays the same alert across runs while
the layer stays wrong. ``automationDetails.id`` is ``graphinspect/diff/`` or
``graphinspect/verify/``, which keeps the two kinds of upload apart.

A faithful diff (a same verify) gives a run with no results: code scanning then closes
the alerts it had.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from inspector.hookspecs import hookimpl
from inspector.records import Reporter
from plugins.reports._problems import RULES, SCHEMAS, VERIFY_SCHEMA, onnx_path, problems, verdict

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://example.invalid/graphinspect"
FINGERPRINT = "graphinspectProblem/v1"


def render(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """Write the document as a SARIF 2.1.0 log (see the module docstring)."""
    json.dump(sarif_log(document), stream, indent=2)
    stream.write("\n")


def sarif_log(document: dict[str, Any]) -> dict[str, Any]:
    """The SARIF log of a diff or verify document, as a dict."""
    command = "verify" if document["schema"] == VERIFY_SCHEMA else "diff"
    uri = onnx_path(document)
    found = problems(document)
    rule_ids: list[str] = []
    for problem in found:
        if problem.kind not in rule_ids:
            rule_ids.append(problem.kind)
    results = []
    for problem in found:
        location: dict[str, Any] = {
            "physicalLocation": {
                "artifactLocation": {"uri": uri, "index": 0},
                "region": {"startLine": 1},
            }
        }
        if problem.layer:
            location["logicalLocations"] = [{"fullyQualifiedName": problem.layer, "kind": "element"}]
        identity = "\0".join([problem.kind, problem.layer or "", "" if problem.layer else problem.message])
        results.append(
            {
                "ruleId": f"graphinspect/{problem.kind}",
                "ruleIndex": rule_ids.index(problem.kind),
                "level": problem.level,
                "message": {"text": problem.message},
                "locations": [location],
                "partialFingerprints": {FINGERPRINT: hashlib.sha256(identity.encode()).hexdigest()},
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": document["tool"]["name"],
                        "version": document["tool"]["version"],
                        "semanticVersion": document["tool"]["version"],
                        "informationUri": INFORMATION_URI,
                        "rules": [_rule(kind, found) for kind in rule_ids],
                    }
                },
                "automationDetails": {"id": f"graphinspect/{command}/"},
                "artifacts": [{"location": {"uri": uri}, "roles": ["analysisTarget"]}],
                "invocations": [{"executionSuccessful": True}],
                "results": results,
                "properties": {
                    "verdict": verdict(document),
                    "source": document["source"]["path"],
                    "schema": document["schema"],
                },
            }
        ],
    }


def _rule(kind: str, found) -> dict[str, Any]:
    description = RULES.get(kind) or f"graphinspect finding {kind!r} ({kind.replace('_', ' ')})."
    level = "error" if any(p.kind == kind and p.level == "error" for p in found) else "warning"
    return {
        "id": f"graphinspect/{kind}",
        "name": "".join(part.capitalize() for part in kind.split("_")),
        "shortDescription": {"text": description.split(". ")[0].rstrip(".")},
        "fullDescription": {"text": description},
        "defaultConfiguration": {"level": level},
        "help": {"text": f"{description} Run graphinspect diff (or verify) on the pair to see the whole report."},
        "properties": {"tags": ["onnx", "export", "graphinspect"], "precision": "very-high"},
    }


@hookimpl
def graphinspect_reporters():
    yield Reporter(
        "sarif",
        "SARIF 2.1.0 (GitHub code scanning): one result per problem, located in the ONNX file.",
        SCHEMAS,
        render,
        suffixes=(".sarif",),
    )
