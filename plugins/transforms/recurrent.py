"""The ``recurrent`` transform: ``nn.LSTM``/``GRU``/``RNN`` weights as ONNX LSTM/GRU/RNN.

PyTorch keeps, per layer ``k`` and direction (``_reverse`` for the backward one),
``weight_ih_lk`` (G*H, in), ``weight_hh_lk`` (G*H, H), ``bias_ih_lk`` and ``bias_hh_lk``
(G*H), with its gates stacked in its own order. An ONNX recurrent node is one layer,
both directions::

    W = stack_d(reorder(weight_ih_lk[_reverse]))          (dirs, G*H, in)
    R = stack_d(reorder(weight_hh_lk[_reverse]))          (dirs, G*H, H)
    B = stack_d(concat(reorder(bias_ih), reorder(bias_hh)))  (dirs, 2*G*H); zeros without bias

where ``reorder`` moves the gate blocks of G rows each from PyTorch's order to ONNX's:
LSTM (i, f, g, o) -> (i, o, f, c), GRU (r, z, n) -> (z, r, h), RNN has one gate. A GRU
matches PyTorch only with ``linear_before_reset=1``. A stacked module is one ONNX node
per layer (``/lstm/LSTM``, ``/lstm/LSTM_1``): each candidate is one layer ``k``. The
initial hidden (and cell) state an exporter stores when the model is called without one
is zeros (inputs 5 and 6).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from inspector import ir
from inspector.hookspecs import hookimpl
from inspector.ir import Layer
from inspector.transforms import Candidate, Reproduction, SourceIndex, Transform
from plugins.transforms._layouts import float64

GATE_ORDER = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN": (0,)}
"""Per family, the PyTorch gate block that goes to each ONNX gate position."""

_LAYER_INDEX = re.compile(r"^weight_ih_l(\d+)$")
_INITIAL_STATES = ("input_5", "input_6")


def family(layer: Layer) -> str | None:
    """ "LSTM", "GRU" or "RNN" from a layer's op type ("LSTM", "LSTM?" of a state_dict)."""
    name = layer.op_type.rstrip("?").rpartition(".")[2].upper()
    return name if name in GATE_ORDER else None


def layer_indices(layer: Layer) -> list[int]:
    return sorted(int(m.group(1)) for role in layer.params if (m := _LAYER_INDEX.match(role)))


class Recurrent(Transform):
    """W, R, B of one ONNX LSTM/GRU/RNN from one layer of the PyTorch module (see above)."""

    name = "recurrent"
    description = "LSTM/GRU/RNN layers: gates reordered, directions stacked, biases concatenated."
    target_kinds = frozenset({ir.RECURRENT})
    order = 35
    phrase = "recurrent weights with gates reordered"
    explains = "recurrent weights are stored with their gates in ONNX's order"

    def propose(self, target: Layer, anchor: str, source: SourceIndex) -> Iterable[Candidate]:
        layer = source.layer(anchor)
        layers = [layer] if layer is not None else source.under(anchor, depth=1)
        for layer in layers:
            if layer.kind == ir.RECURRENT and family(layer) == family(target):
                for k in layer_indices(layer):
                    yield self.candidate(layer, variant=f"layer {k}", k=k)

    def check(self, target: Layer, candidate: Candidate) -> str | None:
        (module,) = candidate.sources
        k = int(candidate.get("k"))
        weight, stored = module.params.get(f"weight_ih_l{k}"), target.params.get("weight_ih")
        if weight is None or stored is None or "weight_hh" not in target.params:
            return "no W and R"
        directions = 2 if f"weight_ih_l{k}_reverse" in module.params else 1
        expected = (directions, *weight.shape)
        if tuple(stored.shape) != expected:
            return f"W shape {list(stored.shape)} != {list(expected)} (layer {k}, {directions} direction(s))"
        if family(target) == "GRU" and int(target.attrs.get("linear_before_reset", 0)) != 1:
            return "linear_before_reset=0 computes another GRU than PyTorch's"
        if int(target.attrs.get("input_forget", 0)):
            return "input_forget=1 couples the gates; PyTorch's LSTM does not"
        return None

    def reproduce(self, target: Layer | None, candidate: Candidate) -> Reproduction:
        (module,) = candidate.sources
        k = int(candidate.get("k"))
        order = GATE_ORDER[family(module)]
        suffixes = [""] + (["_reverse"] if f"weight_ih_l{k}_reverse" in module.params else [])

        def reordered(role: str) -> np.ndarray:
            values = float64(module.params[role])
            return np.concatenate([np.split(values, len(order), axis=0)[i] for i in order], axis=0)

        def bias(role: str, rows: int) -> np.ndarray:
            return reordered(role) if role in module.params else np.zeros(rows)

        rows = module.params[f"weight_ih_l{k}"].shape[0]
        params = {
            "weight_ih": np.stack([reordered(f"weight_ih_l{k}{s}") for s in suffixes]),
            "weight_hh": np.stack([reordered(f"weight_hh_l{k}{s}") for s in suffixes]),
            "bias": np.stack(
                [np.concatenate([bias(f"bias_ih_l{k}{s}", rows), bias(f"bias_hh_l{k}{s}", rows)]) for s in suffixes]
            ),
        }
        if target is not None:
            for role in _INITIAL_STATES:
                if role in target.params:
                    params[role] = np.zeros(target.params[role].shape)
        origins = {
            "weight_ih": module.params[f"weight_ih_l{k}"],
            "weight_hh": module.params[f"weight_hh_l{k}"],
            "bias": module.params.get(f"bias_ih_l{k}"),
        }
        note = f"{family(module)} layer {k}, {len(suffixes)} direction(s), gates in ONNX order"
        return Reproduction(params, origins, {"weight_ih": 1, "weight_hh": 1, "bias": 1}, note, {"layer": k})


@hookimpl
def graphinspect_transforms():
    yield Recurrent()
