"""Tiny numpy-only builders for the core and transform tests, so a test reads like the math.

A source (PyTorch-like) and a target (ONNX-like) model are a handful of
:class:`~inspector.ir.Layer` objects whose :class:`~inspector.ir.Param` values are numpy
arrays; the matcher and the built-in transforms run on them exactly as on loaded files::

    w, g, beta, m, v = ...                                    # numpy arrays
    s = g / np.sqrt(v + 1e-3)
    src = source(
        layer("blk.conv", CONV, "Conv2d", {"groups": 1}, weight=w),
        layer("blk.bn", BATCHNORM, "BatchNorm2d", {"eps": 1e-3},
              weight=g, bias=beta, running_mean=m, running_var=v),
    )
    tgt = target(layer("/blk/conv/Conv", CONV, "Conv", {"group": 1}, hints=("blk.conv",),
                       weight=w * s[:, None, None, None], bias=(0 - m) * s + beta))
    (fused,) = diff(src, tgt).layers
    assert fused.status == "ok" and fused.transform == "fold_batchnorm"

Conventions (the loaders' own, see :mod:`inspector.ir`):

- source attrs use PyTorch's names (``groups``, ``stride``, ``dilation``, ``eps``), target
  attrs ONNX's (``group``, ``strides``, ``dilations``, ``alpha``, ``transB``) plus
  :data:`inspector.ir.WEIGHT_LAYOUT` on a Linear;
- a param given to :func:`layer` as an array is named ``<layer name>.<role>`` (the
  state_dict key, which :class:`~inspector.transforms.SourceIndex` looks tensors up by);
  pass a :func:`param` to choose another tensor name (``onnx::Conv_25``);
- arrays are copied and made read-only, as a memory-mapped file's would be: a transform
  that writes into its input fails loudly instead of corrupting the next comparison.

Nothing here imports torch or onnx (``tests/core/test_numpy_only.py`` runs every test
built on this module with both blocked); the built-in plugins come from
:func:`inspector.manager.get_plugin_manager` with third-party autoloading off.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from inspector.ir import Layer, Model, Param
from inspector.results import DiffResult, LayerDiff
from inspector.transforms import Candidate, SourceIndex, Transform

SOURCE_FORMAT = "pytorch-module"
TARGET_FORMAT = "onnx"


# ----------------------------------------------------------------------------- building


def param(role: str, array, tensor_name: str | None = None) -> Param:
    """A :class:`Param` of ``role`` holding a read-only copy of ``array`` (its dtype and
    shape are the array's; ``tensor_name`` defaults to ``role``)."""
    values = np.array(array)
    values.setflags(write=False)
    return Param(role, values.shape, values.dtype.name, lambda: values, tensor_name=tensor_name)


def layer(
    name: str,
    kind: str,
    op_type: str,
    attrs: dict | None = None,
    hints: Sequence[str] = (),
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    **params,
) -> Layer:
    """A :class:`Layer`; each keyword is a param role, given as an array (wrapped by
    :func:`param` with the tensor name ``<name>.<role>``) or as a ready :class:`Param`."""
    built = {
        role: value if isinstance(value, Param) else param(role, value, f"{name}.{role}")
        for role, value in params.items()
    }
    return Layer(name, kind, op_type, attrs=attrs, params=built, inputs=inputs, outputs=outputs, hints=hints)


def model(fmt: str, layers: Iterable[Layer], modules: dict[str, str] | None = None) -> Model:
    """A :class:`Model` of format ``fmt`` holding ``layers`` in that order (``modules``:
    the module tree, path -> class, when a test needs modules without params)."""
    return Model(format=fmt, path=f"<{fmt}>", layers=list(layers), modules=dict(modules or {}))


def source(*layers: Layer, modules: dict[str, str] | None = None) -> Model:
    """A PyTorch-like source model (layers in ``named_modules()`` order)."""
    return model(SOURCE_FORMAT, layers, modules)


def target(*layers: Layer) -> Model:
    """An ONNX-like target model (layers in execution order)."""
    return model(TARGET_FORMAT, layers)


# ----------------------------------------------------------------------------- numbers


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(generator: np.random.Generator, *shape: int, dtype=np.float32) -> np.ndarray:
    """Standard normal values of ``shape`` in ``dtype``."""
    return generator.standard_normal(shape).astype(dtype)


def bn_stats(generator: np.random.Generator, channels: int, dtype=np.float32) -> dict[str, np.ndarray]:
    """Randomised BatchNorm params (weight, bias, running_mean, running_var), as keywords
    for :func:`layer`. The variances are small (0.01 to 0.1) so that eps matters: with
    1e-5 instead of 1e-3 a fold is off by several percent."""
    return {
        "weight": generator.uniform(0.5, 1.5, channels).astype(dtype),
        "bias": generator.standard_normal(channels).astype(dtype),
        "running_mean": generator.standard_normal(channels).astype(dtype),
        "running_var": generator.uniform(0.01, 0.1, channels).astype(dtype),
    }


def tampered(array: np.ndarray, channel: int, axis: int = 0, factor: float = 1.02) -> np.ndarray:
    """A copy of ``array`` with one channel (index ``channel`` along ``axis``) times ``factor``."""
    changed = np.array(array, copy=True)
    index = [slice(None)] * changed.ndim
    index[axis] = channel
    changed[tuple(index)] = changed[tuple(index)] * factor
    return changed


def per_channel(values: np.ndarray, ndim: int, axis: int = 0) -> np.ndarray:
    """``values`` (one per channel) shaped to broadcast along ``axis`` of an ``ndim`` array."""
    shape = [1] * ndim
    shape[axis] = -1
    return np.asarray(values).reshape(shape)


# ----------------------------------------------------------------------------- running


@lru_cache(maxsize=1)
def plugins():
    """The built-in plugins only (no entry points, no ``GRAPHINSPECT_PLUGINS`` modules are
    asked for: their transforms would change what the tests see)."""
    from inspector.manager import get_plugin_manager

    return get_plugin_manager(autoload=False)


def transforms() -> list[Transform]:
    """The built-in transforms, in the order the matcher tries them."""
    return plugins().transforms()


def transform(name: str) -> Transform:
    """The built-in transform called ``name``."""
    for candidate in transforms():
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def diff(source_model: Model, target_model: Model, rtol: float | None = None, atol: float | None = None) -> DiffResult:
    """Match and explain with the built-in transforms and checks, as ``graphinspect diff``."""
    from inspector.diff import diff_models

    return diff_models(plugins(), source_model, target_model, rtol=rtol, atol=atol)


def match(source_model: Model, target_model: Model, with_transforms: Sequence[Transform] | None = None) -> DiffResult:
    """Run the :class:`~inspector.match.Matcher` alone (no checks), with the built-in
    transforms or the ones given."""
    from inspector.match import Matcher

    chosen = list(transforms() if with_transforms is None else with_transforms)
    return Matcher(chosen, source_model, target_model).run()


def layer_diff(result: DiffResult, target_name: str) -> LayerDiff:
    """The result's entry for the target layer called ``target_name``."""
    for entry in result.layers:
        if entry.target == target_name:
            return entry
    raise KeyError(f"{target_name} not in {[entry.target for entry in result.layers]}")


def param_diff(entry: LayerDiff, role: str):
    for item in entry.params:
        if item.name == role:
            return item
    raise KeyError(f"{role} not in {[item.name for item in entry.params]}")


def candidates(chosen: Transform, source_model: Model, target_layer: Layer, anchor: str) -> list[Candidate]:
    """What ``chosen`` proposes for ``target_layer`` around ``anchor`` in ``source_model``."""
    return list(chosen.propose(target_layer, anchor, SourceIndex(source_model)))


def check_reasons(chosen: Transform, source_model: Model, target_layer: Layer, anchor: str) -> list[str | None]:
    """``check()`` of every candidate ``chosen`` proposes (None where it applies)."""
    return [
        chosen.check(target_layer, candidate) for candidate in candidates(chosen, source_model, target_layer, anchor)
    ]


def applicable(chosen: Transform, source_model: Model, target_layer: Layer, anchor: str) -> list[Candidate]:
    """The candidates ``chosen`` proposes around ``anchor`` whose ``check()`` passes."""
    return [c for c in candidates(chosen, source_model, target_layer, anchor) if chosen.check(target_layer, c) is None]


def describe(result: DiffResult) -> str:
    """The result as lines, for assertion messages."""
    lines = [f"verdict {result.verdict}"]
    for entry in result.layers:
        errors = ", ".join(f"{p.name} {p.status} {p.max_rel_err} ch{p.bad_channels}" for p in entry.params)
        lines.append(
            f"  {entry.status:9} {entry.op:10} {entry.target:30} {entry.transform} {entry.sources} "
            f"[{entry.matched_by}] {entry.variant!r} {entry.note!r} ({errors}) {entry.reasons[:3]}"
        )
    lines += [f"  finding {f.severity} {f.code}: {f.message}" for f in result.findings]
    lines.append(
        f"  unmatched source {result.unmatched_source}, constants "
        f"{[(c.layer, c.reason[:30]) for c in result.constants]}"
    )
    return "\n".join(lines)
