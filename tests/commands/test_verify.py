"""``graphinspect verify``: run both models, compare outputs and layers, lint the input.

The models are built here with random weights (BatchNorm statistics randomised) and
exported with the legacy exporter; the command line is driven as a user would, in
process (one subprocess checks the refusal's stderr as a user sees it).
"""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.support import SAMPLES, run_cli

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from samples import lookalikes  # noqa: E402

SIZE = 32
TAMPERED_CONV = "/model/model.2/conv/Conv"


def export_legacy(model, path: Path, example) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            output_names=["output0"],
        )


def tiny_net():
    torch.manual_seed(0)
    return lookalikes.randomise_batchnorm(lookalikes.rtdetr_stem(8), seed=1).eval()


@pytest.fixture(scope="module")
def stem(tmp_path_factory):
    """A small Conv+BN net in every form verify runs, with its export and a tampered export."""
    folder = tmp_path_factory.mktemp("stem")
    model = tiny_net()
    example = torch.rand(1, 3, SIZE, SIZE)
    export_legacy(model, folder / "stem.onnx", example)
    torch.save(model.state_dict(), folder / "stem_sd.pt")
    torch.save(model, folder / "stem_module.pt")
    torch.jit.trace(model, example).save(str(folder / "stem_ts.pt"))
    (folder / "factory.py").write_text(
        textwrap.dedent("""
        from samples.lookalikes import rtdetr_stem

        def build():
            return rtdetr_stem(8)
    """)
    )

    proto = onnx.load(str(folder / "stem.onnx"))
    node = next(node for node in proto.graph.node if node.name == TAMPERED_CONV)
    initializer = next(tensor for tensor in proto.graph.initializer if tensor.name == node.input[1])
    weight = onnx.numpy_helper.to_array(initializer).copy()
    weight[0] *= 1.5  # one output channel of one conv
    initializer.CopyFrom(onnx.numpy_helper.from_array(weight, initializer.name))
    onnx.save(proto, str(folder / "stem_tampered.onnx"))
    return folder


def verify_json(cli, *args: str) -> tuple[int, dict, str]:
    code, out, err = cli("verify", *args, "--format", "json")
    return code, (json.loads(out) if out.strip() else {}), err


# ----------------------------------------------------------------------------- outputs


def test_same_model_verifies_as_same(cli, stem):
    code, document, err = verify_json(
        cli, str(stem / "stem_sd.pt"), str(stem / "stem.onnx"), "--model", f"{stem / 'factory.py'}:build"
    )
    assert code == 0, err
    assert document["schema"] == "graphinspect/verify@2"
    assert document["verdict"] == "same"
    assert document["source"]["runner"].startswith("factory ")
    assert document["inputs"][0]["origin"] == "random"
    assert document["inputs"][0]["shape"] == [1, 3, SIZE, SIZE]
    assert "layers" not in document and document["first_divergent"] is None
    (output,) = document["outputs"]
    assert output["status"] == "same" and output["sorted_rows"] is False
    for key in ("max_abs_err", "max_rel_err", "mean_abs_err", "median_abs_err"):
        assert 0 <= output[key] < 1e-4
    assert output["cosine"] > 0.99999
    assert output["top1_agreement"] == 1.0


def test_tampered_channel_is_found_at_its_layer(cli, stem):
    code, document, err = verify_json(
        cli, str(stem / "stem_module.pt"), str(stem / "stem_tampered.onnx"), "--trust-pickle", "--per-layer"
    )
    assert code == 1, err
    assert document["verdict"] == "differs"
    assert document["first_divergent"] == TAMPERED_CONV
    layers = document["layers"]
    names = [layer["target"] for layer in layers]
    position = names.index(TAMPERED_CONV)
    assert position == 2
    assert all(layer["status"] == "same" for layer in layers[:position])
    bad = layers[position]
    assert bad["status"] == "differs" and bad["module"] == "model.2.bn"
    assert bad["diff_status"] == "mismatch" and bad["transform"] == "fold_batchnorm"
    assert bad["max_rel_err"] > 1e-2 and bad["growth"] > 100


def test_per_layer_runs_each_framework_once(cli, stem, monkeypatch):
    """--per-layer takes the outputs from its own runs: one PyTorch forward, one ONNX
    Runtime run (the intermediate tensors fit one chunk)."""
    import onnxruntime

    from plugins.commands.verify.runners import TorchRunner

    calls = {"torch": 0, "onnx": 0}
    forward, run = TorchRunner.forward, onnxruntime.InferenceSession.run

    def counted_forward(self, arrays):
        calls["torch"] += 1
        return forward(self, arrays)

    def counted_run(self, *args, **kwargs):
        calls["onnx"] += 1
        return run(self, *args, **kwargs)

    monkeypatch.setattr(TorchRunner, "forward", counted_forward)
    monkeypatch.setattr(onnxruntime.InferenceSession, "run", counted_run)
    code, document, err = verify_json(
        cli, str(stem / "stem_module.pt"), str(stem / "stem_tampered.onnx"), "--trust-pickle", "--per-layer"
    )
    assert code == 1, err
    assert calls == {"torch": 1, "onnx": 1}
    assert document["outputs"][0]["status"] == "differs"
    assert document["first_divergent"] == TAMPERED_CONV


def test_layers_glob_narrows_and_implies_per_layer(cli, stem):
    code, document, err = verify_json(
        cli, str(stem / "stem_module.pt"), str(stem / "stem.onnx"), "--trust-pickle", "--layer", "model.5.*"
    )
    assert code == 0, err
    assert [layer["module"] for layer in document["layers"]] == ["model.5.score", "model.5.box"]
    assert all(layer["status"] == "same" for layer in document["layers"])


# ----------------------------------------------------------------------------- the input contract


def bus_tensor(divisor: float) -> np.ndarray:
    from PIL import Image

    image = Image.open(SAMPLES / "bus.png").convert("RGB")
    pixels = np.asarray(image.resize((SIZE, SIZE)), dtype=np.float32)
    return (pixels.transpose(2, 0, 1)[None] / np.float32(divisor)).astype(np.float32)


def test_input_divided_by_225_is_flagged(cli, stem, tmp_path):
    np.save(tmp_path / "x.npy", bus_tensor(225))
    code, document, err = verify_json(
        cli, str(stem / "stem_module.pt"), str(stem / "stem.onnx"), "--trust-pickle", "--input", str(tmp_path / "x.npy")
    )
    assert code == 0, err
    assert document["inputs"][0]["origin"] == "file"
    assert abs(document["inputs"][0]["max"] - 255 / 225) < 1e-3
    (lint,) = [lint for lint in document["lint"] if lint["code"] == "scaled_by_225"]
    assert lint["severity"] == "warning" and "225" in lint["message"] and "255" in lint["message"]


def test_unscaled_input_is_flagged(cli, stem, tmp_path):
    np.savez(tmp_path / "x.npz", images=bus_tensor(1))
    code, document, err = verify_json(
        cli, str(stem / "stem_module.pt"), str(stem / "stem.onnx"), "--trust-pickle", "--input", str(tmp_path / "x.npz")
    )
    assert code == 0, err
    codes = {lint["code"]: lint for lint in document["lint"]}
    assert codes["not_scaled"]["severity"] == "warning" and "255" in codes["not_scaled"]["message"]
    assert "scaled_by_225" not in codes


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((1, 3, SIZE, SIZE), dtype=np.float64), "dtype float64, the ONNX model wants float32"),
        (
            np.zeros((1, 3, SIZE, SIZE // 2), dtype=np.float32),
            f"shape 1x3x{SIZE}x{SIZE // 2}, the ONNX model wants 1x3x{SIZE}x{SIZE}",
        ),
    ],
)
def test_input_of_wrong_dtype_or_shape_is_trouble(cli, stem, tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    code, out, err = cli(
        "verify",
        str(stem / "stem_module.pt"),
        str(stem / "stem.onnx"),
        "--trust-pickle",
        "--input",
        str(tmp_path / "bad.npy"),
    )
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "bad.npy" in err and message in err


def test_input_normalised_twice_is_flagged(cli, tmp_path):
    class Normalised(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1))
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv((x - self.mean) / self.std)

    torch.manual_seed(0)
    model = Normalised().eval()
    example = torch.rand(1, 3, 8, 8)
    export_legacy(model, tmp_path / "n.onnx", example)
    torch.jit.trace(model, example).save(str(tmp_path / "n.pt"))
    np.save(tmp_path / "x.npy", ((example - model.mean) / model.std).numpy())
    code, document, err = verify_json(
        cli, str(tmp_path / "n.pt"), str(tmp_path / "n.onnx"), "--input", str(tmp_path / "x.npy")
    )
    assert code == 0, err
    (lint,) = [lint for lint in document["lint"] if lint["code"] == "normalised_twice"]
    assert "normalises its input itself" in lint["message"] and "0.485" in lint["message"]


# ----------------------------------------------------------------------------- --image


def test_preprocess_image_stretch_and_letterbox_by_hand():
    from PIL import Image

    from plugins.commands.verify.inputs import preprocess_image

    colour = (10, 20, 30)
    image = Image.new("RGB", (40, 20), colour)  # 40 wide, 20 high
    expected = np.array(colour, dtype=np.float32) / 255

    stretched = preprocess_image(image, 32, 32, "stretch")
    assert stretched.shape == (1, 3, 32, 32) and stretched.dtype == np.float32
    assert np.allclose(stretched[0].transpose(1, 2, 0), expected, atol=1e-6)

    # r = min(32/20, 32/40) = 0.8 -> 32x16 pixels, centred: 8 rows of 114 above and below.
    boxed = preprocess_image(image, 32, 32, "letterbox")[0].transpose(1, 2, 0)
    grey = 114 / 255
    assert np.allclose(boxed[:8], grey) and np.allclose(boxed[24:], grey)
    assert np.allclose(boxed[8:24], expected, atol=1e-6)

    normalised = preprocess_image(image, 4, 4, "stretch", mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0], dtype=np.float16)
    assert normalised.dtype == np.float16
    assert np.allclose(normalised[0, :, 0, 0], (expected - 0.5) / np.array([0.25, 0.5, 1.0]), atol=1e-3)


def test_image_goes_through_the_canonical_pipeline(cli, stem, tmp_path):
    from PIL import Image

    gradient = np.zeros((24, 48, 3), dtype=np.uint8)
    gradient[..., 0] = np.linspace(0, 255, 48, dtype=np.uint8)[None, :]
    gradient[..., 2] = 200
    Image.fromarray(gradient).save(tmp_path / "g.png")
    code, document, err = verify_json(
        cli,
        str(stem / "stem_module.pt"),
        str(stem / "stem.onnx"),
        "--trust-pickle",
        "--image",
        str(tmp_path / "g.png"),
        "--resize",
        "letterbox",
    )
    assert code == 0, err
    (entry,) = document["inputs"]
    assert entry["origin"] == "image" and entry["shape"] == [1, 3, SIZE, SIZE] and entry["dtype"] == "float32"
    by_hand = np.asarray(Image.fromarray(gradient).resize((32, 16), Image.BILINEAR), dtype=np.float32) / 255
    assert entry["min"] == pytest.approx(min(by_hand.min(), 114 / 255))
    assert entry["max"] == pytest.approx(by_hand.max())
    assert not [lint for lint in document["lint"] if lint["severity"] == "warning"]


# ----------------------------------------------------------------------------- running PyTorch


def test_pickled_module_is_refused_without_trust(stem):
    path = stem / "stem_module.pt"
    result = run_cli("verify", str(path), str(stem / "stem.onnx"))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert str(path) in lines[0] and "--trust-pickle" in lines[0] and "--model" in lines[0]
    assert "executes code" in lines[0]


def test_trust_pickle_runs_the_pickled_module(cli, stem):
    code, document, err = verify_json(cli, str(stem / "stem_module.pt"), str(stem / "stem.onnx"), "--trust-pickle")
    assert code == 0, err
    assert document["source"] == {
        "path": str(stem / "stem_module.pt"),
        "format": "pytorch-module",
        "runner": "trusted pickle",
    }


def test_trust_pickle_help_says_it_runs_code(cli):
    code, out, err = cli("verify", "--help")
    assert code == 0
    assert "EXECUTES CODE FROM THE FILE" in " ".join(out.split())


def test_state_dict_needs_a_factory(cli, stem):
    code, out, err = cli("verify", str(stem / "stem_sd.pt"), str(stem / "stem.onnx"))
    assert code == 2 and "--model" in err and "state_dict" in err


def test_state_dict_with_a_package_factory(cli, stem, tmp_path, monkeypatch):
    package = tmp_path / "my_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "arch.py").write_text(
        "from samples.lookalikes import rtdetr_stem\n\ndef small():\n    return rtdetr_stem(8)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, document, err = verify_json(
        cli, str(stem / "stem_sd.pt"), str(stem / "stem.onnx"), "--model", "my_models.arch:small"
    )
    assert code == 0, err
    assert document["source"]["runner"] == "factory my_models.arch:small"


def test_factory_of_the_wrong_architecture_is_trouble(cli, stem):
    code, out, err = cli(
        "verify", str(stem / "stem_sd.pt"), str(stem / "stem.onnx"), "--model", "samples.lookalikes:resnet_block"
    )
    assert code == 2 and "do not fit" in err and len(err.strip().splitlines()) == 1


def test_pickled_module_with_a_factory_reads_weights_without_unpickling_code(cli):
    samples = SAMPLES
    code, document, err = verify_json(
        cli,
        str(samples / "rtdetr_like.pt"),
        str(samples / "rtdetr_like.onnx"),
        "--model",
        "samples.lookalikes:rtdetr_like",
        "--per-layer",
    )
    assert code == 0, err
    assert any(lint["code"] == "runner" and "float16" in lint["message"] for lint in document["lint"])
    layers = {layer["target"]: layer for layer in document["layers"]}
    merged = layers["/model/model.4/conv/Conv"]
    assert merged["transform"] == "merge_branches" and merged["status"] == "same"
    assert merged["module"] == "model.4.conv1.bn + model.4.conv2.bn + model.4.bn"
    assert all(layer["status"] == "not_comparable" for layer in layers.values() if layer["transform"] == "split_qkv")
    assert document["first_divergent"] is None


def test_torchscript_runs_as_it_is(cli, stem):
    code, document, err = verify_json(cli, str(stem / "stem_ts.pt"), str(stem / "stem.onnx"), "--per-layer")
    assert code == 0, err
    assert document["source"]["runner"] == "torchscript"
    assert any(lint["code"] == "per_layer_unavailable" for lint in document["lint"])
    assert all(layer["status"] == "not_comparable" for layer in document["layers"])


def test_torch_export_program_runs_and_hooks(cli, stem, tmp_path):
    model = tiny_net()
    program = torch.export.export(model, (torch.rand(1, 3, SIZE, SIZE),))
    torch.export.save(program, str(tmp_path / "stem.pt2"))
    code, document, err = verify_json(cli, str(tmp_path / "stem.pt2"), str(stem / "stem.onnx"), "--per-layer")
    assert code == 0, err
    assert document["source"]["format"] == "torch-export"
    assert [layer["status"] for layer in document["layers"]] == ["same"] * 7


# ----------------------------------------------------------------------------- TopK ties


def test_rows_permuted_among_ties_are_the_same():
    from plugins.commands.verify.metrics import Tolerances, compare_output

    expected = np.array(
        [[[0, 0, 10, 10, 0.9, 1], [5, 5, 20, 20, 0.5, 2], [1, 2, 3, 4, 0.5, 0], [7, 7, 9, 9, 0.1, 3]]], dtype=np.float32
    )
    actual = expected[:, [0, 2, 1, 3]] + np.float32(1e-7)
    tolerances = Tolerances(atol=1e-4, rtol=1e-3)
    result = compare_output("dets", actual, expected, tolerances)
    assert result.status == "same" and result.sorted_rows and result.max_abs_err < 1e-6

    really_different = actual.copy()
    really_different[0, 1, 0] += 1
    result = compare_output("dets", really_different, expected, tolerances)
    assert result.status == "differs" and not result.sorted_rows


def test_class_agreement_counts_ties_as_agreeing():
    from plugins.commands.verify.metrics import Tolerances, class_agreement

    expected = np.array([[0.1, 0.7, 0.7, 0.2, 0.0, 0.3, 0.05], [0.9, 0.1, 0.0, 0.2, 0.3, 0.4, 0.5]])
    actual = expected.copy()
    actual[0, 2] += 1e-6  # the tie is broken the other way
    actual[1] = actual[1][::-1]  # a real disagreement
    top1, topk, k = class_agreement(actual, expected, Tolerances(atol=1e-4, rtol=1e-3))
    assert top1 == 0.5 and k == 5 and topk < 1.0


def test_detection_rows_in_another_order_end_to_end(cli, tmp_path):
    class Rows(torch.nn.Module):
        def __init__(self, rows):
            super().__init__()
            self.register_buffer("rows", rows)

        def forward(self, x):
            return self.rows + 0 * x.mean()

    rows = torch.tensor([[[0, 0, 10, 10, 0.9, 1], [5, 5, 20, 20, 0.5, 2], [1, 2, 3, 4, 0.5, 0], [7, 7, 9, 9, 0.1, 3]]])
    example = torch.rand(1, 3, 8, 8)
    torch.jit.trace(Rows(rows), example).save(str(tmp_path / "rows.pt"))
    export_legacy(Rows(rows[:, [0, 2, 1, 3]].clone()), tmp_path / "rows.onnx", example)
    code, document, err = verify_json(cli, str(tmp_path / "rows.pt"), str(tmp_path / "rows.onnx"))
    assert code == 0, err
    (output,) = document["outputs"]
    assert output["status"] == "same" and output["sorted_rows"] is True
    assert any(lint["code"] == "sorted_rows" for lint in document["lint"])


def test_normalisation_folded_into_the_first_conv_is_flagged(cli, tmp_path):
    class Normalising(torch.nn.Module):
        def __init__(self, folded: bool):
            super().__init__()
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1))
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.folded = folded

        def forward(self, x):
            return self.conv(x if self.folded else (x - self.mean) / self.std)

    torch.manual_seed(0)
    model, exported = Normalising(False).eval(), Normalising(True).eval()
    exported.load_state_dict(model.state_dict())
    with torch.no_grad():  # what an optimiser folding (x - mean) / std into the conv writes
        exported.conv.weight.copy_(model.conv.weight / model.std.reshape(1, 3, 1, 1))
        exported.conv.bias.copy_(
            model.conv.bias - (model.conv.weight * (model.mean / model.std).reshape(1, 3, 1, 1)).sum((1, 2, 3))
        )
    example = torch.rand(1, 3, 8, 8)
    export_legacy(exported, tmp_path / "f.onnx", example)
    torch.jit.trace(model, example).save(str(tmp_path / "f.pt"))
    np.save(tmp_path / "x.npy", ((example - model.mean) / model.std).numpy())
    code, document, err = verify_json(
        cli, str(tmp_path / "f.pt"), str(tmp_path / "f.onnx"), "--input", str(tmp_path / "x.npy")
    )
    assert code == 0, err
    (lint,) = [lint for lint in document["lint"] if lint["code"] == "normalised_twice"]
    assert "first ONNX Conv" in lint["message"] and "1.022" in lint["message"]
