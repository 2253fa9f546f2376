"""The ``fold_batchnorm`` transform: a BatchNorm merged into the Conv/Linear before it.

In eval mode ``bn(conv(x)) = conv'(x)`` with, per output channel ``c``::

    s_c  = gamma_c / sqrt(var_c + eps)         (gamma = 1, beta = 0 when affine=False)
    w'_c = w_c * s_c
    b'_c = (b_c - mean_c) * s_c + beta_c       (b = 0 for a conv without bias)

For a ConvTranspose the output channels are the weight's axis 1 (within each group);
for a Linear the rows of ``W`` (out, in), stored in whatever layout the target uses
(:mod:`plugins.transforms._layouts`). Everything is re-computed in float64.

``fuse`` also folds a BatchNorm of a Linear's *input* (timm's NormLinear, a candidate
with ``norm_first``): ``W' = W * s`` column-wise, ``b' = W (beta - mean * s) + b``.
Exporters do not do that, so the matcher is never offered it.

``eps`` comes from the BatchNorm module (Ultralytics sets 1e-3, PyTorch's default is
1e-5). A bare state_dict does not record it, so both common values are tried and the
note says which one fitted.

Where the exporters leave the trace: the legacy exporter names the fused node after the
conv's scope and gives the initializers anonymous names (``onnx::Conv_25``); the dynamo
exporter's node carries the BatchNorm's scope, keeps ``conv.weight`` as the name of the
fused weight and names the new bias ``conv.weight_bias``; Ultralytics fuses before
exporting, so the fused conv is ``model.N.conv`` with a bias the checkpoint never had.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from inspector import ir
from inspector.hookspecs import hookimpl
from inspector.ir import Layer
from inspector.transforms import EPS_GUESSED, GUESS, Candidate, Reproduction, SourceIndex, Transform
from plugins.transforms._layouts import conv_attrs_disagree, float64, linear_to_target

FOLDABLE = (ir.CONV, ir.CONV_TRANSPOSE, ir.LINEAR)
GUESSED_EPS = (1e-5, 1e-3)


def conv_groups(layer: Layer, bn: Layer | None = None) -> int:
    """A conv's groups: from the module, else (a bare state_dict does not record them)
    for a ConvTranspose the count that gives it as many output channels as ``bn`` has
    features (its weight is (in, out/groups, k...): the shape alone cannot tell)."""
    groups = layer.attrs.get("groups")
    if groups is not None:
        return int(groups)
    weight = layer.params.get("weight")
    running_mean = bn.params.get("running_mean") if bn is not None else None
    if layer.kind == ir.CONV_TRANSPOSE and weight is not None and len(weight.shape) >= 2 and running_mean is not None:
        per_group, features = weight.shape[1], running_mean.numel
        if per_group and features % per_group == 0 and weight.shape[0] % (features // per_group) == 0:
            return features // per_group
    return 1


def out_channels(layer: Layer, bn: Layer | None = None) -> int | None:
    """Output channels of a conv/linear source layer, from its weight's shape (and, for a
    ConvTranspose of unknown groups, the BatchNorm ``bn`` that may follow it)."""
    weight = layer.params.get("weight")
    if weight is None or not weight.shape:
        return None
    if layer.kind == ir.CONV_TRANSPOSE:
        return weight.shape[1] * conv_groups(layer, bn)
    return weight.shape[0]


def batchnorm_after(layer: Layer, source: SourceIndex) -> Layer | None:
    """The BatchNorm that normalises ``layer``'s output: the next BatchNorm among its
    siblings with as many features as ``layer`` has output channels; failing that, when
    ``layer`` is the last layer of a module, the very next layer of the model if it is
    such a BatchNorm in an enclosing module (timm's ResNet-D deep stem ends its
    ``conv1`` Sequential with a conv and normalises it with the root's ``bn1``)."""
    parent = source.parent(layer.name)
    for following in source.following(layer):
        if source.parent(following.name) != parent:
            continue
        if following.kind in FOLDABLE:
            return None  # another conv comes first: this one's output is not normalised here
        if following.kind == ir.BATCHNORM:
            return following if _normalises(layer, following) else None
    following = next(source.following(layer), None)
    if (
        following is not None
        and following.kind == ir.BATCHNORM
        and _encloses(source.parent(following.name), layer.name)
    ):
        return following if _normalises(layer, following) else None
    return None


def layer_before(bn: Layer, source: SourceIndex) -> Layer | None:
    """The conv/linear layer a BatchNorm normalises: the nearest sibling before it, or
    the layer right before it at the end of a module it encloses (see
    :func:`batchnorm_after`)."""
    parent = source.parent(bn.name)
    for preceding in source.preceding(bn):
        if source.parent(preceding.name) != parent:
            continue
        if preceding.kind in FOLDABLE:
            return preceding if batchnorm_after(preceding, source) is bn else None
        if preceding.kind == ir.BATCHNORM:
            return None
    preceding = next(source.preceding(bn), None)
    if preceding is not None and preceding.kind in FOLDABLE and batchnorm_after(preceding, source) is bn:
        return preceding
    return None


def _encloses(module: str, path: str) -> bool:
    """Whether ``module`` is a proper ancestor of ``path`` ("" encloses everything)."""
    return module == "" or path.startswith(module + ".")


def batchnorms_for(conv: Layer, source: SourceIndex) -> Iterator[Layer]:
    """The BatchNorms that may normalise ``conv``: the one after it (:func:`batchnorm_after`)
    first, then its other sibling BatchNorms with as many features: a module may define
    all its convs first and its BatchNorms after them (``conv1, conv2, bn1, bn2``), which
    the definition order cannot pair. The numbers decide among them."""
    first = batchnorm_after(conv, source)
    if first is not None:
        yield first
    for sibling in source.siblings(conv):
        if sibling.kind == ir.BATCHNORM and sibling is not first and _normalises(conv, sibling):
            yield sibling


def convs_for(bn: Layer, source: SourceIndex) -> Iterator[Layer]:
    """The conv/linear layers ``bn`` may normalise: :func:`layer_before` first, then the
    other siblings with as many output channels as it has features."""
    first = layer_before(bn, source)
    if first is not None:
        yield first
    for sibling in source.siblings(bn):
        if sibling.kind in FOLDABLE and sibling is not first and _normalises(sibling, bn):
            yield sibling


def _normalises(conv: Layer, bn: Layer) -> bool:
    running_mean = bn.params.get("running_mean")
    return running_mean is not None and running_mean.numel == out_channels(conv, bn)


class FoldBatchNorm(Transform):
    """w' = w * gamma / sqrt(var + eps); b' = (b - mean) * gamma / sqrt(var + eps) + beta."""

    name = "fold_batchnorm"
    description = "Conv/ConvTranspose/Linear + BatchNorm folded into one layer."
    target_kinds = frozenset(FOLDABLE)
    order = 20
    phrase = "Conv/Linear + BatchNorm folded"
    explains = "BatchNorm was folded into the layers before it"

    def propose(self, target: Layer, anchor: str, source: SourceIndex) -> Iterable[Candidate]:
        for conv, bn in self._pairs_at(anchor, source):
            yield from self._with_eps(conv, bn)

    def groups(self, source: SourceIndex) -> Iterable[Candidate]:
        for layer in source.layers:
            if layer.kind in FOLDABLE:
                bn = batchnorm_after(layer, source)
                if bn is not None:
                    yield from self._with_eps(layer, bn, guesses=GUESSED_EPS[:1])

    def _pairs_at(self, anchor: str, source: SourceIndex) -> Iterable[tuple[Layer, Layer]]:
        layer = source.layer(anchor)
        if layer is not None:
            if layer.kind in FOLDABLE:
                for bn in batchnorms_for(layer, source):
                    yield layer, bn
            elif layer.kind == ir.BATCHNORM:
                for conv in convs_for(layer, source):
                    yield conv, layer
            return
        # A module (an Ultralytics Conv, a torchvision downsample Sequential): its own
        # conv + BN children.
        for child in source.under(anchor, depth=1):
            if child.kind in FOLDABLE:
                for bn in batchnorms_for(child, source):
                    yield child, bn

    def _with_eps(self, conv: Layer, bn: Layer, guesses=GUESSED_EPS) -> Iterable[Candidate]:
        eps = bn.attrs.get("eps")
        if eps is not None:
            yield self.candidate(conv, bn, eps=float(eps), eps_known=True)
            return
        for guess in guesses:
            yield self.candidate(conv, bn, variant=f"eps={guess:g}", eps=guess, eps_known=False, **{GUESS: True})

    def check(self, target: Layer, candidate: Candidate) -> str | None:
        conv, bn = candidate.sources
        if conv.kind != target.kind:
            return f"a {conv.op_type} cannot become a {target.op_type}"
        weight, target_weight = conv.params.get("weight"), target.params.get("weight")
        if weight is None or target_weight is None:
            return "no weight"
        if weight.numel != target_weight.numel:
            return f"weight has {target_weight.numel} elements, the source {weight.numel}"
        if conv.kind != ir.LINEAR and weight.shape != target_weight.shape:
            return f"weight shape {list(target_weight.shape)} != {list(weight.shape)}"
        if conv.kind == ir.CONV_TRANSPOSE and "groups" not in conv.attrs and "group" in target.attrs:
            groups = conv_groups(conv, bn)
            if groups != int(target.attrs["group"]):
                return f"groups {groups} (from the BatchNorm's features) != group {target.attrs['group']}"
        if conv.kind in (ir.CONV, ir.CONV_TRANSPOSE):
            return conv_attrs_disagree(target, conv)
        return None

    def reproduce(self, target: Layer | None, candidate: Candidate) -> Reproduction:
        conv, bn = candidate.sources
        eps = float(candidate.get("eps"))
        if candidate.get("norm_first"):
            return self._reproduce_norm_first(conv, bn, eps)
        weight, bias = self._fold(conv, bn, eps)
        origins = {"weight": conv.params["weight"], "bias": conv.params.get("bias") or bn.params.get("bias")}
        known = bool(candidate.get("eps_known"))
        note = f"eps {eps:g} " + ("from the module" if known else "(guessed: the file does not record it)")
        facts = {"eps": eps, EPS_GUESSED: not known}
        if conv.kind == ir.LINEAR:
            expected_weight, expected_bias, axis = linear_to_target(weight, bias, target)
            return Reproduction(
                {"weight": expected_weight, "bias": expected_bias}, origins, {"weight": axis, "bias": 0}, note, facts
            )
        axis = 1 if conv.kind == ir.CONV_TRANSPOSE else 0
        groups = conv_groups(conv, bn) if conv.kind == ir.CONV_TRANSPOSE else 1
        return Reproduction(
            {"weight": weight, "bias": bias},
            origins,
            {"weight": axis, "bias": 0},
            note,
            facts,
            channel_groups={"weight": groups},
        )

    @staticmethod
    def _reproduce_norm_first(linear: Layer, bn: Layer, eps: float) -> Reproduction:
        """A BatchNorm of a Linear's *input* (timm's NormLinear), for ``fuse`` only (never
        proposed to the matcher): ``W (x s + t) + b = (W s) x + (W t + b)``."""
        weight = float64(linear.params["weight"])
        scale, shift = bn_affine(bn, eps)
        bias = float64(linear.params["bias"]) if "bias" in linear.params else np.zeros(weight.shape[0])
        origins = {"weight": linear.params["weight"], "bias": linear.params.get("bias") or bn.params.get("bias")}
        return Reproduction(
            {"weight": weight * scale[None, :], "bias": weight @ shift + bias},
            origins,
            {"weight": 0, "bias": 0},
            f"eps {eps:g} from the module; the BatchNorm normalises the Linear's input",
            {"eps": eps, EPS_GUESSED: False},
        )

    @staticmethod
    def _fold(conv: Layer, bn: Layer, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """(w', b') of ``conv`` folded with ``bn``, in float64 and the conv's layout."""
        weight = conv.params["weight"].array()
        scale, shift = bn_affine(bn, eps)
        if conv.kind == ir.CONV_TRANSPOSE:
            groups = conv_groups(conv, bn)
            in_channels, per_group = weight.shape[0], weight.shape[1]
            grouped = weight.reshape(groups, in_channels // groups, per_group, *weight.shape[2:])
            factors = scale.reshape(groups, 1, per_group, *([1] * (weight.ndim - 2)))
            folded = np.multiply(grouped, factors, dtype=np.float64).reshape(weight.shape)
        else:
            # Widening inside the multiply: one pass, no float64 copy of the weight first.
            folded = np.multiply(weight, scale.reshape(-1, *([1] * (weight.ndim - 1))), dtype=np.float64)
        conv_bias = float64(conv.params["bias"]) if "bias" in conv.params else np.zeros(scale.shape[0])
        return folded, conv_bias * scale + shift


def bn_affine(bn: Layer, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(s, beta - mean * s) of a BatchNorm in eval mode, ``bn(x) = x * s + (beta - mean * s)``
    per channel, with ``s = gamma / sqrt(var + eps)`` (gamma = 1, beta = 0 when affine=False)."""
    mean = float64(bn.params["running_mean"])
    var = float64(bn.params["running_var"])
    gamma = float64(bn.params["weight"]) if "weight" in bn.params else np.ones_like(mean)
    beta = float64(bn.params["bias"]) if "bias" in bn.params else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


@hookimpl
def graphinspect_transforms():
    yield FoldBatchNorm()
