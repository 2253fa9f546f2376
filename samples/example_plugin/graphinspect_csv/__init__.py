"""graphinspect-csv: the diff report as CSV, one row per parameter.

An example of a third-party plugin. Install it next to graphinspect::

    pip install ./samples/example_plugin
    graphinspect plugins                      # lists "csv" from graphinspect-csv 0.1.0
    graphinspect diff model.pt model.onnx --format csv -o report.csv

It implements one hook, ``graphinspect_reporters``, with the same marker and records
the built-in reporters use, and reads only the versioned diff document.
"""

from __future__ import annotations

import csv

from inspector.hookspecs import hookimpl
from inspector.records import Reporter

COLUMNS = (
    "target",
    "op",
    "sources",
    "transform",
    "status",
    "param",
    "target_tensor",
    "source_min",
    "source_max",
    "target_min",
    "target_max",
    "max_abs_err",
    "max_rel_err",
    "bad_channels",
)


def render(document, stream, options) -> None:
    """One CSV row per (ONNX layer, parameter) of a ``graphinspect/diff@1`` document."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(COLUMNS)
    for layer in document["layers"]:
        for param in layer["params"]:
            source = param["source_range"] or [None, None]
            target = param["target_range"] or [None, None]
            writer.writerow(
                [
                    layer["target"],
                    layer["op"],
                    " + ".join(layer["sources"]),
                    layer["transform"] or "",
                    layer["status"],
                    param["name"],
                    param["target_tensor"],
                    *source,
                    *target,
                    param["max_abs_err"],
                    param["max_rel_err"],
                    " ".join(str(c) for c in param["bad_channels"]),
                ]
            )


@hookimpl
def graphinspect_reporters():
    yield Reporter("csv", "One CSV row per parameter.", ("graphinspect/diff@1",), render, suffixes=(".csv",))
