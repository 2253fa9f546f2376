"""Plugins are found through the ``graphinspect`` entry-point group of installed
distributions; a committed fake distribution (tests/plugins/data/site) stands in for a
pip-installed one, next to one whose plugin fails to import."""

from __future__ import annotations

import json
import sys

import pytest

from inspector.manager import get_plugin_manager
from plugins import BUILTIN_PLUGINS
from tests.support import FAKE_SITE, run_cli

SITE_ENV = {"PYTHONPATH": str(FAKE_SITE), "GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD": ""}


def test_entry_point_plugin_is_listed_with_its_distribution_and_hooks():
    result = run_cli("plugins", "--format", "json", env=SITE_ENV)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == "graphinspect/plugins@1"
    by_name = {plugin["name"]: plugin for plugin in document["plugins"]}
    hello = by_name["hello"]
    assert hello["source"] == "entry point"
    assert (hello["distribution"], hello["version"]) == ("graphinspect-hello", "1.2.3")
    assert hello["hooks"] == ["graphinspect_reporters", "graphinspect_subcommands"]
    assert hello["status"] == "loaded"
    for builtin in BUILTIN_PLUGINS:
        assert by_name[builtin]["source"] == "builtin"


def test_plugin_that_fails_to_import_is_named_in_one_warning_and_skipped():
    result = run_cli("plugins", "--format", "json", env=SITE_ENV)
    assert result.returncode == 0
    warnings = [line for line in result.stderr.splitlines() if line]
    assert len(warnings) == 1, result.stderr
    assert "'broken'" in warnings[0] and "graphinspect-broken" in warnings[0]
    assert "deliberately" in warnings[0]
    assert "Traceback" not in result.stderr
    broken = [plugin for plugin in json.loads(result.stdout)["plugins"] if plugin["name"] == "broken"]
    assert broken and broken[0]["status"].startswith("failed: ImportError")


def test_third_party_subcommand_runs():
    result = run_cli("hello", env=SITE_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from a third-party plugin"


def test_third_party_reporter_is_selectable_by_format(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((2, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [weight],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), path)
    result = run_cli("inspect", str(path), "--format", "count", env=SITE_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 layers\n"


def test_autoload_switch_turns_third_party_plugins_off():
    result = run_cli("plugins", "--format", "json", env={**SITE_ENV, "GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert result.returncode == 0
    assert result.stderr == ""
    document = json.loads(result.stdout)
    assert document["autoload"] is False
    assert {plugin["name"] for plugin in document["plugins"]} == set(BUILTIN_PLUGINS)
    refused = run_cli("hello", env={**SITE_ENV, "GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert refused.returncode == 2
    assert "invalid choice: 'hello'" in refused.stderr


def test_explicitly_named_plugin_loads_even_without_autoload(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE_SITE))
    monkeypatch.setenv("GRAPHINSPECT_PLUGINS", "graphinspect_hello")
    warnings: list[str] = []
    plugins = get_plugin_manager(autoload=False, warn=warnings.append)
    assert warnings == []
    assert "hello" in {subcommand.name for subcommand in plugins.subcommands()}
    origin = [record for record in plugins.describe() if record["name"] == "graphinspect_hello"]
    assert origin and origin[0]["source"] == "env"
    sys.modules.pop("graphinspect_hello", None)


def test_in_process_discovery_reports_failures(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE_SITE))
    warnings: list[str] = []
    plugins = get_plugin_manager(autoload=True, warn=warnings.append)
    assert [failure.name for failure in plugins.failures] == ["broken"]
    assert len(warnings) == 1 and "broken" in warnings[0]
    assert "count" in {reporter.name for reporter in plugins.reporters()}
    for name in ("graphinspect_hello", "graphinspect_broken"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("args", [["--help"], ["plugins", "--help"], ["--version"]])
def test_help_does_not_import_torch_or_onnx(args):
    code = (
        "import sys\n"
        "from inspector.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'onnx_graphsurgeon') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    import subprocess

    env = {"GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(FAKE_SITE.parents[3])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "HEAVY=", result.stdout
