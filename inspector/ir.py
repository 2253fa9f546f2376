"""The common layer representation: :class:`Model`, :class:`Layer`, :class:`Param`.

Every loader turns its file into these three classes, and everything after loading
(matching, transforms, reports) sees nothing else. They are small, slotted and
format-agnostic; they hold numpy arrays, never torch tensors or onnx protos.

Ownership:

- A :class:`Model` owns its layers, in execution order where the format tells it (ONNX
  node order is a topological order) and in definition order otherwise (PyTorch
  ``named_modules()`` order).
- A :class:`Layer` owns its params. Two ONNX layers that read the same initializer (a
  shared, deduplicated tensor) hold the same :class:`Param` object.
- A :class:`Param` owns nothing until read: shape and dtype are known from the file's
  header, the values are read by the loader's ``read`` callable on the first call of
  :meth:`Param.array` and kept; :meth:`Param.stats` is computed once and kept even when
  the values are released with :meth:`Param.release`. A loader's ``read`` must not copy
  more than once (memory-map or view the file's bytes where it can).

numpy is the only dependency; dtypes are numpy dtype names ("float32", "float16",
"bfloat16" through ml_dtypes, "int64", ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The normalised layer kinds. A loader maps its raw types onto these (Conv2d and Conv
# both become CONV); anything else keeps its raw type, lower-cased, as its kind.
CONV = "conv"
CONV_TRANSPOSE = "conv_transpose"
LINEAR = "linear"
BATCHNORM = "batchnorm"
LAYERNORM = "layernorm"
GROUPNORM = "groupnorm"
INSTANCENORM = "instancenorm"
EMBEDDING = "embedding"
ATTENTION = "attention"
RECURRENT = "recurrent"
UNSUPPORTED = "unsupported"
"""A layer holding weights in a layout graphinspect cannot read back (ONNX Runtime's
CPU-specific NCHWc blocks): its numbers must be explained and cannot be, so a diff is
incomplete there, never faithful and never a false difference."""
ACTIVATION = "activation"
ELEMENTWISE = "elementwise"
CONSTANT = "constant"
OTHER = "other"

NORM = "norm"
"""A normalisation layer of unknown type: what a loader can tell of a 1-D weight and bias
whose names say nothing (``features.0.2.weight`` of a bare state_dict)."""

GUESSED_KIND = "guessed_kind"
"""``Layer.attrs`` key a loader sets (True) when it guessed the layer's kind from names
and shapes (a bare state_dict, safetensors): the matcher may then settle the kind by the
target layer the names point to, within its family (:data:`KIND_FAMILIES`)."""

KIND_FAMILIES: tuple[frozenset[str], ...] = (
    frozenset({CONV, CONV_TRANSPOSE}),
    frozenset({NORM, LAYERNORM, GROUPNORM, INSTANCENORM, "rmsnorm"}),
)
"""Kinds one set of weights may be, shapes alone cannot tell which: a 4-D weight is a
Conv's or a ConvTranspose's; a 1-D weight and bias belong to any norm."""


def kind_family(kind: str) -> frozenset[str] | None:
    """The family of ``kind``: also any kind whose name says it is a norm ("layernorm2d",
    a class TorchScript names differently)."""
    for family in KIND_FAMILIES:
        if kind in family:
            return family
    return KIND_FAMILIES[1] if "norm" in kind and kind != BATCHNORM else None


WEIGHT_LAYOUT = "weight_layout"
"""``Layer.attrs`` key of a LINEAR layer: how its 2-D "weight" is stored. :data:`OUT_IN`
(the default) is PyTorch's ``nn.Linear`` layout, (out_features, in_features);
:data:`IN_OUT` is its transpose, as ``x @ W`` needs it (an ONNX MatMul, a Gemm without
transB). Loaders set it; the matcher and the transforms read it and nothing else."""
OUT_IN = "out_in"
IN_OUT = "in_out"


def distinct_values(array: np.ndarray) -> tuple[np.ndarray, int]:
    """A broadcast array as the values it holds once, and how often each one repeats.

    Along an axis of stride 0 every value is the same, so keeping index 0 of each such
    axis leaves min, max, mean and std unchanged, and NaN/Inf counts are multiplied by
    the repeats: a 4-byte tensor saved as ``zeros(1).expand(2**30)`` costs 4 bytes, not
    4 GiB. Any other array comes back as it is, with 1.
    """
    if array.size == 0 or 0 not in array.strides:
        return array, 1
    kept = array[tuple(slice(0, 1) if stride == 0 else slice(None) for stride in array.strides)]
    return kept, array.size // kept.size


def stored_shape_of(shape: Sequence[int], strides: Sequence[int]) -> tuple[int, ...] | None:
    """The shape of the values a strided view really stores, or None when it stores
    every element: each axis of stride 0 (torch's ``expand``) repeats one value, so it
    counts once. ``zeros(1).expand(2**30)`` (shape (2**30,), stride (0,)) stores (1,)."""
    if 0 not in strides or not any(size > 1 and stride == 0 for size, stride in zip(shape, strides)):
        return None  # (nearly every tensor: the first test, in C)
    return tuple(1 if stride == 0 else int(size) for size, stride in zip(shape, strides))


@dataclass(frozen=True, slots=True)
class ParamStats:
    """Summary statistics of one tensor, over its finite values.

    ``min``/``max``/``mean``/``std``/``abs_max`` ignore NaN and ±Inf (they are NaN when
    no value is finite); ``nan`` and ``inf`` count them. Accumulation is in float64.
    A broadcast array (stride 0 along an axis, as torch's ``expand`` saves it) is read
    as the values it stores (:func:`distinct_values`).
    """

    numel: int
    min: float
    max: float
    mean: float
    std: float
    abs_max: float
    nan: int
    inf: int

    @classmethod
    def of(cls, array: np.ndarray) -> "ParamStats":
        """Compute the statistics of ``array`` (any numeric dtype, any shape)."""
        numel = int(array.size)
        if numel == 0:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan, 0, 0)
        values, repeats = distinct_values(np.asarray(array))
        if values.dtype.kind == "c":
            values = np.abs(values)
        elif values.dtype.kind not in "fiu" or values.dtype.itemsize < 4:
            # bool, float16, bfloat16/float8 (ml_dtypes, kind "V") and small ints reduce
            # slowly or overflow: widen once, one parameter at a time.
            values = values.astype(np.float32)
        nan_count = inf_count = 0
        if values.dtype.kind == "f":
            finite = np.isfinite(values)
            if not finite.all():
                nan_count = int(np.isnan(values).sum()) * repeats
                inf_count = int(np.isinf(values).sum()) * repeats
                values = values[finite]
        if values.size == 0:
            nan = float("nan")
            return cls(numel, nan, nan, nan, nan, nan, nan_count, inf_count)
        lo = float(values.min())
        hi = float(values.max())
        mean = float(values.mean(dtype=np.float64))
        std = float(values.std(dtype=np.float64))
        return cls(numel, lo, hi, mean, std, max(abs(lo), abs(hi)), nan_count, inf_count)

    @property
    def range(self) -> tuple[float, float]:
        return (self.min, self.max)


@dataclass(frozen=True, slots=True)
class ValueRange:
    """(min, max) over finite values plus the NaN/Inf counts: what a diff shows, in two
    passes over the values instead of the six :class:`ParamStats` takes."""

    min: float
    max: float
    nan: int
    inf: int

    @classmethod
    def of(cls, array: np.ndarray) -> "ValueRange":
        values = distinct_values(np.asarray(array))[0]
        if values.size == 0:
            return cls(float("nan"), float("nan"), 0, 0)
        if values.dtype.kind not in "fiu" or values.dtype.itemsize < 4:
            # numpy reduces float16 in software, many times slower than widening first.
            values = values.astype(np.float32)
        lo, hi = values.min(), values.max()
        if np.isfinite(lo) and np.isfinite(hi):
            return cls(float(lo), float(hi), 0, 0)
        stats = ParamStats.of(array)
        return cls(stats.min, stats.max, stats.nan, stats.inf)

    @property
    def range(self) -> tuple[float, float]:
        return (self.min, self.max)


class Param:
    """One named tensor of a layer: shape and dtype at once, values on demand.

    ``name`` is the role in the layer that first uses it ("weight", "bias",
    "running_mean", ...); a tensor shared by several layers is one Param whose role in
    each layer is that layer's ``params`` key. ``tensor_name`` is the name the file gives
    the tensor (the PyTorch state_dict key, or the ONNX initializer name). ``read``
    returns the values as a numpy array of ``shape`` and ``dtype``; it is called once,
    and again only after :meth:`release`. The array may be read-only (memory-mapped, or a view of the file's buffer):
    never modify it in place. ``view_of`` is the stored tensor this one is a part of (a
    slice a loader cut, such as one third of an attention bias), or None.
    ``stored_shape`` is the shape of the values the file really stores when that is less
    than ``shape``: a broadcast tensor (torch's ``expand`` saves one value for every
    repeat along an axis of stride 0; see :func:`stored_shape_of`). It is None for a
    tensor that stores every element, which is nearly all of them.
    """

    __slots__ = (
        "name", "shape", "dtype", "tensor_name", "view_of", "stored_shape",
        "_read", "_array", "_stats", "_range", "_numel",
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        shape: Sequence[int],
        dtype: str,
        read: Callable[[], np.ndarray],
        tensor_name: str | None = None,
        view_of: "Param | None" = None,
        stored_shape: Sequence[int] | None = None,
    ) -> None:
        self.name = name
        self.shape = tuple(map(int, shape))
        self.dtype = str(dtype)
        self.tensor_name = tensor_name if tensor_name is not None else name
        self.view_of = view_of
        self.stored_shape = None if stored_shape is None else tuple(map(int, stored_shape))
        self._read = read
        self._array: np.ndarray | None = None
        self._stats: ParamStats | None = None
        self._range: ValueRange | None = None
        self._numel = math.prod(self.shape)  # matching asks for it dozens of times a layer

    @property
    def numel(self) -> int:
        return self._numel

    @property
    def nbytes(self) -> int:
        """The bytes of every element, as the tensor's shape counts them."""
        return self.numel * _itemsize(self.dtype)

    @property
    def stored_numel(self) -> int:
        """The elements the file stores: ``numel`` but for a broadcast tensor."""
        return self._numel if self.stored_shape is None else math.prod(self.stored_shape)

    @property
    def stored_nbytes(self) -> int:
        return self.stored_numel * _itemsize(self.dtype)

    def array(self) -> np.ndarray:
        """The values, read on the first call and kept until :meth:`release`."""
        if self._array is None:
            array = self._read()
            if tuple(array.shape) != self.shape:
                array = array.reshape(self.shape)
            self._array = array
        return self._array

    def stats(self) -> ParamStats:
        """Statistics of the values, computed once."""
        if self._stats is None:
            self._stats = ParamStats.of(self.array())
        return self._stats

    def value_range(self) -> ValueRange:
        """Finite min/max and NaN/Inf counts, computed once (from the stats if known)."""
        if self._range is None:
            if self._stats is not None:
                stats = self._stats
                self._range = ValueRange(stats.min, stats.max, stats.nan, stats.inf)
            else:
                self._range = ValueRange.of(self.array())
        return self._range

    def known_range(self) -> ValueRange | None:
        """The range if :meth:`value_range` or :meth:`stats` computed it already, else None
        (nothing is read or computed)."""
        if self._range is None and self._stats is not None:
            return self.value_range()
        return self._range

    def keep_range(self, value_range: ValueRange) -> None:
        """Keep a range computed elsewhere from these values (several tensors' ranges in
        one numpy pass), as :meth:`value_range` would have computed it."""
        self._range = value_range

    def release(self) -> None:
        """Drop the cached values (stats and range stay); they are read again if asked."""
        self._array = None

    def __repr__(self) -> str:
        return f"Param({self.tensor_name!r}, shape={list(self.shape)}, dtype={self.dtype})"


class Layer:
    """One operation of a graph, or one module of a PyTorch model, with its params.

    - ``name``: the PyTorch module path as ``named_modules()`` prints it, or the ONNX
      node name (made unique by the loader when the file leaves it empty).
    - ``kind``: a normalised kind (``CONV``, ``BATCHNORM``, ...), or the raw type in
      lower case.
    - ``op_type``: the raw type ("Conv2d", "BatchNorm2d", "Conv", "com.microsoft.FusedConv").
    - ``attrs``: plain Python values (stride, padding, dilation, groups, eps, transB...).
    - ``params``: role -> :class:`Param`, in the file's order.
    - ``inputs``/``outputs``: names of the tensors flowing in and out (ONNX), empty
      where the format has no edges (a PyTorch module tree).
    - ``hints``: every name the layer is known by, strongest first (module scope path,
      metadata name scopes, initializer names). Matching reads them; nobody relies on
      their order beyond "strongest first".
    - ``index``: position in ``Model.layers``.
    - ``metadata``: free-form strings from the file (ONNX metadata_props, ...).
    """

    __slots__ = ("name", "kind", "op_type", "attrs", "params", "inputs", "outputs", "hints", "index", "metadata")

    def __init__(
        self,
        name: str,
        kind: str,
        op_type: str,
        attrs: dict[str, Any] | None = None,
        params: dict[str, Param] | None = None,
        inputs: Sequence[str] = (),
        outputs: Sequence[str] = (),
        hints: Sequence[str] = (),
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.op_type = op_type
        self.attrs = dict(attrs or {})
        self.params = dict(params or {})
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        if type(hints) is not tuple or not all(hints) or len(set(hints)) != len(hints):
            hints = tuple(dict.fromkeys(filter(None, hints)))
        self.hints = hints  # a loader's tuple, kept when it is already clean (a graph may share one over many layers)
        self.index = -1
        self.metadata = dict(metadata or {})

    @property
    def num_parameters(self) -> int:
        return sum(p.numel for p in self.params.values())

    def __repr__(self) -> str:
        return f"Layer({self.name!r}, kind={self.kind!r}, op_type={self.op_type!r}, params={list(self.params)})"


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """A graph input or output: name, shape (ints, symbolic names or None) and dtype."""

    name: str
    shape: tuple[int | str | None, ...] | None
    dtype: str


@dataclass(frozen=True, slots=True)
class Use:
    """One place a stored tensor is read: input ``position`` of the layer ``layer``
    (an ``op_type``), as the param ``role`` there, or ``None`` when that input is not a
    param (a shape, axes or scale input, a scalar)."""

    layer: str
    op_type: str
    position: int
    role: str | None


@dataclass(slots=True)
class StoredTensor:
    """A tensor stored in the file itself (an ONNX initializer or Constant value), with
    every place that reads it. ``param`` holds its values (the same object a layer holds
    when the tensor is one of its params); ``origin`` says where it is stored
    ("initializer", "Constant", "subgraph": inside an If/Loop/Scan body, not read)."""

    param: Param
    uses: list[Use] = field(default_factory=list)
    origin: str = "initializer"


@dataclass(slots=True)
class Model:
    """A loaded model file.

    ``format`` names the loader's format ("onnx", "pytorch-module", "pytorch-state-dict",
    "torchscript", "torch-export", "safetensors", ...); ``producer`` says who wrote the
    file ("pytorch 2.13.0", "torch 2.13.0 (pickled module)"); ``metadata`` holds the
    file's key/value metadata (ONNX metadata_props, Ultralytics checkpoint fields),
    ``details`` further facts for the summary (opset, IR version, wrapper keys).

    ``modules`` is the module tree where the format has one (PyTorch): every module path
    as ``named_modules()`` prints it, in that order, mapped to its class's qualified name
    ("torch.nn.modules.conv.Conv2d", "ultralytics.nn.modules.conv.RepConv"); the root is
    "". It includes containers and modules without params, which ``layers`` does not.

    ``files`` lists every file the loader read besides ``path`` (an ONNX model's external
    data files), so that no command writes its output over one of them.

    ``stored`` lists every tensor stored in a graph file (ONNX initializers and Constant
    values, scalars and shape tensors included), so that a diff can account for every
    number the file holds; it is empty for formats whose tensors are all layer params.
    """

    format: str
    path: str
    layers: list[Layer] = field(default_factory=list)
    modules: dict[str, str] = field(default_factory=dict)
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    producer: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    stored: list[StoredTensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        """Number the layers by position; call after changing ``layers``."""
        for position, layer in enumerate(self.layers):
            layer.index = position

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def param_layers(self) -> list[Layer]:
        """The layers that carry at least one param, in order."""
        return [layer for layer in self.layers if layer.params]

    def params(self) -> Iterator[tuple[Layer, Param]]:
        """Every (layer, param), each distinct tensor once (shared tensors are not repeated)."""
        seen: set[int] = set()
        for layer in self.layers:
            for param in layer.params.values():
                if id(param) not in seen:
                    seen.add(id(param))
                    yield layer, param

    @property
    def num_parameters(self) -> int:
        return sum(p.numel for _, p in self.params())

    @property
    def nbytes(self) -> int:
        """The bytes of every parameter element (a broadcast tensor counts in full)."""
        return sum(p.nbytes for _, p in self.params())

    @property
    def stored_nbytes(self) -> int:
        """The bytes the file stores for the parameters (a broadcast tensor counts what it
        stores: :attr:`Param.stored_shape`)."""
        return sum(p.stored_nbytes for _, p in self.params())

    def dtypes(self) -> dict[str, int]:
        """dtype -> number of elements stored in that dtype."""
        counts: dict[str, int] = {}
        for _, param in self.params():
            counts[param.dtype] = counts.get(param.dtype, 0) + param.numel
        return counts


_ITEMSIZE = {
    "bool": 1,
    "int8": 1,
    "uint8": 1,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "int16": 2,
    "uint16": 2,
    "float16": 2,
    "bfloat16": 2,
    "int32": 4,
    "uint32": 4,
    "float32": 4,
    "int64": 8,
    "uint64": 8,
    "float64": 8,
    "complex64": 8,
    "complex128": 16,
}


def _itemsize(dtype: str) -> int:
    size = _ITEMSIZE.get(dtype)
    if size is None:
        try:
            size = np.dtype(dtype).itemsize
        except TypeError:
            size = 0
    return size
