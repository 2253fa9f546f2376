"""A pickled ``nn.Module`` (a tree of stand-ins) as module paths and layers.

The walk mirrors ``nn.Module.named_modules()``: pre-order over ``_modules``, children in
insertion order, ``None`` children skipped, a module object reached twice reported once
(at its first path). Every module that directly owns parameters or buffers (persistent
or not) becomes one :class:`~inspector.ir.Layer`:

- ``name``: its path ("" for the root), ``hints``: (path,);
- ``op_type``: the class name ("Conv2d", "Conv" for Ultralytics' wrapper), ``kind`` from
  :func:`~plugins.loaders.torch.kinds.kind_of_class`;
- ``attrs``: the plain public attributes (stride, padding, groups, eps, momentum, ...);
- ``params``: parameters then buffers, ``None`` entries skipped, each a lazy view of the
  memory-mapped tensor whose ``tensor_name`` is the state_dict key ("model.0.conv.weight").
  A tensor shared by two modules (tied weights) appears in both, under each one's key.
  Non-persistent buffers (not in a state_dict) are listed in
  ``layer.metadata["non_persistent_buffers"]``.

Nothing here calls into the model's classes: stand-ins have no behaviour to call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from inspector.ir import Layer, Param
from plugins.loaders.torch.kinds import kind_of_class, short_class_name
from plugins.loaders.torch.tensors import TensorReader, is_tensor, tensor_param, through_torch
from plugins.loaders.torch.unpickle import StandIn, is_module
from plugins.loaders.torch.values import plain_attrs


def named_modules(root: StandIn) -> Iterator[tuple[str, StandIn]]:
    """(path, module) pairs in ``named_modules()`` order."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        path, module = stack.pop()
        if id(module) in seen or not is_module(module):
            continue
        seen.add(id(module))
        yield path, module
        children = [
            (f"{path}.{name}" if path else str(name), child)
            for name, child in module.__dict__["_modules"].items()
            if child is not None
        ]
        stack.extend(reversed(children))


def class_name_of(module: Any) -> str:
    """The qualified class name a stand-in stands for ("torch.nn.modules.conv.Conv2d")."""
    name = getattr(type(module), "_standin_global", "")
    return name or f"{type(module).__module__}.{type(module).__qualname__}"


def module_tree(root: StandIn, reader: TensorReader = through_torch) -> tuple[dict[str, str], list[Layer]]:
    """``Model.modules`` (path -> qualified class name) and the layers of a pickled module,
    their params' values read with ``reader``."""
    modules: dict[str, str] = {}
    layers: list[Layer] = []
    for path, module in named_modules(root):
        qualified = class_name_of(module)
        modules[path] = qualified
        layer = module_layer(path, module, qualified, reader)
        if layer is not None:
            layers.append(layer)
    return modules, layers


def module_layer(path: str, module: StandIn, qualified: str, reader: TensorReader = through_torch) -> Layer | None:
    """The layer of one module, or None when it owns no tensors itself."""
    state = module.__dict__
    params: dict[str, Param] = {}
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for table in ("_parameters", "_buffers"):
        for role, tensor in (state.get(table) or {}).items():
            if is_tensor(tensor):
                key = f"{path}.{role}" if path else str(role)
                params[str(role)] = tensor_param(str(role), tensor, key, reader)
    if not params:
        return None
    attrs = plain_attrs(state)
    class_name = short_class_name(qualified)
    metadata = {}
    kept_non_persistent = sorted(str(name) for name in non_persistent if name in params)
    if kept_non_persistent:
        metadata["non_persistent_buffers"] = ",".join(kept_non_persistent)
    return Layer(
        path,
        kind_of_class(class_name, attrs, tuple(params)),
        class_name,
        attrs=attrs,
        params=params,
        hints=(path,),
        metadata=metadata,
    )
