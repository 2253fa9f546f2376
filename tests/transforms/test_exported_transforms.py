"""Each built-in transform against real exports: tiny models built here, exported with the
legacy (TorchScript) and the dynamo exporter, loaded with the real loaders and diffed.

Every parameter-carrying ONNX layer must be explained by the expected transform from the
expected PyTorch modules, and each re-computation is checked against an independent one
(torch's own fusion helpers, the look-alikes' Ultralytics fusion, plain slicing).
BatchNorm statistics are randomised: with the defaults a fold changes nothing visible.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from samples import lookalikes
from samples.lookalikes import randomise_batchnorm
from tests.support.exports import (
    EXPORTERS,
    assert_faithful,
    assert_outline,
    describe,
    diff,
    export,
    layer_for,
    param,
    relative_error,
    reproduction,
    stored,
)

FOLD = "fold_batchnorm"


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().double().numpy()


# =============================================================================== fold_batchnorm


class ConvsFirst(nn.Module):
    """conv1, conv2, then bn1, bn2: the definition order does not pair them, and both
    convs have one shape, so only the numbers can."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(8, 8, 1, bias=False)
        self.conv2 = nn.Conv2d(8, 8, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.bn2 = nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


class FoldZoo(nn.Module):
    """Every Conv/Linear + BatchNorm pairing an exporter may fold, in one graph."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(3, 6, 3)  # Conv1d with bias
        self.b1 = nn.BatchNorm1d(6)
        self.c2 = nn.Conv2d(3, 8, 3, bias=True)  # Conv2d with bias, Ultralytics eps
        self.b2 = nn.BatchNorm2d(8, eps=1e-3)
        self.g = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)  # grouped, no bias
        self.gbn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)  # depthwise, BN without affine
        self.dwbn = nn.BatchNorm2d(8, affine=False)
        self.late = ConvsFirst()
        # ConvTranspose with groups (a bare state_dict knows it is a transpose by this name)
        self.deconv = nn.ConvTranspose2d(8, 12, 3, stride=2, groups=2)
        self.deconv_bn = nn.BatchNorm2d(12)
        self.c3 = nn.Conv3d(2, 4, 3, bias=False)
        self.b3 = nn.BatchNorm3d(4)
        self.fc = nn.Linear(6, 10)
        self.fcbn = nn.BatchNorm1d(10)

    def forward(self, x1, x2, x3, v):
        a = torch.relu(self.b1(self.c1(x1)))
        b = torch.relu(self.b2(self.c2(x2)))
        b = self.late(self.dwbn(self.dw(self.gbn(self.g(b)))))
        d = self.deconv_bn(self.deconv(b))
        c = self.b3(self.c3(x3))
        return a, d, c, self.fcbn(self.fc(v))


FOLD_INPUTS = (torch.rand(1, 3, 12), torch.rand(1, 3, 10, 10), torch.rand(1, 2, 6, 6, 6), torch.rand(4, 6))
FOLD_PAIRS = [
    ("c1", "b1"),
    ("c2", "b2"),
    ("g", "gbn"),
    ("dw", "dwbn"),
    ("late.conv1", "late.bn1"),
    ("late.conv2", "late.bn2"),
    ("deconv", "deconv_bn"),
    ("c3", "b3"),
    ("fc", "fcbn"),
]

# What each exporter does with them, in graph order: the legacy exporter folds only a
# Conv's BatchNorm and keeps ConvTranspose/Linear + BatchNorm as two nodes; the dynamo
# exporter (onnxscript's FuseBatchNormIntoConv/Gemm rules) folds all of them.
FOLD_OUTLINE = {
    "legacy": [
        ("Conv", FOLD, ["c1", "b1"]),
        ("Conv", FOLD, ["c2", "b2"]),
        ("Conv", FOLD, ["g", "gbn"]),
        ("Conv", FOLD, ["dw", "dwbn"]),
        ("Conv", FOLD, ["late.conv1", "late.bn1"]),
        ("Conv", FOLD, ["late.conv2", "late.bn2"]),
        ("ConvTranspose", "identity", ["deconv"]),
        ("BatchNormalization", "identity", ["deconv_bn"]),
        ("Conv", FOLD, ["c3", "b3"]),
        ("Gemm", "identity", ["fc"]),
        ("BatchNormalization", "identity", ["fcbn"]),
    ],
    "dynamo": [
        ("Conv", FOLD, ["c1", "b1"]),
        ("Conv", FOLD, ["c2", "b2"]),
        ("Conv", FOLD, ["g", "gbn"]),
        ("Conv", FOLD, ["dw", "dwbn"]),
        ("Conv", FOLD, ["late.conv1", "late.bn1"]),
        ("Conv", FOLD, ["late.conv2", "late.bn2"]),
        ("ConvTranspose", FOLD, ["deconv", "deconv_bn"]),
        ("Conv", FOLD, ["c3", "b3"]),
        ("Gemm", FOLD, ["fc", "fcbn"]),
    ],
}


@pytest.fixture(scope="module")
def fold_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fold")
    torch.manual_seed(0)
    model = randomise_batchnorm(FoldZoo(), seed=1).eval()
    torch.save(model, folder / "zoo.pt")
    torch.save(model.state_dict(), folder / "zoo_state_dict.pt")
    files = {"model": model, "pt": folder / "zoo.pt", "state_dict": folder / "zoo_state_dict.pt"}
    for exporter in EXPORTERS:
        files[exporter] = export(model, FOLD_INPUTS, folder / f"zoo_{exporter}.onnx", exporter)
    return files


@pytest.fixture(scope="module")
def fold_results(fold_files):
    return {exporter: diff(fold_files["pt"], fold_files[exporter]) for exporter in EXPORTERS}


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_fold_every_layer_explained(fold_results, exporter):
    result = fold_results[exporter]
    assert_outline(result, FOLD_OUTLINE[exporter])
    assert_faithful(result)
    for layer in result.layers:
        if layer.transform == FOLD:
            assert layer.note == f"eps {1e-3 if layer.sources == ['c2', 'b2'] else 1e-5:g} from the module", describe(
                result
            )
    kept = [layer.sources for layer in result.layers if layer.op == "BatchNormalization"]
    assert len(kept) == (2 if exporter == "legacy" else 0)
    # Those two follow a ConvTranspose and a Linear, which the legacy exporter never
    # folds: nothing to warn about.
    assert not [f for f in result.findings if f.code == "unfolded_batchnorm"], describe(result)


def _independent_fold(model: FoldZoo, conv_name: str, bn_name: str) -> tuple[np.ndarray, np.ndarray]:
    """The fold by torch's own helpers (and by hand for a grouped ConvTranspose, which
    torch.nn.utils.fusion does not handle)."""
    conv, bn = copy.deepcopy(model.get_submodule(conv_name)), copy.deepcopy(model.get_submodule(bn_name))
    if isinstance(conv, nn.Linear):
        fused = fuse_linear_bn_eval(conv, bn)
        return _numpy(fused.weight), _numpy(fused.bias)
    if isinstance(conv, nn.ConvTranspose2d) and conv.groups > 1:
        scale = _numpy(bn.weight) / np.sqrt(_numpy(bn.running_var) + bn.eps)
        weight = _numpy(conv.weight)  # (in, out / groups, k, k)
        per_group = weight.shape[1]
        folded = weight.copy()
        for group in range(conv.groups):
            rows = slice(group * weight.shape[0] // conv.groups, (group + 1) * weight.shape[0] // conv.groups)
            folded[rows] *= scale[group * per_group : (group + 1) * per_group].reshape(1, -1, 1, 1)
        bias = (_numpy(conv.bias) - _numpy(bn.running_mean)) * scale + _numpy(bn.bias)
        return folded, bias
    fused = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
    return _numpy(fused.weight), _numpy(fused.bias)


@pytest.mark.parametrize("pair", FOLD_PAIRS, ids=lambda pair: pair[0])
def test_fold_recomputation_agrees_with_torch(fold_files, fold_results, pair):
    """The transform's float64 fold equals torch's fusion helpers, and the dynamo
    export (which folds all of them) stores those values."""
    result = fold_results["dynamo"]
    layer = layer_for(result, *pair)
    expected_weight, expected_bias = _independent_fold(fold_files["model"], *pair)
    reproduced = reproduction(result, layer)
    weight = reproduced.params["weight"]
    if layer.op == "Gemm" and not result.target.layer(layer.target).attrs.get("transB", 0):
        weight = weight.T
    assert relative_error(weight, expected_weight) < 1e-6
    assert relative_error(reproduced.params["bias"], expected_bias) < 1e-6
    assert relative_error(stored(result, layer, "weight").reshape(weight.shape), weight) < 1e-6
    assert relative_error(stored(result, layer, "bias"), expected_bias) < 1e-6
    # The ranges in the report are those of the values compared.
    assert param(layer, "weight").reproduced_range == pytest.approx((weight.min(), weight.max()))


def test_fold_eps_is_read_from_the_module(fold_files, fold_results):
    """b2 has eps=1e-3 (Ultralytics); folding it with PyTorch's default 1e-5 would not fit."""
    model = fold_files["model"]
    layer = layer_for(fold_results["legacy"], "c2", "b2")
    target = stored(fold_results["legacy"], layer, "weight")
    wrong = copy.deepcopy(model.b2)
    wrong.eps = 1e-5
    with_default_eps = _numpy(fuse_conv_bn_eval(copy.deepcopy(model.c2), wrong).weight)
    assert relative_error(target, with_default_eps) > 1e-4  # far outside the fp32 tolerance
    assert param(layer, "weight").max_rel_err < 1e-6


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_fold_from_a_bare_state_dict_guesses_eps(fold_files, exporter):
    """A state_dict does not record eps: each fold is tried with 1e-5 and 1e-3, the one
    that fits is reported (and said to be a guess)."""
    result = diff(fold_files["state_dict"], fold_files[exporter])
    assert_outline(result, FOLD_OUTLINE[exporter])
    assert_faithful(result)
    for layer in result.layers:
        if layer.transform == FOLD:
            eps = "0.001" if layer.sources == ["c2", "b2"] else "1e-05"
            assert layer.variant == f"eps={eps}", describe(result)
            assert layer.note == f"eps {eps} (guessed: the file does not record it)"
    (finding,) = [f for f in result.findings if f.code == "guessed_eps"]
    assert finding.severity == "info"
    folds = sum(1 for layer in result.layers if layer.transform == FOLD)
    assert finding.message.endswith(f"{folds} folded layers fit with eps=0.001; eps=1e-05")


# =============================================================================== merge_branches


class RepVGGBlock(nn.Module):
    """The original RepVGG block (DingXiaoH/RepVGG naming), re-parameterisable in place."""

    def __init__(self, c1: int, c2: int, stride: int = 1):
        super().__init__()
        self.nonlinearity = nn.ReLU()
        self.rbr_identity = nn.BatchNorm2d(c1) if c1 == c2 and stride == 1 else None
        self.rbr_dense = nn.Sequential(nn.Conv2d(c1, c2, 3, stride, 1, bias=False), nn.BatchNorm2d(c2))
        self.rbr_1x1 = nn.Sequential(nn.Conv2d(c1, c2, 1, stride, 0, bias=False), nn.BatchNorm2d(c2))

    def forward(self, x):
        if hasattr(self, "rbr_reparam"):
            return self.nonlinearity(self.rbr_reparam(x))
        identity = 0 if self.rbr_identity is None else self.rbr_identity(x)
        return self.nonlinearity(self.rbr_dense(x) + self.rbr_1x1(x) + identity)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """RepVGG's switch_to_deploy: one 3x3 conv named rbr_reparam."""
        kernel, bias = 0, 0
        for branch in (self.rbr_dense, self.rbr_1x1, self.rbr_identity):
            if branch is None:
                continue
            if isinstance(branch, nn.Sequential):
                fused = fuse_conv_bn_eval(branch[0], branch[1])
                pad = (3 - fused.weight.shape[-1]) // 2
                kernel = kernel + nn.functional.pad(fused.weight, [pad] * 4)
                bias = bias + fused.bias
            else:
                channels = branch.num_features
                eye = torch.zeros(channels, channels, 3, 3)
                eye[range(channels), range(channels), 1, 1] = 1
                scale = branch.weight / torch.sqrt(branch.running_var + branch.eps)
                kernel = kernel + eye * scale.reshape(-1, 1, 1, 1)
                bias = bias + branch.bias - branch.running_mean * scale
        dense = self.rbr_dense[0]
        self.rbr_reparam = nn.Conv2d(dense.in_channels, dense.out_channels, 3, dense.stride, 1, bias=True)
        self.rbr_reparam.weight.copy_(kernel)
        self.rbr_reparam.bias.copy_(bias)
        del self.rbr_dense, self.rbr_1x1, self.rbr_identity


class BranchZoo(nn.Module):
    """Ultralytics Conv + RepConv (with and without the identity BN) and RepVGG blocks."""

    def __init__(self):
        super().__init__()
        self.stem = lookalikes.Conv(3, 8, 3)
        self.rep_id = lookalikes.RepConv(8, 8, identity=True)
        self.rep = lookalikes.RepConv(8, 16, s=2)
        self.vgg_id = RepVGGBlock(16, 16)
        self.vgg = RepVGGBlock(16, 8, stride=2)

    def forward(self, x):
        return self.vgg(self.vgg_id(self.rep(self.rep_id(self.stem(x)))))


def _fuse_branch_zoo(model: BranchZoo) -> BranchZoo:
    fused = lookalikes.ultralytics_fuse(copy.deepcopy(model))
    fused.vgg_id.reparameterize()
    fused.vgg.reparameterize()
    return fused


BRANCH_OUTLINE = [
    ("Conv", FOLD, ["stem.conv", "stem.bn"]),
    (
        "Conv",
        "merge_branches",
        ["rep_id.conv1.conv", "rep_id.conv1.bn", "rep_id.conv2.conv", "rep_id.conv2.bn", "rep_id.bn"],
    ),
    ("Conv", "merge_branches", ["rep.conv1.conv", "rep.conv1.bn", "rep.conv2.conv", "rep.conv2.bn"]),
    (
        "Conv",
        "merge_branches",
        ["vgg_id.rbr_dense.0", "vgg_id.rbr_dense.1", "vgg_id.rbr_1x1.0", "vgg_id.rbr_1x1.1", "vgg_id.rbr_identity"],
    ),
    ("Conv", "merge_branches", ["vgg.rbr_dense.0", "vgg.rbr_dense.1", "vgg.rbr_1x1.0", "vgg.rbr_1x1.1"]),
]


@pytest.fixture(scope="module")
def branch_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("branches")
    torch.manual_seed(3)
    model = randomise_batchnorm(BranchZoo(), seed=4).eval()
    fused = _fuse_branch_zoo(model).eval()
    example = torch.rand(1, 3, 16, 16)
    assert torch.allclose(fused(example), model(example), atol=1e-5)  # the fusion is right
    torch.save(model, folder / "branches.pt")
    files = {"model": model, "fused": fused, "pt": folder / "branches.pt"}
    for exporter in EXPORTERS:
        files[exporter] = export(fused, (example,), folder / f"branches_{exporter}.onnx", exporter)
    return files


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_merge_branches_every_layer_explained(branch_files, exporter):
    result = diff(branch_files["pt"], branch_files[exporter])
    assert_outline(result, BRANCH_OUTLINE)
    assert_faithful(result)
    notes = [layer.note for layer in result.layers[1:]]
    assert notes == [
        "2 branches + identity of rep_id; eps from the modules",
        "2 branches of rep; eps from the modules",
        "2 branches + identity of vgg_id; eps from the modules",
        "2 branches of vgg; eps from the modules",
    ]
    # The fused conv (rep_id.conv, vgg_id.rbr_reparam) is not in the checkpoint: the
    # scope still names the block.
    assert {layer.matched_by for layer in result.layers} <= {"scope", "name"}, describe(result)
    # Compared against the look-alikes' own fusion, which made the export.
    fused = branch_files["fused"]
    modules = [fused.stem.conv, fused.rep_id.conv, fused.rep.conv, fused.vgg_id.rbr_reparam, fused.vgg.rbr_reparam]
    for layer, module in zip(result.layers, modules):
        reproduced = reproduction(result, layer)
        assert relative_error(reproduced.params["weight"], _numpy(module.weight)) < 1e-6
        assert relative_error(reproduced.params["bias"], _numpy(module.bias)) < 1e-6


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_merge_branches_from_a_bare_state_dict(branch_files, exporter, tmp_path):
    """No eps in the file: guessed per block, and the identity BatchNorm separately
    (an Ultralytics RepConv's own BatchNorm keeps 1e-5 while its Conv blocks use 1e-3)."""
    torch.save(branch_files["model"].state_dict(), tmp_path / "branches_state_dict.pt")
    result = diff(tmp_path / "branches_state_dict.pt", branch_files[exporter])
    assert_outline(result, BRANCH_OUTLINE)
    assert_faithful(result)
    assert [layer.variant for layer in result.layers] == [
        "eps=0.001",
        "eps=0.001, identity eps=1e-05",
        "eps=0.001",
        "eps=1e-05",
        "eps=1e-05",
    ]
    assert result.layers[1].note == (
        "2 branches + identity of rep_id; eps 0.001, identity eps 1e-05 (guessed: the file does not record it)"
    )
    (finding,) = [f for f in result.findings if f.code == "guessed_eps"]
    assert finding.message == (
        "The file does not record BatchNorm eps; 5 folded layers fit with "
        "eps=0.001; eps=0.001, identity eps=1e-05; eps=1e-05"
    )


def test_merge_branches_identity_branch_matters(branch_files):
    """Leaving out the identity BatchNorm changes the centre taps: the test model is one
    where the identity branch is visible."""
    model = branch_files["model"]
    with_identity = _numpy(branch_files["fused"].rep_id.conv.weight)
    without = copy.deepcopy(model.rep_id)
    without.bn = None
    lookalikes._fuse_repconv(without)
    assert relative_error(_numpy(without.conv.weight), with_identity) > 1e-2


# =============================================================================== transpose


class LinearZoo(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc3 = nn.Linear(8, 12)  # on a 3-D input: MatMul (+ Add)
        self.fc2 = nn.Linear(12, 5)  # on a 2-D input: Gemm(transB=1)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc3(x)).mean(1))


@pytest.fixture(scope="module")
def linear_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("linear")
    torch.manual_seed(5)
    model = LinearZoo().eval()
    torch.save(model, folder / "linear.pt")
    files = {"model": model, "pt": folder / "linear.pt"}
    for exporter in EXPORTERS:
        files[exporter] = export(model, (torch.rand(2, 7, 8),), folder / f"linear_{exporter}.onnx", exporter)
    return files


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_linear_on_3d_input_is_a_transposed_matmul(linear_files, exporter):
    result = diff(linear_files["pt"], linear_files[exporter])
    assert_outline(result, [("MatMul", "transpose", ["fc3"]), ("Gemm", "identity", ["fc2"])])
    assert_faithful(result, max_rel_err=0.0)
    model = linear_files["model"]
    matmul, gemm = result.layers
    assert matmul.note == "MatMul stores W^T"
    np.testing.assert_array_equal(stored(result, matmul, "weight"), model.fc3.weight.detach().numpy().T)
    # The bias lives in the Add after the MatMul; the ONNX loader joins it to the MatMul.
    joined = result.target.layer(matmul.target)
    assert joined.metadata["bias_node"] and not any(
        layer.name == joined.metadata["bias_node"] for layer in result.target.layers
    )
    assert param(matmul, "bias").target_tensor == joined.params["bias"].tensor_name
    assert joined.attrs["weight_layout"] == "in_out"
    np.testing.assert_array_equal(stored(result, matmul, "bias"), model.fc3.bias.detach().numpy())
    assert result.target.layer(gemm.target).attrs.get("transB") == 1
    np.testing.assert_array_equal(stored(result, gemm, "weight"), model.fc2.weight.detach().numpy())


def _gemm_model(path, weight, bias, **attrs) -> None:
    """One Gemm node as the legacy exporter would name it, initializers named after the Linear."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    node = helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], name="/fc/Gemm", **attrs)
    graph = helper.make_graph(
        [node],
        "gemm",
        [x],
        [y],
        [
            numpy_helper.from_array(np.asarray(weight, dtype=np.float32), "fc.weight"),
            numpy_helper.from_array(np.asarray(bias, dtype=np.float32), "fc.bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def linear_state_dict(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gemm")
    torch.manual_seed(6)
    linear = nn.Linear(6, 4)
    torch.save({f"fc.{key}": value for key, value in linear.state_dict().items()}, folder / "fc.pt")
    return folder, linear


GEMMS = {
    # name: (attrs, B from W, C from b, transform, note)
    "transB0": ({}, lambda w: w.T, lambda b: b, "transpose", "Gemm stores W^T"),
    "transB1": ({"transB": 1}, lambda w: w, lambda b: b, "identity", ""),
    "transB0_alpha_beta": (
        {"alpha": 0.7, "beta": 1.3},
        lambda w: w.T / 0.7,
        lambda b: b / 1.3,
        "transpose",
        "Gemm stores W^T / alpha 0.7",
    ),
    "transB1_alpha_beta": (
        {"transB": 1, "alpha": 0.7, "beta": 1.3},
        lambda w: w / 0.7,
        lambda b: b / 1.3,
        "transpose",
        "Gemm stores W / alpha 0.7",
    ),
}


@pytest.mark.parametrize("name", GEMMS)
def test_gemm_layouts(linear_state_dict, name):
    """Synthetic Gemms computing the same Linear: ONNX Runtime agrees with torch, and the
    diff explains each layout."""
    import onnxruntime

    folder, linear = linear_state_dict
    attrs, make_b, make_c, transform, note = GEMMS[name]
    weight, bias = linear.weight.detach().numpy(), linear.bias.detach().numpy()
    path = folder / f"{name}.onnx"
    _gemm_model(path, make_b(weight), make_c(bias), **attrs)
    x = np.random.default_rng(0).random((2, 6), dtype=np.float32)
    (out,) = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(out, linear(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    result = diff(folder / "fc.pt", path)
    assert_outline(result, [("Gemm", transform, ["fc"])])
    assert_faithful(result, max_rel_err=1e-7)
    assert result.layers[0].note == note


def test_gemm_with_unexplained_scaling_is_flagged(linear_state_dict):
    """alpha=0.7 declared but the weight stored unscaled: the Gemm computes 0.7 x the
    Linear. A transposed layout is found, and the difference reported."""
    folder, linear = linear_state_dict
    path = folder / "bad_alpha.onnx"
    _gemm_model(path, linear.weight.detach().numpy().T, linear.bias.detach().numpy(), alpha=0.7)
    result = diff(folder / "fc.pt", path)
    assert result.verdict == "differs", describe(result)
    (layer,) = result.layers
    assert (layer.status, layer.transform, layer.sources) == ("mismatch", "transpose", ["fc"])
    assert param(layer, "weight").status == "mismatch" and param(layer, "bias").status == "ok"
    assert param(layer, "weight").bad_channel_count == 4  # every output channel (axis 1 of W^T)


# =============================================================================== split_qkv


class AttentionZoo(nn.Module):
    """RT-DETR's AIFI attention (queries/keys carry a position embedding, values do not),
    a plain self-attention, and one whose keys and values have other widths (separate
    q/k/v_proj_weight, one in_proj_bias)."""

    def __init__(self):
        super().__init__()
        self.cross = nn.MultiheadAttention(16, 4, batch_first=True)
        self.self_attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.mixed = nn.MultiheadAttention(16, 4, kdim=12, vdim=10, batch_first=True)

    def forward(self, x, pos, keys, values):
        q = k = x + pos
        y = self.cross(q, k, value=x, need_weights=False)[0]
        y = self.self_attn(y, y, y, need_weights=False)[0]
        return self.mixed(y, keys, values, need_weights=False)[0]


@pytest.fixture(scope="module")
def attention_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attention")
    torch.manual_seed(7)
    model = AttentionZoo().eval()
    with torch.no_grad():  # nn.MultiheadAttention starts with zero biases
        for module in (model.cross, model.self_attn, model.mixed):
            module.in_proj_bias.normal_()
            module.out_proj.bias.normal_()
    torch.save(model, folder / "attention.pt")
    files = {"model": model, "pt": folder / "attention.pt"}
    example = (torch.rand(1, 6, 16), torch.rand(1, 6, 16), torch.rand(1, 5, 12), torch.rand(1, 5, 10))
    for exporter in EXPORTERS:
        files[exporter] = export(model, example, folder / f"attention_{exporter}.onnx", exporter)
    return files


def test_split_qkv_legacy(attention_files):
    """The legacy exporter writes one MatMul (+ Add) per q/k/v slice when value differs
    from query/key, and one (E, 3E) MatMul for self-attention."""
    result = diff(attention_files["pt"], attention_files["legacy"])
    assert_outline(
        result,
        [
            ("MatMul", "split_qkv", ["cross"]),
            ("MatMul", "split_qkv", ["cross"]),
            ("MatMul", "split_qkv", ["cross"]),
            ("Gemm", "identity", ["cross.out_proj"]),
            ("MatMul", "split_qkv", ["self_attn"]),
            ("Gemm", "identity", ["self_attn.out_proj"]),
            ("MatMul", "split_qkv", ["mixed"]),
            ("MatMul", "split_qkv", ["mixed"]),
            ("MatMul", "split_qkv", ["mixed"]),
            ("Gemm", "identity", ["mixed.out_proj"]),
        ],
    )
    assert_faithful(result, max_rel_err=0.0)
    variants = [layer.variant for layer in result.layers if layer.transform == "split_qkv"]
    assert variants == ["q", "k", "v", "qkv", "q", "k", "v"]
    model = attention_files["model"]
    for layer in result.layers:
        if layer.transform != "split_qkv":
            continue
        module = getattr(model, layer.sources[0])
        rows = {"q": slice(0, 16), "k": slice(16, 32), "v": slice(32, 48), "qkv": slice(0, 48)}[layer.variant]
        if module.in_proj_weight is not None:
            weight = module.in_proj_weight[rows]
        else:
            weight = getattr(module, f"{layer.variant}_proj_weight")
        np.testing.assert_array_equal(stored(result, layer, "weight"), weight.detach().numpy().T)
        np.testing.assert_array_equal(stored(result, layer, "bias"), module.in_proj_bias[rows].detach().numpy())
        assert layer.note == f"{layer.variant} slice of {layer.sources[0]}.in_proj"


def test_split_qkv_dynamo(attention_files):
    """The dynamo exporter keeps in_proj_weight/in_proj_bias whole and Splits them at run
    time when value differs from query/key: each Split holds the whole PyTorch tensor,
    matched unchanged (identity) to the attention module; the MatMuls after it hold no
    constants. Self-attention still gets one transposed (E, 3E) initializer. With other
    key/value widths the weights are separate initializers but in_proj_bias is still
    Split at run time: each slice is its MatMul's bias (added by the Add after it)."""
    result = diff(attention_files["pt"], attention_files["dynamo"])
    assert_outline(
        result,
        [
            ("Split", "identity", ["cross"]),
            ("Split", "identity", ["cross"]),
            ("Gemm", "identity", ["cross.out_proj"]),
            ("MatMul", "split_qkv", ["self_attn"]),
            ("Gemm", "identity", ["self_attn.out_proj"]),
            ("Split", "identity", ["mixed"]),
            ("MatMul", "split_qkv", ["mixed"]),
            ("MatMul", "split_qkv", ["mixed"]),
            ("MatMul", "split_qkv", ["mixed"]),
            ("Gemm", "identity", ["mixed.out_proj"]),
        ],
    )
    assert_faithful(result, max_rel_err=0.0)
    weight_split, bias_split = result.layers[:2]
    assert [p.source_tensor for p in weight_split.params] == ["cross.in_proj_weight"]
    assert [p.source_tensor for p in bias_split.params] == ["cross.in_proj_bias"]
    model = attention_files["model"]
    np.testing.assert_array_equal(
        stored(result, weight_split, weight_split.params[0].name), model.cross.in_proj_weight.detach().numpy()
    )
    # Faithful as a computation too: each Split cuts its tensor into three equal parts.
    for layer in (weight_split, bias_split):
        node = result.target.layer(layer.target)
        assert len(node.outputs) == 3
        assert node.attrs.get("num_outputs", 3) == 3 and node.attrs.get("axis", 0) == 0
    matmuls = [layer for layer in result.target.layers if layer.op_type == "MatMul"]
    assert sum(1 for layer in matmuls if not layer.params) >= 3
    qkv = layer_for(result, "self_attn")
    assert qkv.variant == "qkv"
    np.testing.assert_array_equal(stored(result, qkv, "weight"), model.self_attn.in_proj_weight.detach().numpy().T)
    mixed = [layer for layer in result.layers if layer.sources == ["mixed"] and layer.op == "MatMul"]
    assert [param(layer, "bias").target_tensor for layer in mixed] == [
        "mixed.in_proj_bias[0:16]",
        "mixed.in_proj_bias[16:32]",
        "mixed.in_proj_bias[32:48]",
    ]
    assert [layer.variant for layer in mixed] == ["q", "k", "v"]
    for layer in mixed:
        np.testing.assert_array_equal(
            stored_or_slice(result, layer),
            model.mixed.in_proj_bias.detach().numpy()[
                {"q": slice(0, 16), "k": slice(16, 32), "v": slice(32, 48)}[layer.variant]
            ],
        )


def stored_or_slice(result, layer) -> np.ndarray:
    """The bias a MatMul takes from a run-time Split: its slice of the Split's constant."""
    tensor_name = param(layer, "bias").target_tensor
    whole, _, rows = tensor_name.partition("[")
    start, stop = (int(v) for v in rows.rstrip("]").split(":"))
    split = next(
        node
        for node in result.target.layers
        if node.op_type == "Split" and next(iter(node.params.values())).tensor_name == whole
    )
    return np.asarray(next(iter(split.params.values())).array())[start:stop]


def test_split_qkv_changed_separate_projection_is_a_mismatch(attention_files, tmp_path):
    """A changed q_proj_weight (kdim/vdim != embed_dim): every candidate fails, including
    the packed "qkv" one, which such a module cannot have; reported, not a crash."""
    proto = onnx.load(str(attention_files["legacy"]))
    node = next(node for node in proto.graph.node if node.name == "/mixed/MatMul")
    tensor = next(t for t in proto.graph.initializer if t.name == node.input[1])
    values = numpy_helper.to_array(tensor).copy()
    values[:, 3] *= 1.02  # output channel 3 of W^T
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    onnx.save(proto, str(tmp_path / "changed.onnx"))
    result = diff(attention_files["pt"], tmp_path / "changed.onnx")
    assert result.verdict == "differs", describe(result)
    (bad,) = [layer for layer in result.layers if layer.status != "ok"]
    assert (bad.target, bad.transform, bad.variant, bad.sources) == ("/mixed/MatMul", "split_qkv", "q", ["mixed"])
    assert param(bad, "weight").bad_channels == [3] and param(bad, "bias").status == "ok"


def test_split_qkv_dynamo_changed_in_proj_is_a_mismatch(attention_files, tmp_path):
    """A Split is no weight layer, so a constant it holds that matches nothing is only
    "untraced". But this one is named by its initializer (cross.in_proj_weight): when its
    values differ, that is a difference, not an untraced constant."""
    proto = onnx.load(str(attention_files["dynamo"]))
    tensor = next(t for t in proto.graph.initializer if t.name == "cross.in_proj_weight")
    values = numpy_helper.to_array(tensor).copy()
    values[20] *= 1.02  # a row of the key projection
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    onnx.save(proto, str(tmp_path / "changed.onnx"))
    result = diff(attention_files["pt"], tmp_path / "changed.onnx")
    assert result.verdict == "differs", describe(result)
    assert not [c for c in result.constants if c.reason.startswith("computed")]
    (bad,) = [layer for layer in result.layers if layer.status != "ok"]
    assert (bad.op, bad.status, bad.transform, bad.sources, bad.matched_by) == (
        "Split",
        "mismatch",
        "identity",
        ["cross"],
        "name",
    )
    assert bad.params[0].source_tensor == "cross.in_proj_weight" and bad.params[0].bad_channels == [20]


# =============================================================================== identity and cast


class KeptZoo(nn.Module):
    """Layers exporters keep as they are: a BatchNorm after a ReLU (called twice), a conv
    called twice, LayerNorm, Linear; plus one Conv+BN+ReLU that is folded."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.post = nn.BatchNorm2d(8)
        self.twice = nn.Conv2d(8, 8, 3, padding=1)
        self.ln = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = self.post(torch.relu(self.bn(self.conv(x))))
        y = self.post(torch.relu(self.twice(torch.relu(self.twice(y)))))
        return self.fc(self.ln(y.mean((2, 3))))


KEPT_INPUT = torch.rand(1, 3, 10, 10)


def _kept_outline(kept: str) -> list:
    return [
        ("Conv", FOLD, ["conv", "bn"]),
        ("BatchNormalization", kept, ["post"]),
        ("Conv", kept, ["twice"]),
        ("Conv", kept, ["twice"]),
        ("BatchNormalization", kept, ["post"]),
        ("LayerNormalization", kept, ["ln"]),
        ("Gemm", kept, ["fc"]),
    ]


def _kept_model(seed: int) -> KeptZoo:
    torch.manual_seed(seed)
    model = randomise_batchnorm(KeptZoo(), seed=seed).eval()
    with torch.no_grad():
        model.ln.weight.uniform_(0.5, 1.5)
        model.ln.bias.normal_(0, 0.2)
    return model


@pytest.fixture(scope="module")
def kept_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kept")
    model = _kept_model(8)
    torch.save(model, folder / "kept.pt")
    files = {"model": model, "pt": folder / "kept.pt"}
    for exporter in EXPORTERS:
        files[exporter] = export(model, (KEPT_INPUT,), folder / f"kept_{exporter}.onnx", exporter)
    # An fp16 checkpoint (model.half(), the whole module saved) and its fp32 export.
    half = copy.deepcopy(_kept_model(9)).half()
    torch.save(half, folder / "half.pt")
    files["half"] = half
    files["half_pt"] = folder / "half.pt"
    for exporter in EXPORTERS:
        files[f"half_{exporter}"] = export(
            copy.deepcopy(half).float(), (KEPT_INPUT,), folder / f"half_{exporter}.onnx", exporter
        )
    return files


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_identity_kept_layers(kept_files, exporter):
    result = diff(kept_files["pt"], kept_files[exporter])
    assert_outline(result, _kept_outline("identity"))
    assert_faithful(result)
    for layer in result.layers[1:]:
        assert all(p.max_abs_err == 0.0 for p in layer.params), describe(result)
    # The BatchNorm after the ReLU stays a node; it could not be folded: no warning.
    assert {tuple(layer.sources) for layer in result.layers if layer.op == "BatchNormalization"} == {("post",)}
    assert not [f for f in result.findings if f.code == "unfolded_batchnorm"]
    # A module called twice: both nodes read one set of initializers.
    first, second = [layer for layer in result.layers if layer.sources == ["twice"]]
    assert param(first, "weight").target_tensor == param(second, "weight").target_tensor
    assert len(set(layer.target for layer in result.layers)) == len(result.layers)


class NormZoo(nn.Module):
    """Normalisations exporters write as other ops: GroupNorm (an InstanceNormalization
    with scale 1 and bias 0, then Mul and Add of its own parameters), InstanceNorm with
    and without affine parameters, and LayerNorm (decomposed below opset 17)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.gn = nn.GroupNorm(2, 8)
        self.inorm = nn.InstanceNorm2d(8)
        self.iaff = nn.InstanceNorm2d(8, affine=True)
        self.fc = nn.Linear(8, 6)
        self.ln = nn.LayerNorm(6)

    def forward(self, x):
        y = self.iaff(self.inorm(self.gn(self.conv(x))))
        return self.ln(self.fc(y.mean((2, 3))))


@pytest.fixture(scope="module")
def norm_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("norms")
    torch.manual_seed(12)
    model = NormZoo().eval()
    with torch.no_grad():
        for module in (model.gn, model.iaff, model.ln):
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0, 0.2)
    torch.save(model, folder / "norms.pt")
    files = {"pt": folder / "norms.pt"}
    example = (torch.rand(1, 3, 8, 8),)
    for exporter in EXPORTERS:
        files[exporter] = export(model, example, folder / f"norms_{exporter}.onnx", exporter)
    files["opset12"] = folder / "norms_opset12.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(files["opset12"]), dynamo=False, opset_version=12)
    return files


@pytest.mark.parametrize("exporter", [*EXPORTERS, "opset12"])
def test_normalisations_written_as_other_ops(norm_files, exporter):
    """The GroupNorm's parameters are explained where they are (Mul, Add); the neutral
    InstanceNormalization constants the exporter made are untraced, not unexplained."""
    result = diff(norm_files["pt"], norm_files[exporter])
    layer_norm = (
        [("Mul", "identity", ["ln"]), ("Add", "identity", ["ln"])]
        if exporter == "opset12"
        else [("LayerNormalization", "identity", ["ln"])]
    )
    assert_outline(
        result,
        [
            ("Conv", "identity", ["conv"]),
            ("Mul", "identity", ["gn"]),
            ("Add", "identity", ["gn"]),
            ("InstanceNormalization", "identity", ["iaff"]),
            ("Gemm", "identity", ["fc"]),
            *layer_norm,
        ],
    )
    assert_faithful(result, max_rel_err=0.0, untraced=None)
    # The scale and bias of ones and zeros the exporter gave GroupNorm's and the plain
    # InstanceNorm's InstanceNormalization nodes: four tensors, none a parameter.
    neutral = [c for c in result.constants if c.reason.startswith("the neutral scale or bias")]
    assert [c.op for c in neutral] == ["InstanceNormalization"] * 4, describe(result)
    assert [c for c in result.constants if c not in neutral and c.reason != "a scalar"] == [], describe(result)
    assert [(p.name, p.source_tensor) for layer in result.layers[1:3] for p in layer.params] == [
        ("scale", "gn.weight"),
        ("bias", "gn.bias"),
    ]
    (finding,) = [f for f in result.findings if f.code == "export_constant"]
    assert finding.severity == "info" and "InstanceNormalization" in finding.message


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_changed_groupnorm_weight_is_a_mismatch(norm_files, exporter, tmp_path):
    """The GroupNorm weight's Mul is no weight layer and its initializer is anonymous:
    found by its scope and wrong in one channel of eight, it is a difference."""
    proto = onnx.load(str(norm_files[exporter]))
    initializers = {t.name: t for t in proto.graph.initializer}
    mul = next(
        node for node in proto.graph.node if node.op_type == "Mul" and any(i in initializers for i in node.input)
    )
    tensor = initializers[next(i for i in mul.input if i in initializers)]
    values = numpy_helper.to_array(tensor).copy()
    values.flat[3] *= 1.05
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    onnx.save(proto, str(tmp_path / "changed.onnx"))
    result = diff(norm_files["pt"], tmp_path / "changed.onnx")
    assert result.verdict == "differs", describe(result)
    (bad,) = [layer for layer in result.layers if layer.status != "ok"]
    assert (bad.op, bad.status, bad.transform, bad.sources, bad.matched_by) == (
        "Mul",
        "mismatch",
        "identity",
        ["gn"],
        "scope",
    )
    assert bad.params[0].bad_channels == [3]


class Twins(nn.Module):
    """Two Linears with equal values and two LayerNorms left at their defaults: the
    exporters keep one initializer for equal tensors."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.b.load_state_dict(self.a.state_dict())
        self.n1 = nn.LayerNorm(8)
        self.n2 = nn.LayerNorm(8)

    def forward(self, x):
        return self.n2(self.b(torch.relu(self.n1(self.a(x)))))


def test_identity_deduplicated_initializers(tmp_path):
    """The legacy exporter stores equal tensors once (Identity nodes keep the other
    names), onnxslim drops those Identity nodes too: each layer is still matched to its
    own module, though its tensor carries the other module's name."""
    import onnxslim

    torch.manual_seed(11)
    model = Twins().eval()
    torch.save(model, tmp_path / "twins.pt")
    legacy = export(model, (torch.rand(2, 5, 8),), tmp_path / "twins.onnx", "legacy")
    onnx.save(onnxslim.slim(onnx.load(str(legacy))), str(tmp_path / "twins_slim.onnx"))
    for path, op, transform in ((legacy, "MatMul", "transpose"), (tmp_path / "twins_slim.onnx", "Gemm", "identity")):
        result = diff(tmp_path / "twins.pt", path)
        assert_outline(
            result,
            [
                (op, transform, ["a"]),
                ("LayerNormalization", "identity", ["n1"]),
                (op, transform, ["b"]),
                ("LayerNormalization", "identity", ["n2"]),
            ],
        )
        assert_faithful(result, max_rel_err=0.0)
        first, _, second, norm2 = result.layers
        assert param(first, "weight").target_tensor == param(second, "weight").target_tensor
        assert param(norm2, "weight").target_tensor == "n1.weight"


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_cast_fp16_checkpoint_vs_fp32_export(kept_files, exporter):
    """An fp16 checkpoint exported in fp32: kept layers are casts (exactly equal values),
    the fold is re-computed from the fp16 values."""
    result = diff(kept_files["half_pt"], kept_files[f"half_{exporter}"])
    assert_outline(result, _kept_outline("cast"))
    assert_faithful(result)
    for layer in result.layers[1:]:
        assert layer.note == "float16 -> float32"
        assert all(p.max_abs_err == 0.0 for p in layer.params)
    assert result.source.layer("conv").params["weight"].dtype == "float16"
    assert result.target.layer(result.layers[0].target).params["weight"].dtype == "float32"


def test_cast_bf16_checkpoint(tmp_path):
    """A bfloat16 checkpoint exported in fp32: casts, with the bf16 tolerance."""
    model = _kept_model(10).to(torch.bfloat16)
    torch.save(model, tmp_path / "bf16.pt")
    export(copy.deepcopy(model).float(), (KEPT_INPUT,), tmp_path / "bf16.onnx", "legacy")
    result = diff(tmp_path / "bf16.pt", tmp_path / "bf16.onnx")
    assert_outline(result, _kept_outline("cast"))
    assert_faithful(result)
    assert all(layer.note == "bfloat16 -> float32" for layer in result.layers[1:])
    assert {(p.tolerance.rtol, p.tolerance.atol) for layer in result.layers for p in layer.params} == {(1.6e-2, 1e-4)}


def _to_fp16(source: Path, target: Path) -> None:
    """Rewrite an fp32 ONNX model as fp16: float initializers, inputs, outputs."""
    model = onnx.load(str(source))
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.FLOAT:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name))
    for value in list(model.graph.input) + list(model.graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


@pytest.fixture(scope="module")
def fp16_onnx(kept_files):
    path = kept_files["legacy"].with_name("kept_fp16.onnx")
    _to_fp16(kept_files["legacy"], path)
    return path


def test_cast_fp32_model_vs_fp16_onnx(kept_files, fp16_onnx):
    """Every tensor rounded to fp16: explained by casts (and a fold) within the fp16
    tolerance, which is loosened for exactly that; the fp32 tolerance would fail."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(fp16_onnx), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: KEPT_INPUT.numpy().astype(np.float16)})
    np.testing.assert_allclose(out, kept_files["model"](KEPT_INPUT).detach().numpy(), atol=2e-2)  # a working fp16 model

    result = diff(kept_files["pt"], fp16_onnx)
    assert_outline(result, _kept_outline("cast"))
    assert_faithful(result, max_rel_err=1e-3)
    assert all(layer.note == "float32 -> float16" for layer in result.layers[1:])
    errors = [p.max_rel_err for layer in result.layers for p in layer.params]
    assert max(errors) > 1e-4  # fp16 rounding is visible...
    for layer in result.layers:
        for entry in layer.params:
            assert (entry.tolerance.rtol, entry.tolerance.atol) == (2e-3, 1e-5)  # ...and tolerated as fp16

    strict = diff(kept_files["pt"], fp16_onnx, rtol=1e-4, atol=1e-6)  # the fp32 defaults
    assert strict.verdict == "differs", describe(strict)
    assert {layer.status for layer in strict.layers} == {"mismatch"}


# =============================================================================== ONNX Runtime's fused model


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_onnxruntime_fusedconv(kept_files, exporter):
    """ONNX Runtime's saved optimised model (ORT_ENABLE_EXTENDED): Conv + Relu become
    com.microsoft.FusedConv, matched like a Conv."""
    import onnxruntime

    optimised = kept_files[exporter].with_name(f"kept_{exporter}_ort.onnx")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(optimised)
    onnxruntime.InferenceSession(str(kept_files[exporter]), options, providers=["CPUExecutionProvider"])

    result = diff(kept_files["pt"], optimised)
    fused = [layer for layer in result.layers if layer.op == "com.microsoft.FusedConv"]
    assert len(fused) == 3, describe(result)  # conv(+bn)+relu and both twice+relu
    assert [(layer.transform, layer.sources) for layer in fused] == [
        (FOLD, ["conv", "bn"]),
        ("identity", ["twice"]),
        ("identity", ["twice"]),
    ]
    assert not [layer for layer in result.layers if layer.op == "Conv"]
    assert_faithful(result)
    assert result.target.layer(fused[0].target).attrs.get("activation") == "Relu"
