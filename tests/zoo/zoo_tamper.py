"""Tampered twins: a copy of an ONNX model with ONE initializer changed by 2%.

:func:`make_twin` picks the initializer by reading the graph (which node consumes it, the
op type, the input slot, the shape, the node's scope), never by a hard-coded tensor name,
so the same role works on the legacy exporter's anonymous ``onnx::Conv_25``, the dynamo
exporter's ``conv.weight``, onnxslim's renamed and merged tensors and ONNX Runtime's
fused ops. The rule each role follows:

=======================  ===============================================================
role                     initializer (first consumer found through Cast/Reshape/...)
=======================  ===============================================================
conv_weight              input 1 of Conv/ConvTranspose/FusedConv
merged_branch_conv       the same, on a node whose scope matches the family's pattern
                         (a re-parameterised block's single conv)
conv_bias                input 2 of Conv/ConvTranspose/FusedConv
linear_weight            input 1 of Gemm/FusedGemm/MatMul, 2-D
linear_bias              input 2 of Gemm/FusedGemm, or the 1-D other input of an Add
                         after a MatMul
norm_affine              input 1 or 2 of LayerNormalization/BatchNormalization/
                         GroupNormalization/InstanceNormalization (and ORT's
                         SkipLayerNormalization/SimplifiedLayerNormalization)
pos_table                a table of >= 2 dims (after dropping leading 1s) read by Gather
                         (input 0) or added (Add) to an activation
class_token              a [1, 1, D] tensor consumed (through Expand) by Concat
layer_scale              a tensor of >= 2 elements with one non-1 dim, multiplied (Mul)
                         with an activation
recurrent_weight         input 2 (R) of LSTM/GRU/RNN
recurrent_input_weight   input 1 (W) of LSTM/GRU/RNN
recurrent_bias           input 3 (B) of LSTM/GRU/RNN
embedding                input 0 of Gather, 2-D, with a non-constant index input
=======================  ===============================================================

Among the candidates the one in the middle of the graph is taken (not the first conv of
the stem: a bug there is the least interesting). For weights of 2 or more dims one
output channel is scaled (the channel with the largest magnitude; axis 0 of a Conv or
Gemm(transB=1) weight, axis 1 of ConvTranspose, MatMul and Gemm(transB=0)); otherwise
the element of largest magnitude. The largest, so that 2% of it is far outside any
tolerance (fp16 included).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FACTOR = 1.02
_PASS_THROUGH = {
    "Cast",
    "Identity",
    "Reshape",
    "Transpose",
    "Unsqueeze",
    "Squeeze",
    "Expand",
    "DequantizeLinear",
    "Flatten",
    "CastLike",
}
_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
_CONV = {"Conv", "ConvTranspose", "FusedConv", "NhwcConv"}
_NORMS = {
    "LayerNormalization",
    "BatchNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "SkipLayerNormalization",
    "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization",
}
_RNN = {"LSTM", "GRU", "RNN"}


class NoCandidate(LookupError):
    """The graph holds no initializer in the asked role."""


@dataclass
class Tampering:
    """What :func:`make_twin` changed: the initializer, where it is used, and how."""

    role: str
    tensor: str  # the initializer's name in the twin
    op: str  # op type of the consuming node
    node: str  # name of the consuming node
    input_index: int
    shape: list[int]
    dtype: str
    axis: int | None  # the channel axis, or None when one element was changed
    index: list[int]  # the channel [c] or the element's index
    before: float  # largest magnitude changed, before and after
    after: float
    candidates: int  # how many initializers qualified for the role

    def as_dict(self) -> dict:
        return asdict(self)


def node_scope(node) -> str:
    """Every name a node goes by: its name, and the module scopes the dynamo exporter
    records in ``pkg.torch.onnx.name_scopes`` (joined with '/')."""
    parts = [node.name]
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                import ast

                scopes = ast.literal_eval(prop.value)
                parts.append("/" + "/".join(str(s) for s in scopes if s) + "/")
            except (ValueError, SyntaxError):
                parts.append(prop.value)
    return " ".join(parts)


def _attribute(node, name, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            from onnx import helper

            return helper.get_attribute_value(attribute)
    return default


class _Graph:
    """Consumers of every value, following pass-through ops, and the initializers."""

    def __init__(self, model):
        self.model = model
        self.graph = model.graph
        self.nodes = list(self.graph.node)
        self.order = {id(node): i for i, node in enumerate(self.nodes)}
        self.initializers = {init.name: init for init in self.graph.initializer}
        self.consumers: dict[str, list[tuple[object, int]]] = {}
        for node in self.nodes:
            for i, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((node, i))
        self.producer = {out: node for node in self.nodes for out in node.output}

    def effective_consumers(self, name: str, depth: int = 4) -> list[tuple[object, int]]:
        """(node, input index) of the ops that use ``name``, looking through Cast/Reshape/..."""
        found = []
        for node, i in self.consumers.get(name, []):
            if node.op_type in _PASS_THROUGH and i == 0 and depth > 0:
                for out in node.output:
                    found += self.effective_consumers(out, depth - 1)
            else:
                found.append((node, i))
        return found

    def is_constant(self, name: str) -> bool:
        if name in self.initializers:
            return True
        producer = self.producer.get(name)
        return producer is not None and producer.op_type == "Constant"


def _dims(init) -> list[int]:
    return [int(d) for d in init.dims]


def _squeezed(dims: list[int]) -> list[int]:
    while len(dims) > 1 and dims[0] == 1:
        dims = dims[1:]
    return dims


def candidates(model, role: str, scope: str | None = None) -> list[tuple[str, object, int]]:
    """Every (initializer, consuming node, input index) that plays ``role``, in graph order."""
    graph = _Graph(model)
    pattern = re.compile(scope) if scope else None
    found: list[tuple[int, str, object, int]] = []
    for name, init in graph.initializers.items():
        if init.data_type not in _FLOAT_TYPES:
            continue
        dims = _dims(init)
        size = int(np.prod(dims)) if dims else 1
        if size < 2:
            continue
        for node, index in graph.effective_consumers(name):
            op = node.op_type
            others = [n for k, n in enumerate(node.input) if k != index and n]
            ok = False
            if role in ("conv_weight", "merged_branch_conv"):
                ok = op in _CONV and index == 1
            elif role == "conv_bias":
                ok = op in _CONV and index == 2
            elif role == "linear_weight":
                ok = (op in ("Gemm", "FusedGemm", "MatMul") and index == 1 and len(dims) == 2) or (
                    op == "MatMul" and index == 0 and len(dims) == 2 and not graph.is_constant(node.input[1])
                )
            elif role == "linear_bias":
                if op in ("Gemm", "FusedGemm") and index == 2:
                    ok = True
                elif op == "Add" and len(_squeezed(dims)) == 1 and others:
                    producer = graph.producer.get(others[0])
                    ok = producer is not None and producer.op_type == "MatMul"
            elif role == "norm_affine":
                if op in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization"):
                    ok = index in (2, 3)  # input, skip, gamma, beta, bias
                else:
                    ok = op in _NORMS and index in (1, 2)
            elif role == "pos_table":
                if len(_squeezed(dims)) >= 2:
                    if op == "Gather" and index == 0:
                        ok = True
                    elif op == "Add" and others and not graph.is_constant(others[0]):
                        ok = True
            elif role == "class_token":
                ok = op == "Concat" and len(dims) == 3 and dims[0] == 1 and dims[1] == 1
            elif role == "layer_scale":
                non_one = [d for d in dims if d != 1]
                ok = op == "Mul" and len(non_one) == 1 and others and not graph.is_constant(others[0])
            elif role == "recurrent_weight":
                ok = op in _RNN and index == 2
            elif role == "recurrent_input_weight":
                ok = op in _RNN and index == 1
            elif role == "recurrent_bias":
                ok = op in _RNN and index == 3
            elif role == "embedding":
                ok = op == "Gather" and index == 0 and len(dims) == 2 and not graph.is_constant(node.input[1])
            else:
                raise ValueError(f"unknown role {role!r}")
            if ok and pattern is not None:
                ok = bool(pattern.search(node_scope(node)))
            if ok:
                found.append((graph.order[id(node)], name, node, index))
                break
    found.sort(key=lambda item: item[0])
    return [(name, node, index) for _, name, node, index in found]


def _channel_axis(node, index: int, ndim: int) -> int | None:
    if ndim < 2 or node.op_type in _RNN:
        return None
    if node.op_type in ("Conv", "FusedConv", "NhwcConv"):
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type in ("Gemm", "FusedGemm"):
        trans = _attribute(node, "transB", 0) if index == 1 else _attribute(node, "transA", 0)
        return 0 if trans else 1
    if node.op_type == "MatMul":
        return ndim - 1 if index == 1 else None
    return None


def make_twin(source: Path, target: Path, role: str, scope: str | None = None) -> Tampering:
    """Write a copy of the ONNX model ``source`` to ``target`` in which ONE initializer in
    ``role`` (see the module docstring) has ONE output channel, or ONE element, multiplied
    by :data:`FACTOR` (1.02); return what was changed.

    The initializer is found by reading the graph, never by name. External data of
    ``source`` is read; the twin is written as one self-contained file. Raises
    :class:`NoCandidate` when no initializer plays the role (with the ops the graph has).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source), load_external_data=True)
    found = candidates(model, role, scope)
    if not found:
        ops = sorted({node.op_type for node in model.graph.node})
        where = f" on a node whose scope matches {scope!r}" if scope else ""
        raise NoCandidate(f"no initializer in role {role!r}{where} in {source.name}; ops: {', '.join(ops)}")
    name, node, index = found[len(found) // 2]
    init = next(i for i in model.graph.initializer if i.name == name)
    array = numpy_helper.to_array(init)
    work = array.astype(np.float64)
    axis = _channel_axis(node, index, work.ndim)
    if axis is not None:
        magnitudes = np.abs(np.moveaxis(work, axis, 0)).reshape(work.shape[axis], -1).max(axis=1)
        channel = int(np.argmax(magnitudes))
        selector = [slice(None)] * work.ndim
        selector[axis] = channel
        selector = tuple(selector)
        position = [channel]
    else:
        flat = int(np.argmax(np.abs(work)))
        selector = np.unravel_index(flat, work.shape)
        position = [int(i) for i in selector]
    before = float(np.abs(work[selector]).max())
    work[selector] = work[selector] * FACTOR
    changed = work.astype(array.dtype)
    after = float(np.abs(changed.astype(np.float64)[selector]).max())
    if not after > before:
        raise AssertionError(f"tampering {name} did not change it ({before} -> {after})")
    replacement = numpy_helper.from_array(changed, name)
    init.ClearField("data_location")
    del init.external_data[:]
    init.CopyFrom(replacement)
    onnx.save(model, str(target))
    return Tampering(
        role=role,
        tensor=name,
        op=node.op_type,
        node=node.name,
        input_index=index,
        shape=list(array.shape),
        dtype=str(array.dtype),
        axis=axis,
        index=position,
        before=before,
        after=after,
        candidates=len(found),
    )
