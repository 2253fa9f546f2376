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

Per layer, *per output channel* ``c`` (axis 1 of a conv or norm activation, the last
axis of a Linear's): ``rel_c = max|t - e|_c / max(max|e|_c, 1e-3 max|e|)`` (relative to
the channel's own scale, so one changed channel among 256 is not diluted; the floor keeps
a near-silent channel from inflating noise), ``max_rel_err = max_c rel_c`` and
``worst_channel`` its channel; ``max_abs_err``, ``mean_abs_err`` and ``cosine`` over the
whole tensor. A layer "differs" when ``max_rel_err > layer_rtol`` (or an error is not
finite).

After a data-dependent reordering (TopK, NonZero, NMS: :mod:`.layer_graph`), a layer's
rows (vectors along its channel axis) may come in another order on the two sides; they
are compared as a set, each ONNX row with an equal PyTorch row
(:func:`plugins.commands.verify.rows.match_rows`, per-channel tolerance
``layer_rtol x scale_c``). When some row has no partner right after the reordering, the
selection itself may differ: the layer is not comparable, with that reason, and never
blamed.

Where they part: ``input_error`` is the largest ``max_rel_err`` of the nearest compared
layers the node reads from in the ONNX graph (0 when it reads the model's inputs), and
``growth = max_rel_err / input_error``. The *first divergent* layer is the first, in
execution order, that differs while none of its inputs does and whose error exceeds
what its inputs' explains (``growth > GROWTH_LIMIT``). When the outputs differ and no
layer is named, :func:`why_none_diverges` says why (nothing comparable, every compared
layer within tolerance, an error that grows gradually, a reordering).

Not comparable (with the reason): layers the diff could not match, attention internals
(q/k/v slices of an in_proj), ONNX nodes that only hold a constant of a module (not its
output), modules that are never called (a parent uses their weights directly), outputs
that are not one tensor, shapes that differ (beyond size-1 axes). A TorchScript model
is not compared per layer at all (its submodules run inside TorchScript, where hooks
cannot reach): the caller says so once.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector import ir, progress
from inspector.errors import UsageError
from inspector.results import UNMATCHED, LayerDiff
from plugins.commands.verify.layer_graph import reorderings, upstream
from plugins.commands.verify.metrics import DIFFER, SAME
from plugins.commands.verify.rows import match_rows, row_errors
from plugins.commands.verify.runners import onnx_session, run_session

if TYPE_CHECKING:
    from inspector.ir import Model
    from inspector.results import DiffResult
    from plugins.commands.verify.runners import TorchRunner

NOT_COMPARABLE = "not_comparable"
UNPAIRED = "unpaired"
"""Internal: rows without a partner after a reordering; settled once the inputs are known."""

GROWTH_LIMIT = 10.0
"""A divergent layer is where the models part when its error is more than this many
times its inputs' (a changed weight: x1e4 and more; float noise: x1 to x3 a layer)."""

CHANNEL_FLOOR = 1e-3
"""A channel's scale is at least this fraction of the tensor's (near-silent channels)."""

CHANNEL_FIRST = frozenset({ir.CONV, ir.CONV_TRANSPOSE, ir.BATCHNORM, ir.GROUPNORM, ir.INSTANCENORM, "prelu"})
"""Kinds whose activation has its channels on axis 1 (NC...); the others on the last axis."""

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
    kind: str = ""
    modules: list[str] = field(default_factory=list)
    status: str = NOT_COMPARABLE
    reason: str | None = None
    shape: list[int] | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    mean_abs_err: float | None = None
    cosine: float | None = None
    growth: float | None = None
    worst_channel: int | None = None
    reordered_by: list[str] = field(default_factory=list)
    rows_reordered: bool = False
    unpaired_rows: int | None = None
    input_error: float | None = None
    inputs: list[str] = field(default_factory=list)
    suspects: list[str] = field(default_factory=list)
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
            "worst_channel": self.worst_channel,
            "input_error": self.input_error,
            "inputs": list(self.inputs),
            "suspects": list(self.suspects),
            "reordered_by": list(self.reordered_by),
            "rows_reordered": self.rows_reordered,
            "unpaired_rows": self.unpaired_rows,
        }


# ----------------------------------------------------------------------------- planning


def plan_layers(diff: "DiffResult", runner: "TorchRunner", globs: list[str] | None) -> list[LayerComparison]:
    """One :class:`LayerComparison` per diffed layer (narrowed by ``globs``), with the
    ONNX tensor and PyTorch modules to compare, or the reason it cannot be compared."""
    if not runner.hookable:
        return []  # said once by the caller, not once per layer
    target = diff.target
    output_of = {layer.name: layer.outputs[0] for layer in target.layers if layer.outputs}
    kinds = {layer.name: layer.kind for layer in diff.source.layers}
    modules = runner.named_modules()
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
            kind=layer.kind,
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
    reordered = reorderings(target.layers)
    for plan in comparable:
        plan.reordered_by = sorted(reordered.get(plan.tensor or "", ()))
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
    run.first_divergent = settle(plans, target.layers)
    return run


def settle(plans: list[LayerComparison], layers: list) -> str | None:
    """Each plan's inputs, input error and growth from the graph; rows without a partner
    after a reordering settled; returns the first divergent layer (module docstring)."""
    by_target = {plan.target: plan for plan in plans}
    graph = upstream(layers, plans)
    first = None
    for plan in plans:
        found = graph.get(plan.target)
        if found is None:
            if plan.status == UNPAIRED:
                plan.status, plan.reason = NOT_COMPARABLE, "its rows have no equal partner after a reordering"
            continue
        inputs = [by_target[name] for name in found.compared if name in by_target]
        plan.inputs, plan.suspects = [p.target for p in inputs], list(found.suspects)
        errors = [p.max_rel_err for p in inputs if p.max_rel_err is not None]
        plan.input_error = max(errors) if errors else 0.0
        if plan.status == UNPAIRED:
            # Blame it only when an input after the same reorderings matched as a set: then
            # the selection is the same and the difference is this layer's.
            matched = [p for p in inputs if p.status == SAME and set(p.reordered_by) >= set(plan.reordered_by)]
            if matched:
                plan.status = DIFFER
            else:
                plan.status = NOT_COMPARABLE
                plan.reason = (
                    f"after the data-dependent {', '.join(plan.reordered_by)}: {plan.unpaired_rows} rows have no "
                    "equal partner and its inputs' rows were not matched, so the selection itself may differ"
                )
        if plan.max_rel_err is not None and plan.input_error and np.isfinite(plan.max_rel_err):
            plan.growth = plan.max_rel_err / plan.input_error
        if first is None and plan.status == DIFFER and is_origin(plan, inputs):
            first = plan.target
    return first


def is_origin(plan: LayerComparison, inputs: list[LayerComparison]) -> bool:
    """Whether a differing layer is where the difference starts: no input differs, and its
    error is more than :data:`GROWTH_LIMIT` times its inputs'."""
    if any(p.status == DIFFER for p in inputs):
        return False
    if plan.max_rel_err is None or not plan.input_error or not np.isfinite(plan.max_rel_err):
        return True
    return plan.max_rel_err > GROWTH_LIMIT * plan.input_error


def why_none_diverges(plans: list[LayerComparison]) -> str:
    """Why no first divergent layer can be named although the outputs differ."""
    compared = [plan for plan in plans if plan.max_rel_err is not None or plan.status == DIFFER]
    if not plans:
        return "no layer was matched for a per-layer comparison"
    if not compared:
        reasons = sorted({plan.reason for plan in plans if plan.reason})
        return f"no layer could be compared ({'; '.join(reasons[:3])})"
    differing = [plan for plan in compared if plan.status == DIFFER]
    if differing:
        plan = differing[0]
        growth = f"x{plan.growth:.3g} its inputs' error" if plan.growth is not None else "with its inputs unknown"
        return (
            f"the error grows gradually: the first layer beyond tolerance, {plan.target}, is at {plan.max_rel_err:.3g} "
            f"({growth}), and no single layer explains it"
        )
    reordered = [plan for plan in plans if plan.status == NOT_COMPARABLE and plan.reordered_by and plan.reason]
    if reordered:
        return f"every compared layer is within tolerance; {reordered[0].target} is {reordered[0].reason}"
    uncompared = [plan for plan in plans if plan.status == NOT_COMPARABLE]
    where = f" or in the {len(uncompared)} layers that could not be compared" if uncompared else ""
    return (
        f"every compared layer is within tolerance: the outputs part after the last compared layer (post-processing"
        f"{where})"
    )


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
    with progress.step(f"ONNX Runtime: {len(chunk)} intermediate tensors"):
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
            if same_module[0].status != NOT_COMPARABLE or same_module[0].reason is not None:
                step.advance()

        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in by_module]
    try:
        with progress.step(f"PyTorch: comparing {len(plans)} layers", total=len(plans)) as step:
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
    """Errors of one activation, per output channel (module docstring); float32 arithmetic
    with float64 sums (activations are large)."""
    actual = actual.astype(np.float32, copy=False)
    expected = np.asarray(expected).astype(np.float32, copy=False)
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
    axis = channel_axis(plan.kind, actual.ndim)
    # Rows: one per position, its channels along the last axis.
    rows_a = np.moveaxis(actual, axis, -1).reshape(-1, actual.shape[axis])
    rows_e = np.moveaxis(expected, axis, -1).reshape(-1, actual.shape[axis])
    scale = _channel_scale(rows_e)
    if plan.reordered_by:
        match = match_rows(rows_a, rows_e, layer_rtol * scale, 0.0)
        if match.permutation is None:
            plan.unpaired_rows = match.unpaired
            plan.status = UNPAIRED
            return
        plan.rows_reordered = bool((match.permutation != np.arange(len(match.permutation))).any())
        rows_e = rows_e[match.permutation]
    err = row_errors(rows_a, rows_e) if not (np.isfinite(rows_a).all() and np.isfinite(rows_e).all()) else None
    if err is None:
        err = np.subtract(rows_a, rows_e)
        np.abs(err, out=err)
    per_channel = err.max(axis=0) / scale
    plan.worst_channel = int(np.argmax(per_channel))
    plan.max_rel_err = float(per_channel[plan.worst_channel])
    plan.max_abs_err = float(err.max())
    plan.mean_abs_err = float(err.mean(dtype=np.float64))
    plan.cosine = _cosine(rows_a, rows_e)
    ok = np.isfinite(plan.max_rel_err) and plan.max_rel_err <= layer_rtol
    plan.status = SAME if ok else DIFFER


def channel_axis(kind: str, ndim: int) -> int:
    """The output-channel axis of an activation of a layer of ``kind``."""
    return 1 if kind in CHANNEL_FIRST and ndim >= 2 else ndim - 1


def _channel_scale(rows: np.ndarray) -> np.ndarray:
    """max|e| per channel (column), at least :data:`CHANNEL_FLOOR` of the largest; 1 when
    the whole tensor is zero (then any error counts in full)."""
    magnitude = np.abs(rows)
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0)
    scale = magnitude.max(axis=0).astype(np.float64)
    top = float(scale.max()) if scale.size else 0.0
    if top == 0:
        return np.ones_like(scale)
    return np.maximum(scale, CHANNEL_FLOOR * top)


def _cosine(a: np.ndarray, e: np.ndarray) -> float:
    a, e = a.ravel(), e.ravel()
    with np.errstate(invalid="ignore", over="ignore"):
        norm_a, norm_e = float(np.dot(a, a)), float(np.dot(e, e))
        if norm_a == 0 or norm_e == 0:
            return 1.0 if norm_a == norm_e else 0.0
        return float(np.dot(a, e)) / float(np.sqrt(norm_a) * np.sqrt(norm_e))
