"""torch tensors as lazy :class:`~inspector.ir.Param` objects.

The read callable returns a numpy array that shares memory with the tensor (which, for
``torch.load(mmap=True)``, shares memory with the file), so a parameter is never copied
unless numpy cannot hold its dtype (complex32, quantized tensors: converted once).
torch is imported by the caller; this module only touches tensors it is given.

A tensor from a file is a view (sizes, strides, offset) of a storage, all of it declared
by the file. Before a Param is made, :func:`view_problem` checks the whole view against
its storage (every element, not only the last, lies inside; nothing negative; no axis
with a non-zero stride re-reads elements), so that reading it is bounded by the bytes
the file really holds. An axis of stride 0 (``expand``) is allowed: its values are read
once (:func:`inspector.ir.distinct_values`).
"""

from __future__ import annotations

import functools
import math
import mmap
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from inspector.ir import Param, stored_shape_of

MAX_ELEMENTS = 2**48
"""No tensor is larger; a shape past this (empty axes aside) is a crafted one."""


class TensorProblem(ValueError):
    """A tensor whose declared view cannot be right; ``str()`` reads after the file name:
    "tensor 'w' points past the end of its storage"."""


def view_problem(
    shape: tuple[int, ...], strides: tuple[int, ...], offset: int, storage_numel: int | None
) -> str | None:
    """What is wrong with a strided view of ``storage_numel`` elements, or None.

    With no negative size, stride or offset, the elements of the view lie between
    ``offset`` and ``offset + sum((size - 1) * stride)``; both ends are checked. Axes of
    non-zero stride must not address more elements than the storage holds (a view that
    re-reads its storage, ``as_strided`` windows, would cost more than the file).
    ``storage_numel`` None skips the storage checks.
    """
    # The usual view, decided at once: C-contiguous (each stride the product of the sizes
    # after it), all sizes and strides non-negative integers, so its elements are
    # offset .. offset + extent - 1.
    extent = 1
    axis = len(shape)
    if axis == len(strides) and type(offset) is int and offset >= 0 and storage_numel is not None:
        while axis and extent:
            axis -= 1
            size, stride = shape[axis], strides[axis]
            if type(size) is not int or type(stride) is not int or size < 0 or stride != extent:
                extent = 0  # not contiguous (or empty): the general checks below
            else:
                extent *= size
        if extent:
            if offset + extent <= storage_numel:
                return None
            return f"points past the end of its storage (element {offset + extent - 1:,} of {storage_numel:,})"
    values = (*shape, *strides, offset)
    if any(isinstance(value, bool) or not isinstance(value, int) for value in values):
        return "has a size, stride or offset that is not an integer"
    if len(strides) != len(shape):
        return f"has {len(shape)} sizes but {len(strides)} strides"
    if any(size < 0 for size in shape):
        return f"has a negative size {list(shape)}"
    if any(stride < 0 for stride in strides):
        return f"has a negative stride {list(strides)}"
    if offset < 0:
        return f"has a negative storage offset {offset}"
    if math.prod(size for size in shape if size) > MAX_ELEMENTS:
        return f"has an impossible shape {list(shape)}"
    if 0 in shape or storage_numel is None:
        return None
    last = offset + sum((size - 1) * stride for size, stride in zip(shape, strides))
    if last >= storage_numel:
        return f"points past the end of its storage (element {last:,} of {storage_numel:,})"
    distinct = math.prod(stored_shape_of(shape, strides) or shape)
    if distinct > storage_numel:
        return (
            f"reads its storage more than once (sizes {list(shape)}, strides {list(strides)}: "
            f"{distinct:,} elements from {storage_numel:,} stored)"
        )
    return None


# torch dtype name -> (numpy dtype name, same-size torch dtype to view through or None).
# bf16 and fp8 have no numpy dtype: view the bytes as an integer tensor, then as the
# ml_dtypes type, which keeps it a view.
_VIEWS = {
    "bfloat16": ("bfloat16", "int16"),
    "float8_e4m3fn": ("float8_e4m3fn", "uint8"),
    "float8_e5m2": ("float8_e5m2", "uint8"),
    "float8_e4m3fnuz": ("float8_e4m3fnuz", "uint8"),
    "float8_e5m2fnuz": ("float8_e5m2fnuz", "uint8"),
    "float8_e8m0fnu": ("float8_e8m0fnu", "uint8"),
}


def torch_dtype_name(dtype: Any) -> str:
    """ "torch.float16" -> "float16"."""
    return str(dtype).rpartition(".")[2]


def numpy_dtype_name(tensor: Any) -> str:
    """The dtype name the Param reports for ``tensor`` (numpy's, or ml_dtypes')."""
    name = torch_dtype_name(tensor.dtype)
    if name in _VIEWS:
        return _VIEWS[name][0]
    if name == "complex32":
        return "complex64"
    if tensor.is_quantized:
        return "float32"
    return name


def tensor_to_numpy(tensor: Any) -> np.ndarray:
    """The values of ``tensor`` as numpy, sharing memory where numpy has the dtype."""
    import torch

    values = tensor.detach()
    if values.device.type != "cpu":
        values = values.cpu()
    if values.is_quantized:
        return values.dequantize().numpy()
    name = torch_dtype_name(values.dtype)
    if name in _VIEWS:
        import ml_dtypes

        target, through = _VIEWS[name]
        return values.view(getattr(torch, through)).numpy().view(getattr(ml_dtypes, target))
    if name == "complex32":
        return values.to(torch.complex64).numpy()
    return values.numpy()


ValuesReader = Callable[[], np.ndarray]
TensorReader = Callable[[Any], ValuesReader]
"""How a Param will read a tensor: given the tensor, the callable that returns its values.
:func:`through_torch`, or a :class:`MappedFile`'s :meth:`~MappedFile.reader`, which also
counts the read towards giving the map's pages back. (A :class:`MappedTensor` record
brings its own reader.)"""


def through_torch(tensor: Any) -> ValuesReader:
    """Read ``tensor`` with :func:`tensor_to_numpy` (the tensor is kept until then)."""
    return functools.partial(tensor_to_numpy, tensor)


class MappedFile:
    """The map of a file whose tensors are views of it: reads their values straight from
    the map, and gives its pages back as reads pile up.

    - A Param keeps where its values lie (dtype, shape, byte strides and offset), not a
      torch tensor: 60,000 tensors cost 40 MiB of torch objects for as long as a command
      runs. The restricted unpickler makes :class:`MappedTensor` records for the loader
      (:meth:`record`) of every tensor whose dtype numpy has; the others are read
      through torch (:meth:`reader`).
    - A page of a mapped file counts in the process's resident memory from the first read
      of it until the map is gone. A diff reads each parameter once or a few times and
      keeps only numbers about it, so a large checkpoint would otherwise end up resident
      in full (300 MiB at 30,000 Conv+BN blocks) for nothing. After every
      :attr:`TRIM_BYTES` of values read, the map's resident pages are dropped
      (``madvise(MADV_DONTNEED)``): the map stays valid, and a value read again faults
      back in from the page cache. The map is copy-on-write and never written (arrays
      read through it are read-only), so what comes back is the file's bytes, as before.
    """

    __slots__ = ("mapped", "_bytes", "_pending")

    TRIM_BYTES = 16 * 2**20

    def __init__(self, mapped: mmap.mmap) -> None:
        self.mapped = mapped
        self._bytes = np.frombuffer(mapped, dtype=np.uint8)
        self._pending = 0

    def record(
        self, dtype: np.dtype, shape: tuple, strides: tuple, offset: int, storage: tuple[int, int]
    ) -> "MappedTensor":
        """A :class:`MappedTensor` of ``shape`` and element ``strides`` from element
        ``offset`` of the storage of ``storage = (element count, byte offset in the
        file)``, checked by the caller (:func:`view_problem`)."""
        return MappedTensor(self, dtype, shape, strides, offset, storage)

    def reader(self, tensor: Any) -> ValuesReader:
        """The reader of a torch tensor over the map: one of a dtype numpy has not (every
        other tensor is a :meth:`record`), read through torch and counted like the rest."""
        return functools.partial(self._read_tensor, tensor)

    def read_view(self, dtype: np.dtype, shape: tuple, strides: tuple, offset: int) -> np.ndarray:
        """The values of ``shape`` and byte ``strides`` from byte ``offset`` of the file
        (numpy refuses a view past the map's end)."""
        array = np.ndarray(shape, dtype, buffer=self._bytes, offset=offset, strides=strides)
        return self._count(array)

    def _read_tensor(self, tensor: Any) -> np.ndarray:
        return self._count(tensor_to_numpy(tensor))

    def _count(self, array: np.ndarray) -> np.ndarray:
        if self._pending >= self.TRIM_BYTES:
            self.trim()
        array.flags.writeable = False
        # The pages a read may touch: a small tensor shares its page with its neighbours,
        # so 30,000 BatchNorm vectors of 256 bytes make 120 MiB resident, not 7.
        self._pending += array.nbytes + mmap.PAGESIZE
        return array

    def trim(self) -> None:
        """Give back the resident pages of the map (where the platform can)."""
        self._pending = 0
        if hasattr(mmap, "MADV_DONTNEED"):
            self.mapped.madvise(mmap.MADV_DONTNEED)


class MappedTensor:
    """A tensor of a mapped checkpoint as the layer representation needs it: where its
    values lie in the map, and no torch object. The restricted unpickler makes these
    instead of torch tensors for the loader (a torch tensor over the map costs 6 us to
    make and half a kilobyte to keep, 60,000 times on a large state_dict).

    It answers what the loader asks of a tensor (``shape``, ``dtype`` as numpy's,
    :meth:`numel`, :meth:`values`); a pickle cannot set its state.
    """

    __slots__ = ("file", "dtype", "shape", "strides", "offset", "storage")

    def __init__(
        self, file: MappedFile, dtype: np.dtype, shape: tuple, strides: tuple, offset: int, storage: tuple[int, int]
    ) -> None:
        self.file = file
        self.dtype = dtype
        self.shape = shape
        self.strides = strides  # in elements, as torch gives them
        self.offset = offset  # in elements, into the storage
        self.storage = storage  # (element count, byte offset in the file)

    def __setstate__(self, state: Any) -> None:
        raise TypeError("a mapped tensor takes no state")  # the careful path reads such a pickle

    def numel(self) -> int:
        return math.prod(self.shape)

    def reader(self) -> ValuesReader:
        itemsize = self.dtype.itemsize
        strides = tuple([stride * itemsize for stride in self.strides])
        offset = self.storage[1] + self.offset * itemsize if self.numel() else 0
        return functools.partial(self.file.read_view, self.dtype, self.shape, strides, offset)

    def values(self) -> np.ndarray:
        """The values, read-only (a view of the map)."""
        return self.reader()()

    def __repr__(self) -> str:
        return f"MappedTensor({self.dtype.name}{list(self.shape)})"


@functools.lru_cache(maxsize=64)
def numpy_dtype_of(torch_dtype: Any) -> np.dtype | None:
    """The numpy dtype of a torch dtype's bytes (ml_dtypes' for bfloat16 and float8), or
    None when numpy has none (complex32, quantized types)."""
    name = torch_dtype_name(torch_dtype)
    if name in _VIEWS:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, _VIEWS[name][0]))
    return _NUMPY_DTYPES.get(name)


@functools.lru_cache(maxsize=64)
def _dtype_name(dtype: np.dtype) -> str:
    return dtype.name  # numpy makes the string anew each time it is asked


_NUMPY_DTYPES = {
    name: np.dtype(name)
    for name in (
        "float16", "float32", "float64", "complex64", "complex128", "bool",
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    )
}  # fmt: skip


def tensor_param(role: str, tensor: Any, tensor_name: str, reader: TensorReader = through_torch) -> Param:
    """A :class:`Param` over ``tensor``: shape and dtype now, values by ``reader(tensor)``
    on first use.

    Raises :class:`TensorProblem` when the tensor's view is not one a file can hold
    (:func:`view_problem`).
    """
    if type(tensor) is MappedTensor:  # checked when made, and no pickle can change it
        stored = stored_shape_of(tensor.shape, tensor.strides)
        return Param(role, tensor.shape, _dtype_name(tensor.dtype), tensor.reader(), tensor_name, stored_shape=stored)
    # Checked here whichever reader made the tensor: a pickle may BUILD a tensor after
    # the restricted unpickler checked it (torch's Tensor.__setstate__ set_s any view).
    problem = _tensor_view_problem(tensor)
    if problem:
        raise TensorProblem(f"tensor {tensor_name!r} {problem}")
    stored = stored_shape_of(tensor.shape, tensor.stride()) if _is_strided(tensor) else None
    return Param(role, tensor.shape, numpy_dtype_name(tensor), reader(tensor), tensor_name, stored_shape=stored)


def _is_strided(tensor: Any) -> bool:
    import torch

    return tensor.layout == torch.strided and not tensor.is_quantized


def _tensor_view_problem(tensor: Any) -> str | None:
    if not _is_strided(tensor):
        return view_problem(tuple(tensor.shape), (0,) * tensor.dim(), 0, None)  # no strides to check
    storage_numel = tensor.untyped_storage().nbytes() // tensor.element_size()
    return view_problem(tensor.shape, tensor.stride(), tensor.storage_offset(), storage_numel)  # Size is a tuple


def is_tensor(value: Any) -> bool:
    """True for torch tensors (and Parameters) and :class:`MappedTensor` records, without
    importing torch for other values: there is no tensor before torch is imported."""
    if type(value) is MappedTensor:
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)
