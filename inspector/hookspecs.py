"""Every hook a graphinspect plugin can implement: the contract between core and plugins.

A plugin is any module or object with functions decorated by :data:`hookimpl`, named
after the hooks below. Built-in plugins (the ``plugins`` package) and third-party
plugins (entry points of the group ``graphinspect``) use exactly these hooks; the core
calls nothing else. The guide for plugin authors is ``plugins/README.md``; the tests of
this contract, examples included, are ``tests/core/test_hook_contract.py``.

The rules every hook shares are kept by :class:`inspector.manager.Plugins`, the facade
through which the core asks for contributions (core code never calls ``pm.hook...``):

- **Arguments and results.** No hook takes arguments, and none is ``firstresult``: each
  implementation returns (or yields) an iterable of records, and the records of all
  plugins are concatenated. The record types are :class:`~inspector.records.ModelLoader`,
  :class:`~inspector.records.Subcommand`, :class:`~inspector.records.Reporter` and
  :class:`~inspector.records.Check` (fields documented in :mod:`inspector.records`), and
  :class:`~inspector.transforms.Transform` (documented in :mod:`inspector.transforms`).
- **When.** A hook is called each time the facade is asked for its records; nothing is
  cached. An implementation should be cheap and return the same records every time, and
  import heavy packages (torch, onnx, onnxruntime) only inside the records' callables,
  so that ``graphinspect --help`` stays fast.
- **Order.** Records come back in registration order, not pluggy's calling order (last
  registered first): the built-in plugins in the order of ``plugins.BUILTIN_PLUGINS``
  (loaders, transforms, checks, reports, commands; each kind in the order of its
  ``PLUGINS``), then the modules named in ``GRAPHINSPECT_PLUGINS``, then the entry
  points, then plugins added later with :meth:`Plugins.register`; each plugin's records
  in the order it yields them. ``@hookimpl(tryfirst=True)`` puts an implementation
  before all those without it, ``@hookimpl(trylast=True)`` after. Loaders are then
  sorted by descending ``priority`` and transforms by ascending ``order``, both stably,
  so registration order decides ties.
- **Names.** Within one hook a name is taken once: a record whose name an earlier record
  (in the order above) already has is skipped, with one warning naming both plugins.
  Reporters clash only when their schemas overlap as well (patterns included).
- **Failures.** An implementation that raises (also part-way through a generator), or
  returns something that is not the hook's record type, contributes nothing, with one
  warning naming the plugin; the other plugins go on. Each warning is one line
  (``graphinspect: warning: ...`` on stderr), given once per run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

from inspector import PROJECT_NAME

if TYPE_CHECKING:
    from inspector.records import Check, ModelLoader, Reporter, Subcommand
    from inspector.transforms import Transform

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Decorator that marks a function as a graphinspect hook implementation."""


# --------------------------------------------------------------------------- loading


@hookspec
def graphinspect_loaders() -> Iterable[ModelLoader]:
    """Model loaders: each reads one family of model files into an :class:`~inspector.ir.Model`.

    Called by :meth:`Plugins.loaders`, which :meth:`Plugins.load_model` asks once per
    model file a command opens (``inspect`` one, ``diff`` and ``verify`` two).

    Returns :class:`~inspector.records.ModelLoader` records,
    ``ModelLoader(name, formats, sniff, load, priority=0)``: ``sniff(path, head)`` gets
    the file's first 4096 bytes and says whether this loader reads the file (an
    exception counts as no); ``load(path)`` reads it, raising
    :class:`~inspector.errors.InputError` for anything wrong with the file; ``formats``
    names the ``Model.format`` values it produces (listed in the "unknown model format"
    error). Loaders are asked in descending ``priority``, registration order among
    equals, and the first whose ``sniff`` accepts the file loads it. A loader reads
    contents, never trusts the file's extension, and never runs code stored in a model
    file. ``name`` is unique among loaders.

    Example, one array saved with ``numpy.save`` read as a conv weight::

        from pathlib import Path

        import numpy as np

        from inspector.errors import InputError
        from inspector.hookspecs import hookimpl
        from inspector.ir import CONV, Layer, Model, Param
        from inspector.records import ModelLoader

        def sniff(path: Path, head: bytes) -> bool:
            return head.startswith(np.lib.format.MAGIC_PREFIX)

        def load(path: Path) -> Model:
            try:
                array = np.load(path, mmap_mode="r")  # shape and dtype now, values on use
            except ValueError as exc:
                raise InputError(path, f"is not a readable .npy file ({exc})") from exc
            weight = Param("weight", array.shape, str(array.dtype), lambda: array, "conv.weight")
            return Model("npy", str(path), layers=[Layer("conv", CONV, "Conv2d", params={"weight": weight})])

        @hookimpl
        def graphinspect_loaders():
            yield ModelLoader(name="npy", formats=("npy",), sniff=sniff, load=load)
    """


# --------------------------------------------------------------------------- commands


@hookspec
def graphinspect_subcommands() -> Iterable[Subcommand]:
    """Subcommands of the ``graphinspect`` command line.

    Called by :meth:`Plugins.subcommands`, once per command-line run: when
    :func:`inspector.cli.build_parser` builds the parser, before the arguments are
    parsed (so ``graphinspect --help`` calls it too). The order is the order of
    ``--help``; the built-in commands are inspect, diff, fuse, verify, report, plugins.

    Returns :class:`~inspector.records.Subcommand` records,
    ``Subcommand(name, summary, configure_parser, run)``: ``configure_parser(parser)``
    adds the command's arguments to its argparse subparser (``--debug`` and
    ``--no-color`` are already there); ``run(args, plugins)`` does the work with the
    :class:`~inspector.manager.Plugins` facade and returns the exit status (0 success,
    1 differences found), raising :class:`~inspector.errors.GraphinspectError` for bad
    input or usage, which the front end prints as one line with exit status 2. ``name``
    is unique among commands.

    Example, ``graphinspect count MODEL`` prints how many layers a model has::

        from inspector.hookspecs import hookimpl
        from inspector.records import Subcommand

        def configure(parser):
            parser.add_argument("model", help="any model file graphinspect reads")

        def run(args, plugins):
            model = plugins.load_model(args.model)
            print(f"{len(model.layers)} layers")
            return 0

        @hookimpl
        def graphinspect_subcommands():
            yield Subcommand("count", "Count the layers of a model.", configure, run)
    """


# --------------------------------------------------------------------------- reports


@hookspec
def graphinspect_reporters() -> Iterable[Reporter]:
    """Report formats, selected with ``--format NAME`` or by the suffix of ``-o FILE``.

    Called by :meth:`Plugins.reporters`, each time a command picks its reporter
    (:func:`inspector.output.choose_format`) and renders with it
    (:meth:`Plugins.reporter`): twice per command that writes a report.

    Returns :class:`~inspector.records.Reporter` records,
    ``Reporter(name, description, schemas, render, suffixes=())``: ``schemas`` are the
    versioned documents it renders, as names or shell-style patterns
    (``"graphinspect/diff@1"``, ``"graphinspect/*"``); ``render(document, stream,
    options)`` writes one document (a JSON-compatible dict) to a text stream, reading
    presentation settings with ``options.get`` (see :class:`~inspector.records.Reporter`);
    ``suffixes`` are the ``-o`` file endings that select it when no ``--format`` is
    given. The documents are ``graphinspect/diff@1`` (described in
    :mod:`inspector.report`), ``inspect@1``, ``fuse@1``, ``verify@1`` and ``plugins@1``
    (described in their commands' modules). A reporter renders only what the document
    holds, so every format tells the same story. Several reporters may share a name
    when their schemas do not overlap (each command has its own ``table``); for a
    document, the first reporter with the name that renders its schema is used.

    Example, ``graphinspect diff A B --format verdict`` (or ``-o report.verdict``)
    prints the verdict in one line::

        from inspector.hookspecs import hookimpl
        from inspector.records import Reporter

        def render(document, stream, options):
            summary = document["summary"]
            stream.write(f"{summary['verdict']}: {summary['matched']} matched, {summary['mismatched']} mismatched\\n")

        @hookimpl
        def graphinspect_reporters():
            yield Reporter("verdict", "The verdict in one line.", ("graphinspect/diff@1",), render, (".verdict",))
    """


# --------------------------------------------------------------------------- explaining


@hookspec
def graphinspect_transforms() -> Iterable[Transform]:
    """Transforms that explain how an exporter changed parameters, by re-computing them.

    Called by :meth:`Plugins.transforms`, once per diff
    (:func:`inspector.diff.diff_models`: ``diff``, ``verify`` when it matches layers,
    ``fuse --against``) and once by ``fuse`` to list the groups it can fuse.

    Returns :class:`~inspector.transforms.Transform` instances (the protocol is in
    :mod:`inspector.transforms`): ``propose(target, anchor, source)`` yields candidate
    groups of source layers, ``check(target, candidate)`` returns None or the reason it
    does not apply, ``reproduce(target, candidate)`` computes the expected target
    parameters in float64, and ``groups(source)`` lists what ``fuse`` can fuse. For each
    target layer, transforms are tried in ascending ``order`` (the built-ins use 10 to
    40, the default is 100), the one that explained the last layer of the same op type
    first (:meth:`~inspector.match.Matcher.transforms_for`); the first candidate that
    reproduces every parameter within tolerance explains the layer, and the transform's
    ``name`` is what the reports show (``layers[].transform`` and
    ``summary.by_transform`` of the diff document). A
    transform that raises while matching is skipped where it fails and reported as a
    ``transform_error`` finding. ``name`` is unique among transforms.

    Example, a transform for an exporter that negates conv weights (for illustration)::

        from inspector.hookspecs import hookimpl
        from inspector.ir import CONV
        from inspector.transforms import Reproduction, Transform

        class Negate(Transform):
            \"\"\"w' = -w.\"\"\"

            name = "negate"
            target_kinds = frozenset({CONV})

            def propose(self, target, anchor, source):
                layer = source.layer(anchor)
                if layer is not None and layer.kind == CONV:
                    yield self.candidate(layer)

            def check(self, target, candidate):
                (conv,) = candidate.sources
                if conv.params["weight"].shape != target.params["weight"].shape:
                    return "weight shapes differ"
                return None

            def reproduce(self, target, candidate):
                weight = candidate.sources[0].params["weight"]
                return Reproduction({"weight": -weight.array().astype("float64")}, origins={"weight": weight})

        @hookimpl
        def graphinspect_transforms():
            yield Negate()
    """


@hookspec
def graphinspect_checks() -> Iterable[Check]:
    """Checks that add findings to a finished diff (mismatches, NaN/Inf, unfolded BatchNorm, ...).

    Called by :meth:`Plugins.checks`, once per diff (:func:`inspector.diff.diff_models`),
    after matching. Every check runs, in registration order, and its findings are
    appended to ``DiffResult.findings`` in that order, after the matcher's own.

    Returns :class:`~inspector.records.Check` records, ``Check(name, description, run)``:
    ``run(result)`` reads the finished :class:`~inspector.results.DiffResult` and yields
    :class:`~inspector.records.Finding` records,
    ``Finding(severity, code, message, layer=None)`` with severity "error", "warning" or
    "info" and a stable ``code``; they become the ``findings`` of the diff document. A
    check must change nothing in the result; the verdict comes from the layers alone. A
    ``run`` that raises adds one warning finding, ``check_error``, naming the check.
    ``name`` is unique among checks.

    Example, a warning when most of the PyTorch model is not in the export::

        from inspector.hookspecs import hookimpl
        from inspector.records import Check, Finding

        def mostly_unused(result):
            unused, total = len(result.unmatched_source), len(result.source.param_layers())
            if unused > total / 2:
                yield Finding("warning", "mostly_unused", f"{unused} of {total} PyTorch layers are not in the export")

        @hookimpl
        def graphinspect_checks():
            yield Check("mostly_unused", "Warn when most of the PyTorch model is unused.", mostly_unused)
    """
