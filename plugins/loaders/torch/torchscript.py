"""TorchScript archives (torch.jit.save) as a Model of format "torchscript".

Safety: ``torch.jit.load`` does not unpickle Python globals: the archive's data.pkl is
read by TorchScript's own unpickler, which builds only TorchScript objects and tensors,
and the archive's code is compiled, not run. The one exception is a scripted
``__setstate__``, which the loader calls on the restored object; an archive whose code
defines one is refused before loading (:func:`check_no_setstate`). The archive is
checked first (:func:`~plugins.loaders.torch.zips.open_archive`: no zip bomb, no two
entries whose names differ only in case), and every entry that is not a tensor record is
scanned, in pieces, whatever its name's case: torch finds ``code/__torch__.py`` under
``CODE/__TORCH__.PY`` too. :func:`code_concerns` also names the ops that touch files
(``torch.from_file``, ``torch.save``), which ``verify`` will not run without consent.

Layers follow ``named_modules()``; the class name is the module's ``original_name``
("Conv2d"), its qualified name comes from the TorchScript type with the ``__torch__``
prefix and ``___torch_mangle_N`` parts removed. A scripted module keeps its attributes
(stride, eps, ...); a traced one keeps only tensors, so for it conv stride, padding,
dilation, groups and norm eps/momentum are read from the constants of its forward graph.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

from inspector.errors import InputError
from inspector.ir import Layer, Model, Param
from plugins.loaders.torch.checkpoint import dominant_dtype
from plugins.loaders.torch.kinds import kind_of_class
from plugins.loaders.torch.tensors import tensor_param
from plugins.loaders.torch.values import is_plain
from plugins.loaders.torch.zips import Archive, ArchiveError, normalise, open_archive

KNOWN_ATTRS: tuple[str, ...] = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "padding_mode",
    "transposed",
    "output_padding",
    "in_features",
    "out_features",
    "num_features",
    "eps",
    "momentum",
    "affine",
    "track_running_stats",
    "normalized_shape",
    "elementwise_affine",
    "num_groups",
    "num_channels",
    "num_embeddings",
    "embedding_dim",
    "padding_idx",
    "embed_dim",
    "num_heads",
    "batch_first",
    "head_dim",
    "negative_slope",
)
"""Attributes of torch's layers looked up on a scripted module (TorchScript has no __dict__)."""

_MANGLE = re.compile(r"\.___torch_mangle_\d+")

# aten op -> names of its arguments by position, for the ones read from a traced graph.
_GRAPH_ARGS: dict[str, tuple[str | None, ...]] = {
    "aten::_convolution": (None, None, None, "stride", "padding", "dilation", "transposed", "output_padding", "groups"),
    "aten::conv1d": (None, None, None, "stride", "padding", "dilation", "groups"),
    "aten::conv2d": (None, None, None, "stride", "padding", "dilation", "groups"),
    "aten::conv3d": (None, None, None, "stride", "padding", "dilation", "groups"),
    "aten::batch_norm": (None, None, None, None, None, None, "momentum", "eps"),
    "aten::layer_norm": (None, "normalized_shape", None, None, "eps"),
    "aten::group_norm": (None, "num_groups", None, None, "eps"),
    "aten::instance_norm": (None, None, None, None, None, None, "momentum", "eps"),
}


SETSTATE = b"__setstate__"
FILE_OPS: dict[bytes, str] = {
    b"from_file": "torch.from_file (reads any file)",
    b".save(": "torch.save (writes a file)",
    b"load_tensor": "debugprims.load_tensor (reads a file)",
}
"""Tokens of TorchScript code that reach the file system when the model runs."""

_TENSOR_RECORD = re.compile(r"^[^/]*/(\.data/)?(data|constants)/\d+$")


def code_concerns(archive: Archive, tokens: tuple[bytes, ...]) -> set[bytes]:
    """Which of ``tokens`` appear in the archive's code: every entry but the tensor
    records (``<folder>/data/<n>``), names compared ignoring case, read in pieces."""
    found: set[bytes] = set()
    overlap = max(len(token) for token in tokens) - 1
    for info in archive.infolist():
        if _TENSOR_RECORD.match(normalise(info.filename)):
            continue
        tail = b""
        for chunk in archive.chunks(info):
            window = tail + chunk
            found.update(token for token in tokens if token in window)
            tail = window[-overlap:] if overlap else b""
    return found


def check_no_setstate(path: Path, archive: Archive) -> None:
    """Refuse an archive whose TorchScript code defines ``__setstate__`` (load would run it)."""
    if code_concerns(archive, (SETSTATE,)):
        raise InputError(
            path,
            "refused to load: its TorchScript code defines __setstate__, which torch.jit.load would run; "
            "graphinspect never runs code from a model file",
        )


def run_concerns(path: Path) -> list[str]:
    """Why running this TorchScript archive would touch more than its inputs: the file
    ops its code calls (for ``verify``, which runs it only with consent then)."""
    with open_archive(path) as archive:
        found = code_concerns(archive, tuple(FILE_OPS))
    return [f"its code calls {FILE_OPS[token]}" for token in FILE_OPS if token in found]


def load_torchscript(path: Path) -> Model:
    """Read a torch.jit.save archive; InputError for a damaged or refused one."""
    import torch

    try:
        with open_archive(path) as archive:
            check_no_setstate(path, archive)
            version = _archive_version(archive)
    except ArchiveError as exc:
        raise InputError(path, str(exc)) from exc
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise InputError(path, f"is truncated or corrupted: {exc}") from exc
    try:
        root = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch reports a damaged archive many ways
        first_line = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise InputError(path, f"cannot be read as TorchScript: {first_line.strip()[:300]}") from exc
    modules: dict[str, str] = {}
    layers: list[Layer] = []
    for name, module in root.named_modules():
        modules[name] = script_class_name(module)
        layer = _layer(name, module)
        if layer is not None:
            layers.append(layer)
    producer = "torch.jit.save (TorchScript" + (f", archive version {version})" if version else ")")
    return Model(
        format="torchscript",
        path=str(path),
        layers=layers,
        modules=modules,
        producer=producer,
        details={"dtype": dominant_dtype(layers)},
    )


def script_class_name(module: Any) -> str:
    """ "__torch__.torch.nn.modules.conv.___torch_mangle_0.Conv2d" -> "torch.nn.modules.conv.Conv2d"."""
    try:
        name = module._c._type().qualified_name()
    except Exception:  # noqa: BLE001 - fall back to the name TorchScript kept
        return str(getattr(module, "original_name", type(module).__name__))
    name = _MANGLE.sub("", name)
    return name[len("__torch__.") :] if name.startswith("__torch__.") else name


def _layer(path: str, module: Any) -> Layer | None:
    params: dict[str, Param] = {}
    for role, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
        params[role] = tensor_param(role, tensor, f"{path}.{role}" if path else role)
    if not params:
        return None
    class_name = str(getattr(module, "original_name", "")) or script_class_name(module).rpartition(".")[2]
    attrs = _script_attrs(module)
    if not attrs:
        attrs = _graph_attrs(module)
    kind = kind_of_class(class_name, attrs, tuple(params))
    return Layer(path, kind, class_name, attrs=attrs, params=params, hints=(path,))


def _script_attrs(module: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for name in KNOWN_ATTRS:
        try:
            value = getattr(module, name)
        except Exception:  # noqa: BLE001 - absent attributes raise various errors
            continue
        if is_plain(value):
            attrs[name] = value
    return attrs


def _graph_attrs(module: Any) -> dict[str, Any]:
    """Attributes a traced module's forward graph passes to its conv/norm op as constants."""
    try:
        nodes = list(module.graph.nodes())
    except Exception:  # noqa: BLE001 - a module without a forward method has no graph
        return {}
    for node in nodes:
        names = _GRAPH_ARGS.get(node.kind())
        if names is None:
            continue
        attrs: dict[str, Any] = {}
        for name, value in zip(names, node.inputs()):
            if name is None:
                continue
            constant = _constant(value)
            if constant is not None:
                attrs[name] = tuple(constant) if isinstance(constant, list) else constant
        return attrs
    return {}


def _constant(value: Any) -> Any:
    node = value.node()
    if node.kind() == "prim::Constant":
        try:
            constant = value.toIValue()
        except Exception:  # noqa: BLE001 - tensors and other non-plain constants
            return None
        return constant if is_plain(constant) else None
    if node.kind() == "prim::ListConstruct":
        items = [_constant(item) for item in node.inputs()]
        return None if any(item is None for item in items) else items
    return None


def _archive_version(archive: Archive) -> str:
    for info in archive.infolist():
        name = normalise(info.filename)
        if name.count("/") == 1 and name.endswith("/version") and info.file_size <= 64:
            return archive.read(info).decode("ascii", "replace").strip()
    return ""
