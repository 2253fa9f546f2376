"""The ``graphinspect`` command line: an argparse front end whose commands are plugins.

Every subcommand (``inspect``, ``plugins``, ``diff``, ...) comes from the
``graphinspect_subcommands`` hook, built-in ones included. The front end owns only what
all commands share: ``--version``, ``--debug`` (show tracebacks), ``--color
auto|always|never`` (``--no-color`` is ``--color never``; see
:func:`inspector.output.wants_color` for ``NO_COLOR``/``FORCE_COLOR``), and the
rule that any :class:`~inspector.errors.GraphinspectError` (and any unexpected
exception) ends the command with one line on stderr and exit status 2. The line is
escaped (:func:`error_line`): a file name holding a newline or an escape sequence stays
one visible line. Run as a program (``main()`` without arguments), the command runs
under :func:`inspector.isolation.supervise`, so that even a crash of native code on a
crafted file ends in that one line.

Exit status, like diff(1): 0 no difference / success, 1 differences found, 2 trouble.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import traceback
from collections.abc import Iterator, Sequence

from inspector import PROJECT_NAME, __version__
from inspector.errors import GraphinspectError

EXIT_OK = 0
EXIT_DIFFERS = 1
EXIT_TROUBLE = 2

GC_THRESHOLD = 100_000
"""Allocations between two young-generation collections while a command runs (CPython's
default is 700; see :func:`rare_collections`)."""
OLD_GC_THRESHOLD = 1_000_000
"""Young collections between two collections of the older generations while a command
runs (CPython's default is 10): never, in practice (see :func:`rare_collections`)."""


def non_negative(text: str) -> float:
    """An argparse ``type`` for tolerances and sizes: a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be zero or positive, not {text}")
    return value


def positive(text: str) -> float:
    """An argparse ``type``: a number > 0."""
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be positive, not 0")
    return value


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit 2 with a one-line message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_TROUBLE, f"{self.prog}: error: {message}\n")


def _add_common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else False
    parser.add_argument("--debug", action="store_true", default=default, help="show the traceback of an error")
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default=argparse.SUPPRESS if suppress else "auto",
        help="colour the terminal output: auto (default: on a terminal, unless NO_COLOR is set or FORCE_COLOR is), "
        "always, never; files written with -o are never coloured",
    )
    parser.add_argument(
        "--no-color", dest="no_color", action="store_true", default=default, help="the same as --color never"
    )


def build_parser(plugins) -> argparse.ArgumentParser:
    """The full parser: common options plus one subparser per contributed subcommand."""
    parser = _Parser(
        prog=PROJECT_NAME,
        description="Explain every difference between a PyTorch model and its ONNX export.",
        epilog="Exit status: 0 same/success, 1 differences found, 2 trouble (bad input or usage).",
    )
    parser.add_argument("--version", action="version", version=f"{PROJECT_NAME} {__version__}")
    _add_common_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for subcommand in plugins.subcommands():
        sub = commands.add_parser(subcommand.name, help=subcommand.summary, description=subcommand.summary)
        _add_common_options(sub, suppress=True)
        subcommand.configure_parser(sub)
        sub.set_defaults(_run=subcommand.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status. Without ``argv`` (a program's
    entry point) the command runs supervised (:mod:`inspector.isolation`)."""
    if argv is None:
        from inspector.isolation import supervise

        return supervise(lambda: _main(sys.argv[1:]))
    return _main(list(argv))


def _main(argv: list[str]) -> int:
    debug = "--debug" in argv
    try:
        from inspector.manager import get_plugin_manager
        from inspector.output import set_color_mode

        # The overview (no subcommand: --help, --version, nothing) lists the subcommands
        # only, so it registers no built-in loader, transform, check or reporter.
        overview = all(arg.startswith("-") for arg in argv)
        plugins = get_plugin_manager(builtin_kinds=("commands",) if overview else None)
        parser = build_parser(plugins)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_TROUBLE
        mode = "never" if args.no_color else args.color
        args.no_color = mode == "never"  # what commands read
        set_color_mode(mode)
        try:
            with rare_collections():
                return int(args._run(args, plugins))
        finally:
            set_color_mode("auto")  # main() may run again in the same process (tests, the API)
    except GraphinspectError as exc:
        if debug:
            traceback.print_exc()
        _error(str(exc))
        return EXIT_TROUBLE
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (| head): not an error of ours; keep Python quiet at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback, unless --debug
        if debug:
            traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        _error(f"internal error: {message} (run with --debug for the traceback)")
        return EXIT_TROUBLE


@contextlib.contextmanager
def rare_collections() -> Iterator[None]:
    """Run a command with the cyclic garbage collector mostly out of the way.

    A diff creates millions of small objects (a few per tensor, layer and node) that
    live until it ends, and frees its temporaries by reference counting. With CPython's
    default thresholds the collector runs every 700 allocations and, ever more often as
    the live objects pile up, walks all of them: 30-35% of the CPU time of a diff from
    3,000 Conv blocks up, growing faster than the model. So everything imported so far
    is frozen (never walked again: it lives as long as the process), young objects are
    collected every :data:`GC_THRESHOLD` allocations instead of 700, which bounds
    uncollected cyclic garbage, and the older generations, which hold what survived
    a young collection (the models, their layers, the results: live until the end),
    are not walked again (:data:`OLD_GC_THRESHOLD`; each walk of them grew with the
    model: 7-9% of a 10,000-block diff). Loaders leave no cycles behind them (the
    restricted unpickler breaks its own), so nothing piles up there. All of it is
    undone afterwards (``main`` also runs inside tests), except in a process about to
    leave by ``os._exit`` (:func:`inspector.isolation.ends_by_exit`), where collecting
    is only switched off.
    """
    from inspector.isolation import ends_by_exit

    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, OLD_GC_THRESHOLD, OLD_GC_THRESHOLD)
    try:
        yield
    finally:
        if ends_by_exit():
            # The process leaves by os._exit next: with the thresholds back to CPython's,
            # the first allocations would walk every object still alive (0.66 s at
            # 10,000 blocks), all of which the exit gives back at once.
            gc.disable()
        else:
            gc.set_threshold(*threshold)
            gc.unfreeze()


def _error(message: str) -> None:
    print(error_line(message), file=sys.stderr)


def error_line(message: str) -> str:
    """``graphinspect: error: <message>`` as one line that shows what it says: control
    characters (newline, carriage return, ESC, ...), other invisible ones (bidi
    overrides) and undecodable bytes of file names are written as escapes (``\\n``,
    ``\\x1b``, ``\\udcff``), never passed to the terminal."""
    return f"{PROJECT_NAME}: error: {escape(message)}"


def escape(text: str) -> str:
    """``text`` with every non-printable character as its Python escape."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
