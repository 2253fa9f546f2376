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

import math
import sys
from typing import Any

import numpy as np

from inspector.ir import Param

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
    distinct = math.prod(size for size, stride in zip(shape, strides) if stride)
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


def tensor_param(role: str, tensor: Any, tensor_name: str) -> Param:
    """A :class:`Param` over ``tensor``: shape and dtype now, values on first use.

    Raises :class:`TensorProblem` when the tensor's view is not one a file can hold
    (:func:`view_problem`).
    """
    # Checked here whichever reader made the tensor: a pickle may BUILD a tensor after
    # the restricted unpickler checked it (torch's Tensor.__setstate__ set_s any view).
    problem = _tensor_view_problem(tensor)
    if problem:
        raise TensorProblem(f"tensor {tensor_name!r} {problem}")
    return Param(role, tensor.shape, numpy_dtype_name(tensor), lambda: tensor_to_numpy(tensor), tensor_name)


def _tensor_view_problem(tensor: Any) -> str | None:
    import torch

    if tensor.layout != torch.strided or tensor.is_quantized:
        return view_problem(tuple(tensor.shape), (0,) * tensor.dim(), 0, None)  # no strides to check
    storage_numel = tensor.untyped_storage().nbytes() // tensor.element_size()
    return view_problem(tensor.shape, tensor.stride(), tensor.storage_offset(), storage_numel)  # Size is a tuple


def is_tensor(value: Any) -> bool:
    """True for torch tensors (and Parameters), without importing torch for other values:
    there is no tensor before torch is imported."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)
