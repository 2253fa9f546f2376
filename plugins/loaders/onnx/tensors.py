"""Tensors of an ONNX file: dtype and shape from the header, values read lazily.

A ``TensorProto`` holds its values inline (``raw_data`` or a typed field, already in
memory since ``onnx.load`` read the file) or in an external file (``data_location =
EXTERNAL``, with ``location``/``offset``/``length`` entries). External files are checked
when the model is loaded (every file exists, inside the model's directory, and long
enough) but never read then: :func:`tensor_reader` returns a callable that memory-maps
just the tensor's own slice when the values are asked for, so a 2 GB model costs no
memory until a parameter is used. Initializers whose bytes stayed in the model file
(:mod:`.in_file_data`) are read with ``os.pread`` from one descriptor of that file,
a :class:`DataFile` the model's readers share.

onnx is imported inside the functions; :mod:`inspector` never sees a proto.

Repeated protobuf fields are read as ``field[:]``, one call, not iterated (see :mod:`.layers`).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from inspector.errors import InputError

if TYPE_CHECKING:
    from onnx import TensorProto

SMALL_TENSOR_VALUES = 8
"""Tensor attributes with at most this many inline elements are summarised with values."""


class DataFile:
    """One open, read-only descriptor of a model file, from which the initializers whose
    raw_data stayed in the file (:mod:`.in_file_data`) are read with ``os.pread``: one
    descriptor for all of them instead of an open per read, and the bytes read come from
    the very file that was parsed, even if its path is replaced afterwards.

    Lifetime: the loader opens it (a duplicate of the descriptor it parsed the file
    with) and hands it to the readers of the model's tensors; the Model owns it through
    its Params, and it is closed when the last of them is freed (the readers hold no
    reference back, so CPython frees it the moment the Model and its Params go; at the
    latest, at exit), or at once by :meth:`close` when the load fails. A read after
    :meth:`close` raises instead of reading whatever file reuses the number.
    """

    __slots__ = ("path", "_descriptor", "_closer", "__weakref__")

    def __init__(self, path: Path, descriptor: int) -> None:
        """Take ownership of ``descriptor``, open for reading on ``path``."""
        self.path = path
        self._descriptor = descriptor
        self._closer = weakref.finalize(self, os.close, descriptor)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``; ValueError if the file ends before them."""
        if not self._closer.alive:
            raise ValueError(f"{self.path} was closed")
        return _pread_exactly(self._descriptor, offset, length)

    def close(self) -> None:
        self._closer()

    @property
    def closed(self) -> bool:
        return not self._closer.alive


class ExternalSlice(NamedTuple):
    """Where an external tensor's bytes are: ``length`` bytes of ``file`` from ``offset``.

    ``copied`` slices (an initializer's raw_data left in the model file itself) are read
    into memory when asked, from the model's :class:`DataFile` ``opened``, and freed
    with the array: mapping them would keep every page of the model resident once read.
    External data files are memory-mapped (they may be larger than memory). (A named
    tuple: a model may have one per initializer, and a tuple is the cheapest to make.)"""

    file: Path
    location: str
    offset: int
    length: int
    copied: bool = False
    opened: DataFile | None = None


@functools.lru_cache(maxsize=256)
def dtype_name(data_type: int) -> str:
    """The numpy dtype name of an ONNX element type ("float32", "bfloat16", "int64").

    Cached: onnx's lookup costs tens of microseconds and runs twice per tensor."""
    from onnx import TensorProto, helper

    if data_type == TensorProto.STRING:
        return "string"
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).name
    except (KeyError, TypeError, ValueError):
        return "undefined"


EXTERNAL = 1
"""``TensorProto.EXTERNAL``, the data_location of a tensor stored in another file."""


def uses_external_data(tensor: "TensorProto") -> bool:
    return tensor.HasField("data_location") and tensor.data_location == EXTERNAL


def expected_nbytes(tensor: "TensorProto") -> int | None:
    """The byte size of the tensor's raw data, or None when it is not fixed (strings)."""
    from onnx import TensorProto

    numel = math.prod(tensor.dims[:])
    bits = {
        TensorProto.INT4: 4, TensorProto.UINT4: 4, TensorProto.FLOAT4E2M1: 4,
        TensorProto.INT2: 2, TensorProto.UINT2: 2,
        TensorProto.FLOAT6E2M3: 6, TensorProto.FLOAT6E3M2: 6,
    }.get(tensor.data_type)  # fmt: skip
    if bits is not None:
        return (numel * bits + 7) // 8
    name = dtype_name(tensor.data_type)
    if name in ("string", "undefined"):
        return None
    return numel * np.dtype(_numpy_dtype(tensor.data_type)).itemsize


class ExternalFiles:
    """The external data files of one model, each located, checked and measured once."""

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path
        self._base = model_path.parent.resolve()
        self._sizes: dict[str, tuple[Path, int]] = {}

    def slice(self, tensor: "TensorProto", needed_by: str) -> ExternalSlice:
        """Find and check the external bytes of ``tensor``.

        Raises :class:`InputError` naming the file when it is missing, outside the model's
        directory, or too short; ``needed_by`` says who needs it ("initializer 'fc.weight'").
        """
        entries = {entry.key: entry.value for entry in tensor.external_data[:]}
        location = entries.get("location", "")
        if not location:
            raise InputError(self.model_path, f"{needed_by} is stored externally but names no file")
        try:
            offset = int(entries.get("offset") or 0)
            length = int(entries["length"]) if entries.get("length") else None
        except ValueError:
            raise InputError(self.model_path, f"{needed_by} has an invalid external data offset or length") from None
        if offset < 0 or (length is not None and length < 0):
            raise InputError(self.model_path, f"{needed_by} has a negative external data offset or length")
        file, size = self._file(location, needed_by)
        expected = expected_nbytes(tensor)
        if length is None:
            length = expected if expected is not None else size - offset
        elif expected is not None and length != expected:
            raise InputError(
                self.model_path,
                f"{needed_by} has {length} bytes of external data, but its shape and dtype need {expected}",
            )
        if offset + length > size:
            raise InputError(
                self.model_path,
                f"external data file {location!r} is too short for {needed_by} "
                f"(needs bytes {offset}..{offset + length}, the file has {size}): truncated?",
            )
        return ExternalSlice(file, location, offset, length)

    def _file(self, location: str, needed_by: str) -> tuple[Path, int]:
        known = self._sizes.get(location)
        if known is not None:
            return known
        file = (self._base / location).resolve()
        # A model file must not make us read arbitrary files (onnx refuses them too).
        if os.path.isabs(location) or not file.is_relative_to(self._base):
            raise InputError(
                self.model_path, f"external data file {location!r} ({needed_by}) is outside the model's directory"
            )
        if not file.is_file():
            raise InputError(
                self.model_path, f"external data file {location!r} (needed by {needed_by}) not found next to the model"
            )
        self._sizes[location] = (file, file.stat().st_size)
        return self._sizes[location]


def tensor_reader(
    tensor: "TensorProto",
    where: ExternalSlice | None,
    model_path: Path,
    needed_by: str,
    shape: tuple[int, ...] | None = None,
) -> Callable[[], np.ndarray]:
    """A callable returning the values of ``tensor`` (in its stored dtype) when called.

    Inline tensors are converted from the in-memory proto; external ones are
    memory-mapped from their slice (read-only), or read and unpacked for packed types.
    Any failure becomes an :class:`InputError` naming ``needed_by``. (A partial, not a
    closure: two objects per tensor for the garbage collector to walk, where a closure,
    its cell tuple and cells make six.)

    The reader keeps what it needs of ``tensor``, not the tensor: a part of a parsed
    protobuf message keeps the memory of the whole message alive, and the parsed graph of
    100k nodes is 100 MiB no one needs once the model is loaded. It keeps the shape and
    dtype of a tensor stored elsewhere, and the serialized bytes of a small inline one
    (at most :data:`OWN_COPY_BYTES`: a scalar, a shape); a larger inline tensor is kept
    as it is, its bytes being most of that memory anyway. ``shape`` saves reading the
    dims again when the caller has them.
    """
    kept: "_Header | bytes | TensorProto"
    if where is not None:
        kept = _Header(shape if shape is not None else tuple(tensor.dims), tensor.data_type)
    elif tensor.ByteSize() <= OWN_COPY_BYTES:
        kept = tensor.SerializeToString()
    else:
        kept = tensor
    return functools.partial(_read, kept, where, model_path, needed_by)


OWN_COPY_BYTES = 1 << 16
"""Inline tensors up to this size (serialized) are kept as bytes of their own."""


class _Header(NamedTuple):
    """The shape and element type of a tensor whose bytes are elsewhere."""

    dims: tuple[int, ...]
    data_type: int


def _read(
    kept: "_Header | bytes | TensorProto", where: ExternalSlice | None, model_path: Path, needed_by: str
) -> np.ndarray:
    try:
        if where is None:
            from onnx import TensorProto, numpy_helper

            return numpy_helper.to_array(TensorProto.FromString(kept) if isinstance(kept, bytes) else kept)
        return _read_external(kept, where)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt data fails in many ways; say which tensor
        problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise InputError(model_path, f"{needed_by} cannot be read ({problem})") from exc


def _read_external(tensor: "_Header | TensorProto", where: ExternalSlice) -> np.ndarray:
    shape = tuple(tensor.dims)
    numel = math.prod(shape)
    dtype = _numpy_dtype(tensor.data_type) if dtype_name(tensor.data_type) != "string" else None
    plain = dtype is not None and numel * dtype.itemsize == where.length and sys.byteorder == "little"
    if plain:
        if numel == 0:
            return np.empty(shape, dtype)
        if where.copied:
            return np.frombuffer(_slice_bytes(where), dtype=dtype).reshape(shape)
        # A map per tensor, unmapped with its array once matching releases it: one map of
        # the whole file would keep every page read resident (a 2 GiB model, 2 GiB more).
        mapped = np.memmap(where.file, dtype=dtype, mode="r", offset=where.offset, shape=(numel,))
        return np.asarray(mapped).reshape(shape)
    # Packed (4-, 2-, 6-bit) types, or a big-endian host: let onnx decode the bytes.
    from onnx import TensorProto, numpy_helper

    inline = TensorProto()
    inline.data_type = tensor.data_type
    inline.dims.extend(shape)
    inline.raw_data = _slice_bytes(where)
    return numpy_helper.to_array(inline)


def _slice_bytes(where: ExternalSlice) -> bytes:
    """The bytes of ``where``, read into memory."""
    if where.opened is not None:
        return where.opened.read(where.offset, where.length)
    with open(where.file, "rb") as stream:
        return _pread_exactly(stream.fileno(), where.offset, where.length)


def _pread_exactly(descriptor: int, offset: int, length: int) -> bytes:
    """``length`` bytes from ``offset``; ValueError if the file ends before them."""
    data = os.pread(descriptor, length, offset)
    if len(data) != length:
        raise ValueError(f"the file ends {length - len(data)} bytes early")
    return data


@functools.lru_cache(maxsize=256)
def _numpy_dtype(data_type: int) -> np.dtype:
    """The numpy dtype of an ONNX element type (cached like :func:`dtype_name`)."""
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(data_type))


def summarize_tensor(tensor: "TensorProto") -> str:
    """A one-line summary of a tensor attribute: "tensor int64[2] = [1, -1]".

    Values are shown only for small inline tensors; nothing external is read.
    """
    shape = tensor.dims[:]
    text = f"tensor {dtype_name(tensor.data_type)}{shape}"
    if uses_external_data(tensor) or math.prod(shape) > SMALL_TENSOR_VALUES:
        return text
    try:
        from onnx import numpy_helper

        values = numpy_helper.to_array(tensor)
    except Exception:  # noqa: BLE001 - a summary never fails the load
        return text
    if values.dtype.kind == "V":  # bfloat16 and float8 (ml_dtypes) do not list as numbers
        values = values.astype(np.float32)
    return f"{text} = {values.tolist()}"
