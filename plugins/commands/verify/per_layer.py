"""Layer by layer: where do the two models part?

For every layer the diff matched (:func:`inspector.diff.diff_models`, in ONNX execution
order), the PyTorch activation is compared with the ONNX intermediate tensor:

- ONNX side: the node's output (for a MatMul whose bias Add the diff absorbed, the
  Add's output) is made a graph output, all of them in one extra session, created from
  the model's bytes with the extra outputs appended (serialized protobuf messages merge
  when concatenated, so the file is neither re-encoded nor copied next to the user's
  model). The session runs once per chunk of tensors (:func:`chunk_by_size`; one chunk
  unless the tensors exceed the memory budget).
- PyTorch side: forward hooks on the matched modules. A folded Conv+BN is compared at
  the BatchNorm (the last source); merged RepConv branches at the sum of the branches'
  last modules (their BatchNorms, and the identity BatchNorm), which is what the merged
  conv computes. A module called several times is paired call by call with the ONNX
  nodes matched to it, in order. Each activation is compared as soon as its hook fires
  (before any in-place op can change it) and dropped.

Per layer: ``max_abs_err = max|t - e|``, ``max_rel_err = max|t - e| / max|e|`` (relative to
the activation's scale: activations near zero do not inflate it), ``mean_abs_err``,
``cosine``, and ``growth``, the ratio of ``max_rel_err`` to that of the previous compared
layer. A layer "differs" when ``max_rel_err > layer_rtol`` (or an error is not finite);
the first one, in execution order, is ``first_divergent``.

Not comparable (with the reason): layers the diff could not match, attention internals
(q/k/v slices of an in_proj), ONNX nodes that only hold a constant of a module (not its
output), modules that are never called (a parent uses their weights directly), outputs
that are not one tensor, shapes that differ (beyond size-1 axes), and every layer of a
TorchScript model (its submodules run inside TorchScript, where hooks cannot reach).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector import ir
from inspector.errors import UsageError
from inspector.results import UNMATCHED, LayerDiff
from plugins.commands.verify.metrics import DIFFER, SAME, relative
from plugins.commands.verify.runners import onnx_session, run_session

if TYPE_CHECKING:
    from inspector.ir import Model
    from inspector.results import DiffResult
    from plugins.commands.verify.runners import TorchRunner

NOT_COMPARABLE = "not_comparable"

COMPARABLE_KINDS = frozenset(
    {
        ir.CONV,
        ir.CONV_TRANSPOSE,
        ir.LINEAR,
        ir.BATCHNORM,
        ir.LAYERNORM,
        ir.GROUPNORM,
        ir.INSTANCENORM,
        ir.EMBEDDING,
        "prelu",
        "rmsnorm",
    }
)
"""ONNX layer kinds whose output is their PyTorch module's output."""

PROTOBUF_LIMIT = 2**31 - 1


@dataclass(slots=True)
class LayerComparison:
    """One matched layer: where its activation comes from on both sides, and the errors."""

    target: str
    op: str
    sources: list[str]
    transform: str | None
    diff_status: str
    tensor: str | None = None
    modules: list[str] = field(default_factory=list)
    status: str = NOT_COMPARABLE
    reason: str | None = None
    shape: list[int] | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    mean_abs_err: float | None = None
    cosine: float | None = None
    growth: float | None = None
    # Filled while the PyTorch model runs: partial sums of merged branches.
    _partial: Any = None
    _parts: int = 0

    @property
    def comparable(self) -> bool:
        return self.reason is None

    def entry(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "op": self.op,
            "tensor": self.tensor,
            "module": " + ".join(self.modules) if self.modules else None,
            "sources": list(self.sources),
            "transform": self.transform,
            "diff_status": self.diff_status,
            "status": self.status,
            "reason": self.reason,
            "shape": self.shape,
            "max_abs_err": self.max_abs_err,
            "max_rel_err": self.max_rel_err,
            "mean_abs_err": self.mean_abs_err,
            "cosine": self.cosine,
            "growth": self.growth,
        }


# ----------------------------------------------------------------------------- planning


def plan_layers(diff: "DiffResult", runner: "TorchRunner", globs: list[str] | None) -> list[LayerComparison]:
    """One :class:`LayerComparison` per diffed layer (narrowed by ``globs``), with the
    ONNX tensor and PyTorch modules to compare, or the reason it cannot be compared."""
    target = diff.target
    output_of = {layer.name: layer.outputs[0] for layer in target.layers if layer.outputs}
    kinds = {layer.name: layer.kind for layer in diff.source.layers}
    modules = runner.named_modules() if runner.hookable else {}
    plans = []
    for layer in diff.layers:
        if globs and not any(
            fnmatch.fnmatchcase(name, glob) for glob in globs for name in [layer.target, *layer.sources]
        ):
            continue
        plan = LayerComparison(
            layer.target,
            layer.op,
            list(layer.sources),
            layer.transform,
            layer.status,
            tensor=output_of.get(layer.target),
        )
        plan.modules = hooked_modules(layer, kinds)
        plan.reason = _why_not_comparable(layer, plan, modules, runner)
        plans.append(plan)
    return plans


def hooked_modules(layer: LayerDiff, kinds: dict[str, str]) -> list[str]:
    """The PyTorch modules whose outputs (summed) equal the ONNX node's output.

    One module, the last source (the BatchNorm of a fold), except for merged branches:
    the last module of each branch (a conv's BatchNorm, or the conv when it has none)
    and the identity BatchNorm.
    """
    if not layer.sources:
        return []
    if layer.transform != "merge_branches":
        return [layer.sources[-1]]
    terminals = []
    for position, name in enumerate(layer.sources):
        following = layer.sources[position + 1] if position + 1 < len(layer.sources) else None
        if kinds.get(name) == ir.BATCHNORM:
            terminals.append(name)
        elif following is None or kinds.get(following) != ir.BATCHNORM:
            terminals.append(name)
    return terminals


def _why_not_comparable(
    layer: LayerDiff, plan: LayerComparison, modules: dict[str, Any], runner: "TorchRunner"
) -> str | None:
    if layer.status == UNMATCHED or not layer.sources:
        return "the diff found no PyTorch source for this node"
    if layer.transform == "split_qkv" or layer.kind == ir.ATTENTION:
        return "attention internals: a q/k/v slice of the in_proj has no module output"
    if layer.kind not in COMPARABLE_KINDS:
        return f"the ONNX {layer.op} only holds a constant of {layer.sources[-1]}, not its output"
    if plan.tensor is None:
        return "the ONNX node has no output"
    if not runner.hookable:
        return f"a {runner.runner} model cannot be hooked"
    missing = [name for name in plan.modules if name not in modules]
    if missing:
        return f"the running PyTorch model has no module {missing[0]!r}"
    return None


# ----------------------------------------------------------------------------- running


@dataclass
class LayerRun:
    """What :func:`compare_layers` ran: the first divergent node, and the models' own
    outputs from those same runs (None when nothing was comparable, so nothing ran)."""

    first_divergent: str | None
    onnx_outputs: list[np.ndarray] | None = None
    torch_outputs: list[np.ndarray] | None = None


def compare_layers(
    plans: list[LayerComparison],
    runner: "TorchRunner",
    target: "Model",
    arrays: list[np.ndarray],
    feeds: dict[str, np.ndarray],
    layer_rtol: float,
    chunk_bytes: int,
    session: Any = None,
) -> LayerRun:
    """Fill in the errors of every comparable plan, in one run of each framework per
    chunk of intermediate tensors (one chunk unless they exceed ``chunk_bytes``).

    The first chunk's runs also return the models' own outputs, so ``verify
    --per-layer`` runs each framework once, not once more for the outputs.
    ``session`` may be a session already made from :func:`extra_outputs_model` of the
    comparable plans' tensors (the benchmark reuses one); by default one is created.
    """
    comparable = [plan for plan in plans if plan.comparable]
    run = LayerRun(None)
    if comparable:
        tensors = list(dict.fromkeys(plan.tensor for plan in comparable))
        if session is None:
            session = onnx_session(extra_outputs_model(target, tensors), target.path, basic_optimizations=True)
        sizes = _estimated_sizes(session, tensors)
        for position, chunk in enumerate(chunk_by_size(tensors, sizes, chunk_bytes)):
            wanted = set(chunk)
            outputs = _run_chunk(
                [plan for plan in comparable if plan.tensor in wanted],
                chunk,
                session,
                runner,
                target,
                arrays,
                feeds,
                layer_rtol,
                with_outputs=position == 0,
            )
            if outputs is not None:
                run.onnx_outputs, run.torch_outputs = outputs
    previous = None
    for plan in plans:
        if plan.max_rel_err is None:
            continue
        if previous is not None and previous > 0 and np.isfinite(plan.max_rel_err):
            plan.growth = plan.max_rel_err / previous
        previous = plan.max_rel_err
        if plan.status == DIFFER and run.first_divergent is None:
            run.first_divergent = plan.target
    return run


def extra_outputs_model(target: "Model", tensors: list[str]) -> bytes:
    """The ONNX model's bytes with ``tensors`` added as graph outputs.

    A protobuf message serialized after another merges into it (repeated fields
    append), so a ModelProto holding only ``graph.output`` entries is appended to the
    file's bytes as they are. Outputs without a type are fine: ONNX Runtime infers them.
    A model with external data is loaded whole (its tensors referenced relative to its
    folder) and re-serialized, which protobuf limits to 2 GiB.
    """
    import onnx

    existing = {info.name for info in target.outputs}
    extra = onnx.ModelProto()
    extra.graph.output.extend(onnx.ValueInfoProto(name=name) for name in tensors if name not in existing)
    if not target.details.get("external_data"):
        return Path(target.path).read_bytes() + extra.SerializeToString()
    proto = onnx.load(target.path, load_external_data=True)
    if proto.ByteSize() > PROTOBUF_LIMIT:
        raise UsageError(
            f"{target.path}: --per-layer cannot yet handle a model with external data over 2 GiB (protobuf's limit)"
        )
    proto.MergeFrom(extra)
    return proto.SerializeToString()


def _estimated_sizes(session: Any, tensors: list[str]) -> dict[str, int | None]:
    """Bytes of each tensor from the shapes ONNX Runtime inferred (None where symbolic)."""
    sizes: dict[str, int | None] = {}
    for info in session.get_outputs():
        if info.name in tensors:
            dims = info.shape or []
            known = all(isinstance(dim, int) and dim >= 0 for dim in dims)
            itemsize = 2 if "float16" in info.type else 8 if ("int64" in info.type or "double" in info.type) else 4
            sizes[info.name] = int(np.prod(dims, dtype=np.int64)) * itemsize if known else None
    return sizes


def chunk_by_size(tensors: list[str], sizes: dict[str, int | None], budget: int) -> list[list[str]]:
    """``tensors`` in order, cut into runs of at most ``budget`` bytes (a tensor larger
    than the budget is a chunk of its own). Unknown sizes count as the largest known."""
    known = [size for size in sizes.values() if size is not None]
    fallback = max(known) if known else 0
    chunks: list[list[str]] = [[]]
    total = 0
    for name in tensors:
        size = sizes.get(name)
        size = fallback if size is None else size
        if chunks[-1] and total + size > budget:
            chunks.append([])
            total = 0
        chunks[-1].append(name)
        total += size
    return [chunk for chunk in chunks if chunk]


def _run_chunk(plans, chunk, session, runner, target, arrays, feeds, layer_rtol, with_outputs=False):
    """Run both frameworks once for ``chunk``; with ``with_outputs``, return
    (ONNX outputs, PyTorch outputs) of those runs, else None."""
    final = [info.name for info in target.outputs] if with_outputs else []
    names = list(chunk) + [name for name in final if name not in chunk]
    values = dict(zip(names, run_session(session, feeds, target.path, names)))
    onnx_values = {name: values[name] for name in chunk}
    by_module: dict[str, list[LayerComparison]] = {}
    for plan in plans:
        for name in plan.modules:
            by_module.setdefault(name, []).append(plan)
    calls = {name: 0 for name in by_module}
    modules = runner.named_modules()

    def make_hook(name: str):
        def hook(module, inputs, output):
            calls[name] += 1
            # Calls and matched ONNX nodes are both in execution order: pair them so.
            same_module = [plan for plan in by_module[name] if plan.status == NOT_COMPARABLE and plan.reason is None]
            if not same_module:
                return
            _take_activation(same_module[0], output, onnx_values, layer_rtol)

        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in by_module]
    try:
        result = runner.forward(arrays)
    finally:
        for handle in handles:
            handle.remove()
    for plan in plans:
        if plan.reason is None and plan.status == NOT_COMPARABLE:
            uncalled = [name for name in plan.modules if calls.get(name, 0) == 0]
            plan.reason = (
                f"{uncalled[0]} is never called (its parent uses its weights directly)"
                if uncalled
                else "the PyTorch module runs fewer times than the ONNX nodes matched to it"
            )
        plan._partial = None
    if not with_outputs:
        return None
    from plugins.commands.verify.runners import flatten_outputs

    return [values[name] for name in final], flatten_outputs(result)


def _take_activation(plan: LayerComparison, output: Any, onnx_values: dict[str, np.ndarray], layer_rtol: float) -> None:
    import torch

    if not isinstance(output, torch.Tensor):
        plan.reason = f"the module returns a {type(output).__name__}, not one tensor"
        return
    array = output.detach().float().numpy()
    if len(plan.modules) > 1:
        # Merged branches: keep a copy (the block applies its activation in place later).
        plan._partial = array.astype(np.float32, copy=True) if plan._partial is None else plan._partial + array
        plan._parts += 1
        if plan._parts < len(plan.modules):
            return
        array = plan._partial
    _compare(plan, onnx_values[plan.tensor], array, layer_rtol)


def _compare(plan: LayerComparison, actual: np.ndarray, expected: np.ndarray, layer_rtol: float) -> None:
    """Errors of one activation, in float32 with float64 sums (activations are large)."""
    actual = actual.astype(np.float32, copy=False)
    plan.shape = list(actual.shape)
    if actual.shape != expected.shape:
        if tuple(d for d in actual.shape if d != 1) != tuple(d for d in expected.shape if d != 1):
            plan.reason = f"shapes differ: ONNX {list(actual.shape)}, PyTorch {list(expected.shape)}"
            return
        expected = expected.reshape(actual.shape)
    if actual.size == 0:
        plan.max_abs_err = plan.max_rel_err = plan.mean_abs_err = 0.0
        plan.cosine = 1.0
        plan.status = SAME
        return
    err = np.subtract(actual, expected)
    np.abs(err, out=err)
    plan.max_abs_err = float(err.max())
    plan.mean_abs_err = float(err.mean(dtype=np.float64))
    scale = float(max(expected.max(), -expected.min()))
    plan.max_rel_err = relative(plan.max_abs_err, scale)
    a, e = actual.ravel(), expected.ravel()
    norm_a, norm_e = float(np.dot(a, a)), float(np.dot(e, e))
    if norm_a == 0 or norm_e == 0:
        plan.cosine = 1.0 if norm_a == norm_e else 0.0
    else:
        plan.cosine = float(np.dot(a, e)) / float(np.sqrt(norm_a) * np.sqrt(norm_e))
    ok = np.isfinite(plan.max_rel_err) and plan.max_rel_err <= layer_rtol
    plan.status = SAME if ok else DIFFER
