"""The one-line promise on hostile names and paths: long names, names with a newline or an
escape sequence, folders that cannot be entered or written, a .pt2 torch cannot load,
and ``--model`` not shadowed by a folder where the command runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.security import corpus

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "rtdetr_stem_state_dict.pt"


def run_cli(*args: str, cwd: Path | None = None, drop_privileges: bool = False, flags: tuple[str, ...] = ()):
    """``python -m inspector ARGS`` in a fresh process (supervised, as users run it).

    ``drop_privileges``: as root, without the capabilities that let root ignore file
    permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so that a folder's mode bites.
    """
    env = {**os.environ, "GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD": "1", "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, *flags, "-m", "inspector", *args]
    if drop_privileges and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("needs setpriv to drop root's file-permission capabilities")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=300)
    return result.returncode, result.stdout, result.stderr


def assert_one_line(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphinspect: error: "), err
    assert "internal error" not in err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


def test_input_name_longer_than_the_system_allows(cli, tmp_path):
    code, _, err = cli("inspect", str(tmp_path / ("a" * 300 + ".pt")))
    assert_one_line(code, err, "file name too long")


def test_output_name_of_245_bytes_is_written_and_leaves_nothing_else(cli, tmp_path):
    target = tmp_path / ("b" * 240 + ".json")
    code, _, err = cli("inspect", str(SAMPLE), "-o", str(target))
    assert code == 0, err
    assert json.loads(target.read_text())["schema"] == "graphinspect/inspect@1"
    assert os.listdir(tmp_path) == [target.name]


@pytest.mark.parametrize("name", ["new\nline.pt", "esc\x1b[31mred\x1b[0m.pt", "bidi\u202eexe.pt"])
def test_control_characters_in_a_file_name_are_shown_escaped(cli, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not a model at all")
    code, _, err = cli("inspect", str(path))
    line = assert_one_line(code, err, "unknown model format")
    assert "\x1b" not in err and "\u202e" not in err
    assert repr(name)[1:-1].replace("\\'", "'") in line


def test_control_characters_from_inside_a_file_are_escaped(cli, tmp_path):
    # A pickle naming a global with an escape sequence in it: the refusal names the global.
    data_pkl = b"\x80\x02cevil\x1b[2J\nrun\n)R."
    path = corpus.torch_zip(tmp_path / "esc.pt", data_pkl, {})
    code, _, err = cli("inspect", str(path))
    line = assert_one_line(code, err, "refused to unpickle", "evil\\x1b[2J.run")
    assert "\x1b" not in err and line.count("\n") == 0


def test_input_folder_that_cannot_be_entered(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(SAMPLE, locked / "model.pt")
    locked.chmod(0)
    try:
        code, _, err = run_cli("inspect", str(locked / "model.pt"), drop_privileges=True)
    finally:
        locked.chmod(0o755)
    assert_one_line(code, err, str(locked / "model.pt"), "permission denied")


def test_read_only_output_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, out, err = run_cli("inspect", str(SAMPLE), "-o", str(locked / "report.json"), drop_privileges=True)
    finally:
        locked.chmod(0o755)
    assert_one_line(code, err, "permission denied")
    assert out == "" and os.listdir(locked) == []


def test_pt2_with_a_bad_custom_object_is_one_line_with_or_without_consent(cli, tmp_path):
    pytest.importorskip("torch")
    paths = corpus.export_pair(tmp_path)

    def with_custom_object(data: bytes) -> bytes:
        config = json.loads(data)
        config["config"]["obj"] = {"path_name": "custom_obj_0", "use_pickle": False}
        return json.dumps(config).encode()

    bad = corpus.rewrite_zip(
        paths["pt2"],
        tmp_path / "custom.pt2",
        replace={"data/constants/model_constants_config.json": with_custom_object},
        add={"data/constants/custom_obj_0": b"\x80\x02garbage"},
    )
    code, _, err = cli("verify", str(bad), str(paths["onnx"]))
    assert_one_line(code, err, str(bad), "TorchBind custom object", "--trust-pickle")
    code, _, err = cli("verify", str(bad), str(paths["onnx"]), "--trust-pickle")
    assert_one_line(code, err, str(bad), "torch.export cannot load it")


def test_model_factory_is_not_shadowed_by_a_folder_in_the_working_directory(tmp_path):
    pytest.importorskip("torch")
    corpus.export_pair(tmp_path)  # net_sd.pt and net.onnx in the working directory
    (tmp_path / "net_factory").mkdir()
    (tmp_path / "net_factory" / "__init__.py").write_text("raise ImportError('the shadow was imported')\n")
    installed = tmp_path / "installed"
    (installed / "net_factory").mkdir(parents=True)
    (installed / "net_factory" / "__init__.py").write_text(
        "import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), "
        "torch.nn.BatchNorm2d(4), torch.nn.ReLU())\n"
    )
    env_path = f"{ROOT}{os.pathsep}{installed}"
    command = [sys.executable, "-P", "-m", "inspector", "verify", "net_sd.pt", "net.onnx", "--model"]
    result = subprocess.run(
        [*command, "net_factory:build", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": env_path, "GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source"]["runner"] == "factory net_factory:build"
    # A module only the working directory holds is still found (it is last, not absent).
    (tmp_path / "local_factory.py").write_text((installed / "net_factory" / "__init__.py").read_text())
    result = subprocess.run(
        [*command, "local_factory:build", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
