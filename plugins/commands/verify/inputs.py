"""The input tensors verify feeds both models: random, the user's own, or a preprocessed image.

- random (the default): for each ONNX input, values drawn uniformly from [0, 1) for
  float inputs (an image already scaled by 1/255), zeros for integer and boolean inputs;
  ``numpy.random.default_rng(seed)``, so a run is repeatable.
- ``--input FILE``: a ``.npy`` (the model must have one input) or a ``.npz`` holding one
  array per ONNX input name (a single-array .npz is accepted for a one-input model
  whatever its key). Loaded with ``allow_pickle=False``.
- ``--image FILE``: the canonical pipeline of :func:`preprocess_image`.

Symbolic ONNX dimensions are resolved by :func:`resolve_shape`: the batch axis is 1,
the height and width of an image-shaped input come from ``--imgsz`` or from the ``imgsz``
metadata (Ultralytics writes it into the ONNX metadata_props and the checkpoint).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InputError, UsageError
from inspector.ir import Model, TensorInfo

LETTERBOX_FILL = 114
"""The grey Ultralytics pads letterboxed images with."""


@dataclass
class InputTensor:
    """One input of the ONNX model: its name, values and where they came from
    ("random", "image" or "file")."""

    name: str
    array: np.ndarray
    origin: str
    path: str | None = None


# ----------------------------------------------------------------------------- shapes


def parse_imgsz(text: str | None) -> tuple[int, int] | None:
    """``"640"`` / ``"640,480"`` / ``"[640, 480]"`` -> (height, width); None for None/garbage."""
    if text is None:
        return None
    try:
        value = (
            json.loads(text)
            if text.strip().startswith("[")
            else [int(part) for part in str(text).replace("x", ",").split(",") if part.strip()]
        )
    except (ValueError, TypeError):
        return None
    if isinstance(value, int):
        value = [value]
    if not isinstance(value, list) or not 1 <= len(value) <= 2 or not all(isinstance(v, int) and v > 0 for v in value):
        return None
    return (value[0], value[-1])


def model_imgsz(target: Model, source: Model | None) -> tuple[int, int] | None:
    """The image size the models' metadata declares (ONNX first, then the checkpoint)."""
    for model in (target, source):
        if model is not None:
            size = parse_imgsz(model.metadata.get("imgsz"))
            if size is not None:
                return size
    return None


def image_layout(shape: Sequence[Any]) -> str | None:
    """ "NCHW" or "NHWC" for a 4-D input with 1 or 3 channels, else None."""
    if len(shape) != 4:
        return None
    if shape[1] in (1, 3):
        return "NCHW"
    if shape[3] in (1, 3):
        return "NHWC"
    return None


def resolve_shape(info: TensorInfo, imgsz: tuple[int, int] | None) -> tuple[int, ...]:
    """A concrete shape for ``info``: fixed dims as they are, a symbolic batch as 1, a
    symbolic height/width of an image-shaped input from ``imgsz``."""
    if info.shape is None:
        raise UsageError(f"the ONNX input {info.name!r} has no declared shape: give the tensor with --input")
    layout = image_layout(info.shape)
    spatial = {"NCHW": (2, 3), "NHWC": (1, 2)}.get(layout or "", ())
    shape = []
    for axis, dim in enumerate(info.shape):
        if isinstance(dim, int):
            shape.append(dim)
        elif axis == 0:
            shape.append(1)
        elif axis in spatial and imgsz is not None:
            shape.append(imgsz[spatial.index(axis)])
        else:
            raise UsageError(
                f"the ONNX input {info.name!r} has a symbolic dimension {dim!r} at axis {axis}: "
                "set the image size with --imgsz H[,W] or give the tensor with --input"
            )
    return tuple(shape)


def numpy_dtype(info: TensorInfo) -> np.dtype:
    try:
        return np.dtype(info.dtype)
    except TypeError:
        raise UsageError(f"the ONNX input {info.name!r} has dtype {info.dtype}, which verify cannot feed") from None


# ----------------------------------------------------------------------------- sources


def random_inputs(target: Model, seed: int, imgsz: tuple[int, int] | None) -> list[InputTensor]:
    """One random tensor per ONNX input (see the module docstring)."""
    rng = np.random.default_rng(seed)
    tensors = []
    for info in target.inputs:
        shape = resolve_shape(info, imgsz)
        dtype = numpy_dtype(info)
        if dtype.kind == "f":
            array = rng.random(shape, dtype=np.float32).astype(dtype)
        else:
            array = np.zeros(shape, dtype=dtype)
        tensors.append(InputTensor(info.name, array, "random"))
    return tensors


def file_inputs(path: str, target: Model) -> list[InputTensor]:
    """The arrays of an .npy/.npz file, by ONNX input name."""
    file = Path(path)
    if not file.is_file():
        raise InputError(file, "no such file (named by --input)")
    try:
        loaded = np.load(file, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - ValueError for pickles, OSError for junk
        raise InputError(
            file, f"is not a .npy/.npz array file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    names = [info.name for info in target.inputs]
    if isinstance(loaded, np.ndarray):
        if len(names) != 1:
            raise InputError(
                file,
                f"holds one array but the ONNX model has {len(names)} inputs ({', '.join(names)}): use an .npz "
                "keyed by input name",
            )
        return [InputTensor(names[0], loaded, "file", str(file))]
    with loaded:
        arrays = {key: loaded[key] for key in loaded.files}
    if len(arrays) == 1 and len(names) == 1 and names[0] not in arrays:
        (array,) = arrays.values()
        return [InputTensor(names[0], array, "file", str(file))]
    missing = [name for name in names if name not in arrays]
    if missing:
        raise InputError(
            file,
            f"has no array for the ONNX input{'s' if len(missing) > 1 else ''} {', '.join(missing)} (it holds: "
            f"{', '.join(arrays) or 'nothing'})",
        )
    return [InputTensor(name, arrays[name], "file", str(file)) for name in names]


def image_inputs(
    path: str,
    target: Model,
    source: Model | None,
    imgsz: tuple[int, int] | None,
    resize: str,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> list[InputTensor]:
    """The image at ``path`` through :func:`preprocess_image`, for a one-input image model."""
    if len(target.inputs) != 1:
        raise UsageError(
            f"--image feeds a model with one input; this one has {len(target.inputs)}: use --input FILE.npz"
        )
    info = target.inputs[0]
    layout = image_layout(info.shape or ())
    if layout is None:
        raise UsageError(
            f"--image needs a 4-D image input with 1 or 3 channels; {info.name!r} has shape {list(info.shape or [])}"
        )
    size = imgsz or model_imgsz(target, source)
    shape = resolve_shape(info, size)
    height, width = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    channels = shape[1] if layout == "NCHW" else shape[3]
    image = open_image(path)
    array = preprocess_image(image, height, width, resize, mean, std, numpy_dtype(info), layout, channels)
    return [InputTensor(info.name, array, "image", str(path))]


# ----------------------------------------------------------------------------- images


def open_image(path: str) -> Any:
    """The image at ``path`` as a Pillow image (Pillow is the extra ``graphinspect[images]``)."""
    try:
        from PIL import Image
    except ImportError:
        raise UsageError("--image needs Pillow: pip install 'graphinspect[images]'") from None
    file = Path(path)
    if not file.is_file():
        raise InputError(file, "no such file (named by --image)")
    try:
        image = Image.open(file)
        image.load()
    except Exception as exc:  # noqa: BLE001 - Pillow's errors for junk files vary
        raise InputError(
            file, f"is not an image Pillow can read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    return image


def letterbox(image: Any, height: int, width: int, fill: int = LETTERBOX_FILL) -> Any:
    """``image`` scaled to fit ``height`` x ``width`` and centred on a ``fill`` background.

    As Ultralytics' ``LetterBox``: ``r = min(height / h, width / w)``, resized (bilinear)
    to ``(round(w * r), round(h * r))``, padded by ``top = round(dh - 0.1)`` and
    ``left = round(dw - 0.1)`` where ``dh, dw`` are half the leftover height and width.
    """
    from PIL import Image

    w, h = image.size
    r = min(height / h, width / w)
    new_w, new_h = int(round(w * r)), int(round(h * r))
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    dw, dh = (width - new_w) / 2, (height - new_h) / 2
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    canvas = Image.new(image.mode, (width, height), (fill,) * len(image.getbands()))
    canvas.paste(image, (left, top))
    return canvas


def preprocess_image(
    image: Any,
    height: int,
    width: int,
    resize: str = "stretch",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    dtype: Any = np.float32,
    layout: str = "NCHW",
    channels: int = 3,
) -> np.ndarray:
    """The canonical preprocessing: the tensor a vision model is usually exported for.

    1. read as RGB (``L`` for a one-channel input);
    2. resize to ``height`` x ``width``: "stretch" (bilinear, aspect ratio not kept) or
       "letterbox" (:func:`letterbox`, padding 114);
    3. ``x = pixels / 255`` in float32; then, if given, ``x = (x - mean[c]) / std[c]``;
    4. HWC -> CHW (for ``layout`` "NCHW"), add the batch axis, cast to ``dtype``.
    """
    from PIL import Image

    if resize not in ("stretch", "letterbox"):
        raise UsageError(f"--resize must be stretch or letterbox, not {resize!r}")
    image = image.convert("RGB" if channels == 3 else "L")
    if resize == "letterbox":
        image = letterbox(image, height, width)
    elif image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    x = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    if x.ndim == 2:
        x = x[:, :, None]
    for name, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) != x.shape[2]:
            raise UsageError(f"{name} needs {x.shape[2]} values (one per channel), got {len(values)}")
    if mean is not None:
        x = x - np.asarray(mean, dtype=np.float32)
    if std is not None:
        x = x / np.asarray(std, dtype=np.float32)
    if layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None]).astype(dtype)
