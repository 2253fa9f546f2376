"""The command line as a user meets it: `inspect` output (golden, JSON), `--version`,
and every bad input ending in one line on stderr, exit status 2, nothing written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from inspector import __version__
from tests.support import SAMPLES, check_golden, run_cli

# ------------------------------------------------------------------ deterministic models


def tiny_onnx(path: Path) -> None:
    """Conv(+bias) -> BatchNormalization -> Relu -> GlobalAveragePool -> Flatten -> Gemm,
    every value from arange/linspace, one NaN planted in the Gemm bias."""
    weight = np.linspace(-0.5, 0.5, 4 * 3 * 3 * 3, dtype=np.float32).reshape(4, 3, 3, 3)
    bias = np.arange(4, dtype=np.float32) / 10
    scale = np.linspace(0.5, 2.0, 4, dtype=np.float32)
    shift = np.linspace(-1, 1, 4, dtype=np.float32)
    mean = np.linspace(-0.2, 0.2, 4, dtype=np.float32)
    var = np.linspace(0.5, 1.5, 4, dtype=np.float32)
    fc_weight = np.arange(20, dtype=np.float16).reshape(5, 4) / 20
    fc_bias = np.array([0, 1, np.nan, 3, 4], dtype=np.float32)
    inits = [
        numpy_helper.from_array(weight, "conv.weight"),
        numpy_helper.from_array(bias, "conv.bias"),
        numpy_helper.from_array(scale, "bn.weight"),
        numpy_helper.from_array(shift, "bn.bias"),
        numpy_helper.from_array(mean, "bn.running_mean"),
        numpy_helper.from_array(var, "bn.running_var"),
        numpy_helper.from_array(fc_weight, "fc.weight"),
        numpy_helper.from_array(fc_bias, "fc.bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization",
            ["c", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
            ["b"],
            name="/bn/BatchNormalization",
            epsilon=1e-5,
        ),
        helper.make_node("Relu", ["b"], ["r"], name="/relu/Relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="/GlobalAveragePool"),
        helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
        helper.make_node("Cast", ["f"], ["f16"], name="/Cast", to=TensorProto.FLOAT16),
        helper.make_node("Gemm", ["f16", "fc.weight"], ["g"], name="/fc/Gemm", transB=1),
        helper.make_node("Cast", ["g"], ["g32"], name="/Cast_1", to=TensorProto.FLOAT),
        helper.make_node("Add", ["g32", "fc.bias"], ["y"], name="/fc/Add"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        inits,
    )
    model = helper.make_model(
        graph, producer_name="graphinspect-tests", producer_version="1", opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "imgsz", "[8, 8]"
    onnx.save(model, path)


def tiny_state_dict(path: Path) -> None:
    """A Conv+BN+Linear state_dict from arange values (an int64 counter included)."""
    state = {
        "conv.weight": torch.arange(4 * 3 * 9, dtype=torch.float32).reshape(4, 3, 3, 3) / 100 - 0.5,
        "bn.weight": torch.linspace(0.5, 2.0, 4),
        "bn.bias": torch.linspace(-1, 1, 4),
        "bn.running_mean": torch.linspace(-0.2, 0.2, 4),
        "bn.running_var": torch.linspace(0.5, 1.5, 4),
        "bn.num_batches_tracked": torch.tensor(12),
        "fc.weight": (torch.arange(20, dtype=torch.float16).reshape(5, 4) / 20),
        "fc.bias": torch.zeros(5),
    }
    torch.save(state, path)


@pytest.fixture
def workdir(tmp_path):
    tiny_onnx(tmp_path / "tiny.onnx")
    tiny_state_dict(tmp_path / "tiny.pt")
    return tmp_path


# ------------------------------------------------------------------ inspect


def test_inspect_onnx_golden(workdir, cli, monkeypatch):
    monkeypatch.chdir(workdir)
    code, out, err = cli("inspect", "tiny.onnx")
    assert (code, err) == (0, "")
    check_golden("inspect_tiny_onnx.txt", out)


def test_inspect_state_dict_golden(workdir, cli, monkeypatch):
    monkeypatch.chdir(workdir)
    code, out, err = cli("inspect", "tiny.pt", "--no-color")
    assert (code, err) == (0, "")
    check_golden("inspect_tiny_pt.txt", out)


def test_inspect_json_statistics_are_recomputable(workdir, cli):
    code, out, err = cli("inspect", str(workdir / "tiny.onnx"), "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["schema"] == "graphinspect/inspect@1"
    assert document["tool"] == {"name": "graphinspect", "version": __version__}
    model = document["model"]
    assert (model["format"], model["producer"]) == ("onnx", "graphinspect-tests 1")
    assert model["inputs"] == [{"name": "x", "shape": ["batch", 3, 8, 8], "dtype": "float32"}]
    assert model["metadata"] == {"imgsz": "[8, 8]"}
    assert model["dtypes"] == {"float32": 4 * 27 + 4 * 5 + 5, "float16": 20}
    by_tensor = {p["tensor"]: p for layer in document["layers"] for p in layer["params"]}
    proto = onnx.load(workdir / "tiny.onnx")
    for init in proto.graph.initializer:
        values = numpy_helper.to_array(init).astype(np.float64)
        entry = by_tensor[init.name]
        finite = values[np.isfinite(values)]
        assert entry["shape"] == list(values.shape)
        assert entry["min"] == pytest.approx(finite.min())
        assert entry["max"] == pytest.approx(finite.max())
        assert entry["mean"] == pytest.approx(finite.mean(), abs=1e-6)
        assert entry["std"] == pytest.approx(finite.std(), abs=1e-6)
        assert entry["nan"] == int(np.isnan(values).sum())
    kinds = {layer["name"]: layer["kind"] for layer in document["layers"]}
    assert kinds == {
        "/conv/Conv": "conv",
        "/bn/BatchNormalization": "batchnorm",
        "/fc/Gemm": "linear",
        "/fc/Add": "elementwise",
    }


def test_inspect_all_and_layer_filter(workdir, cli):
    code, out, _ = cli("inspect", str(workdir / "tiny.onnx"), "--format", "json", "--all")
    assert code == 0
    assert len(json.loads(out)["layers"]) == 9
    code, out, _ = cli("inspect", str(workdir / "tiny.onnx"), "--format", "json", "--layer", "/bn/*")
    assert [layer["name"] for layer in json.loads(out)["layers"]] == ["/bn/BatchNormalization"]


def test_inspect_writes_report_file_by_suffix(workdir, cli):
    target = workdir / "report.json"
    code, out, err = cli("inspect", str(workdir / "tiny.pt"), "-o", str(target))
    assert (code, out, err) == (0, "", "")
    document = json.loads(target.read_text())
    assert document["model"]["format"] == "pytorch-state-dict"
    assert [layer["name"] for layer in document["layers"]] == ["conv", "bn", "fc"]


@pytest.mark.parametrize(
    "sample",
    [
        "rtdetr_stem.pt",
        "rtdetr_stem_state_dict.pt",
        "rtdetr_stem.onnx",
        "resnet_block.pt",
        "resnet_block_state_dict.pt",
        "resnet_block.onnx",
        "rtdetr_like.pt",
        "rtdetr_like.onnx",
    ],
)
def test_inspect_every_sample(sample, cli):
    code, out, err = cli("inspect", str(SAMPLES / sample), "--format", "json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["layers"] and document["model"]["parameters"] > 0


def test_ultralytics_sample_lists_every_conv_and_batchnorm_in_fp16(cli):
    code, out, _ = cli("inspect", str(SAMPLES / "rtdetr_like.pt"), "--format", "json")
    assert code == 0
    layers = json.loads(out)["layers"]
    convs = [layer for layer in layers if layer["op_type"] == "Conv2d"]
    norms = [layer for layer in layers if layer["op_type"] == "BatchNorm2d"]
    assert len(convs) == 12 and len(norms) == 13  # 4 Conv, 2 RepC3 1x1, 3 RepConv x 2 branches; + 1 identity BN
    assert {p["dtype"] for layer in convs + norms for p in layer["params"] if p["name"] != "num_batches_tracked"} == {
        "float16"
    }
    assert all(layer["attrs"]["eps"] in (1e-3, 1e-5) for layer in norms)


def test_version(cli):
    code, out, _ = cli("--version")
    assert (code, out.strip()) == (0, f"graphinspect {__version__}")


# ------------------------------------------------------------------ bad input


def _truncate(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def _external(tmp_path: Path) -> Path:
    folder = tmp_path / "external"
    folder.mkdir()
    model = onnx.load(SAMPLES / "resnet_block.onnx")
    onnx.save_model(
        model,
        folder / "model.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    (folder / "weights.bin").unlink()
    return folder / "model.onnx"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_INPUTS = {
    "missing": (lambda tmp: tmp / "nope.pt", "no such file"),
    "directory": (lambda tmp: tmp, "is a directory"),
    "empty": (lambda tmp: _write(tmp / "empty.pt", b""), "is empty"),
    "unknown": (lambda tmp: _write(tmp / "notes.onnx", b"hello\n"), "unknown model format"),
    "truncated_pt": (lambda tmp: _truncate(SAMPLES / "resnet_block.pt", tmp / "cut.pt"), "truncated or corrupted"),
    "truncated_onnx": (
        lambda tmp: _truncate(SAMPLES / "resnet_block.onnx", tmp / "cut.onnx"),
        "truncated or corrupted",
    ),
    "missing_external_data": (_external, "weights.bin"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2(case, tmp_path, cli):
    make, problem = BAD_INPUTS[case]
    path = make(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out, err = cli("inspect", str(path), "-o", str(tmp_path / "report.json"))
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"graphinspect: error: {path}: ")
    assert problem in lines[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"model": _Exploit(marker)}, path)
    result = run_cli("inspect", str(path))
    assert result.returncode == 2
    assert not marker.exists()
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert str(path) in line and "system" in line and "refused" in line
    debug = run_cli("inspect", str(path), "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert not marker.exists()


def test_usage_errors_exit_2(cli, workdir):
    assert cli()[0] == 2
    code, _, err = cli("inspect")
    assert code == 2 and "required" in err
    code, _, err = cli("inspect", str(workdir / "tiny.onnx"), "--format", "yaml")
    assert code == 2 and "unknown --format 'yaml'" in err and len(err.splitlines()) == 1


def test_output_into_missing_folder_is_an_error(cli, workdir):
    code, _, err = cli("inspect", str(workdir / "tiny.onnx"), "-o", str(workdir / "no" / "such" / "r.json"))
    assert code == 2 and "does not exist" in err
    assert not (workdir / "no").exists()


def test_python_dash_m_matches_console_script(tmp_path):
    script = shutil.which("graphinspect")
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"graphinspect {__version__}"
    if script:  # installed with pip install -e .
        import subprocess

        installed = subprocess.run([script, "--version"], capture_output=True, text=True)
        assert installed.stdout.strip() == result.stdout.strip()


def test_a_command_runs_with_rare_collections_and_restores_the_collector():
    import gc

    from inspector.cli import GC_THRESHOLD, OLD_GC_THRESHOLD, rare_collections

    before = gc.get_threshold()
    with rare_collections():
        assert gc.get_threshold() == (GC_THRESHOLD, OLD_GC_THRESHOLD, OLD_GC_THRESHOLD)
        assert gc.get_freeze_count() > 0  # what was imported is never walked again
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_process_leaving_by_exit_keeps_its_models_and_collects_no_more(monkeypatch):
    """The supervised child leaves by os._exit: a diff's models are kept rather than
    freed one by one, and the collector is switched off rather than restored (restored,
    its first run walked every object still alive: 0.66 s at 10,000 blocks). Anywhere
    else, nothing is kept and the collector is as it was."""
    import gc

    from inspector import isolation
    from inspector.cli import main, rare_collections

    kept = object()
    isolation.keep_until_exit(kept)
    assert not isolation.ends_by_exit() and isolation._kept is None  # in-process: nothing kept
    code = main(["diff", str(SAMPLES / "rtdetr_stem.pt"), str(SAMPLES / "rtdetr_stem.onnx"), "--quiet"])
    assert code == 0 and isolation._kept is None and gc.isenabled()

    monkeypatch.setattr(isolation, "_kept", [])  # as in the supervised child
    thresholds = gc.get_threshold()
    try:
        isolation.keep_until_exit(kept)
        assert isolation.ends_by_exit() and isolation._kept == [kept]
        with rare_collections():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
