"""The fused state_dict, and the two files it is written as.

:func:`fused_state_dict` is what ``state_dict()`` of the exporter's fused model holds:
every source tensor in its stored dtype, except those a fused layer replaces (the conv's
weight and bias, the BatchNorm's weight, bias, running_mean, running_var and
num_batches_tracked, a merged block's branch convs) and those of modules the fusion
removes (an Ultralytics head's unused branch), plus ``<fused_name>.weight`` and
``<fused_name>.bias`` in float32 at the place of the first tensor they replace.

Written as:

- ``.pt``/``.pth``: ``torch.save`` of a plain dict of tensors, which
  ``torch.load(weights_only=True)`` reads;
- ``.safetensors``: written here, so the project needs no safetensors package. The
  layout: an 8-byte little-endian header length N, N bytes of JSON
  ``{"__metadata__": {...}, name: {"dtype": "F32", "shape": [...], "data_offsets":
  [begin, end]}, ...}`` (padded with spaces so the data starts 8-byte aligned), then
  each tensor's raw little-endian bytes, in header order, offsets counted from the end
  of the header.

Both are written through :class:`inspector.output_file.OutputFile`: atomically for a
regular file (a failure leaves nothing behind), in place for a device or FIFO.
"""

from __future__ import annotations

import io
import json
import struct
import warnings
from collections.abc import Iterable

import numpy as np

from inspector.errors import UsageError
from inspector.ir import Model
from inspector.output_file import OutputFile
from plugins.commands.fuse.groups import FusedGroup

WEIGHT_FORMATS = {".pt": "pytorch-state-dict", ".pth": "pytorch-state-dict", ".safetensors": "safetensors"}
"""``--weights`` suffix -> the format written (named as graphinspect's loaders name it)."""

SAFETENSORS_METADATA = {"format": "pt", "producer": "graphinspect fuse"}

SAFETENSORS_DTYPES = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "uint16": "U16",
    "int16": "I16",
    "uint32": "U32",
    "int32": "I32",
    "uint64": "U64",
    "int64": "I64",
    "float16": "F16",
    "bfloat16": "BF16",
    "float32": "F32",
    "float64": "F64",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}


def weight_format(output: OutputFile) -> str:
    """The format the weights file's suffix asks for (a device or FIFO without one gets
    a torch.save file); a usage error for any other suffix."""
    suffix = output.suffix
    if not suffix and output.is_stream:
        return "pytorch-state-dict"
    if suffix not in WEIGHT_FORMATS:
        raise UsageError(
            f"{output.option} {output.given}: unknown weights suffix {suffix or '(none)'!r} (use .pt, .pth or "
            ".safetensors)"
        )
    return WEIGHT_FORMATS[suffix]


def fused_state_dict(model: Model, groups: list[FusedGroup], dropped: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """The state_dict of ``model`` with every group fused and the ``dropped`` tensors
    (of modules the framework's fusion removes) left out (see the module docstring)."""
    replaced_by = {tensor: group for group in groups for tensor in group.consumed_tensors()}
    left_out = set(dropped)
    state: dict[str, np.ndarray] = {}
    kept: set[str] = set()
    for layer, param in model.params():
        if param.tensor_name in left_out or param.name in _non_persistent(layer):
            continue
        group = replaced_by.get(param.tensor_name)
        if group is None:
            if param.tensor_name in state:
                raise UsageError(
                    f"cannot write the fused model: {param.tensor_name} is both a fused tensor and a tensor of "
                    "the model"
                )
            state[param.tensor_name] = param.array()
            kept.add(param.tensor_name)
            continue
        for name, values in group.fused_tensors().items():
            if name in kept:
                raise UsageError(
                    f"cannot write the fused model: {name} is both a fused tensor and a tensor of the model"
                )
            state.setdefault(name, values)
    return state


def _non_persistent(layer) -> set[str]:
    """Buffers a ``state_dict()`` leaves out (LeViT's attention_bias_idxs)."""
    return set(filter(None, str(layer.metadata.get("non_persistent_buffers", "")).split(",")))


def write_weights(output: OutputFile, state: dict[str, np.ndarray]) -> str:
    """Write ``state`` to ``output`` in the format its suffix names; returns that format."""
    fmt = weight_format(output)
    data = safetensors_bytes(state) if fmt == "safetensors" else torch_save_bytes(state)
    output.write(data)
    return fmt


# ----------------------------------------------------------------------------- torch.save


def torch_save_bytes(state: dict[str, np.ndarray]):
    """``torch.save`` of ``state`` as a dict of tensors, in memory."""
    import torch

    buffer = io.BytesIO()
    torch.save({name: _to_torch(values) for name, values in state.items()}, buffer)
    return buffer.getbuffer()


def _to_torch(values: np.ndarray):
    import torch

    values = _little_endian(values)
    reinterpreted = {"bfloat16": torch.bfloat16, "float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}
    if values.dtype.name in reinterpreted:
        # torch.from_numpy knows no ml_dtypes types: carry the bits as unsigned ints.
        carrier = values.view(np.uint16 if values.dtype.itemsize == 2 else np.uint8)
        return torch.from_numpy(np.array(carrier)).view(reinterpreted[values.dtype.name])
    with warnings.catch_warnings():
        # Loaders hand out read-only (memory-mapped) arrays; torch.save only reads them,
        # so sharing beats a copy of the whole model.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(values)


# ----------------------------------------------------------------------------- safetensors


def safetensors_bytes(state: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytearray:
    """The safetensors file of ``state`` (see the module docstring for the layout)."""
    header: dict[str, object] = {"__metadata__": dict(SAFETENSORS_METADATA if metadata is None else metadata)}
    arrays = []
    offset = 0
    for name, values in state.items():
        dtype = SAFETENSORS_DTYPES.get(values.dtype.name)
        if dtype is None:
            raise UsageError(f"cannot write {name} to safetensors: dtype {values.dtype.name} has no safetensors name")
        values = _little_endian(values)
        header[name] = {"dtype": dtype, "shape": list(values.shape), "data_offsets": [offset, offset + values.nbytes]}
        arrays.append(values)
        offset += values.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    data = bytearray(struct.pack("<Q", len(text)))
    data += text
    for values in arrays:
        data += memoryview(values.reshape(-1).view(np.uint8))
    return data


def _little_endian(values: np.ndarray) -> np.ndarray:
    # ascontiguousarray makes a 0-d array 1-d: a BatchNorm's num_batches_tracked is 0-d.
    values = np.ascontiguousarray(values).reshape(np.shape(values))
    if values.dtype.byteorder == ">":
        values = values.astype(values.dtype.newbyteorder("<"))
    return values
