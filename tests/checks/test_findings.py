"""The built-in checks (plugins.checks.findings), each on a hand-built DiffResult, and all
of them through a numpy diff."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.ir import BATCHNORM, CONV
from inspector.records import Finding
from inspector.results import MISMATCH, OK, DiffResult, LayerDiff, ParamDiff
from inspector.transforms import EPS_GUESSED
from plugins.checks import findings
from tests.support.layers import bn_stats, diff, layer, param, plugins, randn, rng, source, target


def _result(*layers: LayerDiff, source_model=None, target_model=None, **fields) -> DiffResult:
    return DiffResult(source_model or source(), target_model or target(), layers=list(layers), **fields)


def _mismatch(name="n", channels=(3,), abs_err=0.5, rel_err=0.25):
    return LayerDiff(
        target=name,
        op="Conv",
        kind="conv",
        sources=["c"],
        transform="identity",
        status=MISMATCH,
        params=[
            ParamDiff(
                "weight",
                "n.weight",
                max_abs_err=abs_err,
                max_rel_err=rel_err,
                status=MISMATCH,
                bad_channels=list(channels),
                bad_channel_count=len(channels),
            ),
            ParamDiff("bias", "n.bias", max_abs_err=0.0, max_rel_err=0.0, status=OK),
        ],
    )


def test_the_built_in_checks_in_order():
    assert [check.name for check in plugins().checks()] == [
        "mismatch",
        "unmatched_target",
        "nan_inf",
        "unfolded_batchnorm",
        "guessed_eps",
        "unmatched_source",
        "export_constant",
        "unexplained",
    ]


def test_mismatch_says_which_parameter_by_how_much_and_where():
    found = list(findings.mismatches(_result(_mismatch(), LayerDiff("ok", "Conv", "conv", status=OK))))
    assert found == [
        Finding(
            "error",
            "mismatch",
            "n (Conv, from c via identity): weight differs by up to 0.5 (25.00% of its scale) in output channel 3",
            "n",
        )
    ]


def test_unmatched_target_gives_the_first_reason():
    with_reasons = LayerDiff(
        "t", "Gemm", "linear", reasons=["closest: identity(fc) differs in 80% of the elements", "x"]
    )
    without = LayerDiff("u", "Conv", "conv")
    assert list(findings.unmatched_targets(_result(with_reasons, without, _mismatch()))) == [
        Finding(
            "error",
            "unmatched_target",
            "Gemm t is not traced to the PyTorch model: closest: identity(fc) differs in 80% of the elements",
            "t",
        ),
        Finding(
            "error",
            "unmatched_target",
            "Conv u is not traced to the PyTorch model: no PyTorch layer of this kind and shape",
            "u",
        ),
    ]


def test_nan_and_inf_in_either_model():
    bad = np.array([1.0, np.nan, np.inf, np.nan, -np.inf], np.float32)
    shared = param("weight", bad, "onnx::shared")
    src = source(layer("c", CONV, "Conv2d", weight=bad), layer("fine", CONV, "Conv2d", weight=np.ones(3, np.float32)))
    tgt = target(layer("n1", CONV, "Conv", weight=shared), layer("n2", CONV, "Conv", weight=shared))
    assert list(findings.nan_inf(_result(source_model=src, target_model=tgt))) == [
        Finding("error", "nan_inf", "PyTorch tensor c.weight holds 2 NaN and 2 Inf values", "c"),
        Finding("error", "nan_inf", "ONNX tensor onnx::shared holds 2 NaN and 2 Inf values", "n1"),  # once, shared
    ]


def test_nan_and_inf_among_many_small_tensors_checked_together():
    # Thousands of small BatchNorm statistics are checked for NaN/Inf in passes over many
    # tensors at once: one bad value among them must still be named, with its own counts,
    # in any float dtype, and a pass larger than a batch must not hide it.
    generator = rng(11)
    layers = [layer(f"bn{i}", BATCHNORM, "BatchNorm2d", **bn_stats(generator, 16)) for i in range(3000)]
    values = np.ones(16, np.float16)
    values[[2, 5]] = [np.inf, np.nan]
    layers[2500] = layer("bn2500", BATCHNORM, "BatchNorm2d", running_var=values)
    layers[7] = layer("bn7", BATCHNORM, "BatchNorm2d", weight=np.full(70_000, -np.inf, np.float32))  # batched alone
    counters = layer("count", BATCHNORM, "BatchNorm2d", num_batches_tracked=np.array(7, np.int64))
    src = source(*layers, counters)
    tgt = target(layer("n", CONV, "Conv", weight=np.ones(4, np.float64)))
    assert list(findings.nan_inf(_result(source_model=src, target_model=tgt))) == [
        Finding("error", "nan_inf", "PyTorch tensor bn7.weight holds 0 NaN and 70000 Inf values", "bn7"),
        Finding("error", "nan_inf", "PyTorch tensor bn2500.running_var holds 1 NaN and 1 Inf values", "bn2500"),
    ]
    clean = source(*(layer(f"bn{i}", BATCHNORM, "BatchNorm2d", **bn_stats(generator, 16)) for i in range(100)))
    assert list(findings.nan_inf(_result(source_model=clean, target_model=tgt))) == []
    assert all(param.known_range() is None for _, param in clean.params())  # shown finite together, no ranges


def test_unfolded_batchnorm():
    """One warning for every BatchNorm right after a conv, one for training mode; a
    BatchNorm after an activation is not mentioned."""
    graph = target(
        layer("/c/Conv", CONV, "Conv", outputs=("c",), weight=np.ones((2, 2, 1, 1), np.float32)),
        layer(
            "/bn/BatchNormalization",
            BATCHNORM,
            "BatchNormalization",
            inputs=("c",),
            outputs=("b",),
            weight=np.ones(2, np.float32),
        ),
        layer("/relu/Relu", "activation", "Relu", inputs=("b",), outputs=("r",)),
        layer(
            "BatchNormalization_3",
            BATCHNORM,
            "BatchNormalization",
            {"training_mode": 1},
            inputs=("r",),
            weight=np.ones(2, np.float32),
        ),
    )
    kept = LayerDiff("/bn/BatchNormalization", "BatchNormalization", "batchnorm", sources=["bn"], status=OK)
    after_relu = LayerDiff("BatchNormalization_3", "BatchNormalization", "batchnorm")
    found = list(findings.unfolded_batchnorm(_result(kept, after_relu, target_model=graph)))
    assert [(f.severity, f.code, f.message) for f in found] == [
        (
            "warning",
            "unfolded_batchnorm",
            "1 BatchNorm (bn) right after the layer it normalises was not folded into "
            "it and runs as a separate node (exported in training mode, or without "
            "constant folding?)",
        ),
        (
            "warning",
            "training_mode_batchnorm",
            "1 BatchNormalization (BatchNormalization_3) is marked training_mode=1: "
            "ONNX Runtime normalises with the batch's statistics, not the model's",
        ),
    ]


def _folded(name, variant, guessed=True):
    return LayerDiff(
        name,
        "Conv",
        "conv",
        status=OK,
        transform="fold_batchnorm",
        variant=variant,
        facts={"eps": 1e-3, EPS_GUESSED: guessed},
    )


def test_guessed_eps_counts_layers_and_names_the_values():
    result = _result(
        _folded("a", "eps=0.001"), _folded("b", "eps=0.001"), _folded("c", "eps=1e-05"), _folded("d", "", guessed=False)
    )
    assert list(findings.guessed_eps(result)) == [
        Finding(
            "info",
            "guessed_eps",
            "The file does not record BatchNorm eps; 3 folded layers fit with eps=0.001; eps=1e-05",
        )
    ]
    assert [f.message for f in findings.guessed_eps(_result(_folded("a", "eps=0.001")))] == [
        "The file does not record BatchNorm eps; 1 folded layer fit with eps=0.001"
    ]
    assert list(findings.guessed_eps(_result(_folded("d", "", guessed=False)))) == []


@pytest.mark.parametrize(
    "name, training_only",
    [
        ("model.aux_head.conv", True),
        ("decoder.denoising_class_embed", True),
        ("decoder.dn_query", True),
        ("criterion.matcher", True),
        ("loss_fn.weight", True),
        ("teacher.backbone.conv", True),
        ("model.ema", True),
        ("model.auxiliary.0", True),
        ("schema.conv", False),  # a word merely containing one
        ("model.maxpool", False),
        ("glossary", False),
        ("head.fc", False),
    ],
)
def test_training_only_names(name, training_only):
    assert bool(findings.TRAINING_ONLY.search(name)) is training_only


def test_unmatched_source_splits_training_only_layers_off():
    other = [f"blocks.{i}.conv" for i in range(10)]
    result = _result(unmatched_source=[*other, "aux_head.fc", "model.ema"])
    assert list(findings.unmatched_source(result)) == [
        Finding(
            "warning",
            "unmatched_source",
            "10 PyTorch layers have no ONNX counterpart: " + ", ".join(other[:8]) + " (+2 more)",
        ),
        Finding(
            "info",
            "unused_at_inference",
            "2 PyTorch layers are training-only by their names and not exported, as expected: aux_head.fc, model.ema",
        ),
    ]
    assert list(findings.unmatched_source(_result())) == []


def test_one_unmatched_source_layer_is_singular():
    messages = [f.message for f in findings.unmatched_source(_result(unmatched_source=["head.fc", "aux.fc"]))]
    assert messages == [
        "1 PyTorch layer has no ONNX counterpart: head.fc",
        "1 PyTorch layer is training-only by its name and not exported, as expected: aux.fc",
    ]


def test_export_constants_are_listed_and_bookkeeping_is_counted():
    from inspector.results import ConstantTensor

    computed = [ConstantTensor(f"t{i}", "Mul", f"Mul_{i}", 4, "computed at export: ...") for i in range(9)]
    scalars = [
        ConstantTensor("s", "Div", "Div_0", 1, "a scalar"),
        ConstantTensor(
            "r", "Resize", "Resize_0", 4, "input 2 of Resize (a shape, axes or scale input, not a parameter)"
        ),
    ]
    found = list(findings.export_constants(_result(constants=computed + scalars)))
    assert [(f.severity, f.code) for f in found] == [("info", "export_constant"), ("info", "bookkeeping_constant")]
    assert found[0].message.startswith("9 ONNX tensors are not PyTorch parameters: t0 (Mul, 4 values), ")
    assert "t7 (Mul, 4 values) (+1 more)" in found[0].message and "t8" not in found[0].message
    assert found[1].message == "2 ONNX tensors are scalars or shape, axes and scale inputs, not parameters"
    assert list(findings.export_constants(_result())) == []


def test_unexplained_numbers_outside_rows_are_an_error():
    result = _result()
    result.coverage.add("unexplained", "Loop", 12, 48)
    (finding,) = findings.unexplained_numbers(result)
    assert (finding.severity, finding.code) == ("error", "unexplained")
    assert finding.message.startswith("12 floating-point numbers the ONNX model stores (48 bytes)")
    assert list(findings.unexplained_numbers(_result())) == []


def test_findings_of_a_numpy_diff_come_in_check_order():
    r = rng(0)
    w, bn, fc = randn(r, 4, 2, 1, 1), bn_stats(r, 4), randn(r, 3, 4)
    broken = fc.copy()
    broken[0, 0] = np.nan
    src = source(
        layer("c", CONV, "Conv2d", weight=w),
        layer("bn", BATCHNORM, "BatchNorm2d", **bn),  # eps not recorded
        layer("fc", "linear", "Linear", weight=fc),
        layer("aux.head", CONV, "Conv2d", weight=randn(r, 2, 4, 1, 1)),
    )
    s = bn["weight"].astype(np.float64) / np.sqrt(bn["running_var"].astype(np.float64) + 1e-3)
    tgt = target(
        layer(
            "conv",
            CONV,
            "Conv",
            hints=("c",),
            weight=(w * s[:, None, None, None]).astype(np.float32),
            bias=(bn["bias"] - bn["running_mean"] * s).astype(np.float32),
        ),
        layer("gemm", "linear", "Gemm", {"transB": 1}, hints=("fc.weight",), weight=broken),
        layer("mul", "mul", "Mul", scale=np.linspace(0, 1, 5, dtype=np.float32)),
        layer("proj", "linear", "Gemm", {"weight_layout": "out_in"}, weight=randn(r, 7, 3)),
    )
    result = diff(src, tgt)
    assert [(f.severity, f.code, f.layer) for f in result.findings] == [
        ("error", "mismatch", "gemm"),
        ("error", "unmatched_target", "proj"),
        ("error", "nan_inf", "gemm"),
        ("info", "guessed_eps", None),
        ("info", "unused_at_inference", None),
        ("info", "export_constant", None),
    ]


def test_earlier_items_of_a_list_whose_last_item_alone_is_exported_are_expected():
    """A DETR decoder's per-step score heads: the export keeps only the last; a stack of
    blocks missing one from the export stays a warning."""
    r = rng(4)
    heads = {f"dec.score_head.{i}": randn(r, 5, 8) for i in range(3)}
    boxes = {f"dec.bbox_head.{i}.fc": randn(r, 4, 8) for i in range(3)}
    blocks = {f"blocks.{i}": randn(r, 8, 8) for i in range(3)}
    src = source(*(layer(name, "linear", "Linear", weight=w) for name, w in {**heads, **boxes, **blocks}.items()))
    exported = {"dec.score_head.2": heads["dec.score_head.2"], **boxes, "blocks.0": blocks["blocks.0"]}
    exported["blocks.2"] = blocks["blocks.2"]  # blocks.1 is missing
    tgt = target(
        *(
            layer(f"/{name}/Gemm", "linear", "Gemm", {"transB": 1}, hints=(name,), weight=w)
            for name, w in exported.items()
        )
    )
    result = diff(src, tgt)
    assert sorted(result.unmatched_source) == ["blocks.1", "dec.score_head.0", "dec.score_head.1"]
    assert [
        (f.severity, f.code, f.message) for f in result.findings if "unmatched" in f.code or "unused" in f.code
    ] == [
        ("warning", "unmatched_source", "1 PyTorch layer has no ONNX counterpart: blocks.1"),
        (
            "info",
            "unused_list_items",
            "2 PyTorch layers of a list are not exported while the list's last item is (per-step heads for "
            "training's auxiliary losses, as in DETR decoders): dec.score_head.0, dec.score_head.1",
        ),
    ]


@pytest.mark.parametrize(
    "shapes, exported, expected",
    [
        ([(5, 8), (5, 8), (5, 8)], {"h.2"}, {"h.0", "h.1"}),
        ([(5, 8), (5, 8), (5, 8)], {"h.1"}, set()),  # the last item is not the exported one
        ([(5, 8), (6, 8), (5, 8)], {"h.2"}, set()),  # not alike
        ([(5, 8), (5, 8), (5, 8)], {"h.0", "h.2"}, set()),  # h.1 alone missing: a block of a stack
        ([(5, 8)], {"h.0"}, set()),  # a list of one
    ],
)
def test_which_list_items_count_as_earlier(shapes, exported, expected):
    r = rng(5)
    layers = [layer(f"h.{i}", "linear", "Linear", weight=randn(r, *shape)) for i, shape in enumerate(shapes)]
    unmatched = [item.name for item in layers if item.name not in exported]
    assert findings.earlier_items_of_used_lists(unmatched, layers, exported) == expected
