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
    from inspector.records import ModelLoader, Reporter, Subcommand

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
