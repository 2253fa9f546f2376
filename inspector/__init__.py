"""graphinspect: explain every difference between a PyTorch model and its ONNX export.

The ``inspector`` package is the core: the common layer representation
(:mod:`inspector.ir`), the hook specifications (:mod:`inspector.hookspecs`), the plugin
manager (:mod:`inspector.manager`) and the command-line front end
(:mod:`inspector.cli`). It knows no file format and imports neither torch nor onnx at
module level; every format, transform, report and command is a plugin.
"""

__version__ = "0.1.0"

PROJECT_NAME = "graphinspect"
"""The pluggy project name, the hookimpl marker name and the entry-point group."""
