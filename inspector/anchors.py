"""Where a target layer's source probably is: the anchors the :class:`~inspector.match.Matcher`
asks the transforms for candidates around.

- :class:`HintResolver` resolves a target layer's hints (tensor names, legacy scope
  paths, dynamo name scopes) to the source's layer and module paths;
- :func:`settle_kinds` gives a source layer whose kind its loader guessed the kind a
  target layer that names it has;
- :func:`align` puts the two models' weight layers side by side, by the sequences of
  their (kind, weight shape).

None of them proves anything: a name or a place only makes a candidate, and the numbers
decide (:mod:`inspector.match`).
"""

from __future__ import annotations

import difflib
import re

from inspector import ir
from inspector.ir import Layer, Model
from inspector.transforms import SourceIndex

PRIMARY_KINDS = frozenset({ir.CONV, ir.CONV_TRANSPOSE, ir.LINEAR, ir.EMBEDDING})
"""Kinds that take part in sequence alignment."""

SEARCH_LIMIT = 8
"""How many same-kind, same-shape source layers the last-resort search tries."""


# ----------------------------------------------------------------------------- hints

_CALL_SUFFIX = re.compile(r"^(.+)_(\d+)$")
_TENSOR_SUFFIXES = (".weight_bias", "_weight", ".weight", ".bias", ".running_mean", ".running_var")


class HintResolver:
    """Resolves a target hint to source paths (layers or modules).

    Exact paths and state_dict keys first; then the longest unique match of trailing
    path components (a wrapper adds leading components: ``m.model.0.bn`` -> ``model.0.bn``;
    the legacy exporter repeats Sequential names: ``model.model.0.conv``; or the source
    has a prefix the hint lacks: ``module.`` of DataParallel), never a partial overlap of
    two paths that both have components the other lacks; then with a
    call-count suffix removed (``conv_1``: the module's second call); then the parent
    module (a fused RepConv's new ``conv`` child is not in the checkpoint).
    """

    def __init__(self, source: SourceIndex) -> None:
        self.source = source
        self._suffixes: dict[tuple[str, ...], list[str]] = {}
        for path in source.modules:
            if not path:
                continue
            parts = tuple(path.split("."))
            for k in range(1, len(parts) + 1):
                self._suffixes.setdefault(parts[-k:], []).append(path)

    def resolve(self, hint: str) -> tuple[list[str], str]:
        """(paths, how) where how is "name" (a state_dict key) or "scope"."""
        found = self.source.by_tensor(hint)
        if found is not None:
            return [found[0].name], "name"
        for suffix in _TENSOR_SUFFIXES:
            if hint.endswith(suffix):
                found = self.source.by_tensor(
                    hint[: -len(suffix)] + (".weight" if suffix == ".weight_bias" else suffix)
                )
                if found is not None:
                    return [found[0].name], "name"
                stem = hint[: -len(suffix)]
                paths = self._by_path(stem)
                if paths:
                    return paths, "name"
        paths = self._by_path(hint)
        return paths, "scope"

    def _by_path(self, path: str) -> list[str]:
        if not path:
            return []
        if self.source.is_module(path):
            return [path]
        parts = path.replace("/", ".").split(".")
        parts = [part for part in parts if part]
        for candidate_parts in (parts, [_strip_call_suffix(part) for part in parts]):
            found = self._by_suffix(candidate_parts)
            if found:
                return found
        if len(parts) > 1:
            parent = self._by_suffix(parts[:-1])
            if parent:
                return parent
        return []

    def _by_suffix(self, parts: list[str]) -> list[str]:
        exact = ".".join(parts)
        if self.source.is_module(exact):
            return [exact]
        for k in range(len(parts), 0, -1):
            # One side may have leading components the other lacks (a wrapper, a repeated
            # Sequential name), but not both: "model.2.m.0.conv" is not "model.0.conv",
            # though both end in "0.conv".
            paths = [
                path
                for path in self._suffixes.get(tuple(parts[-k:]), ())
                if k == len(parts) or path.count(".") + 1 == k
            ]
            if paths:
                if len(paths) == 1:
                    return list(paths)
                # Ambiguous: a longer suffix could not decide, a shorter one cannot either.
                return list(paths)[:SEARCH_LIMIT] if k >= 2 else []
        return []


def _strip_call_suffix(part: str) -> str:
    match = _CALL_SUFFIX.match(part)
    return match.group(1) if match and not part.isdigit() else part


# ----------------------------------------------------------------------------- kinds


def settle_kinds(source: SourceIndex, resolver: HintResolver, target: Model) -> dict[str, str]:
    """Source layer name -> the kind the target says it has, for layers whose kind the
    loader guessed (or a norm class it does not know, such as TorchScript's name for
    torchvision's LayerNorm2d) and a target layer's names point to, within one family
    (:data:`inspector.ir.KIND_FAMILIES`): a state_dict's 4-D weight the export runs as a
    ConvTranspose, a Sequential's ``features.0.2`` it runs as a LayerNormalization."""
    settled: dict[str, str] = {}
    for layer in target.layers:
        family = ir.kind_family(layer.kind)
        if family is None or not layer.params or layer.kind == ir.NORM:
            continue
        for hint in layer.hints:
            for path in resolver.resolve(hint)[0]:
                found = source.layer(path)
                if found is None or found.kind == layer.kind or found.name in settled:
                    continue
                known = found.kind in family and not found.attrs.get(ir.GUESSED_KIND)
                if ir.kind_family(found.kind) is family and not known:
                    settled[found.name] = layer.kind
    return settled


# ----------------------------------------------------------------------------- alignment


def signature(layer: Layer) -> tuple[str, tuple[int, ...]] | None:
    """(kind family, weight shape in PyTorch layout) for alignment, or None.

    A Linear weight stored (in, out) (:data:`~inspector.ir.WEIGHT_LAYOUT`) is turned back
    so its shape equals the PyTorch module's.
    """
    if layer.kind not in PRIMARY_KINDS:
        return None
    weight = layer.params.get("weight")
    if weight is None:
        return None
    shape = weight.shape
    if layer.kind == ir.LINEAR and len(shape) == 2 and layer.attrs.get(ir.WEIGHT_LAYOUT) == ir.IN_OUT:
        shape = shape[::-1]
    return layer.kind, tuple(shape)


def align(source_layers: list[Layer], target_layers: list[Layer]) -> dict[str, Layer]:
    """Target layer name -> the source layer at its place, by aligning the sequences of
    (kind, weight shape) of the two models (longest matching blocks, not all pairs)."""
    source_seq = [(layer, sig) for layer in source_layers if (sig := signature(layer)) is not None]
    target_seq = [(layer, sig) for layer in target_layers if (sig := signature(layer)) is not None]
    matcher = difflib.SequenceMatcher(
        None, [sig for _, sig in source_seq], [sig for _, sig in target_seq], autojunk=False
    )
    aligned: dict[str, Layer] = {}
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            aligned[target_seq[block.b + offset][0].name] = source_seq[block.a + offset][0]
    return aligned
