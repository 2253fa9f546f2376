"""torch.export programs (torch.export.save, ".pt2") as a Model of format "torch-export".

Safety: ``torch.export.load`` is NOT used. It unpickles with
``torch.load(weights_only=False)`` every weight and constant saved "pickled" (tensor
subclasses), ``pickle.loads`` the opaque constants and ``torch._C._pickle_load_obj`` the
script objects, so a crafted .pt2 could run code. This reader needs no torch: the
program is JSON (``models/<name>.json``), the weights are raw bytes described by
``data/weights/<name>_weights_config.json`` and are memory-mapped from the archive. A
weight saved pickled is checked by the safe reader (:func:`~plugins.loaders.torch.
pickle_budget.check_pickled_part`: only the globals torch's weights-only unpickler
allows, within budget) and read with ``torch.load(weights_only=True)``; custom and opaque
constants are never read. The archive is checked first (:func:`~plugins.loaders.torch.
zips.open_archive`), entries are found ignoring case, a JSON entry larger than the file
is refused, and every tensor's sizes, strides and offset are checked over the whole
view against its storage (:func:`~plugins.loaders.torch.tensors.view_problem`). What
``verify`` checks before it lets torch run a .pt2 is in :mod:`.pt2_safety`.

Layers come from the state_dict keys (grouped and ordered as in
:mod:`plugins.loaders.torch.state_dict`), non-persistent buffers (stored as constants)
added to their module. Where a graph node's ``nn_module_stack`` names the module's class
("torch.nn.modules.conv.Conv2d"), the layer has that class and kind and
``Model.modules`` lists every path the stacks mention (modules never called are absent);
other layers keep inferred op types ending in "?". Conv stride/padding/dilation/groups
and norm eps/momentum are read from the aten call that uses the module's tensors.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InputError
from inspector.ir import Layer, Model, Param, TensorInfo, stored_shape_of
from plugins.loaders.torch.checkpoint import dominant_dtype
from plugins.loaders.torch.kinds import kind_of_class, short_class_name
from plugins.loaders.torch.state_dict import group_by_module, infer_layer
from plugins.loaders.torch.tensors import view_problem
from plugins.loaders.torch.zips import Archive, ArchiveError, entry_array, normalise, open_archive, top_folder

# torch._export.serde.schema.ScalarType -> numpy dtype name (ml_dtypes for bf16/fp8).
SCALAR_TYPES: dict[int, str] = {
    1: "uint8",
    2: "int8",
    3: "int16",
    4: "int32",
    5: "int64",
    6: "float16",
    7: "float32",
    8: "float64",
    10: "complex64",
    11: "complex128",
    12: "bool",
    13: "bfloat16",
    28: "uint16",
    29: "float8_e4m3fn",
    30: "float8_e5m2",
    31: "float8_e4m3fnuz",
    32: "float8_e5m2fnuz",
    33: "float8_e8m0fnu",
    34: "uint32",
    35: "uint64",
}

_CONV_ARGS = ("stride", "padding", "dilation", "groups", "output_padding", "transposed")
_NORM_ARGS = ("eps", "momentum", "num_groups")
_NORM_OPS = frozenset(
    {
        "batch_norm",
        "native_batch_norm",
        "_native_batch_norm_legit",
        "_native_batch_norm_legit_no_training",
        "_native_batch_norm_legit_functional",
        "layer_norm",
        "native_layer_norm",
        "group_norm",
        "instance_norm",
        "rms_norm",
    }
)
_CONV_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}
_SPEC_NAMES = (("parameter", "parameter_name"), ("buffer", "buffer_name"), ("tensor_constant", "tensor_constant_name"))


def numpy_dtype(name: str) -> np.dtype:
    if name in ("bfloat16",) or name.startswith("float8"):
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name)


def load_torch_export(path: Path) -> Model:
    """Read a torch.export.save archive without unpickling anything but plain tensors."""
    try:
        archive = open_archive(path)
    except ArchiveError as exc:
        raise InputError(path, str(exc)) from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(path, f"is truncated or corrupted: {exc}") from exc
    with archive:
        names = archive.namelist()
        folder = top_folder(names, "archive_format")
        if folder is None:
            raise InputError(
                path, "is a torch.export archive of an older layout (torch < 2.8); re-save it with torch.export.save"
            )
        model_names = program_names(archive, folder)
        if not model_names:
            raise InputError(path, "holds no model: the torch.export archive has no models/*.json")
        model_name = "model" if "model" in model_names else model_names[0]
        try:
            program = read_json(archive, f"{folder}models/{model_name}.json")
            if not isinstance(program, dict):
                raise ValueError(f"models/{model_name}.json is not a JSON object")
            weights = _read_payloads(path, archive, folder, "weights", model_name)
            constants = _read_payloads(path, archive, folder, "constants", model_name)
        except InputError:
            raise
        except (KeyError, ValueError, TypeError, AttributeError, zipfile.BadZipFile, EOFError) as exc:
            raise InputError(path, f"is truncated or corrupted: {type(exc).__name__}: {exc}") from exc
    graph_module = program.get("graph_module", {})
    signature = graph_module.get("signature", {})
    graph = graph_module.get("graph", {})
    non_persistent = _non_persistent_buffers(signature)
    tensors = list(weights.items()) + [(key, value) for key, value in constants.items() if key in non_persistent]
    classes = _module_classes(graph)
    attrs_by_module = _call_attrs(graph, _arg_to_fqn(signature))
    layers = []
    for prefix, group in group_by_module(tensors).items():
        layers.append(_layer(prefix, group, classes.get(prefix), attrs_by_module.get(prefix, {})))
    version = program.get("torch_version", "")
    return Model(
        format="torch-export",
        path=str(path),
        layers=layers,
        modules=classes,
        inputs=_tensor_infos(graph, signature, "input_specs", "user_input"),
        outputs=_tensor_infos(graph, signature, "output_specs", "user_output"),
        producer="torch.export.save" + (f" (torch {version})" if version else ""),
        details={
            "model_name": model_name,
            "schema_version": program.get("schema_version"),
            "opset_version": program.get("opset_version"),
            "dtype": dominant_dtype(layers),
        },
    )


def _layer(prefix: str, group: dict[str, Param], qualified: str | None, call_attrs: dict[str, Any]) -> Layer:
    if qualified is None:
        layer = infer_layer(prefix, group)
        layer.attrs.update(call_attrs)
        return layer
    class_name = short_class_name(qualified)
    return Layer(
        prefix,
        kind_of_class(class_name, call_attrs, tuple(group)),
        class_name,
        attrs=call_attrs,
        params=group,
        hints=(prefix,),
    )


def program_names(archive: Archive, folder: str) -> list[str]:
    """The names of the programs in ``models/`` ("model", and any other torch.export
    would load too), from the entry names as torch compares them."""
    models_dir = normalise(f"{folder}models/")
    return sorted(
        info.filename[len(models_dir) : -len(".json")]
        for info in archive.infolist()
        if normalise(info.filename).startswith(models_dir) and normalise(info.filename).endswith(".json")
    )


def read_json(archive: Archive, name: str) -> Any:
    """A JSON entry; ValueError when it claims more bytes than the whole file (torch
    stores entries uncompressed: only a zip bomb's JSON is larger than its archive)."""
    info = archive.getinfo(name)
    if info.file_size > archive.path.stat().st_size:
        raise ValueError(f"entry {info.filename} declares {info.file_size:,} bytes, more than the whole file")
    return json.loads(archive.read(info))


def _read_payloads(path: Path, archive: Archive, folder: str, kind: str, model_name: str) -> dict[str, Param]:
    """fqn -> lazy Param for the raw tensors of data/<kind>/; pickled ones via weights_only."""
    config_name = f"{folder}data/{kind}/{model_name}_{kind}_config.json"
    if archive.find(config_name) is None:
        return {}
    config = read_json(archive, config_name).get("config", {})
    params: dict[str, Param] = {}
    for fqn, payload in config.items():
        entry = f"{folder}data/{kind}/{payload['path_name']}"
        role = fqn.rpartition(".")[2]
        if payload.get("use_pickle"):
            if kind != "weights" and not payload["path_name"].startswith("tensor_"):
                continue
            params[fqn] = _pickled_tensor(path, archive, entry, role, fqn)
            continue
        if not payload["path_name"].startswith(("weight_", "tensor_")):
            continue  # custom (TorchBind) and opaque objects are code, not tensors
        meta = payload["tensor_meta"]
        dtype_name = SCALAR_TYPES.get(int(meta["dtype"]))
        if dtype_name is None:
            raise InputError(path, f"has tensor {fqn!r} of unsupported dtype code {meta['dtype']}")
        shape = tuple(size["as_int"] for size in meta["sizes"])
        strides = tuple(stride["as_int"] for stride in meta["strides"])
        offset = meta.get("storage_offset", {}).get("as_int", 0)
        dtype = numpy_dtype(dtype_name)
        problem = view_problem(shape, strides, offset, None)
        if problem is None:
            storage = entry_array(path, archive, entry, dtype)
            problem = view_problem(shape, strides, offset, storage.size)
        if problem:
            raise InputError(path, f"is corrupted or crafted: tensor {fqn!r} ({entry}) {problem}")
        read = _strided(storage, offset, shape, strides)
        params[fqn] = Param(role, shape, dtype_name, read, fqn, stored_shape=stored_shape_of(shape, strides))
    return params


def _strided(
    storage: np.ndarray, offset: int, shape: tuple[int, ...], strides: tuple[int, ...]
) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        if not all(shape):
            return np.zeros(shape, dtype=storage.dtype)
        itemsize = storage.dtype.itemsize
        return np.lib.stride_tricks.as_strided(
            storage[offset:], shape=shape, strides=tuple(s * itemsize for s in strides), writeable=False
        )

    return read


def _pickled_tensor(path: Path, archive: Archive, entry: str, role: str, fqn: str) -> Param:
    import torch

    from plugins.loaders.torch.pickle_budget import check_pickled_part
    from plugins.loaders.torch.tensors import is_tensor, tensor_param

    data = archive.read(entry)
    problem = check_pickled_part(data)
    if problem:
        raise InputError(
            path, f"refused: weight {fqn!r} ({entry}) {problem}; graphinspect never runs code from a model file"
        )
    try:
        tensor = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - a tensor subclass needs code we do not run
        raise InputError(path, f"cannot be read safely: weight {fqn!r} is a pickled tensor subclass") from exc
    if not is_tensor(tensor):
        raise InputError(path, f"is corrupted: weight {fqn!r} is not a tensor")
    return tensor_param(role, tensor, fqn)


def _non_persistent_buffers(signature: dict) -> set[str]:
    names = set()
    for spec in signature.get("input_specs", []):
        buffer = spec.get("buffer")
        if buffer and not buffer.get("persistent", True):
            names.add(buffer["buffer_name"])
    return names


def _arg_to_fqn(signature: dict) -> dict[str, str]:
    """Graph placeholder name ("p_conv_weight") -> state_dict key ("conv.weight")."""
    mapping = {}
    for spec in signature.get("input_specs", []):
        for kind, key in _SPEC_NAMES:
            if kind in spec:
                mapping[spec[kind]["arg"]["name"]] = spec[kind][key]
    return mapping


def split_module_stack(text: str) -> list[tuple[str, str]]:
    """ "key,path,type;key,path,type" -> [(path, type)], commas inside brackets kept."""
    entries = []
    for entry in text.split(";"):
        parts, depth, start = [], 0, 0
        for position, char in enumerate(entry):
            if char in "[(":
                depth += 1
            elif char in ")]":
                depth -= 1
            elif char == "," and depth == 0:
                parts.append(entry[start:position])
                start = position + 1
        parts.append(entry[start:])
        if len(parts) == 3:
            entries.append((parts[1], parts[2]))
    return entries


def _module_classes(graph: dict) -> dict[str, str]:
    classes: dict[str, str] = {}
    for node in graph.get("nodes", []):
        stack = node.get("metadata", {}).get("nn_module_stack")
        if stack:
            for module_path, type_name in split_module_stack(stack):
                classes.setdefault(module_path, type_name)
    return classes


def _arg_value(arg: dict) -> Any:
    for key in ("as_int", "as_ints", "as_float", "as_floats", "as_bool", "as_bools", "as_string", "as_strings"):
        if key in arg:
            value = arg[key]
            return tuple(value) if isinstance(value, list) else value
    return None


def _call_attrs(graph: dict, arg_to_fqn: dict[str, str]) -> dict[str, dict[str, Any]]:
    """module path -> conv/norm attributes from the first aten call using its tensors."""
    found: dict[str, dict[str, Any]] = {}
    for node in graph.get("nodes", []):
        op = node.get("target", "").removeprefix("torch.ops.aten.").split(".")[0]
        is_conv = op.startswith("conv") or op in ("_convolution", "convolution")
        if not is_conv and op not in _NORM_OPS:
            continue
        module = None
        weight_rank = 0
        attrs: dict[str, Any] = {}
        for argument in node.get("inputs", []):
            arg = argument.get("arg", {})
            tensor_name = arg.get("as_tensor", {}).get("name")
            if tensor_name in arg_to_fqn and module is None:
                module = arg_to_fqn[tensor_name].rpartition(".")[0]
                weight_rank = len(_tensor_sizes(graph, tensor_name))
            elif argument.get("name") in (_CONV_ARGS if is_conv else _NORM_ARGS):
                value = _arg_value(arg)
                if value is not None:
                    attrs[argument["name"]] = value
        if module is None or module in found:
            continue
        if is_conv:
            spatial = max(weight_rank - 2, 1)
            for name, default in _CONV_DEFAULTS.items():
                value = attrs.get(name, default)
                attrs[name] = value if name == "groups" or isinstance(value, (tuple, str)) else (value,) * spatial
            attrs.pop("transposed", None)
        elif op == "layer_norm":
            attrs.setdefault("eps", 1e-5)
        found[module] = attrs
    return found


def _tensor_sizes(graph: dict, name: str) -> list:
    return graph.get("tensor_values", {}).get(name, {}).get("sizes", [])


def _tensor_infos(graph: dict, signature: dict, specs_key: str, kind: str) -> list[TensorInfo]:
    infos = []
    for spec in signature.get(specs_key, []):
        tensor = spec.get(kind, {}).get("arg", {}).get("as_tensor")
        if not tensor:
            continue
        value = graph.get("tensor_values", {}).get(tensor["name"], {})
        shape = tuple(_size(size) for size in value.get("sizes", []))
        dtype = SCALAR_TYPES.get(int(value.get("dtype", 0)), "unknown")
        infos.append(TensorInfo(tensor["name"], shape, dtype))
    return infos


def _size(size: dict) -> int | str:
    """A serialized dimension: an int, or a symbolic one by its expression ("s0")."""
    if "as_int" in size:
        return int(size["as_int"])
    return str(size.get("as_expr", {}).get("expr_str", "?"))
