"""Every hook a graphinspect plugin can implement.

A plugin is any module or object with functions decorated by :data:`hookimpl`, whose
names are the hook names below. Built-in plugins (the ``plugins`` package) and
third-party plugins (entry points of the group ``graphinspect``) use exactly these
hooks; the core calls nothing else.

Each hook returns an iterable of small records (:mod:`inspector.records`); the results
of all plugins are concatenated. A third-party package declares its plugin in its
``pyproject.toml``::

    [project.entry-points.graphinspect]
    my_plugin = "my_package.graphinspect_plugin"

and sets ``GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD=1`` in its own tests if it wants to run
without the other installed plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

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
def graphinspect_loaders() -> Iterable["ModelLoader"]:
    """Model loaders this plugin contributes.

    The core asks every loader's ``sniff`` (highest ``priority`` first) and loads the
    file with the first that accepts it. Loaders read file contents, never trust the
    file's extension, and never run code stored in a model file.

    Example::

        from pathlib import Path
        from inspector.hookspecs import hookimpl
        from inspector.ir import Model
        from inspector.records import ModelLoader

        def sniff(path: Path, head: bytes) -> bool:
            return head.startswith(b"MYFMT")

        def load(path: Path) -> Model:
            return Model(format="myfmt", path=str(path), layers=[...])

        @hookimpl
        def graphinspect_loaders():
            yield ModelLoader(name="myfmt", formats=("myfmt",), sniff=sniff, load=load)
    """


# --------------------------------------------------------------------------- commands


@hookspec
def graphinspect_subcommands() -> Iterable["Subcommand"]:
    """Subcommands of the ``graphinspect`` command line.

    Names must be unique across plugins; a clash is reported when the parser is built.

    Example::

        from inspector.hookspecs import hookimpl
        from inspector.records import Subcommand

        def configure(parser):
            parser.add_argument("model")

        def run(args, plugins):
            model = plugins.load_model(args.model)
            print(len(model.layers))
            return 0

        @hookimpl
        def graphinspect_subcommands():
            yield Subcommand("count", "Count the layers of a model.", configure, run)
    """


# --------------------------------------------------------------------------- reports


@hookspec
def graphinspect_reporters() -> Iterable["Reporter"]:
    """Report formats, selected with ``--format NAME`` (or by the ``-o`` file's suffix).

    A reporter renders one of the versioned documents the commands build (the diff
    document is described in :mod:`inspector.report`); it must not compute anything the
    document does not hold, so every format tells the same story.

    Example::

        from inspector.hookspecs import hookimpl
        from inspector.records import Reporter

        def render(document, stream, options):
            stream.write(f"{document['summary']['verdict']}\\n")

        @hookimpl
        def graphinspect_reporters():
            yield Reporter("verdict", "Just the verdict.", ("graphinspect/diff@1",), render)
    """


# --------------------------------------------------------------------------- explaining


@hookspec
def graphinspect_transforms() -> Iterable["Transform"]:
    """Transforms that explain how an exporter changed parameters (see
    :mod:`inspector.transforms` for the protocol: ``propose``, ``check``, ``reproduce``).

    Example, a transform for exporters that negate a weight (for illustration)::

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
                return Reproduction({"weight": -weight.array().astype("float64")},
                                    origins={"weight": weight})

        @hookimpl
        def graphinspect_transforms():
            yield Negate()
    """


@hookspec
def graphinspect_checks() -> Iterable["Check"]:
    """Checks that add findings to a finished diff (NaN/Inf, unfolded BatchNorm, ...).

    Example::

        from inspector.hookspecs import hookimpl
        from inspector.records import Check, Finding

        def too_many_unmatched(result):
            if len(result.unmatched_source) > 100:
                yield Finding("warning", "many_unmatched", "over 100 PyTorch layers unused")

        @hookimpl
        def graphinspect_checks():
            yield Check("many_unmatched", "Warn when most of the model is unused.", too_many_unmatched)
    """
