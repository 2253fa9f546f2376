"""The ONNX loader: ``.onnx`` files (with or without external data) -> :class:`~inspector.ir.Model`.

- Recognised by content (:mod:`.sniff`): the head must parse as the start of a
  ``ModelProto``; the file's extension plays no part.
- Loaded with onnx (external data checked, never read eagerly: :mod:`.tensors`), the
  structure read from the nodes in one pass; one :class:`~inspector.ir.Layer` per top-level node in
  graph order, constant inputs as lazily read, shared :class:`~inspector.ir.Param`
  objects under roles ("weight", "bias", "running_mean", ... :mod:`.kinds`), and hints
  naming the PyTorch modules a node came from (:mod:`.hints`).
- ``Model.details``: ``ir_version``, ``opset`` ({domain: version}, the default domain
  as "ai.onnx"), ``graph_name``, ``doc_string`` (cut short), ``external_data``,
  ``subgraphs`` (top-level nodes with If/Loop/Scan bodies; bodies are not loaded) and
  ``functions`` (model-local functions). ``Model.metadata`` is the model's
  metadata_props; each ``Layer.metadata`` its node's. ``Model.modules`` stays empty.

onnx is imported inside functions only, so that
``graphinspect --help`` does not pay for them.
"""

from __future__ import annotations

from inspector.hookspecs import hookimpl
from inspector.records import ModelLoader

from .loader import load_onnx
from .sniff import looks_like_onnx

__all__ = ["load_onnx", "looks_like_onnx", "graphinspect_loaders"]


@hookimpl
def graphinspect_loaders():
    yield ModelLoader(name="onnx", formats=("onnx",), sniff=looks_like_onnx, load=load_onnx)
