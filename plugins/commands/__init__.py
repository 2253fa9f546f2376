"""Commands: ``graphinspect <name>``.

A small command is a module (:mod:`.inspect`, :mod:`.diff`, :mod:`.report`, :mod:`.plugins`); a command
with parts is a package whose ``__init__`` is the plugin (:mod:`.fuse`, :mod:`.verify`).
Each implements ``graphinspect_subcommands`` (and ``graphinspect_reporters`` for the
table of its own document). Commands appear in ``graphinspect --help`` in the order
listed below.
"""

PLUGINS = (
    "plugins.commands.inspect",
    "plugins.commands.diff",
    "plugins.commands.fuse",
    "plugins.commands.verify",
    "plugins.commands.report",
    "plugins.commands.plugins",
)
