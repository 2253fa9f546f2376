"""Loaders: read a model file into the common layer representation (:mod:`inspector.ir`).

One subpackage per family of files; each implements ``graphinspect_loaders`` and returns
a :class:`~inspector.records.ModelLoader` (``sniff`` by content, ``load``, ``priority``).
A new format is a new subpackage here, listed below.
"""

PLUGINS = (
    "plugins.loaders.torch",
    "plugins.loaders.onnx",
)
