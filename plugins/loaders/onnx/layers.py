"""ONNX graph nodes -> :class:`inspector.ir.Layer`, with their params and hints.

One layer per top-level node, in graph order. Structure (which tensor each input is,
which nodes produce it) is read from the proto nodes themselves (:class:`GraphIndex`),
in one pass: a 100k-node graph takes a fraction of a second.

Layer names are the node names, made unique by appending "#2", "#3"... only to repeats;
unnamed nodes are called "<op_type>_<position>".

A constant input is one whose tensor is an initializer, the output of a Constant node,
or either of those through a chain of Identity nodes. Each distinct tensor becomes one
:class:`~inspector.ir.Param` shared by every layer using it, so ``Model.params()``
counts it once; the Param's ``name`` is its role in the first layer that uses it, its
``tensor_name`` the initializer's (or Constant output's) name. Identity and Constant
layers themselves carry no params (their tensor belongs to the layers consuming it).
Which constant inputs are params, and under which role, is in :mod:`.kinds`; a tensor
of strings is never one (it holds no numbers to compare).

Repeated protobuf fields are read as ``field[:]`` throughout the loader: the slice is
one call that copies the items into a list, while iterating the field (``for``,
``tuple()``, ``list()``) ends in an IndexError raised and caught inside protobuf, which
costs more than a short field's items (a tenth of a 10k-block model's load).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from inspector.errors import InputError
from inspector.ir import LINEAR, WEIGHT_LAYOUT, Layer, Param, StoredTensor, Use

from . import hints, kinds, linear
from .attributes import BODIES, INT, INTS, TENSOR, attribute_value, body_tensors
from .in_file_data import InFileSlices
from .nodes import GraphNodes
from .tensors import (
    SMALL_TENSOR_VALUES,
    ExternalSlice,
    dtype_name,
    summarize_tensor,
    tensor_reader,
    uses_external_data,
)
from .text import NotText, all_text, keys_and_values

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto, TensorProto

MAX_IDENTITY_CHAIN = 64
"""Identity nodes followed back from an input before giving up (a guard, not a limit seen)."""


class _Constant(NamedTuple):
    """A constant tensor an input resolves to: its names along the chain and its values.
    (A named tuple: one is made per constant input, and a tuple is the cheapest to make.)"""

    names: tuple[str, ...]  # the name the node uses first, the stored tensor's name last
    dtype: str
    shape: tuple[int, ...]
    numel: int
    read: Callable[[], np.ndarray]
    key: str | int  # the stored tensor: an initializer's name, a Constant node's position

    @property
    def tensor_name(self) -> str:
        return self.names[-1]


class GraphIndex:
    """The nodes of a graph and, for each tensor name, the positions of the nodes producing it.

    ONNX asks for single assignment; a crafted graph may break it, so a name may have
    several producers (:meth:`producers`), and a constant is followed only through a
    name with exactly one (:attr:`single_producer`). ``constant_positions`` are the
    positions of the Constant nodes (default domain, with an output), in graph order;
    ``identity_inputs`` the first input of each Identity node of the default domain
    ("" when it has none); ``passed_on`` the names a Constant or Identity node of the
    default domain produces: with the initializers, the only names an input can be a
    constant through. No node is kept: a Constant's value is read from
    ``nodes.node(position)`` when asked (see :mod:`.nodes`).
    """

    def __init__(self, nodes: GraphNodes) -> None:
        self.nodes = nodes
        # Read once per node here (a protobuf field costs a wrapper object a read); the
        # layers keep these very tuples and strings.
        self.op_types: list[str] = []
        """Each node's op type, qualified by its domain (:func:`.kinds.qualified_op_type`)."""
        self.outputs: list[tuple[str, ...]] = []
        """Each node's outputs."""
        self.names: dict[str, str] = {}
        """Each name a node produces -> that very string (for the layers to share: see
        :meth:`LayerBuilder._shared_names`)."""
        self.single_producer: dict[str, int] = {}
        """Name -> its producer's position, for names with exactly one (nearly all: no list each)."""
        self._several: dict[str, list[int]] = {}  # name -> its producers' positions, for names with more
        self.constant_positions: list[int] = []
        self.external_constants: list[int] = []
        """The positions of the Constant nodes whose value is external data (to be checked)."""
        self.identity_inputs: dict[int, str] = {}
        self.passed_on: set[str] = set()
        single, several, names = self.single_producer, self._several, self.names
        op_types: dict[tuple[str, str], str] = {}  # (op type, domain) -> one string, not one per node
        for position, node in enumerate(nodes):
            outputs = tuple(node.output[:])
            op_type, domain = node.op_type, node.domain
            qualified = op_types.get((op_type, domain))
            if qualified is None:  # once per op type: a graph has few
                if type(op_type) is not str or type(domain) is not str:
                    raise NotText(f"node {position}'s op_type")
                qualified = op_types[op_type, domain] = kinds.qualified_op_type(op_type, domain)
            op_type = qualified
            self.outputs.append(outputs)
            self.op_types.append(op_type)
            for name in outputs:
                if not name:
                    continue
                if type(name) is not str:
                    raise NotText(f"node {position}'s outputs")
                names[name] = name
                if name in single:
                    several[name] = [single.pop(name), position]
                elif name in several:
                    several[name].append(position)
                else:
                    single[name] = position
            if op_type in _PASS_THROUGH and outputs:
                self.passed_on.update(outputs)
                if op_type == "Constant":
                    self.constant_positions.append(position)
                    if any(attr.name == "value" and uses_external_data(attr.t) for attr in node.attribute[:]):
                        self.external_constants.append(position)
                else:
                    self.identity_inputs[position] = node.input[0] if node.input else ""
        self.passed_on.discard("")

    def producers(self, name: str) -> list[int]:
        """The positions of every node producing ``name``, in graph order."""
        several = self._several.get(name)
        if several is not None:
            return list(several)
        single = self.single_producer.get(name)
        return [single] if single is not None else []


_PASS_THROUGH = ("Identity", "Constant")


class LayerBuilder:
    """Builds the layers of one graph; holds the shared Param objects while it does.

    Per node it does only what the node needs: a node none of whose inputs can be a
    constant (:attr:`GraphIndex.passed_on`, the initializers) is not resolved input by
    input, and what its names say (:func:`.hints.layer_hints`) is worked out once per
    name folder.
    """

    def __init__(
        self,
        model_path: Path,
        graph_proto: "GraphProto",
        external: dict[str | int, ExternalSlice],
        in_file: InFileSlices | None = None,
        index: GraphIndex | None = None,
    ) -> None:
        self.model_path = model_path
        self.graph_proto = graph_proto
        self.graph = index if index is not None else GraphIndex(GraphNodes.of_graph(graph_proto))
        self.external = external
        self.in_file = in_file
        self.initializers = {tensor.name: tensor for tensor in graph_proto.initializer[:]}
        self._maybe_constant = self.graph.passed_on.union(self.initializers)
        self._maybe_constant.discard("")
        self._params: dict[str | int, Param] = {}  # by stored tensor: _Constant.key
        # an initializer's name, or a Constant node's position -> (dtype, shape, numel,
        # reader): read once however often used
        self._stored_facts: dict[str | int, tuple[str, tuple[int, ...], int, Callable[[], np.ndarray]]] = {}
        self._uses: dict[str, list[Use]] = {}
        self._pending_uses: list[tuple[str, int, str | None]] = []  # of the layer being built
        self._summaries: dict[bytes, str] = {}  # small tensor attributes, by their serialized bytes
        self.with_subgraphs: list[int] = []
        """The positions of the top-level nodes with an If/Loop/Scan body (a GRAPH or GRAPHS
        attribute), found by :meth:`build`."""

    def build(self) -> list[Layer]:
        layers = []
        unique = _UniqueNames().unique
        uses = self._uses
        graph = self.graph
        for position, node in enumerate(graph.nodes):
            layer = self._layer(position, node, graph.op_types[position], graph.outputs[position])
            layer.name = unique(layer.name)
            if self._pending_uses:
                for tensor_name, input_position, role in self._pending_uses:
                    use = Use(layer.name, layer.op_type, input_position, role)
                    if tensor_name in uses:
                        uses[tensor_name].append(use)
                    else:
                        uses[tensor_name] = [use]
                self._pending_uses = []
            layers.append(layer)
        return layers

    def stored(self) -> list[StoredTensor]:
        """Every initializer and Constant value of the graph, with the layers reading it
        (call after :meth:`build`). Tensors in subgraph bodies are listed, not read."""
        found: list[StoredTensor] = []
        for name, tensor in self.initializers.items():
            param = self._params.get(name)
            if param is None:
                param = self._param_for(self._stored_constant((name,), tensor, "initializer", name))
            found.append(StoredTensor(param, self._uses.get(name, []), "initializer"))
        for position in self.graph.constant_positions:
            name = self.graph.outputs[position][0]
            constant = self._constant_node_value((name,), position)
            if constant is not None:
                found.append(StoredTensor(self._param_for(constant), self._uses.get(name, []), "Constant"))
        for tensor in body_tensors([self.graph.nodes.node(position) for position in self.with_subgraphs]):
            found.append(
                StoredTensor(
                    Param(
                        tensor.name,
                        tuple(tensor.dims[:]),
                        dtype_name(tensor.data_type),
                        _not_read(tensor.name),
                        tensor.name,
                    ),
                    [],
                    "subgraph",
                )
            )
        return found

    def _layer(self, position: int, node: "NodeProto", op_type: str, outputs: tuple[str, ...]) -> Layer:
        inputs = self._shared_names(node.input[:], position)
        entries = node.metadata_props
        metadata = {entry.key: entry.value for entry in entries[:]} if entries else {}
        if metadata and not all_text(keys_and_values(metadata)):
            raise NotText(f"node {position}'s metadata")
        attrs = {}
        has_body = False
        for attr in node.attribute[:]:
            kind, name = attr.type, attr.name
            if type(name) is not str:
                raise NotText(f"node {position}'s attribute names")
            # Lists of ints (kernel shapes, strides, pads) and ints are nearly all of them.
            if kind == INTS:
                attrs[name] = attr.ints[:]
            elif kind == INT:
                attrs[name] = attr.i
            elif kind == TENSOR:
                attrs[name] = self._summary(attr.t)
            else:
                attrs[name] = attribute_value(attr, kind)
            has_body = has_body or kind in BODIES
        if has_body:
            self.with_subgraphs.append(position)
        if op_type in _PASS_THROUGH or self._maybe_constant.isdisjoint(inputs):
            params: dict[str, Param] = {}
            param_names: list[str] = []
            weight_position = 1
        else:
            params, param_names, weight_position = self._params_of(op_type, inputs)
        node_name = node.name
        if type(node_name) is not str:
            raise NotText(f"node {position}'s name")
        kind = kinds.layer_kind(op_type, params.keys())
        if kind == LINEAR:
            attrs[WEIGHT_LAYOUT] = linear.weight_layout(op_type, attrs, weight_position)
        return Layer(
            node_name or f"{node.op_type}_{position}",
            kind,
            op_type,
            attrs,
            params,
            inputs,
            outputs,
            hints.layer_hints(node_name, outputs[0] if outputs else "", metadata, param_names),
            metadata,
        )

    def _shared_names(self, inputs: list[str], position: int) -> tuple[str, ...]:
        """``inputs``, each name the very string its producer's outputs hold: protobuf
        makes a new string each time a name is read, and a graph's every edge would
        otherwise be two strings, the layer's output and its consumer's input. A name no
        node produces (a graph input, an initializer, an omitted input) stays the
        string protobuf gave, checked to be text (:mod:`.text`)."""
        shared = tuple(map(self.graph.names.get, inputs))
        if None not in shared:
            return shared
        shared = tuple([name if found is None else found for name, found in zip(inputs, shared)])
        if not all_text(shared):
            raise NotText(f"node {position}'s inputs")
        return shared

    def _summary(self, tensor: "TensorProto") -> str:
        """:func:`.tensors.summarize_tensor`, made once per distinct small tensor: a graph
        repeats its Constant values (shapes, axes, scalars) many times, and reading one
        costs more than the serialized bytes that say which it is."""
        if math.prod(tensor.dims[:]) > SMALL_TENSOR_VALUES:
            return summarize_tensor(tensor)  # no values shown: cheap
        key = tensor.SerializeToString()
        summary = self._summaries.get(key)
        if summary is None:
            summary = self._summaries[key] = summarize_tensor(tensor)
        return summary

    # ----------------------------------------------------------------- params

    def _params_of(self, op_type: str, inputs: list[str]) -> tuple[dict[str, Param], list[str], int]:
        """The node's params by role, the tensor names they go by (for hints), and the
        input position of its "weight" (1 if it has none)."""
        constants: dict[int, _Constant] = {}
        sizes: dict[int, tuple[str, int]] = {}
        for position, tensor in enumerate(inputs):
            if tensor in self._maybe_constant:
                constant = self._resolve(tensor)
                if constant is not None and constant.dtype != "string":
                    constants[position] = constant
                    sizes[position] = (constant.dtype, constant.numel)
        params: dict[str, Param] = {}
        names: list[str] = []
        weight_position = 1
        if not constants:
            return params, names, weight_position
        roles = kinds.param_roles(op_type, sizes)
        for position, role in roles.items():
            params[role] = self._param(role, constants[position])
            names.extend(constants[position].names)
            if role == "weight":
                weight_position = position
        for position, constant in constants.items():
            self._pending_uses.append((constant.tensor_name, position, roles.get(position)))
        return params, names, weight_position

    def _param(self, role: str, constant: _Constant) -> Param:
        param = self._params.get(constant.key)
        if param is None:
            param = Param(role, constant.shape, constant.dtype, constant.read, tensor_name=constant.tensor_name)
            self._params[constant.key] = param
        return param

    def _param_for(self, constant: _Constant) -> Param:
        """The Param of a stored tensor: a layer's when one uses it as a param."""
        return self._params.get(constant.key) or Param(
            constant.tensor_name, constant.shape, constant.dtype, constant.read, tensor_name=constant.tensor_name
        )

    def _resolve(self, tensor: str) -> _Constant | None:
        """The constant behind an input tensor, following Identity chains; None if not constant."""
        names: tuple[str, ...] = ()
        for _ in range(MAX_IDENTITY_CHAIN):
            if not tensor:
                return None  # an omitted optional input
            names += (tensor,)
            initializer = self.initializers.get(tensor)
            if initializer is not None:
                return self._stored_constant(names, initializer, "initializer", tensor)
            producer = self.graph.single_producer.get(tensor)
            if producer is None:
                return None  # a graph input, or a name several nodes produce
            op_type = self.graph.op_types[producer]  # qualified: "Constant" is of the default domain
            if op_type == "Constant":
                return self._constant_node_value(names, producer)
            if op_type != "Identity":
                return None
            tensor = self.graph.identity_inputs[producer]
        return None

    def _stored_constant(self, names: tuple[str, ...], tensor: Any, origin: str, key: str | int) -> _Constant:
        """The constant of a stored tensor (an ``origin``: "initializer" or "constant")
        reached through ``names``; its facts and reader are made once per ``key`` (an
        initializer's name, a Constant node's position: a crafted graph may give an
        initializer's name to a Constant too)."""
        facts = self._stored_facts.get(key)
        if facts is None:
            name = names[-1]
            shape = tuple(tensor.dims[:])
            where = self._where(key, in_file=origin == "initializer")
            read = tensor_reader(tensor, where, self.model_path, f"{origin} {name!r}", shape)
            facts = self._stored_facts[key] = (dtype_name(tensor.data_type), shape, math.prod(shape), read)
        return _Constant(names, *facts, key)

    def _where(self, key: str | int, in_file: bool) -> ExternalSlice | None:
        """Where the bytes of the stored tensor ``key`` (an initializer's name, a Constant
        node's position) are when not in the proto: its external data, or (``in_file``:
        an initializer's) its raw_data left in the model file (:mod:`.in_file_data`)."""
        where = self.external.get(key)
        if where is None and in_file and self.in_file is not None:
            span = self.in_file.slices.get(key)
            if span is not None:
                path = self.model_path
                where = ExternalSlice(path, path.name, span[0], span[1], True, self.in_file.file)
        return where

    def _constant_node_value(self, names: tuple[str, ...], position: int) -> _Constant | None:
        """The value of the Constant node at ``position``, reached through ``names``."""
        facts = self._stored_facts.get(position)
        if facts is not None:
            return _Constant(names, *facts, position)
        for attr in self.graph.nodes.node(position).attribute[:]:
            if attr.name == "value":
                return self._stored_constant(names, attr.t, "constant", position)
            literal = _CONSTANT_LITERALS.get(attr.name)
            if literal is not None:
                dtype, field = literal
                array = np.asarray(getattr(attr, field), dtype=dtype)
                if attr.name in ("value_float", "value_int"):
                    array = array.reshape(())
                else:
                    array = array.reshape(-1)
                facts = (array.dtype.name, array.shape, array.size, lambda array=array: array)
                self._stored_facts[position] = facts
                return _Constant(names, *facts, position)
        return None  # strings and sparse values are not params


_CONSTANT_LITERALS = {
    "value_float": (np.float32, "f"),
    "value_floats": (np.float32, "floats"),
    "value_int": (np.int64, "i"),
    "value_ints": (np.int64, "ints"),
}


class _UniqueNames:
    """Hands out ``name``, then ``name#2``, ``name#3``... for repeats, in constant time
    per name (a graph may repeat one name over 100k nodes)."""

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._next: dict[str, int] = {}

    def unique(self, name: str) -> str:
        if name not in self._used:  # the first of its name (so not in _next either)
            self._used.add(name)
            return name
        unique = name
        count = self._next.get(name, 1)
        while unique in self._used:
            count += 1
            unique = f"{name}#{count}"
        self._next[name] = count
        self._used.add(unique)
        return unique


def _not_read(name: str):
    def read():
        raise InputError(name, "is stored inside a subgraph (If/Loop/Scan body), which graphinspect does not read")

    return read
