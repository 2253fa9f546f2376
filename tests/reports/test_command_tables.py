"""The tables of ``inspect``, ``plugins`` and ``fuse`` at any width: nothing cropped,
no number split, columns left out only deliberately and said so.

The documents are built by hand in the shape each command writes (see their module
docstrings); what a column holds is compared with the numbers formatted independently.
"""

from __future__ import annotations

import io
import re

import pytest

from inspector.output import fmt_float, fmt_range
from plugins.commands import inspect as inspect_command
from plugins.commands import plugins as plugins_command
from plugins.commands.fuse import table as fuse_table

WIDTHS = [60, 80, 100, 160]


def _render(render, document, width: int) -> list[str]:
    stream = io.StringIO()
    render(document, stream, {"color": False, "width": width})
    return stream.getvalue().splitlines()


def _dropped(lines: list[str]) -> list[str]:
    found = [re.search(r"\(not shown at \d+ columns: (.*)\)", line) for line in lines]
    return [name for match in found if match for name in match.group(1).split(", ")]


def _param(name, shape, low, high, mean, std, nan=0, inf=0):
    return {
        "name": name,
        "tensor": name,
        "shape": shape,
        "dtype": "float32",
        "min": low,
        "max": high,
        "mean": mean,
        "std": std,
        "abs_max": max(abs(low), abs(high)),
        "nan": nan,
        "inf": inf,
    }


def inspect_document() -> dict:
    long_param = "sampling_offsets_weight_quantized_per_channel"
    return {
        "schema": "graphinspect/inspect@1",
        "tool": {"name": "graphinspect", "version": "0.1.0"},
        "model": {
            "path": "models/rtdetr-l.onnx",
            "format": "onnx",
            "producer": "pytorch 2.6.0",
            "layers": 3,
            "param_layers": 2,
            "parameters": 1234567,
            "bytes": 4938268,
            "dtypes": {"float32": 1234567},
            "inputs": [{"name": "images", "shape": [1, 3, 640, 640], "dtype": "float32"}],
            "outputs": [{"name": "output0", "shape": [1, 300, 84], "dtype": "float32"}],
            "metadata": {"description": "Ultralytics RT-DETR-l model", "imgsz": "[640, 640]"},
            "details": {"opset": {"": 17}},
        },
        "layers": [
            {
                "name": "/model.28/decoder/layers.0/cross_attn/sampling_offsets/MatMul",
                "kind": "linear",
                "op_type": "MatMul",
                "attrs": {},
                "params": [
                    _param(long_param, [256, 192], -0.0625123, 0.0625987, -1.234e-05, 0.03608, nan=3),
                    _param("bias", [192], -6.797, -2.307, -4.123, 1.2345),
                ],
            },
            {
                "name": "/model.0/stem1/conv/Conv",
                "kind": "conv",
                "op_type": "Conv",
                "attrs": {},
                "params": [_param("weight", [32, 3, 3, 3], -0.2752, 0.3099, 0.00123, 0.0876)],
            },
        ],
    }


@pytest.mark.parametrize("width", WIDTHS)
def test_inspect_never_crops_a_column(width):
    document = inspect_document()
    lines = _render(inspect_command.render_table, document, width)
    text = "\n".join(lines)
    dropped = _dropped(lines)
    assert set(dropped) <= {"Mean", "Std", "Dtype"}
    for layer in document["layers"]:
        assert layer["name"] in text
        for param in layer["params"]:
            cells = {
                "Min": fmt_float(param["min"]),
                "Max": fmt_float(param["max"]),
                "Mean": fmt_float(param["mean"]),
                "Std": fmt_float(param["std"]),
                "NaN/Inf": f"{param['nan']}/{param['inf']}",
            }
            row = next(line for line in lines if line.split()[:1] == [param["name"]])
            for header, cell in cells.items():
                if header not in dropped:
                    assert re.search(rf"(?<![\w.+-]){re.escape(cell)}(?![\w.])", row), (width, header, cell, row)
    # Only a word that cannot fit alone (the long parameter name) may pass the width.
    longest_word = max(len(word) for line in lines for word in line.split())
    assert all(len(line) <= max(width, longest_word + 2) for line in lines)
    if width >= 160:
        assert dropped == []


@pytest.mark.parametrize("width", WIDTHS)
def test_plugins_table_wraps_instead_of_folding_names(width):
    document = {
        "schema": "graphinspect/plugins@1",
        "tool": {"name": "graphinspect", "version": "0.1.0"},
        "autoload": True,
        "plugins": [
            {
                "name": "plugins.transforms.merge_branches",
                "source": "builtin",
                "distribution": "graphinspect",
                "version": "0.1.0",
                "hooks": ["graphinspect_transforms", "graphinspect_checks", "graphinspect_reporters"],
                "status": "loaded",
            },
            {
                "name": "graphinspect_broken",
                "source": "entry point",
                "distribution": "graphinspect-broken",
                "version": "0.1",
                "hooks": [],
                "status": "failed: ImportError: No module named 'missing_dependency_of_the_plugin'",
            },
        ],
    }
    lines = _render(plugins_command.render_table, document, width)
    text = "\n".join(lines)
    for plugin in document["plugins"]:
        assert plugin["name"] in text and plugin["distribution"] in text
        for hook in plugin["hooks"]:
            assert hook.removeprefix("graphinspect_") in text
    assert "'missing_dependency_of_the_plugin'" in text
    longest_word = max(len(word) for line in lines for word in line.split())
    assert all(len(line) <= max(width, longest_word + 4) for line in lines)


def fuse_document() -> dict:
    note = "eps 0.001 from the module"
    groups = []
    for index in range(3):
        groups.append(
            {
                "transform": "fold_batchnorm",
                "sources": [f"model.{index}.stem.conv", f"model.{index}.stem.bn"],
                "fused_name": f"model.{index}.stem.conv",
                "note": note,
                "params": [
                    {
                        "name": "weight",
                        "source_tensor": f"model.{index}.stem.conv.weight",
                        "before_range": [-0.08228, 0.0824],
                        "after_range": [-0.1709, 0.1718],
                        "abs_max_ratio": 2.085,
                    },
                    {
                        "name": "bias",
                        "source_tensor": None,
                        "before_range": None,
                        "after_range": [-1.128, 1.512],
                        "abs_max_ratio": None,
                    },
                ],
            }
        )
    return {
        "schema": "graphinspect/fuse@1",
        "tool": {"name": "graphinspect", "version": "0.1.0"},
        "source": {"path": "model.pt", "format": "pytorch-module"},
        "groups": groups,
        "written": None,
        "against": {
            "path": "model.onnx",
            "verdict": "differs",
            "checked": 3,
            "mismatched": 1,
            "not_found": 0,
            "layers": [
                {
                    "fused_name": group["fused_name"],
                    "target": f"/model.{index}/stem/conv/Conv",
                    "status": "mismatch" if index == 1 else "ok",
                    "max_rel_err": 0.031 if index == 1 else 9.0e-08,
                    "note": "",
                }
                for index, group in enumerate(groups)
            ],
        },
    }


@pytest.mark.parametrize("width", WIDTHS)
def test_fuse_table_keeps_ranges_whole_and_says_a_shared_note_once(width):
    document = fuse_document()
    lines = _render(fuse_table.render_table, document, width)
    text = "\n".join(lines)
    dropped = _dropped(lines)
    assert dropped == ([] if width >= 80 else ["abs-max ratio"])
    numbers = [fmt_range(-0.08228, 0.0824), fmt_range(-0.1709, 0.1718), fmt_range(-1.128, 1.512)]
    for number in numbers + ([] if dropped else ["2.085x"]):
        assert any(number in line for line in lines), number
    assert text.count("eps 0.001 from the module") == 1 and "(3 groups)" in text
    assert "MISMATCH" in text and "0.031" in text
    assert "1 of 3 fused groups differ from the export: model.1.stem.conv." in text.replace("\n", " ")
    assert all(len(line) <= width for line in lines)
