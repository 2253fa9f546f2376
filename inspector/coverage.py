"""Coverage accounting: every floating-point number the target stores, in one bucket.

After matching, each stored tensor of the target (:attr:`inspector.ir.Model.stored`;
for a format without that list, every layer param) that holds floating-point numbers
is put, whole, in exactly one bucket of :class:`~inspector.results.Coverage`:

- *explained*: a layer diff compared it (or, for a tensor a loader cut into parts,
  compared parts of it: those elements are explained, the rest are not);
- *constant*: shown not to come from a parameter, with a reason: a scalar; an input
  that is a shape, axes or scale factor (the loader says it is no param); a tensor no
  node reads; the neutral scale and bias of an InstanceNormalization (how exporters
  write GroupNorm); or a value the matcher found computed at export (no transform
  can derive it from any source parameter left unexplained, and no source tensor holds
  its values: :class:`Accounting` is told so by the matcher);
- *unexplained*: everything else: the params of a layer traced to nothing, a tensor
  inside a subgraph (not read), the rest of a partly explained tensor.

A changed parameter can therefore never be counted as a constant: the matcher calls
a tensor a constant only when no transform can even structurally derive it from an
unused source parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inspector import ir
from inspector.ir import Layer, Model, Param, StoredTensor
from inspector.results import CONSTANT, EXPLAINED, UNEXPLAINED, ConstantTensor, Coverage

FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16", "float8_e4m3fn", "float8_e5m2")


def is_float(param: Param) -> bool:
    return param.dtype in FLOAT_DTYPES


def base_of(param: Param) -> Param:
    """The stored tensor ``param`` is (a part of)."""
    while param.view_of is not None:
        param = param.view_of
    return param


def neutral_norm_tensor(stored: StoredTensor) -> bool:
    """A scale of ones or a bias of zeros read only by InstanceNormalization: how both
    torch exporters write a GroupNorm (its own affine follows as Mul and Add) and an
    InstanceNorm without affine parameters."""
    if not stored.uses or any(use.op_type != "InstanceNormalization" for use in stored.uses):
        return False
    values = stored.param.array()
    return bool(np.all(values == 1) if stored.uses[0].role == "weight" else np.all(values == 0))


@dataclass(slots=True)
class Accounting:
    """What the matcher tells the accountant while it works.

    ``explained``: id of a stored tensor -> elements of it compared (parts add up);
    ``op_of``: id -> the op type of the layer that compared it; ``computed``: id -> the
    reason a tensor is a constant computed at export (the matcher showed nothing derives
    it), with the layer reading it.
    """

    explained: dict[int, int] = field(default_factory=dict)
    op_of: dict[int, str] = field(default_factory=dict)
    computed: dict[int, tuple[str, str, str]] = field(default_factory=dict)

    def compared(self, param: Param, op: str) -> None:
        base = base_of(param)
        self.explained[id(base)] = self.explained.get(id(base), 0) + param.numel
        self.op_of.setdefault(id(base), op)

    def computed_at_export(self, param: Param, layer: Layer, reason: str) -> None:
        self.computed[id(base_of(param))] = (layer.name, layer.op_type, reason)

    def account(self, target: Model) -> tuple[Coverage, list[ConstantTensor]]:
        """Put every stored floating-point tensor of ``target`` in its bucket."""
        coverage = Coverage()
        constants: list[ConstantTensor] = []
        for stored in stored_tensors(target):
            param = stored.param
            if not is_float(param):
                continue
            numel, itemsize = param.numel, (param.nbytes // param.numel if param.numel else 0)
            first = stored.uses[0] if stored.uses else None
            op = self.op_of.get(id(param)) or (first.op_type if first else "(unused)")
            done = min(self.explained.get(id(param), 0), numel)
            if done:
                coverage.add(EXPLAINED, op, done, done * itemsize)
                if done < numel:
                    coverage.add(UNEXPLAINED, op, numel - done, (numel - done) * itemsize)
                continue
            reason = self._constant_reason(stored)
            if reason is None:
                coverage.add(UNEXPLAINED, op, numel, numel * itemsize)
                continue
            coverage.add(CONSTANT, op, numel, numel * itemsize)
            layer_name, layer_op = (first.layer, first.op_type) if first else (None, "(unused)")
            if id(param) in self.computed:
                layer_name, layer_op, _ = self.computed[id(param)]
            constants.append(ConstantTensor(param.tensor_name, layer_op, layer_name, numel, reason))
        return coverage, constants

    def _constant_reason(self, stored: StoredTensor) -> str | None:
        """Why ``stored`` is no parameter, or None when that is not shown."""
        param = stored.param
        if stored.origin == "subgraph":
            return None
        if param.numel <= 1:
            return "a scalar"
        if not stored.uses:
            return "no node reads it"
        if all(use.role is None for use in stored.uses):
            use = stored.uses[0]
            return f"input {use.position} of {use.op_type} (a shape, axes or scale input, not a parameter)"
        if neutral_norm_tensor(stored):
            return (
                "the neutral scale or bias of an InstanceNormalization "
                "(GroupNorm is exported as InstanceNorm, Mul, Add)"
            )
        computed = self.computed.get(id(param))
        return computed[2] if computed is not None else None


def stored_tensors(model: Model) -> list[StoredTensor]:
    """The model's stored tensors, or its distinct layer params as stored tensors (a
    format that does not list what it stores)."""
    if model.stored:
        return model.stored
    found: list[StoredTensor] = []
    seen: set[int] = set()
    for layer in model.layers:
        for role, param in layer.params.items():
            base = base_of(param)
            if id(base) not in seen:
                seen.add(id(base))
                found.append(StoredTensor(base, [ir.Use(layer.name, layer.op_type, -1, role)]))
    return found
