"""The ``merge_branches`` transform: re-parameterised branches summed into one conv.

A RepVGG/RepConv block computes ``act(bn0(x) + bn1(conv_kxk(x)) + bn2(conv_1x1(x)))``
in training and, once re-parameterised, ``act(conv'(x))`` with::

    fold(conv_i, bn_i)   = (w_i * s_i, (b_i - mean_i) * s_i + beta_i),  s_i = gamma_i / sqrt(var_i + eps_i)
    w' = sum_i pad(w_i * s_i)  +  I * s_0         (pad: zero-pad each kernel to k x k, centred)
    b' = sum_i ((b_i - mean_i) * s_i + beta_i)  +  (beta_0 - mean_0 * s_0)

where the identity branch (a bare BatchNorm ``bn0``, present only when input and output
channels match and the stride is 1) acts as a k x k kernel ``I`` with a single 1 at the
centre of each channel's own input (``I[c, c mod (C_in/groups), k//2, k//2] = 1``).
Everything is re-computed in float64.

Branch discovery is structural, so it covers Ultralytics ``RepConv`` (``conv1``/``conv2``
are Conv+BN modules, ``bn`` the identity), the original RepVGG (``rbr_dense``,
``rbr_1x1``, ``rbr_identity``) and timm's ``RepVggBlock`` (``conv_kxk``, ``conv_1x1``,
``identity``): the conv+BN pairs at most two levels below one module, with the same
output channels, stride and groups, plus a BatchNorm directly below it that follows no
conv. Ultralytics' exporter calls ``fuse_convs`` and exports the result as
``model.N.conv`` (a child the checkpoint does not have); the matcher then anchors on
``model.N`` itself.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from inspector import ir
from inspector.hookspecs import hookimpl
from inspector.ir import Layer
from inspector.transforms import EPS_GUESSED, Candidate, Reproduction, SourceIndex, Transform
from plugins.transforms.fold_batchnorm import GUESSED_EPS, batchnorm_after, bn_affine
from plugins.transforms._layouts import conv_attrs_disagree, float64

MAX_BRANCHES = 6


def find_branches(module: str, source: SourceIndex) -> tuple[list[tuple[Layer, Layer | None]], Layer | None] | None:
    """(conv+BN branches, identity BN) of a re-parameterisable block at ``module``, or None.

    A block has at least two branches, or one branch and an identity BatchNorm.
    """
    convs = [layer for layer in source.under(module, depth=2) if layer.kind == ir.CONV]
    if not convs or len(convs) > MAX_BRANCHES:
        return None
    branches = [(conv, batchnorm_after(conv, source)) for conv in convs]
    paired = {bn.name for _, bn in branches if bn is not None}
    identity = [
        layer for layer in source.under(module, depth=1)
        if layer.kind == ir.BATCHNORM and layer.name not in paired
    ]
    if len(identity) > 1:
        return None
    identity_bn = identity[0] if identity else None
    if len(branches) + len(identity) < 2:
        return None
    first = branches[0][0]
    out, rank = first.params["weight"].shape[0], len(first.params["weight"].shape)
    for conv, _ in branches:
        weight = conv.params["weight"].shape
        if weight[0] != out or len(weight) != rank or any(k % 2 == 0 for k in weight[2:]):
            return None
        for key in ("stride", "groups", "dilation"):
            if key in first.attrs and key in conv.attrs and _plain(first.attrs[key]) != _plain(conv.attrs[key]):
                return None
    if identity_bn is not None:
        in_channels = first.params["weight"].shape[1] * int(first.attrs.get("groups", 1))
        if identity_bn.params["running_mean"].numel != out or in_channels != out:
            return None
    return branches, identity_bn


def is_parallel_block(module: str, branches: list[tuple[Layer, Layer | None]], identity_bn: Layer | None,
                      source: SourceIndex) -> bool:
    """Whether the branches :func:`find_branches` found at ``module`` can be told apart
    from sequential convs by structure alone, as ``groups`` (no numbers to verify) needs.

    Each branch must sit in a child module of its own (a conv+BN pair that shares its
    parent with another is a sequential conv -> BN -> conv -> BN, as in a ResNet
    BasicBlock), and the block must hold nothing but its branches (an Ultralytics RepC3
    holds cv1/cv2 beside the RepConvs in ``m``).
    """
    parents = [source.parent(conv.name) for conv, _ in branches]
    if len(set(parents)) != len(parents):
        return False
    members = {layer.name for pair in branches for layer in pair if layer is not None}
    if identity_bn is not None:
        members.add(identity_bn.name)
    return all(layer.name in members for layer in source.under(module) if layer.params)


def _plain(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


class MergeBranches(Transform):
    """w' = sum pad(w_i s_i) + I s_0;  b' = sum((b_i - mean_i) s_i + beta_i) + beta_0 - mean_0 s_0."""

    name = "merge_branches"
    description = "RepConv/RepVGG: 3x3 conv+BN, 1x1 conv+BN and an identity BN summed into one conv."
    target_kinds = frozenset({ir.CONV})
    order = 30
    phrase = "RepConv/RepVGG branches merged"
    explains = "re-parameterised branches were merged"

    def propose(self, target: Layer, anchor: str, source: SourceIndex) -> Iterable[Candidate]:
        # A module anchor is the block itself (an Ultralytics RepConv exported as
        # model.N.conv resolves to model.N); a layer anchor (a branch's conv or BN) sits
        # one or two levels below its block.
        if source.layer(anchor) is None:
            modules = [anchor]
        else:
            parent = source.parent(anchor)
            modules = [parent, source.parent(parent)] if parent else [parent]
        for module in modules:
            found = find_branches(module, source)
            if found is not None:
                yield from self._candidates(module, *found)
                return

    def groups(self, source: SourceIndex) -> Iterable[Candidate]:
        taken: list[str] = []
        for module in source.modules:
            if any(module == t or module.startswith(f"{t}.") for t in taken):
                continue
            found = find_branches(module, source)
            if found is not None and is_parallel_block(module, *found, source):
                taken.append(module)
                yield from self._candidates(module, *found, guesses=GUESSED_EPS[:1])

    def _candidates(self, module, branches, identity_bn, guesses=GUESSED_EPS) -> Iterable[Candidate]:
        layers = [layer for pair in branches for layer in pair if layer is not None]
        if identity_bn is not None:
            layers.append(identity_bn)
        bns = [bn for _, bn in branches if bn is not None] + ([identity_bn] if identity_bn is not None else [])
        known = all("eps" in bn.attrs for bn in bns)
        structure = tuple((conv.name, bn.name if bn is not None else None) for conv, bn in branches)
        identity_name = identity_bn.name if identity_bn is not None else None
        if known:
            yield self.candidate(*layers, module=module, branches=structure, identity=identity_name, eps=None)
            return
        # The identity BatchNorm may have another eps than the branches' (Ultralytics'
        # Conv blocks use 1e-3, RepConv's own identity BatchNorm keeps PyTorch's 1e-5).
        pairs = [(guess, guess) for guess in guesses]
        if identity_bn is not None:
            pairs += [(guess, other) for guess in guesses for other in guesses if other != guess]
        for guess, identity_guess in pairs:
            variant = f"eps={guess:g}" + (f", identity eps={identity_guess:g}" if identity_guess != guess else "")
            yield self.candidate(*layers, variant=variant, module=module, branches=structure,
                                 identity=identity_name, eps=guess, identity_eps=identity_guess)

    def check(self, target: Layer, candidate: Candidate) -> str | None:
        weight = target.params.get("weight")
        if weight is None:
            return "no weight"
        by_name = {layer.name: layer for layer in candidate.sources}
        convs = [by_name[conv] for conv, _ in candidate.get("branches")]
        widest = max(convs, key=lambda conv: conv.params["weight"].shape[2:])
        if weight.shape != widest.params["weight"].shape:
            return f"weight shape {list(weight.shape)} != the widest branch's {list(widest.params['weight'].shape)}"
        return conv_attrs_disagree(target, widest)

    def reproduce(self, target: Layer | None, candidate: Candidate) -> Reproduction:
        by_name = {layer.name: layer for layer in candidate.sources}
        guessed = candidate.get("eps")
        convs = [by_name[conv] for conv, _ in candidate.get("branches")]
        kernel = max(conv.params["weight"].shape[2:] for conv in convs)
        first = convs[0].params["weight"].shape
        # Sum in place into one k x k buffer: the branches are added where their
        # (centred) kernels sit, which is what zero-padding them would do.
        weight_sum = np.zeros((first[0], first[1], *kernel))
        bias_sum = np.zeros(first[0])
        for conv_name, bn_name in candidate.get("branches"):
            conv = by_name[conv_name]
            weight = conv.params["weight"].array()
            bias = float64(conv.params["bias"]) if "bias" in conv.params else np.zeros(weight.shape[0])
            scale = np.ones(weight.shape[0])
            if bn_name is not None:
                scale, shift = _bn_affine(by_name[bn_name], guessed)
                bias = bias * scale + shift
            region = (slice(None), slice(None), *(slice((k - s) // 2, (k - s) // 2 + s) for k, s in zip(kernel, weight.shape[2:])))
            weight_sum[region] += np.multiply(weight, scale.reshape(-1, *([1] * (weight.ndim - 1))), dtype=np.float64)
            bias_sum += bias
        identity = candidate.get("identity")
        if identity is not None:
            scale, shift = _bn_affine(by_name[identity], candidate.get("identity_eps", guessed))
            channels, per_group = weight_sum.shape[0], weight_sum.shape[1]
            centre = tuple(k // 2 for k in kernel)
            rows = np.arange(channels)
            weight_sum[(rows, rows % per_group, *centre)] += scale
            bias_sum = bias_sum + shift
        widest = max(convs, key=lambda conv: conv.params["weight"].shape[2:])
        bn_of_widest = dict(candidate.get("branches")).get(widest.name)
        origins = {"weight": widest.params["weight"],
                   "bias": by_name[bn_of_widest].params.get("bias") if bn_of_widest else widest.params.get("bias")}
        eps_note = "eps from the modules"
        if guessed is not None:
            identity_eps = candidate.get("identity_eps", guessed)
            other = f", identity eps {identity_eps:g}" if identity and identity_eps != guessed else ""
            eps_note = f"eps {guessed:g}{other} (guessed: the file does not record it)"
        note = f"{len(convs)} branches" + (" + identity" if identity else "") + f" of {candidate.get('module')}; {eps_note}"
        facts = {EPS_GUESSED: guessed is not None, "branches": len(convs), "identity": identity is not None}
        return Reproduction({"weight": weight_sum, "bias": bias_sum}, origins, {"weight": 0, "bias": 0}, note, facts)


def _bn_affine(bn: Layer, guessed_eps: float | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~plugins.transforms.fold_batchnorm.bn_affine` with the module's eps, or the guess."""
    return bn_affine(bn, float(bn.attrs["eps"]) if guessed_eps is None else guessed_eps)


@hookimpl
def graphinspect_transforms():
    yield MergeBranches()
