"""The example third-party plugin in samples/example_plugin works as its README says:
found through the plugin manager, selectable by --format and by the -o suffix."""

from __future__ import annotations

import csv
import io

from tests.support import SAMPLES, run_cli

PLUGIN_DIR = SAMPLES / "example_plugin"


def test_example_plugin_declares_the_graphinspect_entry_point():
    text = (PLUGIN_DIR / "pyproject.toml").read_text()
    assert '[project.entry-points.graphinspect]\ncsv = "graphinspect_csv"' in text


def test_csv_reporter_renders_a_real_diff(tmp_path):
    env = {"PYTHONPATH": str(PLUGIN_DIR), "GRAPHINSPECT_PLUGINS": "graphinspect_csv"}
    out = tmp_path / "report.csv"
    result = run_cli(
        "diff", str(SAMPLES / "rtdetr_stem.pt"), str(SAMPLES / "rtdetr_stem.onnx"), "-o", str(out), env=env
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 14  # 7 layers x (weight, bias)
    first = rows[0]
    assert (first["target"], first["transform"], first["status"], first["param"]) == (
        "/model/model.0/conv/Conv",
        "fold_batchnorm",
        "ok",
        "weight",
    )
    assert first["sources"] == "model.0.conv + model.0.bn"
    assert float(first["max_rel_err"]) < 1e-6
