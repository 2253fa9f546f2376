"""The model-explorer reporter: node data Model Explorer overlays on the ONNX graph.

Checked the way Model Explorer reads the file (its node data provider service): a file
whose top-level ``results`` holds no ``results`` key is a ``GraphNodeData`` for the graph
on screen; its keys must be node ids, which the ONNX adapter takes from the node names;
a result's ``bgColor`` wins, else the first threshold whose value is at least the node's.
The tampered layer's number is re-computed here from the ONNX file with numpy.
"""

from __future__ import annotations

import copy
import io
import json

import numpy as np
import pytest

from inspector.manager import get_plugin_manager
from plugins.reports.model_explorer import MISMATCH_COLOR, UNMATCHED_COLOR
from tests.support import SAMPLES
from tests.support.runs import (
    STEM_FACTORY,
    STEM_ONNX,
    STEM_PT,
    STEM_STATE_DICT,
    TAMPER_FACTOR,
    TAMPERED_CHANNEL,
    TAMPERED_NODE,
    run_all,
    tamper,
)


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("model_explorer")
    tampered = tamper(folder / "tampered.onnx")
    runs = {
        "tampered": ("diff", str(STEM_PT), str(tampered)),
        "unrelated": ("diff", str(SAMPLES / "resnet_block.pt"), str(STEM_ONNX)),
        "verify": ("verify", str(STEM_STATE_DICT), str(tampered), "--model", STEM_FACTORY, "--per-layer"),
    }
    return {name: document for name, (_, document) in run_all(folder, runs).items()}


def node_data(document: dict) -> dict:
    stream = io.StringIO()
    get_plugin_manager(autoload=False).reporter("model-explorer", document["schema"]).render(document, stream, {})
    return json.loads(stream.getvalue())


def shown_color(data: dict, node: str) -> str:
    """The background Model Explorer gives ``node`` (its getBgColor with thresholds)."""
    result = data["results"][node]
    if "bgColor" in result:
        return result["bgColor"]
    return next(item["bgColor"] for item in data["thresholds"] if result["value"] <= item["value"])


def onnx_node_names(path) -> set[str]:
    import onnx

    return {node.name for node in onnx.load(str(path), load_external_data=False).graph.node}


def test_keys_are_the_onnx_node_names_of_the_layers(documents):
    document = documents["tampered"]
    data = node_data(document)
    assert "results" not in data["results"]  # read as GraphNodeData, applied to the graph shown
    assert list(data["results"]) == [layer["target"] for layer in document["layers"]]
    assert set(data["results"]) <= onnx_node_names(document["target"]["path"])


def test_values_are_the_largest_relative_error_and_colours_the_status(documents):
    document = documents["tampered"]
    data = node_data(document)
    for layer in document["layers"]:
        expected = max(param["max_rel_err"] for param in layer["params"])
        assert data["results"][layer["target"]]["value"] == expected
    assert shown_color(data, TAMPERED_NODE) == MISMATCH_COLOR
    ok = [layer["target"] for layer in document["layers"] if layer["status"] == "ok"]
    assert {shown_color(data, node) for node in ok} <= {"#1b5e20", "#43a047"}  # float32 rounding: greens


def test_the_tampered_number_is_the_one_numpy_finds(documents):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(STEM_ONNX))
    name = next(node for node in model.graph.node if node.name == TAMPERED_NODE).input[1]
    weight = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name)).astype(np.float64)
    # The export held w; the tampered file holds w with one channel times the factor.
    expected = (TAMPER_FACTOR - 1) * np.abs(weight[TAMPERED_CHANNEL]).max() / np.abs(weight).max()
    value = node_data(documents["tampered"])["results"][TAMPERED_NODE]["value"]
    assert value == pytest.approx(expected, rel=1e-4)


def test_thresholds_rise_and_unmatched_layers_are_grey_words(documents):
    data = node_data(documents["unrelated"])
    bounds = [item["value"] for item in data["thresholds"]]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds)
    assert data["results"] and all(
        result == {"value": "unmatched", "bgColor": UNMATCHED_COLOR} for result in data["results"].values()
    )


def test_a_non_finite_error_is_said_in_words(documents):
    for bad in (float("inf"), float("nan")):  # re-computed values all zero; no number at all
        document = copy.deepcopy(documents["tampered"])
        layer = next(layer for layer in document["layers"] if layer["target"] == TAMPERED_NODE)
        layer["params"][0]["max_rel_err"] = bad
        assert node_data(document)["results"][TAMPERED_NODE] == {"value": "mismatch", "bgColor": MISMATCH_COLOR}


def test_verify_per_layer_overlays_the_activation_errors(documents):
    document = documents["verify"]
    data = node_data(document)
    assert list(data["results"]) == [layer["target"] for layer in document["layers"]]
    for layer in document["layers"]:
        result = data["results"][layer["target"]]
        if layer["status"] == "not_comparable":
            assert result == {"value": "not comparable", "bgColor": UNMATCHED_COLOR}
        else:
            assert result["value"] == layer["max_rel_err"]
            assert (result.get("bgColor") == MISMATCH_COLOR) == (layer["status"] == "differs")
    assert shown_color(data, document["first_divergent"]) == MISMATCH_COLOR
