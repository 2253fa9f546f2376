"""torch tensors as lazy :class:`~inspector.ir.Param` objects.

The read callable returns a numpy array that shares memory with the tensor (which, for
``torch.load(mmap=True)``, shares memory with the file), so a parameter is never copied
unless numpy cannot hold its dtype (complex32, quantized tensors: converted once).
torch is imported by the caller; this module only touches tensors it is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inspector.ir import Param

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
    """A :class:`Param` over ``tensor``: shape and dtype now, values on first use."""
    return Param(role, tuple(tensor.shape), numpy_dtype_name(tensor), lambda: tensor_to_numpy(tensor), tensor_name)


def is_tensor(value: Any) -> bool:
    """True for torch tensors (and Parameters), without importing torch for other values."""
    module = type(value).__module__
    if not module.startswith("torch"):
        return False
    import torch

    return isinstance(value, torch.Tensor)
