"""Running the two models: the PyTorch model (code runs here, and only when asked) and
ONNX Runtime.

What runs on the PyTorch side depends on what the file is (the safe loader has already
told, without running anything):

- ``torchscript``: ``torch.jit.load`` and called as it is (its TorchScript code runs),
  once the loader's checks have passed (no scripted ``__setstate__``, the archive within
  budget) and its code calls nothing that touches files (``torch.from_file``,
  ``torch.save``: :func:`plugins.loaders.torch.torchscript.run_concerns`);
- ``torch-export`` (.pt2): ``torch.export.load``, then ``torch.export.unflatten`` so
  that submodules are real modules whose forward hooks fire (``--per-layer``), once
  :func:`plugins.loaders.torch.pt2_safety.run_concerns` finds nothing that would run
  code while loading or running it (pickles beyond tensors, custom or opaque objects,
  AOTInductor libraries, guards code, shape expressions beyond arithmetic, node targets
  beyond tensor ops);
- either of these, when a check fails, only with ``--trust-pickle``, the same consent
  as for a pickled module, and said so in the refusal;
- ``pytorch-state-dict``: needs ``--model package.module:factory`` (or
  ``path/to/file.py:factory``): the user's code builds the architecture, the weights
  are read weights-only and loaded with ``load_state_dict(strict=True)``;
- ``pytorch-module`` (a whole pickled module, bare or in a checkpoint dict): with
  ``--model`` as above, its weights are read through the safe unpickler (no code from
  the file runs); with ``--trust-pickle``, ``torch.load(weights_only=False)``, which
  executes code from the file and imports the classes it names (the current directory
  is on the import path, after the installed packages: a ``timm/`` folder where the
  command runs does not shadow the installed timm). With neither,
  :func:`build_torch_runner` refuses with an :class:`~inspector.errors.InputError` that
  explains both.

Every model runs on CPU, in eval mode, in float32: a half-precision checkpoint is cast
with ``.float()`` as exporters do (Ultralytics exports ``model.float()``).

torch and onnxruntime are imported inside functions only.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import GraphinspectError, InputError, UsageError
from inspector.ir import Model
from plugins.commands.verify.words import CONSENT


@dataclass
class TorchRunner:
    """A runnable PyTorch model and how it was obtained.

    ``runner`` says how in words ("torchscript", "factory samples.lookalikes:rtdetr_stem",
    "trusted pickle"); ``hookable`` whether forward hooks on its submodules fire (not
    for TorchScript, whose submodules run inside the TorchScript interpreter);
    ``notes`` are facts for the report's lint (info).
    """

    module: Any
    runner: str
    hookable: bool
    notes: list[str] = field(default_factory=list)

    def named_modules(self) -> dict[str, Any]:
        return dict(self.module.named_modules())

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Call the model on ``arrays`` (positional, ONNX input order) and return its
        outputs flattened to numpy (see :func:`flatten_outputs`)."""
        return flatten_outputs(self.forward(arrays))

    def forward(self, arrays: Sequence[np.ndarray]) -> Any:
        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(_as_float32(array))) for array in arrays]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return self.module(*tensors)
            except GraphinspectError:
                raise
            except Exception as exc:  # noqa: BLE001 - the user's model failing is trouble, in one line
                raise GraphinspectError(f"the PyTorch model failed to run: {_one_line(exc)}") from exc


def flatten_outputs(value: Any) -> list[np.ndarray]:
    """The tensors in ``value``, depth first: a tensor, tuple/list items in order, dict
    values in insertion order; anything else (None, numbers, strings) is left out."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value.detach().cpu().numpy()]
    if isinstance(value, (list, tuple)):
        return [array for item in value for array in flatten_outputs(item)]
    if isinstance(value, dict):
        return [array for item in value.values() for array in flatten_outputs(item)]
    return []


def _as_float32(array: np.ndarray) -> np.ndarray:
    # The PyTorch side runs in float32 whatever the ONNX input dtype (fp16 exports).
    return array.astype(np.float32) if array.dtype.kind == "f" and array.dtype != np.float32 else array


# ----------------------------------------------------------------------------- PyTorch


def build_torch_runner(source: Model, factory: str | None, trust_pickle: bool) -> TorchRunner:
    """The runnable model for the file ``source`` was loaded from (see the module docstring)."""
    path = Path(source.path)
    if source.format == "torchscript":
        runner = _torchscript(path, trust_pickle)
    elif source.format == "torch-export":
        runner = _torch_export(path, trust_pickle)
    elif source.format in ("pytorch-state-dict", "pytorch-module"):
        if factory:
            runner = _from_factory(path, source, factory)
        elif source.format == "pytorch-module" and trust_pickle:
            runner = _trusted_pickle(path, source)
        elif source.format == "pytorch-module":
            raise InputError(
                path,
                "is a pickled PyTorch module; running it means unpickling it, which executes code from the file: "
                "pass --trust-pickle if you trust this file, or --model package.module:factory (or file.py:factory) "
                "to build the model with your code and load only its weights",
            )
        else:
            raise InputError(
                path,
                "is a state_dict (weights without the architecture): name the code that builds the model with "
                "--model package.module:factory or --model path/to/file.py:factory",
            )
    else:
        raise InputError(
            path,
            f"verify cannot run a {source.format} file (it runs TorchScript, .pt2, pickled modules and state_dicts)",
        )
    if factory and source.format in ("torchscript", "torch-export"):
        runner.notes.append(f"--model is not used: {path.name} is {source.format} and runs as it is")
    if source.details.get("dtype") in ("float16", "bfloat16"):
        runner.notes.append(
            f"the checkpoint stores {source.details['dtype']} weights; they run cast to float32, as exporters do"
        )
    return runner


def _prepare(module: Any) -> Any:
    return module.float().eval().to("cpu")


def _refuse_unless_trusted(path: Path, concerns: list[str], trusted: bool, runner: TorchRunner | None = None):
    """Refuse to run ``path`` for its ``concerns`` (one line), unless the user trusts it."""
    if not concerns:
        return
    more = f" (and {len(concerns) - 1} more)" if len(concerns) > 1 else ""
    if not trusted:
        raise InputError(path, f"refused to run: {concerns[0]}{more}; {CONSENT}")
    if runner is not None:
        runner.notes.append(f"run with --trust-pickle although {concerns[0]}{more}")


def _torchscript(path: Path, trusted: bool = False) -> TorchRunner:
    import torch

    from inspector.isolation import reading
    from plugins.loaders.torch import input_error
    from plugins.loaders.torch.torchscript import run_concerns

    try:
        concerns = run_concerns(path)
    except Exception as exc:  # noqa: BLE001 - the archive changed since it was loaded
        raise input_error(path, exc) from exc
    _refuse_unless_trusted(path, concerns, trusted)
    try:
        with reading(path, "loading it with torch.jit.load"):
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"TorchScript cannot load it: {_one_line(exc)}") from exc
    runner = TorchRunner(_Announced(_prepare(module), path), "torchscript", hookable=False)
    _refuse_unless_trusted(path, concerns, trusted, runner)
    return runner


def _torch_export(path: Path, trusted: bool = False) -> TorchRunner:
    import torch

    from inspector.isolation import reading
    from plugins.loaders.torch import input_error
    from plugins.loaders.torch.pt2_safety import run_concerns

    try:
        concerns = run_concerns(path)
    except Exception as exc:  # noqa: BLE001 - a refused archive, or one changed since it was loaded
        raise input_error(path, exc) from exc
    _refuse_unless_trusted(path, concerns, trusted)
    with warnings.catch_warnings(), _torch_logs_quiet():
        warnings.simplefilter("ignore")
        try:
            with reading(path, "loading it with torch.export.load"):
                program = torch.export.load(str(path))
                # unflatten keeps the module hierarchy as modules that are really called, so
                # forward hooks fire; program.module() inlines every submodule into one graph.
                module = torch.export.unflatten(program)
        except Exception as exc:  # noqa: BLE001
            raise InputError(path, f"torch.export cannot load it: {_one_line(exc)}") from exc
    # An exported program is already specialised for inference (eval); train()/eval()
    # are not supported on it, so it is only kept on CPU.
    runner = TorchRunner(module, "torch.export (unflattened)", hookable=True)
    _refuse_unless_trusted(path, concerns, trusted, runner)
    return runner


class _Announced:
    """A TorchScript module whose calls are announced to the crash supervisor: its code
    runs in native code, and a crash there is reported as the file's."""

    def __init__(self, module: Any, path: Path) -> None:
        self._module = module
        self._path = path

    def __call__(self, *args: Any) -> Any:
        from inspector.isolation import reading

        with reading(self._path, "running it (TorchScript)"):
            return self._module(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


@contextlib.contextmanager
def _torch_logs_quiet() -> Iterator[None]:
    """torch.export.load logs a traceback (16 lines) on stderr before raising; the error
    is reported in one line instead."""
    import logging

    loggers = [logging.getLogger(name) for name in ("torch.export", "torch._export", "torch")]
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, before):
            logger.disabled = disabled


def _trusted_pickle(path: Path, source: Model) -> TorchRunner:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # The pickle names the model's classes; import them from the installed
            # packages and then the current directory (as --model does).
            with _on_sys_path(os.getcwd()):
                obj = torch.load(str(path), weights_only=False, map_location="cpu")
        except ModuleNotFoundError as exc:
            raise InputError(
                path,
                f"unpickling it needs the Python module {exc.name!r}, which is not importable here: install the "
                "package the model was saved with, or build the model with --model package.module:factory "
                "(its weights are then read without unpickling code)",
            ) from exc
        except Exception as exc:  # noqa: BLE001
            raise InputError(path, f"cannot be unpickled: {_one_line(exc)}") from exc
    module = unwrap(obj, source.details.get("wrapper_key"))
    if not isinstance(module, torch.nn.Module):
        raise InputError(path, f"holds a {type(module).__name__}, not a torch.nn.Module, where the model was expected")
    key = source.details.get("wrapper_key")
    where = f" (checkpoint key {key!r})" if key else ""
    return TorchRunner(_prepare(module), f"trusted pickle{where}", hookable=True)


def _from_factory(path: Path, source: Model, spec: str) -> TorchRunner:
    import torch

    from plugins.loaders.torch import read_state_dict

    factory = load_factory(spec)
    try:
        module = factory()
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"--model {spec}: calling the factory failed: {_one_line(exc)}") from exc
    if not isinstance(module, torch.nn.Module):
        raise UsageError(f"--model {spec}: the factory returned a {type(module).__name__}, not a torch.nn.Module")
    weights = read_state_dict(path, source.details.get("wrapper_key"))
    try:
        result = module.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # size mismatches, one line each after a header
        mismatches = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
        detail = f"{len(mismatches)} size mismatches, the first: {mismatches[0]}" if mismatches else _one_line(exc)
        raise InputError(path, f"its weights do not fit the model built by --model {spec}: {detail}") from exc
    missing = [key for key in result.missing_keys]
    unexpected = [key for key in result.unexpected_keys]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_first(unexpected)})")
        raise InputError(path, f"its weights do not fit the model built by --model {spec}: keys {'; '.join(parts)}")
    return TorchRunner(_prepare(module), f"factory {spec}", hookable=True)


def unwrap(obj: Any, wrapper_key: str | None) -> Any:
    """``obj[key]`` for a dotted checkpoint key ("model", "model.state_dict"); ``obj`` for none."""
    if wrapper_key:
        for part in wrapper_key.split("."):
            obj = obj[part]
    return obj


def load_factory(spec: str) -> Any:
    """The callable named by ``package.module:factory`` or ``path/to/file.py:factory``.

    A file is imported under a private module name with its folder first on sys.path
    (so it can import its neighbours); a dotted module is imported with the current
    directory at the end of sys.path: an installed package comes first, so a folder of
    the same name where the command runs (a checkout of ``timm``) does not shadow it,
    and a module only the current directory holds is still found. The attribute may be
    dotted ("Class.build").
    """
    target, colon, attribute = spec.rpartition(":")
    if not colon or not target or not attribute:
        raise UsageError(f"--model wants package.module:factory or path/to/file.py:factory, not {spec!r}")
    try:
        if target.endswith(".py") or "/" in target or os.sep in target:
            module = _import_file(Path(target))
        else:
            with _on_sys_path(os.getcwd()):
                module = importlib.import_module(target)
    except GraphinspectError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code failing to import
        raise UsageError(f"--model {spec}: cannot import {target}: {_one_line(exc)}") from exc
    factory: Any = module
    for name in attribute.split("."):
        if not hasattr(factory, name):
            raise UsageError(f"--model {spec}: {target} has no attribute {attribute!r}")
        factory = getattr(factory, name)
    if not callable(factory):
        raise UsageError(f"--model {spec}: {attribute} is not callable")
    return factory


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise InputError(path, "no such file (named by --model)")
    name = f"_graphinspect_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(path, "cannot be imported as a Python module (named by --model)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up here
    with _on_sys_path(str(path.resolve().parent), first=True):
        spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _on_sys_path(folder: str, first: bool = False) -> Iterator[None]:
    """``folder`` on sys.path while the block runs: last (the current directory, after
    the installed packages), or ``first`` (a --model file's own folder)."""
    added = folder not in sys.path and not (not first and _cwd_entry_present(folder))
    if added:
        if first:
            sys.path.insert(0, folder)
        else:
            sys.path.append(folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


# ----------------------------------------------------------------------------- ONNX Runtime


def onnx_session(model: str | bytes, path: str, basic_optimizations: bool = False) -> Any:
    """An ONNX Runtime CPU session on a file path or serialized model bytes.

    ``basic_optimizations`` limits graph optimisation to ORT's basic level (constant
    folding, redundant nodes): for the per-layer session, whose intermediate tensors are
    graph outputs that the extended fusions could not remove anyway, it makes the
    session about three times faster to create.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: warnings would go to stderr unasked
    if basic_optimizations:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    from inspector.isolation import reading

    try:
        with reading(path, "loading it into ONNX Runtime"):
            return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"ONNX Runtime cannot load it: {_one_line(exc)}") from exc


def run_session(
    session: Any, feeds: dict[str, np.ndarray], path: str, output_names: list[str] | None = None
) -> list[np.ndarray]:
    from inspector.isolation import reading

    try:
        with reading(path, "running it in ONNX Runtime"):
            return session.run(output_names, feeds)
    except Exception as exc:  # noqa: BLE001
        raise GraphinspectError(f"ONNX Runtime failed to run {path}: {_one_line(exc)}") from exc


def _cwd_entry_present(folder: str) -> bool:
    # "" on sys.path (python -c, the interactive interpreter) is the current directory.
    return folder == os.getcwd() and "" in sys.path


def _first(keys: list[str], count: int = 3) -> str:
    shown = ", ".join(keys[:count])
    return shown + (", ..." if len(keys) > count else "")


def _one_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return f"{type(exc).__name__}: {line[:300]}"
    return type(exc).__name__
