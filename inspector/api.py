"""The Python API: ``from inspector import load_model, diff, verify, fuse``.

The same work as the commands, returning typed results instead of printing::

    from inspector import diff

    report = diff("model.pt", "model.onnx")
    if not report.faithful:
        print(report.render("table"))          # any reporter: table, markdown, html, sarif, ...
        for layer in report.problems:          # inspector.results.LayerDiff, in graph order
            print(layer.target, layer.status, [p.max_rel_err for p in layer.params])
    report.save("result.json")                 # the graphinspect/diff@1 document

- :func:`load_model` reads one file into an :class:`inspector.ir.Model` (by content, never
  running code from it), as every command does.
- :func:`diff` matches, re-computes and explains (:func:`inspector.diff.diff_models`) and
  returns a :class:`DiffReport`: the :class:`~inspector.results.DiffResult` and its
  ``graphinspect/diff@1`` document (:mod:`inspector.report`).
- :func:`verify` and :func:`fuse` run the ``verify`` and ``fuse`` commands through the
  plugin manager (their code is plugins, which the core does not import) and return
  :class:`VerifyReport` and :class:`FuseReport`, whose ``document`` is exactly what
  ``--format json`` writes. Keyword arguments are the commands' options, spelt in Python.

Bad input raises :class:`inspector.errors.InputError` (a file) or
:class:`~inspector.errors.UsageError` (arguments), with the one-line message the command
line would print. Nothing here is imported by ``import inspector``: the package loads
this module on first use of one of its names.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.errors import UsageError

if TYPE_CHECKING:
    from inspector.ir import Model
    from inspector.manager import Plugins
    from inspector.results import DiffResult, LayerDiff

PathLike = str | os.PathLike
EXIT_OK = 0
EXIT_DIFFERS = 1

__all__ = ["DiffReport", "FuseReport", "Report", "VerifyReport", "diff", "fuse", "load_model", "verify"]


@lru_cache(maxsize=1)
def default_plugins() -> "Plugins":
    """The plugin manager the API uses unless given one: built once, like the command
    line's (built-ins, ``GRAPHINSPECT_PLUGINS``, entry points unless autoload is off)."""
    from inspector.manager import get_plugin_manager

    return get_plugin_manager()


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Report:
    """What a command found: its versioned ``document`` (a JSON-compatible dict) and the
    ``exit_status`` the command line would end with (0 good, 1 differences)."""

    document: dict[str, Any]
    exit_status: int
    plugins: "Plugins" = field(default_factory=default_plugins, repr=False, compare=False)

    @property
    def schema(self) -> str:
        """The document's schema, ``graphinspect/<command>@<major>``."""
        return self.document["schema"]

    def render(self, fmt: str = "table", *, width: int | None = 120, color: bool = False) -> str:
        """The document in the format ``fmt`` (any reporter that renders its schema:
        ``table``, ``json``, ``markdown``, ``html``, ``junit``, ``sarif``, ...)."""
        buffer = io.StringIO()
        self.plugins.reporter(fmt, self.schema).render(
            self.document, buffer, {"color": color, "width": width, "to_file": True}
        )
        return buffer.getvalue()

    def save(self, path: PathLike, fmt: str | None = None) -> None:
        """Write the document to ``path`` as ``-o`` would (atomically, never over one of
        the command's inputs), in ``fmt`` or the format its suffix names, else JSON."""
        from inspector.output import choose_format, prepare_output

        output = prepare_output(os.fspath(path), inputs=self._inputs())
        chosen = choose_format(fmt, output, self.plugins, self.schema, default="json")
        output.write_text(self.render(chosen, width=None))

    def to_json(self) -> str:
        """The document as the ``json`` reporter writes it (NaN and infinities as null)."""
        return self.render("json")

    def _inputs(self) -> list[str]:
        return [
            entry["path"]
            for key in ("source", "target")
            if isinstance(entry := self.document.get(key), dict) and entry.get("path")
        ]


@dataclass(frozen=True)
class DiffReport(Report):
    """A diff: ``result`` (the typed :class:`~inspector.results.DiffResult`: layers,
    parameters, findings, coverage) and its ``graphinspect/diff@1`` document."""

    result: "DiffResult | None" = field(default=None, repr=False, compare=False)

    @property
    def verdict(self) -> str:
        """ "faithful", "differs" or "incomplete"."""
        return self.document["summary"]["verdict"]

    @property
    def faithful(self) -> bool:
        """Nothing mismatched, nothing unmatched, every stored float accounted for."""
        return self.verdict == "faithful"

    @property
    def problems(self) -> "list[LayerDiff]":
        """The mismatched and unmatched ONNX layers, in graph order."""
        assert self.result is not None
        return [layer for layer in self.result.layers if layer.status != "ok"]

    @property
    def summary(self) -> str:
        """The verdict in words (the document's ``summary.text``)."""
        return self.document["summary"]["text"]


@dataclass(frozen=True)
class VerifyReport(Report):
    """A verify run: its ``graphinspect/verify@2`` document (outputs, layers)."""

    @property
    def verdict(self) -> str:
        """ "same" or "differs" (see the document's contract for any other word)."""
        return self.document["verdict"]

    @property
    def same(self) -> bool:
        return self.verdict == "same"

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """One comparison per ONNX output (max_abs_err, max_rel_err, cosine, status, ...)."""
        return self.document["outputs"]

    @property
    def layers(self) -> list[dict[str, Any]] | None:
        """One comparison per matched layer with ``per_layer=True``, else None."""
        return self.document.get("layers")

    @property
    def first_divergent(self) -> str | None:
        """The first ONNX node whose activation differs (``per_layer=True``), or None."""
        return self.document["first_divergent"]


@dataclass(frozen=True)
class FuseReport(Report):
    """A fuse run: its ``graphinspect/fuse@1`` document (groups, weights written, check)."""

    @property
    def groups(self) -> list[dict[str, Any]]:
        """Each fused group: transform, sources, fused_name, note, params with ranges."""
        return self.document["groups"]

    @property
    def written(self) -> dict[str, Any] | None:
        """Where ``weights=`` went (path, format, tensors), or None."""
        return self.document["written"]

    @property
    def against(self) -> dict[str, Any] | None:
        """The check against ``against=`` (verdict, per-layer status), or None."""
        return self.document["against"]

    @property
    def ok(self) -> bool:
        """True unless ``against=`` found a group missing or different."""
        return self.exit_status == EXIT_OK


# ----------------------------------------------------------------------------- functions


def load_model(path: PathLike, *, plugins: "Plugins | None" = None) -> "Model":
    """Read ``path`` (PyTorch, safetensors, TorchScript, .pt2 or ONNX, recognised by
    content) into the common layer representation, without running code from it."""
    return (plugins or default_plugins()).load_model(path)


def diff(
    source: "PathLike | Model",
    target: "PathLike | Model",
    *,
    rtol: float | None = None,
    atol: float | None = None,
    plugins: "Plugins | None" = None,
) -> DiffReport:
    """Match every ONNX layer of ``target`` to the PyTorch layers of ``source`` it came
    from, re-compute each transform in float64 and report what differs.

    ``source`` and ``target`` are paths (swapped, with a note on stderr, when the ONNX
    file comes first, as on the command line) or models from :func:`load_model`.
    ``rtol``/``atol`` override the per-dtype tolerances.
    """
    from inspector.diff import diff_models
    from inspector.report import build_document

    plugins = plugins or default_plugins()
    _check_tolerances(rtol=rtol, atol=atol)
    if isinstance(source, (str, os.PathLike)) and isinstance(target, (str, os.PathLike)):
        source_model, target_model = plugins.load_pair(source, target)
    else:
        source_model = plugins.load_model(source) if isinstance(source, (str, os.PathLike)) else source
        target_model = plugins.load_model(target) if isinstance(target, (str, os.PathLike)) else target
    result = diff_models(plugins, source_model, target_model, rtol=rtol, atol=atol)
    document = build_document(result, rtol=rtol, atol=atol)
    status = EXIT_OK if result.verdict == "faithful" else EXIT_DIFFERS
    return DiffReport(document, status, plugins, result)


def verify(
    source: PathLike,
    target: PathLike,
    *,
    model: str | None = None,
    trust_pickle: bool = False,
    image: PathLike | None = None,
    input: PathLike | None = None,  # the command's --input (a builtin name, kept for the match)
    seed: int = 0,
    imgsz: int | Sequence[int] | None = None,
    resize: str = "stretch",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    check_error_stat: str = "max",
    per_layer: bool = False,
    layers: Sequence[str] | None = None,
    layer_rtol: float | None = None,
    plugins: "Plugins | None" = None,
) -> VerifyReport:
    """Run the PyTorch model ``source`` and its export ``target`` on the same input and
    compare the outputs (and, with ``per_layer`` or ``layers`` globs, every matched layer),
    as ``graphinspect verify`` does; this runs model code, so ``model=
    "package.module:factory"`` (or ``trust_pickle=True`` for a pickled module) is needed
    where the command line needs it. The input is random (``seed``), an ``image`` or your
    ``input`` (.npy/.npz)."""
    _check_tolerances(atol=atol, rtol=rtol, layer_rtol=layer_rtol)
    options = {
        "model": model,
        "trust_pickle": trust_pickle,
        "image": _path_or_none(image),
        "input": _path_or_none(input),
        "seed": seed,
        "imgsz": _imgsz(imgsz),
        "resize": resize,
        "mean": list(mean) if mean is not None else None,
        "std": list(std) if std is not None else None,
        "atol": atol,
        "rtol": rtol,
        "check_error_stat": check_error_stat,
        "per_layer": per_layer,
        "layer": list(layers) if layers else None,
        "layer_rtol": layer_rtol,
    }
    plugins = plugins or default_plugins()
    document, status = run_command("verify", [source, target], options, plugins)
    return VerifyReport(document, status, plugins)


def fuse(
    model: PathLike,
    *,
    against: PathLike | None = None,
    weights: PathLike | None = None,
    layers: Sequence[str] | None = None,
    plugins: "Plugins | None" = None,
) -> FuseReport:
    """Re-compute the fused weights an exporter makes (Conv+BN folding, RepConv merging)
    from the PyTorch ``model``, as ``graphinspect fuse`` does: ``weights=`` writes the fused
    state_dict (.pt/.pth/.safetensors), ``against=`` checks each group against an export,
    ``layers`` globs narrow the listed groups."""
    options = {
        "against": _path_or_none(against),
        "weights": _path_or_none(weights),
        "layer": list(layers) if layers else None,
    }
    plugins = plugins or default_plugins()
    document, status = run_command("fuse", [model], options, plugins)
    return FuseReport(document, status, plugins)


def run_command(
    name: str, positional: Sequence[PathLike], options: dict[str, Any], plugins: "Plugins"
) -> tuple[dict[str, Any], int]:
    """Run the command ``name`` as the command line would, with ``options`` as its parsed
    arguments, and return (its JSON document, its exit status).

    The command writes its document with ``--format json`` into a temporary folder, the
    one way every command (a plugin's too) hands its document out; reading it back gives
    exactly what a user's ``-o result.json`` holds.
    """
    command = next((command for command in plugins.subcommands() if command.name == name), None)
    if command is None:
        raise UsageError(f"no command {name!r} is registered")
    parser = argparse.ArgumentParser(prog=f"graphinspect {name}", add_help=False)
    command.configure_parser(parser)
    args = parser.parse_args(["--", *(os.fspath(path) for path in positional)])
    for key, value in options.items():
        if not hasattr(args, key):
            raise UsageError(f"the {name} command has no option {key!r}")
        setattr(args, key, value)
    with tempfile.TemporaryDirectory(prefix="graphinspect-") as folder:
        result = Path(folder) / f"{name}.json"
        args.format, args.output, args.no_color, args.debug = "json", str(result), True, False
        status = int(command.run(args, plugins))
        document = json.loads(result.read_text(encoding="utf-8"))
    return document, status


def _check_tolerances(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            raise UsageError(f"{name} must be a number >= 0, not {value!r}")


def _path_or_none(value: PathLike | None) -> str | None:
    return None if value is None else os.fspath(value)


def _imgsz(value: int | Sequence[int] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, int):
        return str(value)
    return ",".join(str(int(size)) for size in value)
