"""Hand-built ``graphinspect/diff@1`` documents for the reporter tests.

:func:`make_document` is a small document with every status, a folded and an identity
match, a name holding "[0]" and "|", a note two layers share, a mismatched parameter
with per-channel errors, findings of each severity and unused PyTorch layers; it follows
the contract in :mod:`inspector.report` (a test checks that it keeps in step).
:func:`many_layers` makes a large one, for size limits and collapsing.
"""

from __future__ import annotations

import copy
import io

SCHEMA = "graphinspect/diff@1"
ODD_NAME = "/model.1/m[0]|cv1/conv/Conv"


def _param(
    name,
    target_tensor,
    source_tensor,
    source_range,
    target_range,
    reproduced_range,
    abs_err,
    rel_err,
    status="ok",
    bad_channels=(),
    bad_channel_count=0,
    channel_errors=None,
):
    return {
        "name": name,
        "target_tensor": target_tensor,
        "source_tensor": source_tensor,
        "source_range": source_range,
        "target_range": target_range,
        "reproduced_range": reproduced_range,
        "max_abs_err": abs_err,
        "max_rel_err": rel_err,
        "status": status,
        "bad_channels": list(bad_channels),
        "bad_channel_count": bad_channel_count,
        "channel_errors": channel_errors,
    }


def _layer(target, op, sources, transform, status, matched_by, params, note=""):
    return {
        "target": target,
        "op": op,
        "sources": sources,
        "transform": transform,
        "status": status,
        "matched_by": matched_by,
        "note": note,
        "params": params,
    }


CHANNEL_ERRORS = {
    "channels": 24,
    "per_entry": 1,
    "max_rel_err": [3.0e-8 + 1.0e-9 * (channel % 5) for channel in range(17)]
    + [0.031]
    + [4.0e-8 + 1.0e-9 * (channel % 3) for channel in range(6)],
}
"""The mismatched weight's 24 output channels: channel 17 holds its max_rel_err."""

SUMMARY_TEXT = (
    "2 Conv layers: 2 Conv/Linear + BatchNorm folded. 1 Gemm layer: 1 kept as they are. "
    "Every matched parameter re-computed within 2.4e-07 relative to its scale. "
    "/model.2/conv/Conv (Conv, from model.2.conv + model.2.bn via fold_batchnorm): weight differs by up to "
    "0.5 (3.10% of its scale) in output channel 17. 1 ONNX layer could not be traced to the PyTorch model: "
    "/extra/Conv. 2 PyTorch layers are not used by the export. The export differs from the PyTorch model: "
    "the layers above hold values no known transform explains."
)


def make_document() -> dict:
    """A small diff document with every status, a folded and an identity match, a name
    holding "[0]" and "|", findings of each severity and unused PyTorch layers."""
    return {
        "schema": SCHEMA,
        "tool": {"name": "graphinspect", "version": "0.1.0"},
        "source": {"path": "samples/tiny/model.pt", "format": "pytorch-module", "layers": 9, "parameters": 12960},
        "target": {"path": "samples/tiny/model.onnx", "format": "onnx", "layers": 5, "parameters": 12640},
        "tolerance": {"rtol": None, "atol": None},
        "summary": {
            "verdict": "differs",
            "matched": 3,
            "mismatched": 1,
            "unmatched_target": 1,
            "unmatched_source": 2,
            "by_transform": {"fold_batchnorm": 2, "identity": 1},
            "max_rel_err": 0.031,
            "text": SUMMARY_TEXT,
            "coverage": {
                "explained": {"elements": 12200, "bytes": 48800},
                "constant": {"elements": 300, "bytes": 1200},
                "unexplained": {"elements": 140, "bytes": 560},
                "by_op": {
                    "Conv": {
                        "explained": {"elements": 12200, "bytes": 48800},
                        "constant": {"elements": 0, "bytes": 0},
                        "unexplained": {"elements": 140, "bytes": 560},
                    },
                    "Add": {
                        "explained": {"elements": 0, "bytes": 0},
                        "constant": {"elements": 300, "bytes": 1200},
                        "unexplained": {"elements": 0, "bytes": 0},
                    },
                },
            },
        },
        "layers": [
            _layer(
                "/model.0/conv/Conv",
                "Conv",
                ["model.0.conv", "model.0.bn"],
                "fold_batchnorm",
                "ok",
                "scope",
                [
                    _param(
                        "weight",
                        "model.0.conv.weight",
                        "model.0.conv.weight",
                        [-0.306, 0.345],
                        [-2.926, 3.297],
                        [-2.926, 3.297],
                        2.4e-07,
                        7.3e-08,
                    ),
                    _param(
                        "bias",
                        "model.0.conv.weight_bias",
                        "model.0.bn.bias",
                        [-0.5, 0.8],
                        [-1.2, 2.1],
                        [-1.2, 2.1],
                        1.2e-07,
                        5.7e-08,
                    ),
                ],
                note="eps 0.001 from the module",
            ),
            _layer(
                ODD_NAME,
                "Conv",
                ["model.1.m.0.cv1.conv", "model.1.m.0.cv1.bn"],
                "fold_batchnorm",
                "ok",
                "name",
                [
                    _param(
                        "weight",
                        "onnx::Conv_25",
                        "model.1.m.0.cv1.conv.weight",
                        [-0.12, 0.11],
                        [-1.07, 0.98],
                        [-1.07, 0.98],
                        1.1e-07,
                        1.0e-07,
                    ),
                    _param(
                        "bias",
                        "onnx::Conv_26",
                        "model.1.m.0.cv1.bn.bias",
                        [-0.03, 0.04],
                        [-0.44, 0.61],
                        [-0.44, 0.61],
                        5.9e-08,
                        9.7e-08,
                    ),
                ],
                note="eps 0.001 from the module",
            ),
            _layer(
                "/head/fc/Gemm",
                "Gemm",
                ["head.fc"],
                "identity",
                "ok",
                "alignment",
                [
                    _param(
                        "weight",
                        "head.fc.weight",
                        "head.fc.weight",
                        [-0.08, 0.08],
                        [-0.08, 0.08],
                        [-0.08, 0.08],
                        0.0,
                        0.0,
                    ),
                    _param(
                        "bias", "head.fc.bias", "head.fc.bias", [-0.01, 0.02], [-0.01, 0.02], [-0.01, 0.02], 0.0, 0.0
                    ),
                ],
            ),
            _layer(
                "/model.2/conv/Conv",
                "Conv",
                ["model.2.conv", "model.2.bn"],
                "fold_batchnorm",
                "mismatch",
                "scope",
                [
                    _param(
                        "weight",
                        "model.2.conv.weight",
                        "model.2.conv.weight",
                        [-0.21, 0.19],
                        [-16.1, 15.7],
                        [-15.6, 15.7],
                        0.5,
                        0.031,
                        status="mismatch",
                        bad_channels=[17],
                        bad_channel_count=1,
                        channel_errors=CHANNEL_ERRORS,
                    ),
                    _param(
                        "bias",
                        "model.2.conv.weight_bias",
                        "model.2.bn.bias",
                        [-0.2, 0.3],
                        [-0.9, 1.4],
                        [-0.9, 1.4],
                        6.0e-08,
                        4.3e-08,
                    ),
                ],
            ),
            _layer(
                "/extra/Conv",
                "Conv",
                [],
                None,
                "unmatched",
                None,
                [
                    _param("weight", "extra.weight", None, None, [-1.0, 1.0], None, None, None, status="unmatched"),
                ],
            ),
        ],
        "unmatched_source": ["aux_head.conv", "denoising.embed"],
        "constants": [
            {
                "tensor": "anchors",
                "op": "Add",
                "layer": "/decoder/Add",
                "elements": 300,
                "reason": "computed at export: no PyTorch tensor holds these values",
            }
        ],
        "findings": [
            {
                "severity": "info",
                "code": "unused_source",
                "message": "2 PyTorch layers are not used by the export: aux_head.conv, denoising.embed",
                "layer": None,
            },
            {
                "severity": "error",
                "code": "mismatch",
                "message": "weight differs by up to 0.5 (3.10% of its scale) in output channel 17",
                "layer": "/model.2/conv/Conv",
            },
            {
                "severity": "warning",
                "code": "unmatched_target",
                "message": "no PyTorch layer re-computes this Conv",
                "layer": "/extra/Conv",
            },
        ],
    }


def many_layers(count: int, problems: dict[int, str] | None = None) -> dict:
    """A document of ``count`` folded conv layers, all fine except ``problems`` (layer
    index -> "mismatch" or "unmatched"); the summary's counts agree with its layers."""
    document = copy.deepcopy(make_document())
    problems = problems or {}
    template_ok = document["layers"][0]
    template_bad = document["layers"][3]
    template_unmatched = document["layers"][4]
    layers = []
    for index in range(count):
        status = problems.get(index, "ok")
        template = {"ok": template_ok, "mismatch": template_bad, "unmatched": template_unmatched}[status]
        layer = copy.deepcopy(template)
        layer["target"] = f"/model.{index}/conv/Conv"
        if layer["sources"]:
            layer["sources"] = [f"model.{index}.conv", f"model.{index}.bn"]
        layers.append(layer)
    document["layers"] = layers
    statuses = [layer["status"] for layer in layers]
    document["summary"].update(
        matched=statuses.count("ok"),
        mismatched=statuses.count("mismatch"),
        unmatched_target=statuses.count("unmatched"),
        by_transform={"fold_batchnorm": statuses.count("ok") + statuses.count("mismatch")},
        verdict="differs" if "mismatch" in statuses else ("incomplete" if "unmatched" in statuses else "faithful"),
    )
    document["findings"] = [f for f in document["findings"] if f["layer"] is None]
    return document


def render(module, document: dict, options: dict | None = None) -> str:
    """``document`` rendered by the reporter plugin ``module`` (one reporter)."""
    (reporter,) = list(module.graphinspect_reporters())
    stream = io.StringIO()
    reporter.render(document, stream, options or {})
    return stream.getvalue()
