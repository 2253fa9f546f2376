"""Test helpers for your own test suite: is my ONNX export faithful to my PyTorch model?

::

    # tests/test_export.py of your project
    from inspector.testing import assert_export_faithful

    def test_export_is_faithful(tmp_path):
        model = build_model().eval()
        torch.onnx.export(model, (torch.rand(1, 3, 64, 64),), tmp_path / "model.onnx")
        assert_export_faithful(model, tmp_path / "model.onnx")

:func:`assert_export_faithful` diffs the pair (:func:`inspector.api.diff`) and, unless
the verdict is "faithful", fails with the problems table: the ``table`` reporter's
rendering of the diff document narrowed to the mismatched and unmatched layers, with the
summary, the findings and the verdict, so the failure says which layer and which output
channel differ, and by how much. It needs no pytest (it raises ``AssertionError``); with
pytest installed, graphinspect's pytest plugin (:mod:`inspector.pytest_plugin`) also
offers it as the fixture ``export_faithful`` with tolerances from the pytest
configuration.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inspector.api import DiffReport

PROBLEMS_WIDTH = 120
"""The width of the problems table in a failure message (pytest shows it as it is)."""


def assert_export_faithful(
    pt_path_or_module: Any,
    onnx_path: str | os.PathLike,
    *,
    rtol: float | None = None,
    atol: float | None = None,
) -> "DiffReport":
    """Fail unless ``onnx_path`` is a faithful export of ``pt_path_or_module``.

    ``pt_path_or_module`` is a file graphinspect reads (a checkpoint, state_dict,
    pickled module, TorchScript, .pt2 or safetensors file) or a live ``torch.nn.Module``,
    which is saved to a temporary file first (the whole module, so layer kinds and
    BatchNorm eps come along; its state_dict when the module cannot be pickled; a
    ScriptModule with ``torch.jit.save``). ``rtol``/``atol`` override the per-dtype
    tolerances. Returns the :class:`~inspector.api.DiffReport` when faithful; raises
    ``AssertionError`` with the problems table otherwise.
    """
    __tracebackhide__ = True  # pytest: show the caller's line, not this one
    from inspector.api import diff

    with _model_file(pt_path_or_module) as source:
        report = diff(source, onnx_path, rtol=rtol, atol=atol)
    if not isinstance(pt_path_or_module, (str, os.PathLike)):
        # The temporary file is gone; name what the caller gave.
        report.document["source"]["path"] = _module_name(pt_path_or_module)
    if not report.faithful:
        raise AssertionError(failure_message(report, pt_path_or_module, onnx_path))
    return report


def failure_message(report: "DiffReport", source: Any, onnx_path: str | os.PathLike) -> str:
    """The assertion message: what was compared, the verdict, then the problems table."""
    what = os.fspath(source) if isinstance(source, (str, os.PathLike)) else _module_name(source)
    return (
        f"{os.fspath(onnx_path)} is not a faithful export of {what} (verdict: {report.verdict})\n\n"
        f"{problems_table(report)}"
    )


def problems_table(report: "DiffReport", width: int = PROBLEMS_WIDTH) -> str:
    """The ``table`` reporter's rendering of the diff document with only the layers that
    are not ok (the summary and verdict still cover the whole model)."""
    layers = [layer for layer in report.document["layers"] if layer["status"] != "ok"]
    narrowed = {**report.document, "layers": layers}
    reporter = report.plugins.reporter("table", report.schema)
    buffer = io.StringIO()
    reporter.render(narrowed, buffer, {"color": False, "width": width, "to_file": True, "only_problems": True})
    return buffer.getvalue()


def _module_name(module: Any) -> str:
    return f"<the {type(module).__name__} module>"


@contextlib.contextmanager
def _model_file(model: Any) -> Iterator[str | os.PathLike]:
    """A path graphinspect can read for ``model``: the path itself, or a temporary file
    holding a live module (removed afterwards)."""
    if isinstance(model, (str, os.PathLike)):
        yield model
        return
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"expected a model file path or a torch.nn.Module, not {type(model).__name__}")
    with tempfile.TemporaryDirectory(prefix="graphinspect-") as folder:
        path = Path(folder) / "model.pt"
        if isinstance(model, torch.jit.ScriptModule):
            torch.jit.save(model, str(path))
        else:
            try:
                torch.save(model, path)
            except Exception:  # noqa: BLE001 - a local class or a lambda cannot be pickled
                torch.save(model.state_dict(), path)
        yield path
