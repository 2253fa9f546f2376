"""The PyTorch module paths an ONNX node can be traced back to, from its names.

Rules, strongest first (:func:`layer_hints` applies them in this order):

1. The legacy (TorchScript) exporter names a node ``/<scope>/.../<OpType>[_N]``, one
   scope component per module whose ``forward`` ran, each the module's path with the
   leading atoms dropped up to the last non-numeric one (torch.onnx.utils.
   ``_unqualified_variable_name``)::

       /m/model/model.0/conv/Conv        -> m.model.0.conv   ("model.0" overlaps "model")
       /model.22/cv2.0/cv2.0.0/conv/Conv -> model.22.cv2.0.0.conv
       /fc/Gemm                          -> fc
       /m/model/model.2/conv_1/Conv      -> m.model.2.conv_1, then m.model.2.conv
                                            (a module called twice gets "_1")

   :func:`legacy_scope` rebuilds the path by joining components, dropping the atoms a
   dotted component shares with the end of the path so far. onnxslim renames some nodes
   after their output tensor (``/m/mha/MatMul_output_0``) and names new initializers
   ``/m/mha/MatMul_output_0_weight``; both still parse, since only the last segment
   names the op. The node's first output is parsed the same way when it starts with
   "/". A second hint with every ``_<n>`` call-count suffix removed follows.
2. The dynamo exporter stores ``pkg.torch.onnx.name_scopes`` in the node's metadata, a
   Python-literal list ``['', 'm', 'm.model.0', 'm.model.0.bn', '<fx node>']`` whose
   entry before the last is the module path (here the BatchNorm's, on a Conv the
   rewriter fused it into). A trailing ``@<n>`` call count is removed in a second hint.
3. The tensor names of the layer's params, for each param the name the node uses and,
   through Identity chains, the initializer's: torch-style names give their owning
   module first (``m.fc.weight`` -> ``m.fc``, ``conv.weight_bias`` -> ``conv``), then
   the names themselves; scope-like names give their scope. Anonymous names
   (``onnx::Conv_25``, ``val_31``, ``133``) are left out.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable, Mapping

NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"

_ANONYMOUS = re.compile(r"^(onnx::.*|val_\d+|_?v_\d+|\d+|const_fold_opt__\d+)$")
_CALL_SUFFIX = re.compile(r"_\d+$")
_DYNAMO_CALL_SUFFIX = re.compile(r"@\d+$")


def legacy_scope(name: str) -> str | None:
    """The module path in a legacy-exporter node or tensor name, or None.

    ``"/m/model/model.0/conv/Conv"`` -> ``"m.model.0.conv"``; names not starting with
    "/" and nodes at the root (``"/Constant"``) have none. Only the folder part counts,
    and a node and its outputs share it: it is worked out once per folder.
    """
    folder = _folder(name)
    return _folder_scope(folder) if folder is not None else None


@functools.lru_cache(maxsize=4096)
def _folder_scope(folder: str) -> str | None:
    components = folder.split("/") if folder else []
    if not components or not all(components):
        return None
    if "." not in folder:
        return ".".join(components)  # no component can repeat the path's tail
    atoms: list[str] = []
    for component in components:
        parts = component.split(".")
        # "model.0" after "model" repeats it: the component is the path's tail, not a child.
        overlap = 0
        for size in range(min(len(parts) - 1, len(atoms)), 0, -1):
            if atoms[-size:] == parts[:size]:
                overlap = size
                break
        atoms.extend(parts[overlap:])
    return ".".join(atoms)


@functools.lru_cache(maxsize=4096)
def without_call_suffixes(scope: str) -> str:
    """``"m.model.2.conv_1"`` -> ``"m.model.2.conv"``: the scope of the module called again."""
    if "_" not in scope:
        return scope
    return ".".join(_CALL_SUFFIX.sub("", atom) for atom in scope.split("."))


def dynamo_scope(metadata: Mapping[str, str]) -> str | None:
    """The module path from the dynamo exporter's ``pkg.torch.onnx.name_scopes``, or None."""
    raw = metadata.get(NAME_SCOPES_KEY)
    if not raw:
        return None
    try:
        scopes = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(scopes, (list, tuple)) or len(scopes) < 2:
        return None
    module = scopes[-2]
    return module if isinstance(module, str) and module else None


def is_anonymous(name: str) -> bool:
    """Whether a tensor name is an exporter's serial name, useless for matching."""
    return not name or bool(_ANONYMOUS.match(name))


def tensor_owner(name: str) -> str | None:
    """The module a tensor name points at: its scope, or its torch-style prefix."""
    if name.startswith("/"):
        return legacy_scope(name)
    if "." in name and not is_anonymous(name):
        return name.rsplit(".", 1)[0]
    return None


def layer_hints(
    node_name: str, first_output: str, metadata: Mapping[str, str], param_names: Iterable[str]
) -> tuple[str, ...]:
    """Every name a node is known by, strongest first (the rules in the module docstring).

    Rule 1 depends only on the folder of each name, worked out once per folder
    (:func:`_folder_hints`); a node and its output share it, and most nodes add nothing
    else (no dynamo metadata, no named param)."""
    node_folder = _folder(node_name)
    output_folder = _folder(first_output)
    hints = _folder_hints(node_folder)
    if output_folder != node_folder:
        hints = _joined(hints, _folder_hints(output_folder))
    scope = dynamo_scope(metadata) if metadata else None
    names = [name for name in param_names if not is_anonymous(name)] if param_names else ()
    if scope:
        hints = _joined(hints, (scope, _DYNAMO_CALL_SUFFIX.sub("", scope)))
    if names:
        hints = _joined(hints, [owner for owner in map(tensor_owner, names) if owner])
        hints = _joined(hints, [name for name in names if not name.startswith("/")])
    return hints


def _folder(name: str) -> str | None:
    """The folder part of a legacy name ("/m/conv/Conv" -> "m/conv"), None if not one."""
    return name[1:].rpartition("/")[0] if name.startswith("/") else None


@functools.lru_cache(maxsize=4096)
def _folder_hints(folder: str | None) -> tuple[str, ...]:
    """Rule 1 for a name in ``folder`` (:func:`_folder`): its scope, then without call suffixes."""
    scope = _folder_scope(folder) if folder is not None else None
    if not scope:
        return ()
    stripped = without_call_suffixes(scope)
    return (scope,) if stripped in (scope, "") else (scope, stripped)


def _joined(hints: tuple[str, ...], more: Iterable[str]) -> tuple[str, ...]:
    """``hints`` followed by those of ``more`` that are new and not empty."""
    return tuple(dict.fromkeys((*hints, *(hint for hint in more if hint))))
