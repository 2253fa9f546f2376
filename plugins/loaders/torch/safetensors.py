"""safetensors files, read with numpy alone (no torch, no safetensors package).

Layout: an 8-byte little-endian header length N, N bytes of JSON, then the tensor bytes.
The JSON maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets from the start of the data) and may hold ``"__metadata__"`` (str -> str), which
becomes ``Model.metadata``. Every entry is checked against the file size before anything
is read (every size a non-negative integer, not a boolean, and no more than
:data:`~plugins.loaders.torch.tensors.MAX_ELEMENTS` elements once empty axes are set
aside); the data is memory-mapped once and each tensor is a view of it (BF16 and FP8
through ml_dtypes). Layers are inferred from the names (:mod:`.state_dict`), in natural
module order since the file's own order is by dtype.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from inspector.errors import InputError
from inspector.ir import Model, Param
from plugins.loaders.torch.checkpoint import dominant_dtype
from plugins.loaders.torch.state_dict import infer_layers, natural_order
from plugins.loaders.torch.tensors import MAX_ELEMENTS

DTYPES: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}
MAX_HEADER_BYTES = 100_000_000


def sniff_safetensors(path: Path, head: bytes) -> bool:
    """A plausible header length followed by a JSON object that fits in the file."""
    if len(head) < 10:
        return False
    length = int.from_bytes(head[:8], "little")
    if not 2 <= length <= MAX_HEADER_BYTES or head[8:9] != b"{":
        return False
    return 8 + length <= path.stat().st_size


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16" or name.startswith("float8"):
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name)


def load_safetensors(path: Path) -> Model:
    """Read a safetensors file; InputError for a malformed header or data past the end."""
    file_size = path.stat().st_size
    with path.open("rb") as stream:
        prefix = stream.read(8)
        if len(prefix) < 8:
            raise InputError(path, "is truncated or corrupted: shorter than a safetensors header")
        length = int.from_bytes(prefix, "little")
        if length > MAX_HEADER_BYTES or 8 + length > file_size:
            raise InputError(path, f"is truncated or corrupted: its safetensors header claims {length} bytes")
        raw = stream.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"has a malformed safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise InputError(path, "has a malformed safetensors header: not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise InputError(path, "has a malformed safetensors header: __metadata__ is not an object")
    data_start = 8 + length
    data_size = file_size - data_start
    data = _LazyMap(path, data_start, data_size)
    params: dict[str, Param] = {}
    for name in natural_order(header):
        params[name] = _param(path, name, header[name], data_size, data)
    if not params:
        raise InputError(path, "holds no model: the safetensors file has no tensors")
    layers = infer_layers(params.items())
    metadata = {str(key): str(value) for key, value in metadata.items()}
    producer = "safetensors" + (f" (format {metadata['format']})" if "format" in metadata else "")
    return Model(
        format="safetensors",
        path=str(path),
        layers=layers,
        metadata=metadata,
        producer=producer,
        details={"tensors": len(params), "dtype": dominant_dtype(layers)},
    )


def _param(path: Path, name: str, entry: object, data_size: int, data: "_LazyMap") -> Param:
    def malformed(problem: str) -> InputError:
        return InputError(path, f"has a malformed safetensors header: tensor {name!r} {problem}")

    if not isinstance(entry, dict):
        raise malformed("is not an object")
    dtype_name = DTYPES.get(entry.get("dtype"))  # type: ignore[arg-type]
    if dtype_name is None:
        raise malformed(f"has unknown dtype {entry.get('dtype')!r}")
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if not isinstance(shape, list) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape
    ):
        raise malformed(f"has no valid shape ({shape!r})"[:200])
    if math.prod(size for size in shape if size) > MAX_ELEMENTS:
        raise malformed(f"has an impossible shape {shape}")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise malformed("has no valid data_offsets")
    begin, end = offsets
    dtype = _dtype(dtype_name)
    if not 0 <= begin <= end:
        raise malformed(f"has data_offsets {offsets} out of order")
    if end > data_size:
        raise InputError(path, f"is truncated or corrupted: tensor {name!r} points past the end of the file")
    if end - begin != math.prod(shape) * dtype.itemsize:
        raise malformed(f"spans {end - begin} bytes, not the {math.prod(shape) * dtype.itemsize} its shape needs")
    role = name.rpartition(".")[2]
    return Param(role, tuple(shape), dtype_name, data.reader(begin, end, dtype, tuple(shape)), name)


class _LazyMap:
    """The data section, memory-mapped on the first read and shared by every tensor."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        self.path, self.offset, self.size = path, offset, size
        self._map: np.ndarray | None = None

    def reader(self, begin: int, end: int, dtype: np.dtype, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            if begin == end:
                return np.zeros(shape, dtype=dtype)
            if self._map is None:
                self._map = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self.offset, shape=(self.size,))
            return self._map[begin:end].view(dtype).reshape(shape)

        return read
