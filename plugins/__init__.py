"""The built-in graphinspect plugins.

Each module here is an ordinary pluggy plugin: it implements hooks from
:mod:`inspector.hookspecs` with :data:`inspector.hookspecs.hookimpl`, exactly as a
third-party plugin would, and is listed once in :data:`inspector.manager.BUILTIN_PLUGINS`.
Plugins import torch, onnx and onnxruntime inside functions, never at module level, so
that ``graphinspect --help`` stays fast.
"""
