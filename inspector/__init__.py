"""graphinspect: explain every difference between a PyTorch model and its ONNX export.

The ``inspector`` package is the core: the common layer representation
(:mod:`inspector.ir`), the hook specifications (:mod:`inspector.hookspecs`), the plugin
manager (:mod:`inspector.manager`) and the command-line front end
(:mod:`inspector.cli`). It knows no file format and imports neither torch nor onnx at
module level; every format, transform, report and command is a plugin.

It is also the Python API (:mod:`inspector.api`)::

    from inspector import load_model, diff, verify, fuse

    report = diff("model.pt", "model.onnx")
    assert report.faithful, report.render("table")

Those names are loaded on first use, so ``import inspector`` stays as light as this file.
``diff`` is also the name of the core module :mod:`inspector.diff`; the package keeps the
name for the function (importing the module does not replace it), and the module is
reached as ``from inspector.diff import diff_models``, as everywhere in the code.
"""

import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.1.0"

PROJECT_NAME = "graphinspect"
"""The pluggy project name, the hookimpl marker name and the entry-point group."""

API_NAMES = ("load_model", "diff", "verify", "fuse", "Report", "DiffReport", "VerifyReport", "FuseReport")
"""The names of :mod:`inspector.api` this package gives, loaded on first use."""

if TYPE_CHECKING:  # for type checkers and editors (re-exports); at run time, __getattr__ below
    from inspector.api import DiffReport as DiffReport
    from inspector.api import FuseReport as FuseReport
    from inspector.api import Report as Report
    from inspector.api import VerifyReport as VerifyReport
    from inspector.api import diff as diff
    from inspector.api import fuse as fuse
    from inspector.api import load_model as load_model
    from inspector.api import verify as verify


def __getattr__(name: str):
    if name in API_NAMES:
        from inspector import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(API_NAMES))


class _Package(types.ModuleType):
    """This package's module type: importing the submodule :mod:`inspector.diff` sets
    the package attribute ``diff`` to the module, which would hide the API's ``diff``;
    API names are kept for the API (the submodule stays in ``sys.modules``)."""

    def __setattr__(self, name: str, value) -> None:
        if name in API_NAMES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
