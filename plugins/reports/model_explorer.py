"""The ``model-explorer`` reporter: node data that Google's Model Explorer overlays on the graph.

``graphinspect diff A.pt B.onnx --format model-explorer -o B.nodedata.json`` writes a
Model Explorer node data file (its ``GraphNodeData`` form: no graph id, so it applies to
the graph on screen), keyed by ONNX node name, which is the node id Model Explorer's ONNX
adapter gives every node::

    {"results": {"/model.0/conv/Conv": {"value": 9.1e-08},
                 "/model.2/conv/Conv": {"value": 0.136, "bgColor": "#d32f2f"},
                 "/extra/Conv": {"value": "unmatched", "bgColor": "#9e9e9e"}},
     "thresholds": [{"value": 1e-07, "bgColor": "#1b5e20"}, ...]}

Open it over the export with the ONNX adapter (``pip install model-explorer-onnx``)::

    onnxvis B.onnx --node_data_paths=B.nodedata.json
    # the same: model-explorer B.onnx --extensions=model_explorer_onnx --node_data_paths=B.nodedata.json

Each node's value is its largest relative error, ``max|t - e| / max|e|`` over its
parameters (diff; verify ``--per-layer``: of its activation), so Model Explorer's
statistics and search work on it. The colour is the status: a mismatched layer (verify:
a differing activation) is red (:data:`MISMATCH_COLOR`) whatever its number, an
unmatched layer (verify: not comparable) is grey with the word as its value, and the
others take the colour of their error from :data:`THRESHOLDS`, a scale in decades from
dark green (float32 rounding) to red.
"""

from __future__ import annotations

import json
import math
from typing import Any

from inspector.hookspecs import hookimpl
from inspector.records import Reporter
from plugins.reports._problems import SCHEMAS, VERIFY_SCHEMA

MISMATCH_COLOR = "#d32f2f"
UNMATCHED_COLOR = "#9e9e9e"
THRESHOLDS = (
    (1e-7, "#1b5e20"),  # float32 rounding of a re-computation
    (1e-6, "#43a047"),
    (1e-5, "#9ccc65"),
    (1e-4, "#d4e157"),  # the float32 tolerance
    (1e-3, "#ffca28"),
    (1e-2, "#fb8c00"),  # float16 territory
    (1e300, "#e53935"),
)
"""(upper bound of the max relative error, background colour): Model Explorer colours a
node with the first entry whose value is at least the node's."""


def render(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """Write the node data of a diff or verify document (see the module docstring)."""
    json.dump(node_data(document), stream, indent=2, allow_nan=False)
    stream.write("\n")


def node_data(document: dict[str, Any]) -> dict[str, Any]:
    """Model Explorer's ``GraphNodeData`` for the document's layers, as a dict."""
    if document["schema"] == VERIFY_SCHEMA:
        entries = [(layer["target"], layer["status"], layer["max_rel_err"]) for layer in document.get("layers") or []]
        bad, unknown = "differs", "not_comparable"
    else:
        entries = [(layer["target"], layer["status"], _layer_error(layer)) for layer in document["layers"]]
        bad, unknown = "mismatch", "unmatched"
    results: dict[str, dict[str, Any]] = {}
    for node, status, error in entries:
        if error is not None and not math.isfinite(error):
            error = None  # JSON has no inf or NaN; the status word says it
        if status == bad:
            results[node] = {"value": status if error is None else error, "bgColor": MISMATCH_COLOR}
        elif status == unknown or error is None:
            results[node] = {"value": status.replace("_", " "), "bgColor": UNMATCHED_COLOR}
        else:
            results[node] = {"value": error}
    return {
        "results": results,
        "thresholds": [{"value": bound, "bgColor": color} for bound, color in THRESHOLDS],
    }


def _layer_error(layer: dict[str, Any]) -> float | None:
    """The largest relative error of the layer's parameters; None when one is not finite
    (re-computed values all zero), since then no number is the largest."""
    errors = [param["max_rel_err"] for param in layer["params"] if param.get("max_rel_err") is not None]
    if not errors or not all(math.isfinite(error) for error in errors):
        return None
    return max(errors)


@hookimpl
def graphinspect_reporters():
    yield Reporter(
        "model-explorer",
        "Node data for Google's Model Explorer: each ONNX node's max relative error, coloured by status.",
        SCHEMAS,
        render,
    )
