"""``graphinspect verify``: where the models part, after reorderings too, and what it says.

Small torch models exported with the legacy exporter, changed in the ONNX file where a
test needs a difference; the command line is driven in-process.
"""

from __future__ import annotations

import json
import re
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

from samples import lookalikes  # noqa: E402
from tests.support.schemas import schema_errors  # noqa: E402
from tests.zoo.zoo_variants import reverse_topk, scale_channel  # noqa: E402

SELECT = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Select(nn.Module):
        '''Conv features, the 10 highest-scoring positions (a TopK), two Linears on them.'''

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, padding=1)
            self.bn = nn.BatchNorm2d(16)
            self.fc1 = nn.Linear(16, 32)
            self.fc2 = nn.Linear(32, 8)

        def forward(self, x):
            features = self.bn(self.conv(x)).flatten(2).transpose(1, 2)
            index = features.sum(-1).topk(10, dim=1).indices
            rows = features.gather(1, index[..., None].expand(-1, -1, 16))
            return self.fc2(torch.relu(self.fc1(rows)))


    def build():
        torch.manual_seed(0)
        return Select().eval()
    """
)


def _export(model, path: Path, example) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=17, input_names=["images"], output_names=["out"]
        )
    return path


def _verify(cli, *args: str) -> tuple[int, dict]:
    """Run verify for its JSON document, which must validate against the shipped schema."""
    code, out, err = cli("verify", *args, "--format", "json")
    assert code in (0, 1), err
    document = json.loads(out)
    assert schema_errors(document) == []
    return code, document


def _scale_matmul_column(source: Path, target: Path, node_name: str, column: int, factor: float) -> None:
    """One output feature of a MatMul's (in, out) weight x factor."""
    model = onnx.load(str(source))
    node = next(node for node in model.graph.node if node.name == node_name)
    initializer = next(tensor for tensor in model.graph.initializer if tensor.name == node.input[1])
    values = numpy_helper.to_array(initializer).copy()
    values[:, column] *= factor
    initializer.CopyFrom(numpy_helper.from_array(values, initializer.name))
    onnx.save(model, str(target))


@pytest.fixture(scope="module")
def select(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("select")
    (folder / "select.py").write_text(SELECT)
    namespace: dict = {}
    exec(compile(SELECT, "select.py", "exec"), namespace)  # the factory's own code, to export it
    model = lookalikes.randomise_batchnorm(namespace["build"](), seed=4).eval()
    torch.save(model.state_dict(), folder / "select_sd.pt")
    _export(model, folder / "select.onnx", torch.rand(1, 3, 8, 8))
    reverse_topk(folder / "select.onnx", folder / "reversed.onnx")
    return {"factory": f"{folder / 'select.py'}:build", "pt": folder / "select_sd.pt", "folder": folder}


def test_rows_after_a_topk_are_compared_as_a_set(cli, select):
    code, document = _verify(
        cli, str(select["pt"]), str(select["folder"] / "reversed.onnx"), "--model", select["factory"], "--per-layer"
    )
    assert code == 0 and document["verdict"] == "same"
    assert document["outputs"][0]["sorted_rows"] is True
    by_module = {layer["module"]: layer for layer in document["layers"]}
    assert by_module["bn"]["reordered_by"] == [] and by_module["bn"]["status"] == "same"
    for name in ("fc1", "fc2"):
        assert by_module[name]["status"] == "same" and by_module[name]["rows_reordered"] is True
        assert by_module[name]["reordered_by"][0].startswith("TopK ")
    assert document["first_divergent"] is None


def test_a_change_after_the_reordering_is_found_when_its_input_rows_match(cli, select):
    folder = select["folder"]
    node = _matmul_of(folder / "reversed.onnx", "fc2")
    _scale_matmul_column(folder / "reversed.onnx", folder / "fc2.onnx", node, column=3, factor=1.02)
    code, document = _verify(
        cli, str(select["pt"]), str(folder / "fc2.onnx"), "--model", select["factory"], "--per-layer"
    )
    assert document["first_divergent"] == node
    fc2 = next(layer for layer in document["layers"] if layer["module"] == "fc2")
    assert fc2["status"] == "differs" and fc2["unpaired_rows"] == 10


def test_the_first_layer_after_the_reordering_is_never_blamed(cli, select):
    folder = select["folder"]
    node = _matmul_of(folder / "reversed.onnx", "fc1")
    _scale_matmul_column(folder / "reversed.onnx", folder / "fc1.onnx", node, column=3, factor=1.5)
    code, document = _verify(
        cli, str(select["pt"]), str(folder / "fc1.onnx"), "--model", select["factory"], "--per-layer"
    )
    assert code == 1 and document["verdict"] == "differs"
    assert document["first_divergent"] is None
    by_module = {layer["module"]: layer for layer in document["layers"]}
    assert by_module["fc1"]["status"] == "not_comparable" and "TopK" in by_module["fc1"]["reason"]
    assert by_module["fc2"]["status"] == "not_comparable"
    assert "TopK" in document["divergence_reason"] and "selection" in document["divergence_reason"]


def _matmul_of(path: Path, module: str) -> str:
    model = onnx.load(str(path))
    return next(node.name for node in model.graph.node if node.op_type == "MatMul" and f"/{module}/" in node.name)


# ----------------------------------------------------------------------------- one channel of many


def test_one_changed_channel_of_256_is_named(cli, tmp_path):
    """A 2% change in one of 256 channels is 1/256 of the tensor: per channel, it shows."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 256, 3, padding=1, bias=False),
        nn.BatchNorm2d(256),
        nn.ReLU(),
        nn.Conv2d(256, 8, 1, bias=False),
        nn.BatchNorm2d(8),
    )
    model = lookalikes.randomise_batchnorm(model, seed=2).eval()
    with torch.no_grad():  # a quiet channel: against the tensor's max, its change would vanish
        model[1].weight[77], model[1].bias[77] = 0.03, 0.0
    torch.save(model, tmp_path / "net.pt")
    onnx_path = _export(model, tmp_path / "net.onnx", torch.rand(1, 3, 8, 8))
    node = next(node.name for node in onnx.load(str(onnx_path)).graph.node if node.op_type == "Conv")
    scale_channel(onnx_path, tmp_path / "tampered.onnx", node, channel=77, factor=1.02)
    code, document = _verify(
        cli, str(tmp_path / "net.pt"), str(tmp_path / "tampered.onnx"), "--trust-pickle", "--per-layer"
    )
    assert document["first_divergent"] == node
    first = document["layers"][0]
    assert first["worst_channel"] == 77 and first["max_rel_err"] > 5e-3 and first["growth"] is None
    # Relative to the whole tensor's max, the same error is within the 1e-3 tolerance.
    assert first["max_abs_err"] / max(abs(v) for v in _activation_range(model, node)) < 1e-3
    assert first["input_error"] == 0.0  # it reads the model's input
    second = document["layers"][1]
    assert second["inputs"] == [node] and second["input_error"] == pytest.approx(first["max_rel_err"])


def _activation_range(model, node: str) -> tuple[float, float]:
    """(min, max) of the first BatchNorm's output on verify's random input (seed 0)."""
    images = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    with torch.no_grad():
        out = model[1](model[0](torch.from_numpy(images)))
    return float(out.min()), float(out.max())


# ----------------------------------------------------------------------------- what it says


@pytest.fixture(scope="module")
def stem(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("stem")
    torch.manual_seed(0)
    model = lookalikes.randomise_batchnorm(lookalikes.rtdetr_stem(8), seed=1).eval()
    example = torch.rand(1, 3, 32, 32)
    _export(model, folder / "stem.onnx", example)
    torch.save(model, folder / "stem.pt")
    torch.jit.trace(model, example).save(str(folder / "stem_ts.pt"))
    scale_channel(folder / "stem.onnx", folder / "tampered.onnx", "/model/model.2/conv/Conv", channel=3, factor=1.5)
    # The same export with its output scaled after the last layer: a post-processing change.
    proto = onnx.load(str(folder / "stem.onnx"))
    output = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [f"{name}_raw" if name == output else name for name in node.output]
    proto.graph.initializer.append(numpy_helper.from_array(np.array(1.05, dtype=np.float32), "post_scale"))
    proto.graph.node.append(helper.make_node("Mul", [f"{output}_raw", "post_scale"], [output], name="post"))
    onnx.save(proto, str(folder / "post.onnx"))
    return {"pt": folder / "stem.pt", "ts": folder / "stem_ts.pt", "folder": folder}


def test_torchscript_per_layer_is_said_once(cli, stem):
    code, out, err = cli("verify", str(stem["ts"]), str(stem["folder"] / "tampered.onnx"), "--per-layer")
    assert code == 1
    assert out.count("cannot be hooked") == 2  # the warning, and why no layer is named
    assert "Layers (ONNX execution order)" not in out and "not compared [" not in out
    _, document = _verify(cli, str(stem["ts"]), str(stem["folder"] / "tampered.onnx"), "--per-layer")
    assert document["layers"] == [] and document["first_divergent"] is None
    assert [lint["code"] for lint in document["lint"]].count("per_layer_unavailable") == 1
    assert "cannot be hooked" in document["divergence_reason"]


def test_outputs_that_differ_after_every_compared_layer_say_so(cli, stem):
    code, document = _verify(cli, str(stem["pt"]), str(stem["folder"] / "post.onnx"), "--trust-pickle", "--per-layer")
    assert code == 1 and document["verdict"] == "differs"
    assert document["first_divergent"] is None
    assert all(layer["status"] == "same" for layer in document["layers"])
    assert "every compared layer is within tolerance" in document["divergence_reason"]


def test_an_output_without_a_counterpart_is_incomplete(cli, tmp_path):
    class Scores(nn.Module):
        def __init__(self, width: int):
            super().__init__()
            self.fc = nn.Linear(12, width)

        def forward(self, x):
            return self.fc(x.flatten(1))

    torch.manual_seed(0)
    example = torch.rand(1, 3, 2, 2)
    torch.jit.trace(Scores(10).eval(), example).save(str(tmp_path / "ten.pt"))
    _export(Scores(7).eval(), tmp_path / "seven.onnx", example)
    code, document = _verify(cli, str(tmp_path / "ten.pt"), str(tmp_path / "seven.onnx"))
    (output,) = document["outputs"]
    assert code == 1 and document["verdict"] == "incomplete"
    assert output["status"] == "incomplete" and output["max_abs_err"] is None
    assert "[1, 7]" in output["reason"] and "[1, 10]" in output["reason"]
    code, out, _ = cli("verify", str(tmp_path / "ten.pt"), str(tmp_path / "seven.onnx"))
    assert code == 1 and "INCOMPLETE: out: it has shape [1, 7]" in " ".join(out.split())


@pytest.mark.parametrize("brightest, flagged_by", [(180, "k/225 grid"), (230, "above 1 and at most 255/225")])
def test_an_image_divided_by_225_is_flagged_dark_or_bright(cli, stem, tmp_path, brightest, flagged_by):
    pixels = np.random.default_rng(brightest).integers(0, brightest + 1, (1, 3, 32, 32)).astype(np.float32)
    for divisor in (225, 255):
        np.save(tmp_path / f"x{divisor}.npy", pixels / np.float32(divisor))
        _, document = _verify(
            cli,
            str(stem["pt"]),
            str(stem["folder"] / "stem.onnx"),
            "--trust-pickle",
            "--input",
            str(tmp_path / f"x{divisor}.npy"),
        )
        lints = [lint for lint in document["lint"] if lint["code"] == "scaled_by_225"]
        if divisor == 225:
            assert len(lints) == 1 and flagged_by in lints[0]["message"]
        else:
            assert lints == []


def test_the_tables_fit_80_columns_without_splitting_a_number(cli, stem, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    args = [str(stem["pt"]), str(stem["folder"] / "tampered.onnx"), "--trust-pickle", "--per-layer"]
    code, out, _ = cli("verify", *args)
    _, document = _verify(cli, *args)
    assert code == 1
    assert max(len(line) for line in out.splitlines()) <= 80
    from inspector.output import fmt_float

    numbers = [fmt_float(output[key]) for output in document["outputs"] for key in ("max_abs_err", "max_rel_err")]
    numbers += [fmt_float(layer["max_rel_err"]) for layer in document["layers"]]
    lines = out.splitlines()
    for number in numbers:
        assert any(re.search(rf"(^|\s){re.escape(number)}(\s|$)", line) for line in lines), number


def test_the_table_starts_with_the_verdict_and_where_the_models_part(cli, stem):
    from plugins.commands.verify.report import divergence_sentence, verdict_sentence

    args = [str(stem["pt"]), str(stem["folder"] / "tampered.onnx"), "--trust-pickle", "--per-layer"]
    code, out, _ = cli("verify", *args)
    _, document = _verify(cli, *args)
    assert code == 1 and document["verdict"] == "differs"
    head = out.split("\n\n")[0].splitlines()  # before the first blank line; long sentences wrap
    assert head[0] == verdict_sentence(document) and head[0].startswith("DIFFERS")
    rest = " ".join(line.strip() for line in head[1:])
    assert rest == divergence_sentence(document) and document["first_divergent"] in rest


def test_with_o_the_verdict_sentence_goes_to_the_terminal(cli, stem, tmp_path):
    from plugins.commands.verify.report import verdict_sentence

    args = [str(stem["pt"]), str(stem["folder"] / "tampered.onnx"), "--trust-pickle"]
    report = tmp_path / "verify.html"
    code, out, err = cli("verify", *args, "-o", str(report))
    _, document = _verify(cli, *args)
    assert (code, out) == (1, "")
    assert err == f"{verdict_sentence(document)}; report written to {report}\n"
    assert report.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
