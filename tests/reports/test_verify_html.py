"""The ``html`` reporter of verify documents: a real ``verify --per-layer`` page, parsed back.

The documents are real: verify runs on the RT-DETR stem sample and on its twin with one
output channel of one conv x1.5 (tests/support/runs.py), writing JSON and HTML. The page
is parsed strictly (tests/support/html_tree.py); the curve's geometry is re-computed from
the document here (log axis 1e-10..1 over the plot box), not read from the reporter.
"""

from __future__ import annotations

import copy
import io
import json
import math
import re

import pytest

from plugins.reports import verify_html
from tests.support import REPO
from tests.support.html_tree import Node, parse
from tests.support.runs import STEM_FACTORY, STEM_ONNX, STEM_STATE_DICT, TAMPERED_NODE, tamper

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


def _position(value: float, box: dict) -> float:
    """The y of an error on the curve's log axis (1e-10 at the bottom, 1 at the top)."""
    exponent = 0.0 if not math.isfinite(value) else min(max(math.log10(value), -10.0), 0.0) if value > 0 else -10.0
    return box["bottom"] - (exponent + 10) / 10 * (box["bottom"] - box["top"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[int, dict, str]]:
    """name -> (exit status, the JSON document, the HTML page) of verify --per-layer."""
    from inspector.cli import main

    folder = tmp_path_factory.mktemp("verify_html")
    targets = {"faithful": STEM_ONNX, "tampered": tamper(folder / "tampered.onnx")}
    found = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD", "1")
        patch.chdir(REPO)  # the factory is imported from the repository root
        for name, target in targets.items():
            args = ["verify", str(STEM_STATE_DICT), str(target), "--model", STEM_FACTORY, "--per-layer"]
            code = main([*args, "-o", str(folder / f"{name}.json")])
            assert main([*args, "-o", str(folder / f"{name}.html")]) == code  # html chosen by the suffix
            document = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
            found[name] = (code, document, (folder / f"{name}.html").read_text(encoding="utf-8"))
    return found


def _curve(tree: Node) -> Node:
    (section,) = [node for node in tree.iter("section") if node.attrs.get("id") == "curve"]
    (svg,) = section.iter("svg")
    return svg


def test_the_tampered_page_says_differs_and_marks_the_first_divergent_layer(runs):
    code, document, page = runs["tampered"]
    assert code == 1 and document["verdict"] == "differs" and document["first_divergent"] == TAMPERED_NODE
    tree = parse(page).root
    (header,) = tree.iter("header")
    assert "differs" in header.classes() and next(header.iter("h1")).text == "DIFFERS"
    svg = _curve(tree)
    layers = document["layers"]
    box = verify_html.CURVE
    step = (box["right"] - box["left"]) / (len(layers) - 1)
    compared = [(i, layer) for i, layer in enumerate(layers) if layer["status"] in ("same", "differs")]
    circles = list(svg.iter("circle"))
    assert len(circles) == len(compared)
    for circle, (index, layer) in zip(circles, compared):
        assert float(circle.attrs["cx"]) == pytest.approx(box["left"] + index * step, abs=0.06)
        value = math.inf if layer["max_rel_err"] is None else layer["max_rel_err"]
        assert float(circle.attrs["cy"]) == pytest.approx(_position(value, box), abs=0.06)
        assert circle.classes() == {f"c-{layer['status']}"}
        assert layer["target"] in circle.text
    (first,) = [line for line in svg.iter("line") if "first" in line.classes()]
    index = [layer["target"] for layer in layers].index(TAMPERED_NODE)
    assert float(first.attrs["x1"]) == pytest.approx(box["left"] + index * step, abs=0.06)
    assert any(TAMPERED_NODE in text.text for text in svg.iter("text") if "first-label" in text.classes())
    (tolerance,) = [line for line in svg.iter("line") if "tol" in line.classes()]
    assert float(tolerance.attrs["y1"]) == pytest.approx(_position(document["tolerance"]["layer_rtol"], box), abs=0.06)
    # The layer that differs first is above the tolerance line, those before it below (SVG y grows downwards).
    above = [float(c.attrs["cy"]) < float(tolerance.attrs["y1"]) for c in circles]
    assert above == [layer["max_rel_err"] > document["tolerance"]["layer_rtol"] for _, layer in compared]


def test_the_tables_say_what_the_document_says(runs):
    _, document, page = runs["tampered"]
    tree = parse(page).root
    tables = {node.attrs["id"]: node for node in tree.iter("table")}
    output_rows = list(tables["outputs"].iter("tbody"))[0].children
    assert [row.children[0].text for row in output_rows] == [o["name"] for o in document["outputs"]]
    assert [row.children[2].text for row in output_rows] == [o["status"] for o in document["outputs"]]
    layer_rows = list(tables["layers"].iter("tbody"))[0].children
    assert [(row.children[1].text, row.children[2].text) for row in layer_rows] == [
        (layer["status"], layer["target"]) for layer in document["layers"]
    ]
    for row, layer in zip(layer_rows, document["layers"]):
        if layer["status"] != "not_comparable":
            assert float(row.children[5].text) == pytest.approx(layer["max_rel_err"], rel=1e-3)


def test_a_faithful_page_says_same_with_the_whole_curve_under_the_tolerance(runs):
    code, document, page = runs["faithful"]
    assert code == 0 and document["verdict"] == "same" and document["first_divergent"] is None
    tree = parse(page).root
    (header,) = tree.iter("header")
    assert "faithful" in header.classes() and next(header.iter("h1")).text == "SAME"
    svg = _curve(tree)
    assert not [line for line in svg.iter("line") if "first" in line.classes()]
    (tolerance,) = [line for line in svg.iter("line") if "tol" in line.classes()]
    assert all(float(c.attrs["cy"]) > float(tolerance.attrs["y1"]) for c in svg.iter("circle"))


def test_it_loads_nothing_from_outside_and_shows_model_names_as_text(runs):
    _, document, _ = runs["tampered"]
    crafted = copy.deepcopy(document)
    evil = '<script>alert(1)</script>\x1b[31m"><img src=x>'
    crafted["layers"][0]["target"] = evil
    crafted["outputs"][0]["name"] = evil
    crafted["verdict_reason"] = evil
    stream = io.StringIO()
    verify_html.render(crafted, stream, {})
    page = stream.getvalue()
    assert "<script" not in page and "<img" not in page and "\x1b" not in page
    tree = parse(page).root
    for node in tree.iter():
        assert node.tag not in ("script", "link", "img", "iframe", "object", "embed", "base"), node.tag
        assert "src" not in node.attrs
        assert all(not value or value.startswith("#") for name, value in node.attrs.items() if name == "href")
    assert not re.search(r"url\s*\(", page)
    assert any("<script>alert(1)</script>" in node.text for node in tree.iter("code"))  # shown, as text


def test_without_per_layer_there_is_no_curve_and_no_layer_table(runs):
    _, document, _ = runs["faithful"]
    plain = {key: value for key, value in document.items() if key != "layers"}
    stream = io.StringIO()
    verify_html.render(plain, stream, {})
    tree = parse(stream.getvalue()).root
    assert not list(tree.iter("svg"))
    assert [node.attrs["id"] for node in tree.iter("table")] == ["outputs"]
