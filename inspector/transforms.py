"""What a transform plugin implements, and the view of the source model it works on.

A *transform* explains how an exporter turned some PyTorch parameters into the
parameters of one ONNX layer, by re-computing them. The matching engine
(:mod:`inspector.match`) finds an *anchor* for each target layer (a source layer or
module path named by the target's hints, or found by aligning the two models), then asks
every transform, cheapest first:

1. ``propose(target, anchor, source)``: which groups of source layers (a
   :class:`Candidate`) could explain ``target`` around ``anchor``;
2. ``check(target, candidate)``: ``None`` when the transform applies, else the reason it
   does not ("weight shape 16x3x7x7 != 16x3x3x3");
3. ``reproduce(target, candidate)``: the expected target parameters, computed in
   float64 from the source values (a :class:`Reproduction`).

The engine compares each reproduced tensor with the target's, elementwise, within the
tolerance of the lowest precision involved, and accepts the first candidate that
reproduces every parameter. A name match is never enough: numbers decide.

``target`` may be ``None`` in ``reproduce`` (``graphinspect fuse``): the transform then
returns its result in the PyTorch layout. ``groups(source)`` lists the fusable groups of
a source model for ``fuse``; transforms that fuse nothing return nothing.

Conventions every transform follows:

- Parameter roles are shared by all formats: "weight", "bias", "running_mean",
  "running_var"; an absent "bias" is the same as a zero bias on either side.
- ``Reproduction.origins`` names, per target role, the source param the value chiefly
  comes from (its range is reported as the "source range").
- ``Reproduction.channel_axes`` gives, per role, the axis of output channels in the
  target layout (0 for Conv weights, 1 for a MatMul initializer), so a mismatch can be
  located ("output channel 17").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from inspector.ir import Layer, Model, Param


@dataclass(frozen=True, slots=True)
class Candidate:
    """Source layers that may explain one target layer, as one transform reads them.

    ``variant`` distinguishes candidates over the same layers ("q", "k", "v" slices of an
    attention projection; "eps=1e-05 (guessed)" when a BatchNorm's eps is unknown).
    ``extra`` carries transform-private values (slice bounds, eps) from ``propose`` to
    ``reproduce``. ``uses`` names the source parameters the candidate reads when that is
    not all of its layers' (one parameter of a module holding several: a class token
    beside a position table); the matcher counts the others as still unused.
    """

    transform: str
    sources: tuple[Layer, ...]
    variant: str = ""
    extra: tuple[tuple[str, object], ...] = ()
    uses: tuple[tuple[str, str], ...] = ()
    """(layer name, param role) of the source parameters it reads; empty: all of them."""

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.sources]

    def get(self, key: str, default: object = None) -> object:
        for name, value in self.extra:
            if name == key:
                return value
        return default


@dataclass(slots=True)
class Reproduction:
    """Expected target parameters, re-computed in float64 from the source.

    ``params``: role -> expected array in the target's layout (float64).
    ``origins``: role -> the source :class:`~inspector.ir.Param` it chiefly comes from.
    ``channel_axes``: role -> output-channel axis in the target layout (default 0);
    ``channel_groups``: role -> groups of a grouped ConvTranspose weight, whose output
    channel is spread over axes 0 and 1 (default 1; see :func:`inspector.compare.compare`).
    ``note``: a short fact worth showing ("eps 1e-3 from the module", "slice k").
    ``facts``: the same facts as values, for checks and reports to read without parsing
    the note: ``{"eps": 1e-3, "eps_guessed": False}``. Keys are the transform's own;
    :data:`EPS_GUESSED` is shared by the BatchNorm transforms.
    """

    params: dict[str, np.ndarray]
    origins: dict[str, Param | None] = field(default_factory=dict)
    channel_axes: dict[str, int] = field(default_factory=dict)
    note: str = ""
    facts: dict[str, object] = field(default_factory=dict)
    channel_groups: dict[str, int] = field(default_factory=dict)


EPS_GUESSED = "eps_guessed"
"""Fact: the BatchNorm eps was not recorded by the file and was found by trying values."""

GUESS = "guess"
"""Candidate extra (True): the candidate is one guess, among candidates over the same
layers, of a setting a model shares throughout (a BatchNorm eps a state_dict does not
record), told apart by ``variant``. The matcher tries first the guess that fit the last
layer the transform explained (:meth:`~inspector.match.Matcher.guesses_first`)."""


class Transform:
    """Base class of transform plugins; subclasses set the class attributes and override
    :meth:`propose`, :meth:`check` and :meth:`reproduce` (and :meth:`groups` if they fuse).

    ``target_kinds``: kinds of target layers it may explain (:mod:`inspector.ir` kinds);
    empty means any kind.
    ``order``: lower is tried first; the cheap, certain ones (identity) come first.
    ``phrase``: what it did, counted in the summary ("5 Conv layers: 5 *Conv/Linear +
    BatchNorm folded*"); the name when empty.
    ``explains``: why it makes the values differ, for a faithful verdict ("the value
    ranges differ because *BatchNorm was folded into the layers before it*"); empty for
    a transform that changes no value.
    ``proves_origin``: see the attribute.
    """

    name: str = ""
    description: str = ""
    target_kinds: frozenset[str] = frozenset()
    order: int = 100
    phrase: str = ""
    explains: str = ""
    proves_origin: bool = True
    """Whether a candidate of this transform that fits a constant structurally (and
    differs in value) shows the constant comes from that parameter. A loose fit (any
    table has row slices) does not: it leaves the call to the numbers alone. A candidate
    may say so for itself with ``weak=True`` in its extras."""

    def propose(self, target: Layer, anchor: str, source: "SourceIndex") -> Iterable[Candidate]:
        return ()

    def check(self, target: Layer, candidate: Candidate) -> str | None:
        return None

    def reproduce(self, target: Layer | None, candidate: Candidate) -> Reproduction:
        raise NotImplementedError

    def groups(self, source: "SourceIndex") -> Iterable[Candidate]:
        return ()

    def candidate(
        self, *sources: Layer, variant: str = "", uses: tuple[tuple[str, str], ...] = (), **extra: object
    ) -> Candidate:
        """A :class:`Candidate` of this transform (``uses``: see :class:`Candidate`)."""
        return Candidate(self.name, tuple(sources), variant, tuple(extra.items()), tuple(uses))

    @staticmethod
    def used_params(candidate: Candidate) -> list[tuple[str, str]]:
        """(layer name, role) of every source parameter ``candidate`` reads."""
        if candidate.uses:
            return list(candidate.uses)
        return [(layer.name, role) for layer in candidate.sources for role in layer.params]

    def __repr__(self) -> str:
        return f"<transform {self.name}>"


class SourceIndex:
    """Read-only lookups over a source (PyTorch) model for transforms and the matcher.

    Layers are in ``named_modules()`` order. Module paths come from ``Model.modules``
    when the format has a module tree, else from the layer names' prefixes (a bare
    state_dict). The root module is "". ``kinds`` gives layers another kind than the
    loader's (a guessed kind the matcher settled); those layers are copies, the model's
    own are left as they are.
    """

    def __init__(self, model: Model, kinds: dict[str, str] | None = None) -> None:
        self.model = model
        self.layers = [
            _with_kind(layer, kinds[layer.name]) if kinds and layer.name in kinds else layer for layer in model.layers
        ]
        self._by_name = {layer.name: layer for layer in self.layers}
        self._position = {layer.name: position for position, layer in enumerate(self.layers)}
        modules = dict(model.modules)
        self._by_tensor: dict[str, tuple[Layer, Param]] = {}
        self._below: dict[str, list[Layer]] = {}
        """Module path -> the layers strictly below it, in order (see :meth:`under`)."""
        for layer in self.layers:
            for ancestor in _ancestors(layer.name):  # the root first, then each prefix
                modules.setdefault(ancestor, "")
                self._below.setdefault(ancestor, []).append(layer)
            modules.setdefault(layer.name, "")
            for param in layer.params.values():
                self._by_tensor.setdefault(param.tensor_name, (layer, param))
        self.modules = modules

    # -- lookups ----------------------------------------------------------------------

    def layer(self, name: str) -> Layer | None:
        return self._by_name.get(name)

    def is_module(self, path: str) -> bool:
        return path in self.modules

    def by_tensor(self, tensor_name: str) -> tuple[Layer, Param] | None:
        """The (layer, param) whose state_dict key is ``tensor_name``."""
        return self._by_tensor.get(tensor_name)

    def position(self, layer: Layer) -> int:
        return self._position[layer.name]

    # -- tree and order -----------------------------------------------------------------

    @staticmethod
    def parent(path: str) -> str:
        return path.rpartition(".")[0]

    def under(self, path: str, depth: int | None = None) -> list[Layer]:
        """Layers strictly below module ``path`` (all of them, or ``depth`` levels down)."""
        below = self._below.get(path, [])
        if depth is None:
            return list(below)
        start = len(path) + 1 if path else 0
        return [layer for layer in below if layer.name.count(".", start) < depth]

    def siblings(self, layer: Layer) -> list[Layer]:
        """Layers with the same parent module, in order (``layer`` included)."""
        return self.under(self.parent(layer.name), depth=1)

    def following(self, layer: Layer) -> Iterator[Layer]:
        """The layers after ``layer``, in order (lazily: callers usually stop early)."""
        layers = self.layers
        return (layers[i] for i in range(self._position[layer.name] + 1, len(layers)))

    def preceding(self, layer: Layer) -> Iterator[Layer]:
        """The layers before ``layer``, nearest first (lazily)."""
        layers = self.layers
        return (layers[i] for i in range(self._position[layer.name] - 1, -1, -1))


def _ancestors(name: str) -> list[str]:
    """The module paths ``name`` is strictly below: "" (the root) and every prefix that
    ends before a "." ("a", "a.b" for "a.b.c"); none for the root's own name ""."""
    found = [""] if name else []
    position = name.find(".")
    while position != -1:
        if position:
            found.append(name[:position])
        position = name.find(".", position + 1)
    return found


def _with_kind(layer: Layer, kind: str) -> Layer:
    """A copy of ``layer`` of another kind (params shared, not copied)."""
    copy = Layer(
        layer.name,
        kind,
        layer.op_type,
        layer.attrs,
        layer.params,
        layer.inputs,
        layer.outputs,
        layer.hints,
        layer.metadata,
    )
    copy.index = layer.index
    return copy
