"""inspector.match on numpy models: hint resolution, alignment, and the Matcher's decisions.

The Matcher's rules under test (module docstring of inspector.match): a name only makes a
candidate, numbers decide; the closest candidate of a weight layer is a *mismatch* when
it is credible (named by a hint, or at most half of its elements off) and otherwise the
layer is *unmatched*, with the reasons the candidates were rejected; a transform that
raises is skipped where it fails and reported.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from inspector.anchors import SEARCH_LIMIT, HintResolver, align
from inspector.ir import ATTENTION, BATCHNORM, CONV, IN_OUT, LAYERNORM, LINEAR, OUT_IN, WEIGHT_LAYOUT, Layer, Param
from inspector.match import Matcher
from inspector.results import MISMATCH, OK, UNMATCHED, Tolerance
from inspector.transforms import Reproduction, SourceIndex, Transform
from tests.support.layers import (
    bn_stats,
    describe,
    diff,
    layer,
    layer_diff,
    match,
    param,
    param_diff,
    randn,
    rng,
    source,
    tampered,
    target,
    transforms,
)

# ----------------------------------------------------------------------------- hints


@pytest.fixture(scope="module")
def resolver() -> HintResolver:
    r = rng(0)
    return HintResolver(
        SourceIndex(
            source(
                layer("model.0.conv", CONV, "Conv2d", weight=randn(r, 8, 3, 3, 3)),
                layer("model.0.bn", BATCHNORM, "BatchNorm2d", **bn_stats(r, 8)),
                layer("model.1.conv", CONV, "Conv2d", weight=randn(r, 8, 8, 3, 3)),
                layer("model.2.m.0.conv", CONV, "Conv2d", weight=randn(r, 8, 8, 3, 3)),
                layer("model.3.conv1.conv", CONV, "Conv2d", weight=randn(r, 8, 8, 3, 3)),
                layer("model.3.conv2.conv", CONV, "Conv2d", weight=randn(r, 8, 8, 1, 1)),
                layer("model.3.bn", BATCHNORM, "BatchNorm2d", **bn_stats(r, 8)),
                layer("head.fc", LINEAR, "Linear", weight=randn(r, 4, 8), bias=randn(r, 4)),
                layer("module.encoder.norm", LAYERNORM, "LayerNorm", weight=randn(r, 8)),
            )
        )
    )


@pytest.mark.parametrize(
    "hint, paths, how",
    [
        # state_dict keys, exactly
        ("model.0.conv.weight", ["model.0.conv"], "name"),
        ("head.fc.bias", ["head.fc"], "name"),
        # tensor names exporters derive from them
        ("model.0.conv.weight_bias", ["model.0.conv"], "name"),  # dynamo's new bias of a fused conv
        ("model.0.conv.bias", ["model.0.conv"], "name"),  # Ultralytics' fused bias; the checkpoint has none
        ("head.fc_weight", ["head.fc"], "name"),  # onnxslim's Gemm initializer
        ("model.0.bn.running_var", ["model.0.bn"], "name"),
        # module paths and scopes
        ("model.0.bn", ["model.0.bn"], "scope"),
        ("/model.0/conv/Conv", ["model.0.conv"], "scope"),  # a legacy node name, op and all
        ("model.model.0.conv", ["model.0.conv"], "scope"),  # the legacy exporter repeats Sequential names
        ("x.model.0.conv", ["model.0.conv"], "scope"),  # a wrapper in the hint
        ("encoder.norm", ["module.encoder.norm"], "scope"),  # a wrapper in the source (DataParallel)
        ("m.0.conv", ["model.2.m.0.conv"], "scope"),  # a unique tail
        ("model.1.conv_1", ["model.1.conv"], "scope"),  # the module's second call
        ("model.3.conv", ["model.3"], "scope"),  # a fused RepConv's new child: its parent module
    ],
)
def test_hints_resolve_to_source_paths(resolver, hint, paths, how):
    assert resolver.resolve(hint) == (paths, how)


@pytest.mark.parametrize(
    "hint",
    [
        "conv",  # four modules end in "conv": one component cannot decide
        "model.9.m.0.conv",  # shares "m.0.conv" with model.2.m.0.conv, but both have parts the other lacks
        "onnx::Conv_25",  # anonymous
        "val_31",
        "",
    ],
)
def test_hints_that_name_nothing(resolver, hint):
    assert resolver.resolve(hint)[0] == []


def test_an_ambiguous_tail_of_two_components_names_all_its_modules(resolver):
    paths, how = resolver.resolve("0.conv")
    assert sorted(paths) == ["model.0.conv", "model.2.m.0.conv"] and how == "scope"


def test_ambiguity_is_bounded():
    r = rng(1)
    many = source(
        *[layer(f"stage{i}.0.conv", CONV, "Conv2d", weight=randn(r, 2, 2, 1, 1)) for i in range(SEARCH_LIMIT + 4)]
    )
    paths, _ = HintResolver(SourceIndex(many)).resolve("0.conv")
    assert len(paths) == SEARCH_LIMIT and all(path.endswith(".0.conv") for path in paths)


def test_a_name_outranks_a_scope_for_the_same_path():
    r = rng(2)
    w = randn(r, 4, 2, 1, 1)
    src = source(layer("blk.conv", CONV, "Conv2d", weight=w))
    onnx_conv = layer("/blk/conv/Conv", CONV, "Conv", hints=("blk.conv", "blk.conv.weight"), weight=w)
    matcher = Matcher(transforms(), src, target(onnx_conv))
    assert list(matcher.anchors(onnx_conv))[0] == ("blk.conv", "name")
    assert layer_diff(matcher.run(), "/blk/conv/Conv").matched_by == "name"


# ----------------------------------------------------------------------------- alignment


def _conv(name, *shape, op="Conv2d", **attrs):
    return layer(name, CONV, op, attrs, weight=np.zeros(shape, np.float32))


def test_align_pairs_layers_by_kind_and_pytorch_shape():
    src = [
        _conv("stem", 8, 3, 3, 3),
        layer("stem_bn", BATCHNORM, "BatchNorm2d", **bn_stats(rng(3), 8)),
        _conv("body", 16, 8, 3, 3),
        _conv("aux", 4, 16, 1, 1),  # training only: not exported
        layer("fc", LINEAR, "Linear", weight=np.zeros((10, 16), np.float32)),
        layer("norm", LAYERNORM, "LayerNorm", weight=np.ones(10, np.float32)),
    ]
    tgt = [
        _conv("n0", 8, 3, 3, 3, op="Conv"),
        _conv("n1", 16, 8, 3, 3, op="Conv"),
        layer("n2", LINEAR, "MatMul", {WEIGHT_LAYOUT: IN_OUT}, weight=np.zeros((16, 10), np.float32)),  # W^T
        layer("n3", LAYERNORM, "LayerNormalization", weight=np.ones(10, np.float32)),
    ]
    aligned = align(src, tgt)
    assert {name: layer.name for name, layer in aligned.items()} == {"n0": "stem", "n1": "body", "n2": "fc"}


def test_align_does_not_pair_different_shapes_or_kinds():
    src = [_conv("a", 8, 3, 3, 3), layer("fc", LINEAR, "Linear", weight=np.zeros((8, 8), np.float32))]
    tgt = [
        _conv("n0", 8, 3, 1, 1, op="Conv"),
        layer("n1", LINEAR, "Gemm", {WEIGHT_LAYOUT: OUT_IN}, weight=np.zeros((8, 8), np.float32)),
    ]
    assert {name: layer.name for name, layer in align(src, tgt).items()} == {"n1": "fc"}


# ----------------------------------------------------------------------------- the matcher


def _pair(weight_in_target, hints=(), kind=CONV):
    """A source conv "blk.conv" with weight W and a target conv holding ``weight_in_target``."""
    r = rng(4)
    w = randn(r, 6, 4, 3, 3)
    src = source(layer("blk.conv", kind, "Conv2d", weight=w))
    values = weight_in_target(w) if callable(weight_in_target) else weight_in_target
    tgt = target(layer("n", kind, "Conv", hints=hints, weight=values))
    return w, src, tgt


def test_numbers_accept_an_unnamed_layer():
    w, src, tgt = _pair(lambda w: w)
    entry = layer_diff(match(src, tgt), "n")
    assert (entry.status, entry.transform, entry.sources, entry.matched_by) == (
        OK,
        "identity",
        ["blk.conv"],
        "alignment",
    )


@pytest.mark.parametrize("hint, how", [("blk.conv.weight", "name"), ("blk.conv", "scope")])
def test_a_name_is_never_proof(hint, how):
    # Named by a tensor name or a scope, but holding other numbers: traced, and different.
    w, src, tgt = _pair(randn(rng(5), 6, 4, 3, 3), hints=(hint,))
    result = match(src, tgt)
    entry = layer_diff(result, "n")
    assert (entry.status, entry.sources, entry.matched_by) == (MISMATCH, ["blk.conv"], how), describe(result)
    assert param_diff(entry, "weight").status == MISMATCH
    assert result.verdict == "differs"


def test_a_layer_found_by_alignment_is_unmatched_when_most_elements_are_off():
    w, src, tgt = _pair(randn(rng(6), 6, 4, 3, 3))
    entry = layer_diff(match(src, tgt), "n")
    assert entry.status == UNMATCHED and entry.transform is None and entry.sources == []
    assert entry.reasons[0] == "closest: identity(blk.conv) differs in 100% of the elements"


def test_half_of_the_elements_off_is_still_a_mismatch_and_more_is_not():
    r = rng(7)
    w = r.uniform(1, 2, (2, 4, 1, 1)).astype(np.float32)  # 8 elements, none near zero
    src = source(layer("blk.conv", CONV, "Conv2d", weight=w))
    for off, status in ((4, MISMATCH), (5, UNMATCHED)):
        changed = w.copy().reshape(-1)
        changed[:off] *= 2
        entry = layer_diff(match(src, target(layer("n", CONV, "Conv", weight=changed.reshape(w.shape)))), "n")
        assert entry.status == status, off


def _layernorms(target_weight, hints=()):
    """LayerNorms take no part in alignment: an unnamed one is found by the search."""
    r = rng(8)
    src = source(layer("enc.norm", LAYERNORM, "LayerNorm", weight=r.uniform(0.5, 1.5, 32).astype(np.float32)))
    values = target_weight(src.layers[0].params["weight"].array())
    return src, target(layer("ln", LAYERNORM, "LayerNormalization", hints=hints, weight=values))


def test_a_layer_found_by_search_is_unmatched_when_most_elements_are_off():
    src, tgt = _layernorms(lambda w: w[::-1] * 3)
    result = match(src, tgt)
    entry = layer_diff(result, "ln")
    assert entry.status == UNMATCHED, describe(result)
    assert entry.reasons[0] == "closest: identity(enc.norm) differs in 100% of the elements"
    assert result.unmatched_source == ["enc.norm"]


def test_a_layer_found_by_search_with_few_elements_off_is_a_mismatch():
    def one_off(w):
        w = w.copy()
        w[7] *= 1.02
        return w

    src, tgt = _layernorms(one_off)
    entry = layer_diff(match(src, tgt), "ln")
    assert (entry.status, entry.matched_by) == (MISMATCH, "search")
    assert param_diff(entry, "weight").bad_channels == [7]


def test_the_closest_of_several_failing_candidates_is_reported_and_located():
    # Both named sources fail, "a" everywhere, "b" in one channel: candidates the cheap
    # screen rejects are still ranked by their full comparison, so "b" is the mismatch,
    # with its channel, whichever order the hints come in.
    r = rng(40)
    a, b = randn(r, 6, 4, 3, 3), randn(r, 6, 4, 3, 3)
    src = source(layer("a", CONV, "Conv2d", weight=a), layer("b", CONV, "Conv2d", weight=b))
    for hints in (("a", "b"), ("b", "a")):
        entry = layer_diff(match(src, target(layer("n", CONV, "Conv", hints=hints, weight=tampered(b, 4)))), "n")
        weight = param_diff(entry, "weight")
        assert (entry.status, entry.sources, weight.bad_channels) == (MISMATCH, ["b"], [4]), hints
        assert weight.max_abs_err == pytest.approx(np.abs(b[4].astype(np.float64) * 0.02).max(), rel=1e-5)


def test_unmatched_reasons_say_why_each_candidate_was_rejected():
    r = rng(9)
    src = source(layer("c", CONV, "Conv2d", weight=randn(r, 8, 3, 1, 1)))
    tgt = target(layer("n", CONV, "Conv", hints=("c",), weight=randn(r, 8, 3, 3, 3)))
    result = diff(src, tgt)
    entry = layer_diff(result, "n")
    assert entry.status == UNMATCHED
    assert "identity(c): weight has 216 elements, the source 24" in entry.reasons
    assert "cast(c): weight has 216 elements, the source 24" in entry.reasons
    assert not any(reason.startswith("closest") for reason in entry.reasons)  # nothing was re-computed
    # The unmatched layer still shows its own tensors.
    assert [(p.name, p.target_tensor, p.status) for p in entry.params] == [("weight", "n.weight", UNMATCHED)]
    (finding,) = [f for f in result.findings if f.code == "unmatched_target"]
    assert finding.message == f"Conv n is not traced to the PyTorch model: {entry.reasons[0]}"
    assert result.verdict == "incomplete"


def test_a_layer_with_no_candidate_at_all():
    r = rng(10)
    src = source(layer("c", CONV, "Conv2d", weight=randn(r, 8, 3, 1, 1)))
    tgt = target(layer("proj", "linear", "Gemm", {"weight_layout": "out_in"}, weight=randn(r, 100, 8)))
    result = diff(src, tgt)
    assert layer_diff(result, "proj").reasons == []
    (finding,) = [f for f in result.findings if f.code == "unmatched_target"]
    assert finding.message == "Gemm proj is not traced to the PyTorch model: no PyTorch layer of this kind and shape"


def test_a_large_tampered_tensor_is_located_after_the_probe_rejects_it():
    # 64 x 32 x 3 x 3 = 18432 elements: the probe rejects it on a sample, and a credible
    # mismatch is then compared in full to say where.
    r = rng(11)
    w = randn(r, 64, 32, 3, 3)
    src = source(layer("big", CONV, "Conv2d", weight=w))
    tgt = target(layer("n", CONV, "Conv", hints=("big",), weight=tampered(w, 37)))
    entry = layer_diff(match(src, tgt), "n")
    weight = param_diff(entry, "weight")
    assert (entry.status, weight.bad_channels, weight.bad_channel_count) == (MISMATCH, [37], 1)
    assert weight.max_abs_err == pytest.approx(np.abs(w[37].astype(np.float64) * 0.02).max(), rel=1e-5)


def test_tolerance_overrides_reach_every_parameter():
    r = rng(12)
    w = randn(r, 4, 4, 1, 1)
    src = source(layer("c", CONV, "Conv2d", weight=w))
    tgt = target(layer("n", CONV, "Conv", hints=("c",), weight=tampered(w, 1)))
    assert layer_diff(diff(src, tgt), "n").status == MISMATCH
    loose = layer_diff(diff(src, tgt, rtol=0.05), "n")
    assert loose.status == OK
    assert param_diff(loose, "weight").tolerance == Tolerance(rtol=0.05, atol=1e-6)


def test_results_follow_the_target_order_and_list_unused_source_layers():
    r = rng(13)
    gamma, w = r.uniform(0.5, 1.5, 8).astype(np.float32), randn(r, 8, 8, 1, 1)
    src = source(
        layer("blk.conv", CONV, "Conv2d", weight=w),
        layer("blk.gamma", "layerscale", "LayerScale", gamma=gamma),
        layer("aux.conv", CONV, "Conv2d", weight=randn(r, 3, 8, 1, 1)),
        layer("bn_counter", BATCHNORM, "BatchNorm2d", num_batches_tracked=np.array([7], np.int64)),
    )
    tgt = target(
        layer("mul", "mul", "Mul", hints=("blk.gamma",), scale=gamma.reshape(8, 1, 1)),  # a constant first
        layer("conv", CONV, "Conv", hints=("blk.conv",), weight=w),
    )
    result = match(src, tgt)
    assert [(e.target, e.status, e.sources) for e in result.layers] == [
        ("mul", OK, ["blk.gamma"]),
        ("conv", OK, ["blk.conv"]),
    ]
    assert result.unmatched_source == ["aux.conv"]  # a counter alone is nothing an export needs


# ----------------------------------------------------------------------------- constants


def _constant(values, hints):
    r = rng(14)
    gamma = r.uniform(0.5, 1.5, 16).astype(np.float32)
    src = source(layer("blk.ls", "layerscale", "LayerScale", gamma=gamma))
    return gamma, src, target(layer("mul", "mul", "Mul", hints=hints, scale=values(gamma)))


def test_a_constant_that_is_a_parameter_is_explained():
    _, src, tgt = _constant(lambda g: g, ("blk.ls",))
    entry = layer_diff(match(src, tgt), "mul")
    assert (entry.status, entry.transform, entry.variant) == (OK, "identity", "gamma")


def test_a_constant_an_unused_parameter_fits_is_never_called_a_constant():
    """Its scope's gamma has its size and nothing else uses it: whatever the values, it is
    parameter-derived and unexplained (incomplete), never waved through as a constant."""
    _, src, tgt = _constant(lambda g: np.linspace(0, 1, 16, dtype=np.float32), ("blk.ls",))
    result = match(src, tgt)
    (entry,) = result.layers
    assert (entry.target, entry.status) == ("mul", UNMATCHED) and result.constants == []
    assert result.coverage.totals["unexplained"].elements == 16
    assert result.verdict == "incomplete"


def test_a_zeroed_layer_scale_is_no_constant_either():
    _, src, tgt = _constant(lambda g: np.zeros_like(g), ())
    result = match(src, tgt)
    assert result.verdict != "faithful" and result.constants == []


def test_a_constant_no_parameter_fits_is_computed_at_export():
    """With the only 16-element parameter taken by its own Mul, a second 16-element
    constant matches no tensor and nothing unused can make it: computed at export."""
    gamma, src, _ = _constant(lambda g: g, ())
    tgt = target(
        layer("mul", "mul", "Mul", hints=("blk.ls",), scale=gamma),
        layer("add", "add", "Add", bias=np.linspace(0, 1, 16, dtype=np.float32)),
    )
    result = match(src, tgt)
    assert [(entry.target, entry.status) for entry in result.layers] == [("mul", OK)]
    (constant,) = result.constants
    assert (constant.layer, constant.elements) == ("add", 16) and constant.reason.startswith("computed at export")
    assert result.coverage.totals["constant"].elements == 16 and result.coverage.unexplained == 0
    assert result.verdict == "faithful"


def test_a_constant_named_by_its_tensor_is_a_mismatch_when_it_differs():
    _, src, tgt = _constant(lambda g: g * 3, ("blk.ls.gamma",))
    entry = layer_diff(match(src, tgt), "mul")
    assert (entry.status, entry.matched_by) == (MISMATCH, "name")


def test_a_constant_in_a_scope_with_few_elements_off_is_a_mismatch():
    _, src, tgt = _constant(lambda g: tampered(g, 3), ("blk.ls",))
    entry = layer_diff(match(src, tgt), "mul")
    assert (entry.status, param_diff(entry, "scale").bad_channels) == (MISMATCH, [3])


# ----------------------------------------------------------------------------- broken transforms


class Exploding(Transform):
    """Proposes the anchor layer for every target, then fails."""

    name = "exploding"
    order = 0

    def __init__(self, where: str = "reproduce"):
        self.where = where

    def propose(self, target, anchor, source):
        if self.where == "propose":
            raise RuntimeError("boom in propose\nsecond line")
        layer = source.layer(anchor)
        if layer is not None:
            yield self.candidate(layer)

    def reproduce(self, target, candidate):
        raise ValueError("boom\nsecond line")


@pytest.mark.parametrize(
    "where, error", [("reproduce", "ValueError: boom"), ("propose", "RuntimeError: boom in propose")]
)
def test_a_transform_that_raises_is_skipped_and_reported(where, error):
    r = rng(15)
    w1, w2 = randn(r, 4, 4, 1, 1), randn(r, 6, 4, 1, 1)
    src = source(layer("a", CONV, "Conv2d", weight=w1), layer("b", CONV, "Conv2d", weight=w2))
    tgt = target(
        layer("n1", CONV, "Conv", hints=("a",), weight=w1),
        layer("n2", CONV, "Conv", hints=("b",), weight=w2),
        layer("n3", CONV, "Conv", hints=("b",), weight=randn(r, 4, 4, 3, 3)),
    )
    result = match(src, tgt, [Exploding(where), *transforms()])
    # The others still explain what they can.
    assert [(e.target, e.status, e.transform) for e in result.layers[:2]] == [
        ("n1", OK, "identity"),
        ("n2", OK, "identity"),
    ]
    assert f"exploding failed: {error}" in layer_diff(result, "n3").reasons
    # One finding per broken transform, naming the first layer it failed on.
    (finding,) = [f for f in result.findings if f.code == "transform_error"]
    assert finding.severity == "warning" and finding.layer == "n1"
    assert finding.message == f"the exploding transform raised {error} (first on n1); it was skipped where it failed"


def test_a_transform_that_reproduces_a_wrong_shape_is_rejected_not_reshaped():
    class Halving(Transform):
        name = "halving"
        order = 0

        def propose(self, target, anchor, source):
            layer = source.layer(anchor)
            if layer is not None:
                yield self.candidate(layer)

        def reproduce(self, target, candidate):
            weight = candidate.sources[0].params["weight"]
            return Reproduction({"weight": weight.array()[:2].astype(np.float64)}, {"weight": weight})

    r = rng(16)
    w = randn(r, 4, 4, 1, 1)
    src = source(layer("a", CONV, "Conv2d", weight=w))
    tgt = target(layer("n", CONV, "Conv", hints=("a",), weight=w))
    result = match(src, tgt, [Halving()])
    entry = layer_diff(result, "n")
    assert entry.status == MISMATCH and param_diff(entry, "weight").max_abs_err == float("inf")


# ----------------------------------------------------------------------------- the whole diff


def test_a_small_model_end_to_end():
    r = rng(17)
    w0, w1 = randn(r, 8, 3, 3, 3), randn(r, 16, 8, 3, 3)
    fc = randn(r, 10, 16)
    src = source(
        layer("stem.conv", CONV, "Conv2d", weight=w0),
        layer("body.conv", CONV, "Conv2d", weight=w1),
        layer("head.fc", LINEAR, "Linear", weight=fc, bias=np.zeros(10, np.float32)),
        layer("head.attn", ATTENTION, "MultiheadAttention", in_proj_weight=randn(r, 48, 16)),
    )
    tgt = target(
        layer("/stem/conv/Conv", CONV, "Conv", hints=("stem.conv",), weight=w0),
        layer("Conv_1", CONV, "Conv", weight=tampered(w1, 9)),  # anonymous, found by alignment
        layer(
            "/head/fc/Gemm",
            LINEAR,
            "Gemm",
            {WEIGHT_LAYOUT: IN_OUT, "transB": 0},
            hints=("head.fc",),
            weight=param("weight", fc.T, "onnx::Gemm_7"),
        ),
    )
    result = diff(src, tgt)
    assert [(e.target, e.status, e.transform, e.matched_by) for e in result.layers] == [
        ("/stem/conv/Conv", OK, "identity", "scope"),
        ("Conv_1", MISMATCH, "identity", "alignment"),
        ("/head/fc/Gemm", OK, "transpose", "scope"),
    ], describe(result)
    assert param_diff(layer_diff(result, "Conv_1"), "weight").bad_channels == [9]
    assert param_diff(layer_diff(result, "/head/fc/Gemm"), "weight").target_tensor == "onnx::Gemm_7"
    assert result.unmatched_source == ["head.attn"]
    assert result.verdict == "differs"
    assert [f.code for f in result.findings] == ["mismatch", "unmatched_source"]


def test_a_diff_keeps_no_values_of_either_model_once_done():
    """Every array read for matching and for the checks is let go when its layer is done
    (their ranges stay): a large model is never held whole on top of what is resident."""
    r = rng(18)
    alive: list[weakref.ref] = []

    def reread(role: str, values: np.ndarray, tensor_name: str) -> Param:
        def read() -> np.ndarray:
            array = values.copy()
            alive.append(weakref.ref(array))
            return array

        return Param(role, values.shape, values.dtype.name, read, tensor_name)

    def rereading(name: str, kind: str, op_type: str, hints=(), **arrays) -> Layer:
        params = {role: reread(role, values, f"{name}.{role}") for role, values in arrays.items()}
        return layer(name, kind, op_type, hints=hints, **params)

    convs = [randn(r, 8, 8, 3, 3) for _ in range(6)]
    src = source(
        *(rereading(f"b{i}.conv", CONV, "Conv2d", weight=convs[i]) for i in range(6)),
        *(rereading(f"b{i}.bn", BATCHNORM, "BatchNorm2d", **bn_stats(r, 8)) for i in range(6)),
    )
    tgt = target(*(rereading(f"/b{i}/conv/Conv", CONV, "Conv", (f"b{i}.conv",), weight=convs[i]) for i in range(6)))
    result = diff(src, tgt)
    assert [entry.status for entry in result.layers] == [OK] * 6
    gc.collect()
    assert alive and not [ref for ref in alive if ref() is not None]


@pytest.mark.parametrize("trans_b", [1, 0])
def test_a_one_output_linear_with_a_scalar_bias(trans_b):
    r = rng(18)
    w, b = randn(r, 1, 4), randn(r, 1)
    src = source(layer("fc", LINEAR, "Linear", weight=w, bias=b))
    attrs = {"transB": trans_b, WEIGHT_LAYOUT: OUT_IN if trans_b else IN_OUT}
    tgt = target(layer("g", LINEAR, "Gemm", attrs, hints=("fc",), weight=w if trans_b else w.T, bias=np.array(b[0])))
    result = diff(src, tgt)
    assert layer_diff(result, "g").status == OK, describe(result)
    assert [f.code for f in result.findings] == []


def test_a_parameter_is_unused_until_used_whatever_its_module_s_other_parameters():
    """DeiT keeps cls_token and pos_embed on the root module. The position table is
    explained by name; the class token, folded by dynamo into an anonymous ``expand``,
    must still be reconciled with cls_token: a changed one is a mismatch, not a constant."""
    r = rng(41)
    cls, pos = randn(r, 1, 1, 6), randn(r, 1, 5, 6)
    src = source(
        layer("", "visiontransformer", "VisionTransformer", cls_token=cls, pos_embed=pos),
        layer("head", LINEAR, "Linear", weight=randn(r, 3, 6)),
    )
    changed = cls.copy()
    changed[0, 0, 4] *= 1.02
    for stored, status in ((cls, OK), (changed, MISMATCH)):
        tgt = target(
            layer("node_add", "add", "Add", bias=param("bias", pos, "pos_embed")),
            layer("node_cat", "concat", "Concat", input_0=param("input_0", stored, "expand")),
        )
        result = match(src, tgt)
        entry = layer_diff(result, "node_cat")
        assert (entry.status, entry.sources, entry.variant, entry.matched_by) == (
            status,
            [""],
            "cls_token",
            "reconciled",
        )
        assert result.constants == []


def test_ranges_computed_together_are_the_ranges_of_each_tensor():
    # The report's ranges of a layer's tensors are computed in one pass; each kept range
    # must be the one ValueRange.of gives, and the cases it counts or cannot order (NaN,
    # Inf, a zero min or max that may be -0.0) must be left to it.
    from inspector.ir import ValueRange
    from inspector.match import _keep_ranges

    generator = np.random.default_rng(21)
    arrays = [
        generator.standard_normal((16, 16, 3, 3)).astype(np.float32),
        generator.standard_normal(16).astype(np.float16),
        generator.standard_normal((5, 7)).T,  # float64, not contiguous
        np.array([1.0, np.nan, 3.0], np.float32),
        np.array([-np.inf, 2.0], np.float32),
        np.array([0.0, -0.0, 2.0], np.float32),
        np.broadcast_to(np.float32(0.5), (4, 4)),
        np.arange(6, dtype=np.int64),
        np.zeros(0, np.float32),
        generator.standard_normal(1 << 17).astype(np.float32),  # too large to join the others
    ]
    params = [param(f"p{i}", array) for i, array in enumerate(arrays)]
    _keep_ranges([*params, None, params[0]])
    kept = [p for p in params if p.known_range() is not None]
    assert [p.name for p in kept] == ["p0", "p1", "p2", "p6"]
    for p, array in zip(params, arrays):
        assert repr(p.value_range()) == repr(ValueRange.of(array))  # NaN and -0.0 as they are


# ----------------------------------------------------------------------------- guesses


def test_a_guess_both_eps_fit_is_reported_as_the_one_the_model_took(monkeypatch):
    """A float16 export of a state_dict (no eps recorded) folded with eps 1e-3: on a
    first layer of large variances both eps fit in float16 and 1e-5 is tried first; the
    layers after it fit 1e-3 only. The first layer is then reported with 1e-3 too, its
    comparison counted once; a tampered twin still differs."""
    r = rng(11)
    blocks, targets = [], []
    for index, variance in enumerate([(50.0, 100.0), (0.01, 0.1), (0.01, 0.1)]):
        weight, bn = randn(r, 4, 3, 3, 3), bn_stats(r, 4)
        bn["running_var"] = r.uniform(*variance, 4).astype(np.float32)
        scale = bn["weight"].astype(np.float64) / np.sqrt(bn["running_var"].astype(np.float64) + 1e-3)
        blocks += [
            layer(f"conv{index}", CONV, "Conv2d", weight=weight),
            layer(f"bn{index}", BATCHNORM, "BatchNorm2d", **bn),
        ]
        folded_weight = (weight * scale[:, None, None, None]).astype(np.float16)
        folded_bias = (bn["bias"] - bn["running_mean"] * scale).astype(np.float16)
        targets.append(
            layer(f"/conv{index}/Conv", CONV, "Conv", hints=(f"conv{index}",), weight=folded_weight, bias=folded_bias)
        )
    result = diff(source(*blocks), target(*targets))
    assert [(item.status, item.variant) for item in result.layers] == [(OK, "eps=0.001")] * 3, describe(result)
    assert result.layers[0].note == "eps 0.001 (guessed: the file does not record it)"
    (finding,) = [f for f in result.findings if f.code == "guessed_eps"]
    assert finding.message.endswith("3 folded layers fit with eps=0.001")
    stored = sum(p.numel for item in targets for p in item.params.values())
    assert result.coverage.totals["explained"].elements == stored  # not counted twice

    # The first layer alone fits either eps: 1e-5 is what its own numbers allow first.
    alone = diff(source(*blocks[:2]), target(targets[0]))
    assert alone.layers[0].variant == "eps=1e-05"

    first = targets[0]
    tampered_first = layer(
        first.name,
        CONV,
        "Conv",
        hints=first.hints,
        weight=tampered(first.params["weight"].array(), 1),
        bias=first.params["bias"].array(),
    )
    twin_result = diff(source(*blocks), target(tampered_first, *targets[1:]))
    assert twin_result.layers[0].status == MISMATCH and twin_result.verdict == "differs"

    # A transform that fails on the settling's candidate leaves the first layer's diff as it was.
    fold = type(next(t for t in transforms() if t.name == "fold_batchnorm"))
    reproduce, failed = fold.reproduce, []

    def fails_on_the_settling_candidate(self, target_layer, candidate):
        if target_layer.name == "/conv0/Conv" and candidate.variant == "eps=0.001":
            failed.append(target_layer.name)
            raise RuntimeError("cannot")
        return reproduce(self, target_layer, candidate)

    monkeypatch.setattr(fold, "reproduce", fails_on_the_settling_candidate)
    kept = diff(source(*blocks), target(*targets))
    assert [(item.status, item.variant) for item in kept.layers] == [(OK, "eps=1e-05")] + [(OK, "eps=0.001")] * 2
    assert failed == ["/conv0/Conv"]  # asked by the settling only
