"""Which groups ``fuse`` fuses: what the model's own framework fuses, no more, no less.

The transforms list every group they could fuse (``Transform.groups``: each Conv+BN pair
of ``fold_batchnorm``, each block of a known re-parameterisable class of
``merge_branches``). Which of them the fused model has depends on who fuses it, told
by the class names the file records (:func:`framework_of`):

- **Ultralytics** (``ultralytics.*`` classes): ``model.fuse()`` folds the BatchNorm of each
  ``Conv``/``DWConv``/``ConvTranspose`` block into it, merges each ``RepConv`` and
  ``RepVGGDW``, and removes a Detect head's unused branch (``one2one_*`` unless the
  checkpoint selected the end-to-end head). Other Conv+BN pairs (RT-DETR's
  ``input_proj``) stay as they are.
- **timm** (``timm.*`` classes): ``reparameterize_model`` merges the blocks with a
  ``reparameterize()`` (RepVGG, MobileOne, FastViT's) and replaces LeViT's ``ConvNorm``
  and ``LinearNorm`` (layer then BatchNorm) and ``NormLinear`` (BatchNorm then Linear)
  by one layer at the block's own path. Other Conv+BN pairs stay.
- **any other module tree** (torchvision, your own classes): every Conv/ConvTranspose/
  Linear + BatchNorm pair folded as ``torch.nn.utils.fusion.fuse_conv_bn_eval`` does (the
  conv keeps its path, the BatchNorm goes), and blocks of known re-parameterisable
  classes merged.
- **a bare state_dict** (no class names): every pair folded, except inside a module
  that looks like a re-parameterisable block by its children's names (``conv1``/``conv2``
  of a RepConv, ``rbr_dense``/``rbr_1x1``, ``conv_kxk``, ...): whether its branches are
  summed or chained, names cannot prove, so it is left as it is and listed. With
  ``--against``, the diff settles it: a block the export merged is merged, branches it
  folded one by one are folded.

``--fold-all`` also folds the pairs the framework keeps (what an exporter does next).
Everything not fused is listed with the reason (:class:`Unfused`), everything removed too
(:class:`Dropped`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inspector import ir
from inspector.results import OK, DiffResult
from inspector.transforms import Candidate, SourceIndex, Transform
from plugins.transforms.merge_branches import REPARAM_CLASSES, block_terms, ir_short

ULTRALYTICS = "ultralytics"
TIMM = "timm"
TORCH = "torch"
STATE_DICT = "state_dict"

FRAMEWORK_FUSION = {
    ULTRALYTICS: "Ultralytics model.fuse()",
    TIMM: "timm reparameterize_model",
    TORCH: "fuse_conv_bn_eval on each Conv+BatchNorm pair",
    STATE_DICT: "fuse_conv_bn_eval on each Conv+BatchNorm pair (a state_dict: no class names)",
}
"""How each framework fuses, as the report names it."""

ULTRALYTICS_FOLDED = {"Conv": ("conv", "bn"), "DWConv": ("conv", "bn"), "ConvTranspose": ("conv_transpose", "bn")}
"""Ultralytics blocks whose BatchNorm ``model.fuse()`` folds: class -> (layer, norm) children."""
ULTRALYTICS_MERGED = ("RepConv", "RepVGGDW")
ULTRALYTICS_UNSUPPORTED = {"Conv2": "Ultralytics' Conv2 adds its 1x1 conv into the 3x3 before folding"}

TIMM_REPLACED = {"ConvNorm": ("linear", "bn"), "LinearNorm": ("linear", "bn")}
"""timm blocks whose ``fuse()`` returns one layer at the block's path: class -> (layer, norm)."""
TIMM_NORM_FIRST = {"NormLinear": ("bn", "linear")}
"""timm blocks that normalise the input of their Linear: class -> (norm, layer)."""

BLOCK_SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("RepConv", frozenset({"conv1", "conv2"})),
    ("RepVGGDW", frozenset({"conv", "conv1"})),
    ("RepVGGBlock", frozenset({"rbr_dense", "rbr_1x1"})),
    ("RepVggBlock", frozenset({"conv_kxk", "conv_1x1"})),
    ("MobileOneBlock", frozenset({"conv_kxk"})),
    ("ReparamLargeKernelConv", frozenset({"large_conv", "small_conv"})),
    ("RepMixer", frozenset({"mixer", "norm"})),
    ("RepConditionalPosEnc", frozenset({"pos_enc"})),
)
"""Children names by which a state_dict module looks like a re-parameterisable block."""


@dataclass(slots=True)
class Planned:
    """A group to fuse, and where the fused layer goes (None: the transform's default)."""

    transform: Transform
    candidate: Candidate
    fused_name: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Unfused:
    """Source layers left as they are, and why (``module``: the block they form, if any)."""

    sources: tuple[str, ...]
    reason: str
    module: str | None = None

    def entry(self) -> dict:
        return {"sources": list(self.sources), "module": self.module, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Dropped:
    """A module the framework's fusion removes (its tensors are not written)."""

    module: str
    tensors: tuple[str, ...]
    reason: str

    def entry(self) -> dict:
        return {"module": self.module, "tensors": len(self.tensors), "reason": self.reason}


@dataclass(slots=True)
class Plan:
    framework: str
    groups: list[Planned] = field(default_factory=list)
    unfused: list[Unfused] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)

    @property
    def fusion(self) -> str:
        return FRAMEWORK_FUSION[self.framework]


def framework_of(model: ir.Model) -> str:
    """Who fuses this model, from the class names the file records."""
    classes = [name for name in model.modules.values() if name]
    if any(name.startswith("ultralytics.") for name in classes):
        return ULTRALYTICS
    if any(name.startswith("timm.") for name in classes):
        return TIMM
    return TORCH if classes else STATE_DICT


def plan(
    source: SourceIndex, transforms: list[Transform], fold_all: bool = False, diff: DiffResult | None = None
) -> Plan:
    """The groups to fuse, those left unfused and the modules dropped (module docstring)."""
    framework = framework_of(source.model)
    by_name = {transform.name: transform for transform in transforms}
    result = Plan(framework)
    if framework == ULTRALYTICS:
        result.dropped += unused_head_branches(source)
    gone = {layer.name for drop in result.dropped for layer in source.under(drop.module)}
    found = [
        (transform, candidate)
        for transform in transforms
        for candidate in transform.groups(source)
        if not gone.intersection(candidate.names)
    ]
    merges = [(t, c) for t, c in found if t.name == "merge_branches"]
    folds = [(t, c) for t, c in found if t.name != "merge_branches"]
    taken: set[str] = set()

    # 1. Blocks: merged by class name, or (a state_dict) settled by the export, or left.
    for transform, candidate in merges:
        if not taken.intersection(candidate.names):
            taken.update(candidate.names)
            result.groups.append(Planned(transform, candidate))
    if framework == STATE_DICT:
        for module, class_name, names in lookalike_blocks(source, taken):
            taken.update(names)
            _settle_block(result, module, class_name, names, source, by_name, diff)

    # 2. Layer + BatchNorm pairs, by the framework's rule.
    for transform, candidate in folds:
        if taken.intersection(candidate.names):
            continue
        taken.update(candidate.names)
        fused, reason = _framework_folds(framework, candidate, source)
        if fused is not False:
            result.groups.append(Planned(transform, candidate, fused_name=fused or None))
        elif fold_all:
            result.groups.append(Planned(transform, candidate, note="--fold-all"))
        else:
            result.unfused.append(Unfused(tuple(candidate.names), reason))
    if framework == TIMM and "fold_batchnorm" in by_name:
        result.groups += _norm_first(source, by_name["fold_batchnorm"], taken)
    result.groups.sort(key=lambda planned: min(source.position(layer) for layer in planned.candidate.sources))
    return result


# ----------------------------------------------------------------------------- pairs


def _framework_folds(framework: str, candidate: Candidate, source: SourceIndex) -> tuple[str | bool, str]:
    """Whether the framework folds this pair: (fused name, "") where it does ("" for the
    layer's own path), (False, reason) where it keeps it."""
    layer, norm = candidate.sources
    parent = source.parent(layer.name)
    same_parent = parent == source.parent(norm.name)
    class_name = ir_short(source.model.modules.get(parent, "")) if same_parent else ""
    children = (layer.name.rpartition(".")[2], norm.name.rpartition(".")[2])
    if framework == ULTRALYTICS:
        if class_name in ULTRALYTICS_UNSUPPORTED:
            return False, f"{ULTRALYTICS_UNSUPPORTED[class_name]}; graphinspect does not reproduce it"
        if ULTRALYTICS_FOLDED.get(class_name) == children:
            return "", ""
        return False, "Ultralytics' fuse() folds only the BatchNorms of its Conv blocks (--fold-all folds it)"
    if framework == TIMM:
        if TIMM_REPLACED.get(class_name) == children:
            return parent, ""
        return False, "timm's reparameterize_model keeps this BatchNorm (--fold-all folds it)"
    return "", ""


def _norm_first(source: SourceIndex, fold: Transform, taken: set[str]) -> list[Planned]:
    """timm's NormLinear (BatchNorm1d, then Linear) replaced by one Linear at its path."""
    planned = []
    for module, qualified in source.model.modules.items():
        children = TIMM_NORM_FIRST.get(ir_short(qualified))
        if children is None:
            continue
        norm, layer = (source.layer(f"{module}.{child}") for child in children)
        if norm is None or layer is None or layer.kind != ir.LINEAR or {norm.name, layer.name} & taken:
            continue
        if norm.kind != ir.BATCHNORM or "eps" not in norm.attrs:
            continue
        taken.update((norm.name, layer.name))
        candidate = fold.candidate(layer, norm, eps=float(norm.attrs["eps"]), eps_known=True, norm_first=True)
        planned.append(Planned(fold, candidate, fused_name=module))
    return planned


# ----------------------------------------------------------------------------- blocks


def lookalike_blocks(source: SourceIndex, taken: set[str]) -> list[tuple[str, str, list[str]]]:
    """(module, class it looks like, its layers) of each state_dict module whose children
    are named like a re-parameterisable block's and that fits one structurally."""
    children: dict[str, set[str]] = {}
    for path in source.modules:
        if path:
            parent, _, name = path.rpartition(".")
            children.setdefault(parent, set()).add(name)
    found: list[tuple[str, str, list[str]]] = []
    claimed: set[str] = set(taken)
    for module, names in children.items():
        class_name = next((cls for cls, signature in BLOCK_SIGNATURES if signature <= names), None)
        if class_name is None:
            continue
        terms = block_terms(module, source)
        if terms is None:
            continue
        layers = list(dict.fromkeys(n for t in terms for n in (t.conv, t.bn, t.scale) if n is not None))
        if claimed.intersection(layers):
            continue
        claimed.update(layers)
        found.append((module, class_name, layers))
    return found


def _settle_block(
    result: Plan,
    module: str,
    class_name: str,
    names: list[str],
    source: SourceIndex,
    transforms: dict[str, Transform],
    diff: DiffResult | None,
) -> None:
    """A state_dict block: merged or folded as the export shows, else left and listed."""
    looks = f"looks like a {class_name} ({', '.join(sorted(_children_of(module, names)))})"
    if diff is None:
        result.unfused.append(
            Unfused(
                tuple(names),
                f"{looks}, but a state_dict has no class names to tell summed branches from a chain: "
                "left as it is (give the export with --against to settle it)",
                module,
            )
        )
        return
    wanted = set(names)
    merged = next(
        (
            layer
            for layer in diff.layers
            if layer.transform == "merge_branches" and layer.status == OK and set(layer.sources) == wanted
        ),
        None,
    )
    merge = transforms.get("merge_branches")
    if merged is not None and merge is not None:
        candidate = _proposed(merge, diff, merged, source)
        if candidate is not None:
            child = REPARAM_CLASSES.get(class_name, "conv")
            result.groups.append(
                Planned(merge, candidate, fused_name=f"{module}.{child}", note=f"the export merged it ({looks})")
            )
            return
    folded = [
        layer
        for layer in diff.layers
        if layer.transform == "fold_batchnorm" and layer.status == OK and set(layer.sources) <= wanted
    ]
    fold = transforms.get("fold_batchnorm")
    if folded and fold is not None and {name for layer in folded for name in layer.sources} == wanted:
        for layer in folded:
            candidate = _proposed(fold, diff, layer, source)
            if candidate is not None:
                result.groups.append(Planned(fold, candidate, note="the export folds this branch on its own"))
        return
    result.unfused.append(
        Unfused(tuple(names), f"{looks}; the export does not show how it was fused: left as it is", module)
    )


def _proposed(transform: Transform, diff: DiffResult, layer, source: SourceIndex) -> Candidate | None:
    """The candidate of ``transform`` over exactly ``layer``'s sources with its variant."""
    target = diff.target.layer(layer.target)
    if target is None:
        return None
    for anchor in layer.sources:
        for candidate in transform.propose(target, anchor, source):
            if candidate.names == list(layer.sources) and candidate.variant == layer.variant:
                return candidate
    return None


def _children_of(module: str, names: list[str]) -> set[str]:
    prefix = f"{module}."
    return {name[len(prefix) :].split(".")[0] for name in names if name.startswith(prefix)}


# ----------------------------------------------------------------------------- heads


def unused_head_branches(source: SourceIndex) -> list[Dropped]:
    """An Ultralytics head holding both branches (``cv2`` and ``one2one_cv2``, ...): its
    ``fuse()`` keeps the one-to-many branch and deletes ``one2one_*`` (unless the
    checkpoint selected the end-to-end head, a flag graphinspect does not read)."""
    dropped = []
    for module in source.modules:
        name = module.rpartition(".")[2]
        if not name.startswith("one2one_"):
            continue
        parent = source.parent(module)
        sibling = f"{parent}.{name[len('one2one_') :]}" if parent else name[len("one2one_") :]
        if not source.is_module(sibling):
            continue
        tensors = tuple(param.tensor_name for layer in source.under(module) for param in layer.params.values())
        if tensors:
            dropped.append(
                Dropped(
                    module,
                    tensors,
                    f"Ultralytics' fuse() removes the unused end-to-end branch (it keeps {sibling.rpartition('.')[2]}; "
                    "a checkpoint that selects the end-to-end head keeps this one instead)",
                )
            )
    return dropped
