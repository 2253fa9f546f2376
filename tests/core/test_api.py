"""The Python API and the pytest helper, used as a user would: only public names.

Everything graphinspect-side comes from ``inspector`` (``load_model``, ``diff``,
``verify``, ``fuse``), ``inspector.testing``, ``inspector.errors`` and
``inspector.schemas``. The numbers of the tampered layer are re-computed here with numpy,
and a user's own test file runs in a fresh pytest with the plugin's fixture.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jsonschema
import numpy as np
import pytest

from inspector import diff, fuse, load_model, verify
from inspector.errors import InputError, UsageError
from inspector.schemas import load_schema
from inspector.testing import assert_export_faithful
from tests.support import REPO, SAMPLES
from tests.support.runs import (
    STEM_FACTORY,
    STEM_ONNX,
    STEM_PT,
    STEM_STATE_DICT,
    TAMPER_FACTOR,
    TAMPERED_CHANNEL,
    TAMPERED_NODE,
    tamper,
)


@pytest.fixture(autouse=True)
def _no_third_party_plugins(monkeypatch):
    monkeypatch.setenv("GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.chdir(REPO)  # model="samples.lookalikes:..." imports from the repository root


@pytest.fixture(scope="module")
def tampered(tmp_path_factory):
    return tamper(tmp_path_factory.mktemp("api") / "tampered.onnx")


def valid(document: dict) -> bool:
    jsonschema.validate(document, load_schema(document["schema"]))
    return True


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GRAPHINSPECT_", "PYTEST_"))}
    env.update(GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONPATH=str(REPO), NO_COLOR="1")
    return env


def test_import_inspector_stays_light_and_diff_is_the_function():
    probe = textwrap.dedent(
        """
        import json, sys
        import inspector
        heavy = sorted({m.split(".")[0] for m in sys.modules} & {"numpy", "torch", "onnx", "plugins", "rich"})
        import inspector.diff  # the core module, imported as the plugins do
        from inspector import diff
        from inspector.diff import diff_models
        print(json.dumps([heavy, callable(diff) and diff.__module__, diff_models.__module__]))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[], "inspector.api", "inspector.diff"]


def test_load_model_reads_by_content():
    model = load_model(STEM_PT)
    assert model.format == "pytorch-module"
    assert [layer.name for layer in load_model(STEM_ONNX).param_layers()][0] == "/model/model.0/conv/Conv"


def test_diff_of_a_faithful_export():
    report = diff(STEM_PT, STEM_ONNX)
    assert report.faithful and report.verdict == "faithful" and report.exit_status == 0
    assert report.problems == []
    assert [layer.target for layer in report.result.layers] == [layer["target"] for layer in report.document["layers"]]
    assert valid(report.document)
    assert report.summary.endswith("The export is faithful.")


def test_diff_of_a_tampered_export_names_the_layer_and_the_numbers(tampered):
    import onnx
    from onnx import numpy_helper

    report = diff(STEM_PT, tampered)
    assert (report.verdict, report.faithful, report.exit_status) == ("differs", False, 1)
    (layer,) = report.problems
    assert (layer.target, layer.status) == (TAMPERED_NODE, "mismatch")
    weight = next(param for param in layer.params if param.name == "weight")
    assert weight.bad_channels == [TAMPERED_CHANNEL]

    model = onnx.load(str(STEM_ONNX))
    name = next(node for node in model.graph.node if node.name == TAMPERED_NODE).input[1]
    original = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name)).astype(np.float64)
    expected_abs = (TAMPER_FACTOR - 1) * np.abs(original[TAMPERED_CHANNEL]).max()
    assert weight.max_abs_err == pytest.approx(expected_abs, rel=1e-4)
    assert weight.max_rel_err == pytest.approx(expected_abs / np.abs(original).max(), rel=1e-4)


def test_diff_takes_loaded_models_and_tolerances(tampered):
    loose = diff(load_model(STEM_PT), load_model(tampered), rtol=1.0, atol=1.0)
    assert loose.faithful and loose.document["tolerance"] == {"rtol": 1.0, "atol": 1.0}
    with pytest.raises(UsageError, match="rtol must be a number >= 0"):
        diff(STEM_PT, STEM_ONNX, rtol=-1)


def test_reports_render_in_every_format_and_save_by_suffix(tampered, tmp_path):
    report = diff(STEM_PT, tampered)
    assert TAMPERED_NODE in report.render("table")
    assert report.render("markdown").startswith("## graphinspect diff: DIFFERS")
    assert json.loads(report.to_json())["summary"]["verdict"] == "differs"
    assert json.loads(report.render("sarif"))["runs"][0]["results"][0]["ruleId"] == "graphinspect/mismatch"
    report.save(tmp_path / "result.json")
    assert json.loads((tmp_path / "result.json").read_text(encoding="utf-8")) == json.loads(report.to_json())
    report.save(tmp_path / "result.xml")
    assert (tmp_path / "result.xml").read_text(encoding="utf-8").startswith("<?xml")
    report.save(tmp_path / "anything.txt", fmt="markdown")
    assert (tmp_path / "anything.txt").read_text(encoding="utf-8").startswith("## graphinspect diff")
    with pytest.raises(UsageError, match="refusing to overwrite an input file"):
        report.save(tampered)


def test_bad_input_raises_the_one_line_error(tmp_path):
    with pytest.raises(InputError) as caught:
        diff(tmp_path / "missing.pt", STEM_ONNX)
    assert str(caught.value) == f"{tmp_path / 'missing.pt'}: no such file"
    with pytest.raises(InputError, match="running it means unpickling it"):
        verify(SAMPLES / "resnet_block.pt", SAMPLES / "resnet_block.onnx")


def test_verify_compares_outputs_and_finds_the_first_divergent_layer(tampered):
    same = verify(STEM_STATE_DICT, STEM_ONNX, model=STEM_FACTORY, per_layer=True)
    assert (same.verdict, same.same, same.exit_status, same.first_divergent) == ("same", True, 0, None)
    assert len(same.layers) == len(diff(STEM_PT, STEM_ONNX).document["layers"])
    assert valid(same.document)

    differs = verify(STEM_STATE_DICT, tampered, model=STEM_FACTORY, per_layer=True, seed=3)
    assert (differs.verdict, differs.same, differs.exit_status) == ("differs", False, 1)
    assert differs.first_divergent == TAMPERED_NODE
    assert differs.outputs[0]["status"] == "differs"
    assert differs.layers is not None and valid(differs.document)

    plain = verify(SAMPLES / "resnet_block.pt", SAMPLES / "resnet_block.onnx", trust_pickle=True)
    assert plain.same and plain.layers is None


def test_fuse_writes_the_fused_weights_and_checks_them(tmp_path, tampered):
    import torch

    report = fuse(STEM_PT, weights=tmp_path / "fused.pt", against=STEM_ONNX)
    assert report.ok and report.against["verdict"] == "faithful"
    assert report.written["path"] == str(tmp_path / "fused.pt")
    state = torch.load(tmp_path / "fused.pt", weights_only=True)
    assert len(state) == report.written["tensors"]
    group = next(group for group in report.groups if group["fused_name"] == "model.0.conv")
    weight = next(param for param in group["params"] if param["name"] == "weight")
    fused = state["model.0.conv.weight"].double().numpy()
    assert weight["after_range"] == pytest.approx([fused.min(), fused.max()], rel=1e-6)

    narrowed = fuse(STEM_PT, layers=["model.2.*"], against=tampered)
    assert not narrowed.ok and narrowed.exit_status == 1
    assert [group["fused_name"] for group in narrowed.groups] == ["model.2.conv"]


# ----------------------------------------------------------------------------- testing


def test_assert_export_faithful_passes_a_faithful_export():
    report = assert_export_faithful(STEM_PT, STEM_ONNX)
    assert report.faithful


def test_assert_export_faithful_fails_with_the_problems_table(tampered):
    with pytest.raises(AssertionError) as caught:
        assert_export_faithful(STEM_PT, tampered)
    message = str(caught.value)
    first = message.splitlines()[0]
    assert first == f"{tampered} is not a faithful export of {STEM_PT} (verdict: differs)"
    assert f"MISMATCH   {TAMPERED_NODE}" in message
    assert f"ch {TAMPERED_CHANNEL}" in message
    assert "/model/model.0/conv/Conv" not in message  # ok layers are left out
    assert "Verdict: DIFFERS" in message
    assert_export_faithful(STEM_PT, tampered, rtol=1.0, atol=1.0)  # loose enough to pass


def test_assert_export_faithful_takes_a_live_module(tmp_path):
    import torch
    from torch import nn

    from samples import lookalikes
    from tests.support.exports import export

    model = lookalikes.randomise_batchnorm(lookalikes.resnet_block(8), seed=0).eval()  # picklable: whole module
    export(model, (torch.rand(1, 3, 32, 32),), tmp_path / "resnet.onnx", "legacy")
    assert assert_export_faithful(model, tmp_path / "resnet.onnx").document["source"]["format"] == "pytorch-module"

    class Local(nn.Module):  # defined in a function: cannot be pickled, so its state_dict is saved
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.fc = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))

    local = lookalikes.randomise_batchnorm(Local(), seed=2).eval()
    export(local, (torch.rand(1, 3, 16, 16),), tmp_path / "local.onnx", "legacy")
    report = assert_export_faithful(local, tmp_path / "local.onnx")
    assert report.document["source"]["format"] == "pytorch-state-dict"
    with torch.no_grad():
        local.fc.weight[1] += 0.1
    with pytest.raises(AssertionError) as caught:
        assert_export_faithful(local, tmp_path / "local.onnx")
    assert "not a faithful export of <the Local module>" in str(caught.value)
    assert "MISMATCH   /fc/Gemm" in str(caught.value) and "ch 1" in str(caught.value)
    with pytest.raises(TypeError, match="expected a model file path or a torch.nn.Module"):
        assert_export_faithful(42, tmp_path / "local.onnx")


def test_a_users_test_suite_uses_the_fixture_and_the_helper(tmp_path, tampered):
    (tmp_path / "pytest.ini").write_text("[pytest]\ngraphinspect_rtol = 1e-4\n", encoding="utf-8")
    (tmp_path / "test_export.py").write_text(
        textwrap.dedent(
            f"""
            from inspector.testing import assert_export_faithful

            def test_helper():
                assert_export_faithful({str(STEM_PT)!r}, {str(STEM_ONNX)!r})

            def test_fixture(export_faithful):
                assert export_faithful.keywords == {{"rtol": 1e-4}}
                export_faithful({str(STEM_PT)!r}, {str(STEM_ONNX)!r})

            def test_tampered(export_faithful):
                export_faithful({str(STEM_PT)!r}, {str(tampered)!r})
            """
        ),
        encoding="utf-8",
    )
    env = {**_env(), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "inspector.pytest_plugin", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 2 passed" in done.stdout
    assert f"AssertionError: {tampered} is not a faithful export of {STEM_PT}" in done.stdout
    assert f"MISMATCH   {TAMPERED_NODE}" in done.stdout
