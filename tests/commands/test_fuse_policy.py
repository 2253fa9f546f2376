"""``graphinspect fuse`` does what the model's own framework fuses, no more, no less.

Tiny models whose classes claim to live in ``ultralytics`` or ``timm`` (pickled under
those names, as real checkpoints are; graphinspect never imports them), each checked
against the framework's own fusion written out here with torch.
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
import types
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from samples import lookalikes  # noqa: E402
from tests.support.schemas import schema_errors  # noqa: E402

IMAGE = (1, 3, 16, 16)


@contextlib.contextmanager
def classes_living_in(homes: dict[type, str]):
    """Let ``torch.save`` pickle each class as ``<home>.<name>`` (fake modules meanwhile)."""
    saved, created = {}, []
    try:
        for cls, home in homes.items():
            saved[cls] = cls.__module__
            parts = home.split(".")
            for depth in range(1, len(parts) + 1):
                prefix = ".".join(parts[:depth])
                if prefix not in sys.modules:
                    sys.modules[prefix] = types.ModuleType(prefix)
                    created.append(prefix)
            setattr(sys.modules[home], cls.__name__, cls)
            cls.__module__ = home
        yield
    finally:
        for cls, home in saved.items():
            cls.__module__ = home
        for prefix in created:
            del sys.modules[prefix]


ULTRALYTICS = {
    lookalikes.Conv: "ultralytics.nn.modules.conv",
    lookalikes.RepConv: "ultralytics.nn.modules.conv",
    lookalikes.DetectionModel: "ultralytics.nn.tasks",
}


class V10Head(nn.Module):
    """YOLOv10's head keeps a one-to-many (cv2) and a one-to-one (one2one_cv2) branch."""

    def __init__(self, c: int):
        super().__init__()
        self.cv2 = nn.ModuleList([lookalikes.Conv(c, c, 3)])
        self.one2one_cv2 = copy.deepcopy(self.cv2)

    def forward(self, x):
        return self.cv2[0](x)


class ConvNorm(nn.Module):
    """timm LeViT's ConvNorm: ``fuse()`` returns one Conv2d that replaces the block."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.linear = nn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c2)

    def forward(self, x):
        return self.bn(self.linear(x))


class NormLinear(nn.Module):
    """timm LeViT's NormLinear: a BatchNorm1d of the Linear's *input*."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(c1)
        self.drop = nn.Dropout(0.0)
        self.linear = nn.Linear(c1, c2)

    def forward(self, x):
        return self.linear(self.drop(self.bn(x)))


class TimmNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = ConvNorm(3, 8)
        self.plain = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.head = NormLinear(8, 4)

    def forward(self, x):
        return self.head(self.plain(self.stem(x)).mean((2, 3)))


def _fuse(cli, *args: str) -> tuple[int, dict]:
    """Run fuse for its JSON document, which must validate against the shipped schema."""
    code, out, err = cli("fuse", *args, "--format", "json")
    assert code in (0, 1), err
    document = json.loads(out)
    assert schema_errors(document) == []
    return code, document


def _unfused_sources(document: dict) -> list[list[str]]:
    return [entry["sources"] for entry in document["unfused"]]


@pytest.fixture(scope="module")
def ultralytics_model(tmp_path_factory) -> tuple[Path, nn.Module]:
    """A Conv block, a plain Sequential(Conv2d, BatchNorm2d) (as RT-DETR's input_proj),
    a RepConv and a YOLOv10-style head, pickled as Ultralytics classes."""
    torch.manual_seed(0)
    model = lookalikes.DetectionModel(
        [
            lookalikes.Conv(3, 8, 3),
            nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)),
            lookalikes.RepConv(8, 8, identity=True),
            V10Head(8),
        ]
    )
    model = lookalikes.randomise_batchnorm(model, seed=5).eval()
    path = tmp_path_factory.mktemp("ultralytics") / "model.pt"
    with classes_living_in({**ULTRALYTICS, V10Head: "ultralytics.nn.modules.head"}):
        torch.save({"model": model, "ema": None}, path)
    return path, model


def test_ultralytics_fuses_as_model_fuse_does(cli, ultralytics_model, tmp_path):
    path, model = ultralytics_model
    weights = tmp_path / "fused.pt"
    _, document = _fuse(cli, str(path), "--weights", str(weights))
    assert document["framework"] == "ultralytics" and document["fusion"] == "Ultralytics model.fuse()"
    assert [group["fused_name"] for group in document["groups"]] == [
        "model.0.conv",
        "model.2.conv",
        "model.3.cv2.0.conv",
    ]
    # The plain Sequential is no Ultralytics Conv block: model.fuse() keeps its BatchNorm.
    (kept,) = document["unfused"]
    assert kept["sources"] == ["model.1.0", "model.1.1"] and "folds only the BatchNorms of its Conv" in kept["reason"]
    (dropped,) = document["dropped"]
    assert dropped["module"] == "model.3.one2one_cv2" and dropped["tensors"] == 6  # conv.weight + the BatchNorm's 5

    fused = lookalikes.ultralytics_fuse(copy.deepcopy(model))
    del fused.model[3].one2one_cv2  # Detect.fuse(): the unused branch goes
    state = torch.load(weights, weights_only=True)
    expected = fused.state_dict()
    assert sorted(state) == sorted(expected)
    for key, values in expected.items():
        torch.testing.assert_close(state[key].float(), values.float(), rtol=1e-5, atol=1e-6)
    fused.load_state_dict(state, strict=True)


def test_fold_all_also_folds_what_the_framework_keeps(cli, ultralytics_model, tmp_path):
    path, model = ultralytics_model
    weights = tmp_path / "fused.pt"
    _, document = _fuse(cli, str(path), "--fold-all", "--weights", str(weights))
    assert document["unfused"] == []
    group = next(group for group in document["groups"] if group["fused_name"] == "model.1.0")
    assert "--fold-all" in group["note"]
    folded = torch.nn.utils.fusion.fuse_conv_bn_eval(model.model[1][0], model.model[1][1])
    state = torch.load(weights, weights_only=True)
    torch.testing.assert_close(state["model.1.0.weight"], folded.weight.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state["model.1.0.bias"], folded.bias.detach(), rtol=1e-5, atol=1e-6)
    assert "model.1.1.running_mean" not in state


def test_timm_fuses_as_reparameterize_model_does(cli, tmp_path):
    torch.manual_seed(3)
    model = lookalikes.randomise_batchnorm(TimmNet(), seed=6).eval()
    path = tmp_path / "timm.pt"
    with classes_living_in({ConvNorm: "timm.models.levit", NormLinear: "timm.models.levit", TimmNet: "timm.models.x"}):
        torch.save(model, path)
    weights = tmp_path / "fused.pt"
    _, document = _fuse(cli, str(path), "--weights", str(weights))
    assert document["framework"] == "timm"
    assert [group["fused_name"] for group in document["groups"]] == ["stem", "head"]
    assert _unfused_sources(document) == [["plain.0", "plain.1"]]

    # timm's ConvNorm.fuse() and NormLinear.fuse(), written out.
    state = torch.load(weights, weights_only=True)
    bn, conv = model.stem.bn, model.stem.linear
    scale = bn.weight / (bn.running_var + bn.eps) ** 0.5
    torch.testing.assert_close(
        state["stem.weight"], (conv.weight * scale[:, None, None, None]).detach(), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(state["stem.bias"], (bn.bias - bn.running_mean * scale).detach(), rtol=1e-5, atol=1e-6)
    bn, linear = model.head.bn, model.head.linear
    scale = bn.weight / (bn.running_var + bn.eps) ** 0.5
    shift = bn.bias - bn.running_mean * scale
    torch.testing.assert_close(state["head.weight"], (linear.weight * scale[None, :]).detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state["head.bias"], (linear.weight @ shift + linear.bias).detach(), rtol=1e-5, atol=1e-6)
    assert "plain.1.running_mean" in state and "stem.linear.weight" not in state

    # The fused model computes what the model computes.
    fused = copy.deepcopy(model)
    fused.stem, fused.head = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 4)
    fused.load_state_dict(state, strict=True)
    images = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fused(images), model(images), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def rep_state_dict(tmp_path_factory) -> dict[str, Path]:
    torch.manual_seed(2)
    model = lookalikes.DetectionModel([lookalikes.Conv(3, 8, 3), lookalikes.RepConv(8, 8, identity=True)])
    model = lookalikes.randomise_batchnorm(model, seed=3).eval()
    folder = tmp_path_factory.mktemp("rep")
    torch.save(model.state_dict(), folder / "rep_sd.pt")
    fused = lookalikes.ultralytics_fuse(copy.deepcopy(model).float().eval())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(fused, (torch.rand(*IMAGE),), str(folder / "rep.onnx"), dynamo=False, opset_version=17)
    torch.save(fused.state_dict(), folder / "expected.pt")
    return {"state_dict": folder / "rep_sd.pt", "onnx": folder / "rep.onnx", "expected": folder / "expected.pt"}


def test_a_state_dict_block_is_listed_not_guessed(cli, rep_state_dict, tmp_path):
    weights = tmp_path / "fused.pt"
    code, document = _fuse(cli, str(rep_state_dict["state_dict"]), "--weights", str(weights))
    assert code == 0 and document["framework"] == "state_dict"
    (block,) = document["unfused"]
    assert block["module"] == "model.1" and "looks like a RepConv (bn, conv1, conv2)" in block["reason"]
    assert "--against" in block["reason"]
    assert [group["fused_name"] for group in document["groups"]] == ["model.0.conv"]
    state = torch.load(weights, weights_only=True)
    original = torch.load(rep_state_dict["state_dict"], weights_only=True)
    for key in (key for key in original if key.startswith("model.1.")):
        assert torch.equal(state[key], original[key]), key  # left as it is, not half-fused


def test_the_export_settles_a_state_dict_block(cli, rep_state_dict, tmp_path):
    weights = tmp_path / "fused.pt"
    code, document = _fuse(
        cli, str(rep_state_dict["state_dict"]), "--weights", str(weights), "--against", str(rep_state_dict["onnx"])
    )
    assert code == 0 and document["unfused"] == []
    merged = next(group for group in document["groups"] if group["transform"] == "merge_branches")
    assert merged["fused_name"] == "model.1.conv" and "the export merged it" in merged["note"]
    assert {layer["status"] for layer in document["against"]["layers"]} == {"ok"}
    state = torch.load(weights, weights_only=True)
    expected = torch.load(rep_state_dict["expected"], weights_only=True)
    assert sorted(state) == sorted(expected)
    for key, values in expected.items():
        torch.testing.assert_close(state[key], values, rtol=1e-5, atol=1e-6)


def test_written_state_dict_keeps_shapes_and_leaves_out_non_persistent_buffers(cli, tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.BatchNorm2d(4))
    model[2].register_buffer("index", torch.arange(4), persistent=False)
    path = tmp_path / "m.pt"
    torch.save(model.eval(), path)
    _fuse(cli, str(path), "--weights", str(tmp_path / "fused.pt"))
    state = torch.load(tmp_path / "fused.pt", weights_only=True)
    assert state["2.num_batches_tracked"].shape == torch.Size([])  # 0-d, as torch keeps it
    assert "2.index" not in state
    assert sorted(state) == sorted(["0.weight", "0.bias", *(f"2.{k}" for k in model[2].state_dict())])
