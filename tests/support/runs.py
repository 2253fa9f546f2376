"""Saved results for the tests of the report command, the CI reporters and the API.

:func:`tamper` copies an ONNX sample with one output channel of one initializer changed,
the way a broken export looks; :func:`run` runs a command in-process with ``-o`` (no
capture needed) and returns its exit status and document; :func:`run_all` runs several
the way the tests need them (no third-party plugins, from the repository root, where
``--model samples.lookalikes:...`` is imported). Nothing here is a test.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import REPO, SAMPLES

STEM_PT = SAMPLES / "rtdetr_stem.pt"
STEM_STATE_DICT = SAMPLES / "rtdetr_stem_state_dict.pt"
STEM_ONNX = SAMPLES / "rtdetr_stem.onnx"
STEM_FACTORY = "samples.lookalikes:rtdetr_stem"
TAMPERED_NODE = "/model/model.2/conv/Conv"
TAMPERED_CHANNEL = 3
TAMPER_FACTOR = 1.5


def tamper(target: Path, source: Path = STEM_ONNX, node: str = TAMPERED_NODE, channel: int = TAMPERED_CHANNEL) -> Path:
    """Copy ``source`` to ``target`` with output channel ``channel`` of ``node``'s weight
    multiplied by :data:`TAMPER_FACTOR`."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    weight = next(n for n in model.graph.node if n.name == node).input[1]
    tensor = next(t for t in model.graph.initializer if t.name == weight)
    values = numpy_helper.to_array(tensor).copy()
    values[channel] *= TAMPER_FACTOR
    tensor.CopyFrom(numpy_helper.from_array(values, weight))
    onnx.save(model, str(target))
    return target


def run(folder: Path, name: str, *args: str) -> tuple[int, dict]:
    """``graphinspect ARGS --format json -o FOLDER/NAME.json`` in-process: (exit status,
    the document it wrote)."""
    from inspector.cli import main

    output = folder / f"{name}.json"
    code = main([*args, "--format", "json", "-o", str(output)])
    return code, json.loads(output.read_text(encoding="utf-8"))


def run_all(folder: Path, runs: dict[str, tuple[str, ...]]) -> dict[str, tuple[int, dict]]:
    """name -> :func:`run` of its arguments, with plugin autoloading off and the
    repository root as the working directory (restored afterwards)."""
    import pytest

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD", "1")
        patch.chdir(REPO)
        return {name: run(folder, name, *args) for name, args in runs.items()}
