"""inspector.schemas: every document a command writes validates against its shipped schema.

The documents are real: every command runs on the samples (faithful, tampered and
unrelated pairs; with and without --per-layer, --against, --weights) and its -o file is
validated with jsonschema. The schemas are also shown not to be vacuous: a document with
a field removed, a wrong word or a wrong type fails.
"""

from __future__ import annotations

import copy
import fnmatch
from pathlib import Path

import jsonschema
import pytest
import torch

from inspector.schemas import known_schemas, load_schema, schema_file
from tests.support import REPO, SAMPLES
from tests.support.runs import STEM_FACTORY, STEM_ONNX, STEM_PT, STEM_STATE_DICT, TAMPERED_NODE, run_all, tamper
from tests.support.schemas import schema_errors

SHIPPED = [
    "graphinspect/batch@1",
    "graphinspect/diff@1",
    "graphinspect/fuse@1",
    "graphinspect/inspect@1",
    "graphinspect/plugins@1",
]
SHIPPED += ["graphinspect/verify@2"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, tuple[int, dict]]:
    """Every command's document on the samples, by a short name: (exit status, document)."""
    folder = tmp_path_factory.mktemp("outputs")
    tampered = tamper(folder / "tampered.onnx")
    resnet_pt, resnet_onnx = str(SAMPLES / "resnet_block.pt"), str(SAMPLES / "resnet_block.onnx")
    like_pt, like_onnx = str(SAMPLES / "rtdetr_like.pt"), str(SAMPLES / "rtdetr_like.onnx")
    runs = {
        "inspect_pt": ("inspect", str(STEM_PT)),
        "inspect_onnx_all": ("inspect", like_onnx, "--all"),
        "inspect_state_dict": ("inspect", str(STEM_STATE_DICT)),
        "inspect_broadcast": ("inspect", str(folder / "broadcast.pt")),
        "diff_faithful": ("diff", str(STEM_PT), str(STEM_ONNX)),
        "diff_dynamo": ("diff", resnet_pt, resnet_onnx),
        "diff_slimmed": ("diff", like_pt, like_onnx),
        "diff_tampered": ("diff", str(STEM_PT), str(tampered)),
        "diff_unrelated": ("diff", resnet_pt, str(STEM_ONNX)),
        "diff_only_problems": ("diff", str(STEM_PT), str(tampered), "--only-problems", "--rtol", "1e-3"),
        "fuse": ("fuse", str(STEM_PT), "--weights", str(folder / "fused.safetensors")),
        "fuse_against": ("fuse", like_pt, "--against", like_onnx),
        "fuse_against_tampered": ("fuse", str(STEM_PT), "--against", str(tampered)),
        "verify": ("verify", resnet_pt, resnet_onnx, "--trust-pickle"),
        "verify_per_layer": ("verify", str(STEM_STATE_DICT), str(STEM_ONNX), "--model", STEM_FACTORY, "--per-layer"),
        "verify_tampered": ("verify", str(STEM_STATE_DICT), str(tampered), "--model", STEM_FACTORY, "--per-layer"),
        "plugins": ("plugins",),
        "diff_batch": ("diff", "--pairs", str(folder / "pairs.txt"), "--out-dir", str(folder / "batch")),
    }
    torch.save({"scale": torch.arange(3.0).reshape(3, 1).expand(3, 8), "bias": torch.ones(3)}, folder / "broadcast.pt")
    (folder / "pairs.txt").write_text(f"{STEM_PT} {STEM_ONNX}\n{STEM_PT} missing.onnx\n")
    return run_all(folder, runs)


validate = schema_errors


def test_every_shipped_schema_is_a_valid_json_schema():
    assert known_schemas() == SHIPPED
    for name in known_schemas():
        schema = load_schema(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["title"] == name
        assert schema["properties"]["schema"] == {"const": name}


def test_schema_names_map_to_files():
    assert schema_file("graphinspect/diff@1") == "diff-1.schema.json"
    assert schema_file("graphinspect/verify@2") == "verify-2.schema.json"
    assert schema_file("acme/diff@1") is None
    assert load_schema("graphinspect/diff@2") is None  # a version this graphinspect does not know
    assert load_schema("graphinspect/csv@1") is None  # a plugin's document


def test_the_runs_cover_every_verdict_and_every_schema(outputs):
    codes = {name: code for name, (code, _) in outputs.items()}
    assert codes["diff_faithful"] == codes["diff_dynamo"] == codes["diff_slimmed"] == 0
    assert codes["diff_tampered"] == codes["diff_unrelated"] == 1
    assert codes["verify_per_layer"] == 0 and codes["verify_tampered"] == 1
    assert codes["fuse_against"] == 0 and codes["fuse_against_tampered"] == 1
    verdicts = {outputs[name][1]["summary"]["verdict"] for name in ("diff_faithful", "diff_tampered", "diff_unrelated")}
    assert verdicts == {"faithful", "differs", "incomplete"}
    assert outputs["verify_tampered"][1]["first_divergent"] == TAMPERED_NODE
    assert outputs["fuse"][1]["written"]["format"] == "safetensors"
    assert codes["diff_batch"] == 2 and [p["verdict"] for p in outputs["diff_batch"][1]["pairs"]] == [
        "faithful",
        "trouble",
    ]
    assert {document["schema"] for _, document in outputs.values()} == set(SHIPPED)
    scale = outputs["inspect_broadcast"][1]["layers"][0]["params"][0]
    assert (scale["shape"], scale["stored_shape"]) == ([3, 8], [3, 1])


@pytest.mark.parametrize(
    "name",
    [
        "inspect_pt",
        "inspect_onnx_all",
        "inspect_state_dict",
        "inspect_broadcast",
        "diff_faithful",
        "diff_dynamo",
        "diff_slimmed",
        "diff_tampered",
        "diff_unrelated",
        "diff_only_problems",
        "fuse",
        "fuse_against",
        "fuse_against_tampered",
        "verify",
        "verify_per_layer",
        "verify_tampered",
        "plugins",
        "diff_batch",
    ],
)
def test_real_output_validates(outputs, name):
    _, document = outputs[name]
    assert validate(document) == []


def _drop(document: dict, *path) -> dict:
    broken = copy.deepcopy(document)
    holder = broken
    for key in path[:-1]:
        holder = holder[key]
    del holder[path[-1]]
    return broken


def _set(document: dict, value, *path) -> dict:
    broken = copy.deepcopy(document)
    holder = broken
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return broken


@pytest.mark.parametrize(
    "name, breakage, where",
    [
        ("diff_tampered", lambda d: _drop(d, "summary", "coverage"), "summary"),
        ("diff_tampered", lambda d: _drop(d, "layers", 0, "params", 0, "max_rel_err"), "layers/0/params/0"),
        ("diff_tampered", lambda d: _set(d, "broken", "summary", "verdict"), "summary/verdict"),
        ("diff_tampered", lambda d: _set(d, "ok", "layers", 2, "params", 0, "bad_channels"), "bad_channels"),
        ("diff_tampered", lambda d: _set(d, [1.0], "layers", 2, "params", 0, "target_range"), "target_range"),
        ("diff_tampered", lambda d: _set(d, -1, "summary", "matched"), "summary/matched"),
        ("diff_tampered", lambda d: _set(d, "graphinspect/diff@2", "schema"), "schema"),
        ("verify_per_layer", lambda d: _drop(d, "layers", 0, "growth"), "layers/0"),
        ("verify_per_layer", lambda d: _set(d, "differ", "verdict"), "verdict"),
        ("verify_per_layer", lambda d: _set(d, 1.5, "outputs", 0, "top1_agreement"), "top1_agreement"),
        ("inspect_pt", lambda d: _set(d, "7", "layers", 0, "params", 0, "nan"), "nan"),
        ("fuse_against", lambda d: _set(d, "missing", "against", "layers", 0, "status"), "against"),
        ("plugins", lambda d: _set(d, "broken", "plugins", 0, "status"), "plugins/0/status"),
    ],
)
def test_schemas_refuse_broken_documents(outputs, name, breakage, where):
    _, document = outputs[name]
    errors = validate(breakage(document), document["schema"])
    assert errors, "the schema accepted a broken document"
    assert any(where in error for error in errors), errors


def test_fields_added_within_a_major_version_are_allowed(outputs):
    _, document = outputs["diff_tampered"]
    grown = _set(document, [0.0, 0.1], "layers", 2, "params", 0, "a_field_added_later")
    grown["summary"]["new_count"] = 3
    assert validate(grown) == []


def test_schemas_and_type_marker_ship_as_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    data = config["tool"]["setuptools"]["package-data"]
    shipped = {
        str(path.relative_to(REPO))
        for package, patterns in data.items()
        for pattern in patterns
        for path in (REPO / Path(*package.split("."))).iterdir()
        if fnmatch.fnmatch(path.name, pattern)
    }
    assert {f"inspector/schemas/{schema_file(name)}" for name in SHIPPED} <= shipped
    assert "inspector/py.typed" in shipped
