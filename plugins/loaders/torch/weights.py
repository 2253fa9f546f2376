"""The state_dict of a torch.save file, read without running code from it.

Part of the torch loader's public API (:func:`plugins.loaders.torch.read_state_dict`),
for commands that need the tensors themselves (``verify --model`` loads them into the
user's architecture) rather than the layer representation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plugins.loaders.torch import zips
from plugins.loaders.torch.modules import named_modules
from plugins.loaders.torch.tensors import is_tensor
from plugins.loaders.torch.unpickle import is_module, load_torch_save


def read_state_dict(path: Path, wrapper_key: str | None = None) -> dict[str, Any]:
    """name -> torch tensor for a torch.save file, nothing of it run.

    A state_dict (bare, or in a checkpoint under ``wrapper_key``, a dotted key such as
    "model" or "model.state_dict" as :attr:`Model.details["wrapper_key"]` gives it) is
    returned as it is; a pickled module (read as a tree of stand-ins by
    :mod:`.unpickle`) gives its parameters and persistent buffers under their
    state_dict keys.
    """
    with Path(path).open("rb") as stream:
        is_zip = stream.read(4).startswith(zips.ZIP_MAGIC)
    value, _ = load_torch_save(Path(path), is_zip)
    if wrapper_key:
        for part in wrapper_key.split("."):
            value = value[part]
    if not is_module(value):
        return {str(key): tensor for key, tensor in value.items() if is_tensor(tensor)}
    state: dict[str, Any] = {}
    for module_path, module in named_modules(value):
        fields = module.__dict__
        skipped = fields.get("_non_persistent_buffers_set") or set()
        for table in ("_parameters", "_buffers"):
            for name, tensor in (fields.get(table) or {}).items():
                if is_tensor(tensor) and not (table == "_buffers" and name in skipped):
                    state[f"{module_path}.{name}" if module_path else str(name)] = tensor
    return state
