"""The ``merge_branches`` transform: re-parameterised branches summed into one conv.

A re-parameterisable block is, in eval mode, a sum of linear terms of its input, each
a conv (with the BatchNorm after it folded in), a BatchNorm of the input itself (the
identity branch), or the input itself; once re-parameterised it is one conv::

    fold(conv, bn)   = (w * s, (b - mean) * s + beta),  s = gamma / sqrt(var + eps)
    identity(bn)     = (I * s, beta - mean * s),  I[c, c mod (C_in/groups), k//2...] = 1
    identity()       = (I, 0)
    w' = sum_t c_t * pad(w_t),   b' = sum_t c_t * b_t          (pad: centred in k x k)

with a coefficient ``c_t`` of +1, -1 or a per-channel layer scale. The blocks known:

- a *sum block*: RepVGG (``rbr_dense``, ``rbr_1x1``, ``rbr_identity``), timm
  ``RepVggBlock`` and ``MobileOneBlock`` (``conv_kxk.N``, ``conv_scale``, ``identity``;
  k over-parameterised kxk branches), FastViT's ``ReparamLargeKernelConv``
  (``large_conv`` + ``small_conv``), Ultralytics ``RepConv`` (``conv1``, ``conv2``,
  ``bn``): conv+BN branches that are children of the block (or of a child ModuleList), with the
  same output and input channels, stride and groups, plus at most one BatchNorm child
  that follows no conv (the identity). A squeeze-excitation child (``se``) is no branch.
- FastViT's ``RepMixer``: ``x + layer_scale * (mixer(x) - norm(x))``, ``mixer`` and
  ``norm`` being sum blocks: terms identity(), +gamma * mixer's, -gamma * norm's.
- FastViT's ``RepConditionalPosEnc``: ``x + pos_enc(x)``: identity() and the conv.

Everything is re-computed in float64. The matcher proposes the largest block around the
anchor (a MobileOne block, not its ``conv_kxk`` list alone); numbers decide. For
``fuse`` (:meth:`MergeBranches.groups`) only blocks whose class the file names as one of
:data:`REPARAM_CLASSES` are listed: a bare state_dict cannot prove that parallel branches
are summed rather than chained, so it is never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from inspector import ir
from inspector.hookspecs import hookimpl
from inspector.ir import Layer
from inspector.transforms import EPS_GUESSED, GUESS, Candidate, Reproduction, SourceIndex, Transform
from plugins.transforms._layouts import conv_attrs_disagree, float64
from plugins.transforms.fold_batchnorm import GUESSED_EPS, bn_affine

REPARAM_CLASSES: dict[str, str] = {
    "RepConv": "conv",  # Ultralytics: fuse_convs() adds .conv
    "RepVGGDW": "conv",  # Ultralytics (YOLOv10): fuse() keeps .conv, the 7x7 with the 3x3 added
    "RepVGGBlock": "rbr_reparam",  # the original RepVGG
    "RepVggBlock": "reparam_conv",  # timm byobnet
    "MobileOneBlock": "reparam_conv",  # timm fastvit / byobnet
    "ReparamLargeKernelConv": "reparam_conv",  # timm fastvit
    "RepMixer": "reparam_conv",
    "RepConditionalPosEnc": "reparam_conv",
}
"""Class names of blocks their frameworks re-parameterise, and the child the merged conv
becomes (the name an export of the re-parameterised model gives it)."""

MAX_BRANCHES = 8
ANCESTORS = 4
"""How many modules above an anchor layer are tried as the block it belongs to."""


@dataclass(frozen=True, slots=True)
class Term:
    """One linear term of a block: ``conv`` (+ ``bn`` folded), or an identity (``conv``
    None: a BatchNorm of the input, or with ``bn`` None the input itself); times
    ``sign`` and, when ``scale`` names a layer, its per-channel ``gamma``."""

    conv: str | None
    bn: str | None
    sign: float = 1.0
    scale: str | None = None


def sum_block(module: str, source: SourceIndex, minimum: int = 2) -> list[Term] | None:
    """The terms of a sum block at ``module`` (see the module docstring), or None."""
    prefix = f"{module}." if module else ""
    convs, bns = [], []
    for layer in source.under(module, depth=3):
        parts = layer.name[len(prefix) :].split(".")
        if parts[0] == "se":
            continue
        # A branch is a child (conv1.conv, rbr_dense.0, large_conv.conv) or a child of a
        # child list (conv_kxk.0.conv); the identity is a direct child.
        branch = len(parts) == 2 or (len(parts) == 3 and parts[1].isdigit())
        if layer.kind == ir.CONV and branch:
            convs.append(layer)
        elif layer.kind == ir.BATCHNORM and (branch or len(parts) == 1):
            bns.append(layer)
    if len(convs) > MAX_BRANCHES:
        return None
    terms, paired = [], set()
    for conv in convs:
        bn = next(
            (
                bn
                for bn in bns
                if source.parent(bn.name) == source.parent(conv.name)
                and bn.name not in paired
                and _features(bn) == conv.params["weight"].shape[0]
            ),
            None,
        )
        if bn is None and len(conv.name[len(prefix) :].split(".")) == 3:
            return None  # a ConvNormAct branch always has its norm
        if bn is not None:
            paired.add(bn.name)
        terms.append(Term(conv.name, bn.name if bn is not None else None))
    identities = [bn for bn in bns if bn.name not in paired and bn.name.count(".") == prefix.count(".")]
    if len(identities) > 1 or len(bns) - len(paired) != len(identities):
        return None
    terms += [Term(None, bn.name) for bn in identities]
    if len(terms) < minimum or not _compatible(terms, source):
        return None
    return terms


def mixer_block(module: str, source: SourceIndex) -> list[Term] | None:
    """The terms of a RepMixer: identity + gamma * (mixer - norm)."""
    prefix = f"{module}." if module else ""
    scale = source.layer(f"{prefix}layer_scale")
    mixer = sum_block(f"{prefix}mixer", source, minimum=1)
    norm = sum_block(f"{prefix}norm", source, minimum=1)
    if mixer is None or norm is None:
        return None
    gamma = scale.name if scale is not None and "gamma" in scale.params else None
    return [
        Term(None, None),
        *(Term(t.conv, t.bn, 1.0, gamma) for t in mixer),
        *(Term(t.conv, t.bn, -1.0, gamma) for t in norm),
    ]


def positional_block(module: str, source: SourceIndex) -> list[Term] | None:
    """The terms of a RepConditionalPosEnc: identity + pos_enc."""
    conv = source.layer(f"{module}.pos_enc" if module else "pos_enc")
    if conv is None or conv.kind != ir.CONV:
        return None
    return [Term(None, None), Term(conv.name, None)]


def block_terms(module: str, source: SourceIndex) -> list[Term] | None:
    """The terms of whichever known block ``module`` is, or None."""
    return mixer_block(module, source) or positional_block(module, source) or sum_block(module, source)


def _features(bn: Layer) -> int:
    running_mean = bn.params.get("running_mean")
    return running_mean.numel if running_mean is not None else -1


def _compatible(terms: list[Term], source: SourceIndex) -> bool:
    convs = [source.layer(t.conv) for t in terms if t.conv is not None]
    if not convs:
        return True
    first = convs[0]
    out, per_group = first.params["weight"].shape[:2]
    for conv in convs:
        shape = conv.params["weight"].shape
        if shape[:2] != (out, per_group) or len(shape) != len(first.params["weight"].shape):
            return False
        if any(k % 2 == 0 for k in shape[2:]):
            return False
        for key in ("stride", "groups", "dilation"):
            if key in first.attrs and key in conv.attrs and _plain(first.attrs[key]) != _plain(conv.attrs[key]):
                return False
    identities = [t for t in terms if t.conv is None and t.bn is not None]
    if identities and any(_features(source.layer(t.bn)) != out for t in identities):
        return False
    return True


def _plain(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


class MergeBranches(Transform):
    """w' = sum_t c_t pad(w_t);  b' = sum_t c_t b_t over a re-parameterisable block's terms."""

    name = "merge_branches"
    description = (
        "Re-parameterised blocks (RepVGG, RepConv, MobileOne, FastViT's RepMixer and large-kernel "
        "conv) summed into one conv."
    )
    target_kinds = frozenset({ir.CONV})
    order = 30
    phrase = "re-parameterised branches merged"
    explains = "re-parameterised branches were merged"

    def propose(self, target: Layer, anchor: str, source: SourceIndex) -> Iterable[Candidate]:
        # A module anchor is the block itself (a RepConv exported as model.N.conv resolves
        # to model.N); a layer anchor (a branch's conv or BN) sits a few levels below it.
        # Of the blocks around the anchor, the largest is proposed: a MobileOne block's
        # conv_kxk list alone is a sum block too, but not the one exported.
        path = anchor if source.layer(anchor) is None else source.parent(anchor)
        best: tuple[str, list[Term]] | None = None
        for _ in range(ANCESTORS):
            terms = block_terms(path, source)
            if terms is not None and (best is None or len(terms) > len(best[1])):
                best = (path, terms)
            if not path:
                break
            path = source.parent(path)
        if best is not None:
            yield from self._candidates(best[0], best[1], source)

    def groups(self, source: SourceIndex) -> Iterable[Candidate]:
        taken: list[str] = []
        for module, class_name in source.model.modules.items():
            if any(module == t or module.startswith(f"{t}.") for t in taken):
                continue
            if ir_short(class_name) not in REPARAM_CLASSES:
                continue
            terms = block_terms(module, source)
            if terms is not None:
                taken.append(module)
                yield from self._candidates(module, terms, source, guesses=GUESSED_EPS[:1])

    def fused_name(self, candidate: Candidate) -> str:
        """Where the re-parameterised model keeps the merged conv (see :data:`REPARAM_CLASSES`)."""
        module = str(candidate.get("module") or "")
        child = REPARAM_CLASSES.get(str(candidate.get("class_name") or ""), "conv")
        return f"{module}.{child}" if module else child

    def _candidates(
        self, module: str, terms: list[Term], source: SourceIndex, guesses=GUESSED_EPS
    ) -> Iterable[Candidate]:
        names = list(dict.fromkeys(n for t in terms for n in (t.conv, t.bn, t.scale) if n is not None))
        layers = [source.layer(name) for name in names]
        bns = [source.layer(t.bn) for t in terms if t.bn is not None]
        class_name = ir_short(source.model.modules.get(module, ""))
        common = dict(module=module, terms=tuple(terms), class_name=class_name)
        if all("eps" in bn.attrs for bn in bns):
            yield self.candidate(*layers, **common, eps=None)
            return
        # The identity BatchNorm may have another eps than the branches' (Ultralytics'
        # Conv blocks use 1e-3, RepConv's own identity BatchNorm keeps PyTorch's 1e-5).
        identity = any(t.conv is None and t.bn is not None for t in terms)
        pairs = [(guess, guess) for guess in guesses]
        if identity:
            pairs += [(guess, other) for guess in guesses for other in guesses if other != guess]
        for guess, identity_guess in pairs:
            variant = f"eps={guess:g}" + (f", identity eps={identity_guess:g}" if identity_guess != guess else "")
            yield self.candidate(
                *layers, variant=variant, **common, eps=guess, identity_eps=identity_guess, **{GUESS: True}
            )

    def check(self, target: Layer, candidate: Candidate) -> str | None:
        weight = target.params.get("weight")
        if weight is None:
            return "no weight"
        by_name = {layer.name: layer for layer in candidate.sources}
        convs = [by_name[t.conv] for t in candidate.get("terms") if t.conv is not None]
        if not convs:
            return "no conv among the terms"
        widest = max(convs, key=lambda conv: conv.params["weight"].shape[2:])
        if weight.shape != widest.params["weight"].shape:
            return f"weight shape {list(weight.shape)} != the widest branch's {list(widest.params['weight'].shape)}"
        return conv_attrs_disagree(target, widest)

    def reproduce(self, target: Layer | None, candidate: Candidate) -> Reproduction:
        by_name = {layer.name: layer for layer in candidate.sources}
        terms: tuple[Term, ...] = candidate.get("terms")
        guessed = candidate.get("eps")
        convs = [by_name[t.conv] for t in terms if t.conv is not None]
        kernel = max(conv.params["weight"].shape[2:] for conv in convs)
        out, per_group = convs[0].params["weight"].shape[:2]
        weight_sum = np.zeros((out, per_group, *kernel))
        bias_sum = np.zeros(out)
        centre = tuple(k // 2 for k in kernel)
        rows = np.arange(out)
        for term in terms:
            coefficient = np.full(out, term.sign)
            if term.scale is not None:
                coefficient = coefficient * float64(by_name[term.scale].params["gamma"]).reshape(-1)
            if term.conv is None:
                scale, shift = (
                    (np.ones(out), np.zeros(out))
                    if term.bn is None
                    else _bn_affine(by_name[term.bn], candidate.get("identity_eps", guessed))
                )
                weight_sum[(rows, rows % per_group, *centre)] += coefficient * scale
                bias_sum += coefficient * shift
                continue
            conv = by_name[term.conv]
            weight = conv.params["weight"].array()
            bias = float64(conv.params["bias"]) if "bias" in conv.params else np.zeros(out)
            scale = np.ones(out)
            if term.bn is not None:
                scale, shift = _bn_affine(by_name[term.bn], guessed)
                bias = bias * scale + shift
            region = (
                slice(None),
                slice(None),
                *(slice((k - s) // 2, (k - s) // 2 + s) for k, s in zip(kernel, weight.shape[2:])),
            )
            factor = (coefficient * scale).reshape(-1, *([1] * (weight.ndim - 1)))
            weight_sum[region] += np.multiply(weight, factor, dtype=np.float64)
            bias_sum += coefficient * bias
        widest = max(convs, key=lambda conv: conv.params["weight"].shape[2:])
        bn_of_widest = next((t.bn for t in terms if t.conv == widest.name), None)
        origins = {
            "weight": widest.params["weight"],
            "bias": by_name[bn_of_widest].params.get("bias") if bn_of_widest else widest.params.get("bias"),
        }
        eps_note = "eps from the modules"
        if guessed is not None:
            identity_eps = candidate.get("identity_eps", guessed)
            other = f", identity eps {identity_eps:g}" if identity_eps != guessed else ""
            eps_note = f"eps {guessed:g}{other} (guessed: the file does not record it)"
        identities = sum(1 for t in terms if t.conv is None)
        note = (
            f"{len(convs)} branch{'es' if len(convs) != 1 else ''}"
            + (" + identity" if identities == 1 else f" + {identities} identities" if identities else "")
            + f" of {candidate.get('module') or 'the model'}; {eps_note}"
        )
        facts = {EPS_GUESSED: guessed is not None, "branches": len(convs), "identity": identities > 0}
        return Reproduction({"weight": weight_sum, "bias": bias_sum}, origins, {"weight": 0, "bias": 0}, note, facts)


def ir_short(qualified: str) -> str:
    """ "timm.models.fastvit.MobileOneBlock" -> "MobileOneBlock"."""
    return qualified.rpartition(".")[2]


def _bn_affine(bn: Layer, guessed_eps: float | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~plugins.transforms.fold_batchnorm.bn_affine` with the module's eps, or the guess."""
    return bn_affine(bn, float(bn.attrs["eps"]) if guessed_eps is None else guessed_eps)


@hookimpl
def graphinspect_transforms():
    yield MergeBranches()
