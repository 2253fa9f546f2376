"""A third-party graphinspect plugin, as an installed distribution would ship it.

It adds a ``hello`` command that loads a model through the same facade the built-in
commands use, and a ``count`` reporter for inspect documents.
"""

from inspector.hookspecs import hookimpl
from inspector.records import Reporter, Subcommand


def _configure(parser):
    parser.add_argument("model", nargs="?")


def _run(args, plugins):
    if args.model:
        model = plugins.load_model(args.model)
        print(f"hello: {len(model.layers)} layers in {model.format}")
    else:
        print("hello from a third-party plugin")
    return 0


def _render_count(document, stream, options):
    stream.write(f"{len(document['layers'])} layers\n")


@hookimpl
def graphinspect_subcommands():
    yield Subcommand("hello", "Say hello (a test plugin).", _configure, _run)


@hookimpl
def graphinspect_reporters():
    yield Reporter("count", "Count the listed layers.", ("graphinspect/inspect@1",), _render_count)
