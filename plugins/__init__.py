"""The built-in graphinspect plugins, grouped by kind: where to add what.

Every module listed here is an ordinary pluggy plugin: it implements hooks from
:mod:`inspector.hookspecs` with :data:`inspector.hookspecs.hookimpl`, exactly as a
third-party plugin would. Plugins import torch, onnx and onnxruntime inside functions,
never at module level, so that ``graphinspect --help`` stays fast.

========================  ==========================================  ===========================
to add                    where                                       hook
========================  ==========================================  ===========================
a model format            ``plugins/loaders/<format>/``               ``graphinspect_loaders``
a transform               ``plugins/transforms/<name>.py``            ``graphinspect_transforms``
a check (findings)        ``plugins/checks/``                         ``graphinspect_checks``
a report format           ``plugins/reports/<format>.py``             ``graphinspect_reporters``
a command                 ``plugins/commands/<name>.py`` (or package) ``graphinspect_subcommands``
========================  ==========================================  ===========================

Then list the module in its kind's ``PLUGINS`` (``plugins/<kind>/__init__.py``); the
order there is the order of registration (and of ``graphinspect --help`` for commands).
Modules whose names start with ``_`` are private helpers, not plugins. The hooks, with
their contracts and runnable examples, are in :mod:`inspector.hookspecs`; the tests of
each kind are in the same place under ``tests/``.
"""

from plugins import checks, commands, loaders, reports, transforms

BUILTIN_PLUGINS: tuple[str, ...] = (
    *loaders.PLUGINS,
    *transforms.PLUGINS,
    *checks.PLUGINS,
    *reports.PLUGINS,
    *commands.PLUGINS,
)
"""Every built-in plugin module, in registration order."""
