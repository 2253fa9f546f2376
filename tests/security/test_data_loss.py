"""``-o`` (and ``--weights``) never replaces a file the command reads: every input of
every command, the ONNX model's external data, a read-only (0444) input, named directly,
as ``./x`` or through a symlink. Each refusal is one line, exit 2, and the file keeps its
bytes. (tests/core/test_output_files.py covers the first input of each command.)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.security import corpus

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    import onnx

    folder = tmp_path_factory.mktemp("inputs")
    paths = corpus.export_pair(folder)
    external = folder / "external"
    external.mkdir()
    model = onnx.load(str(paths["onnx"]))
    onnx.save(model, str(external / "net.onnx"), save_as_external_data=True, location="net.data", size_threshold=0)
    np.save(folder / "x.npy", np.random.default_rng(0).random(corpus.EXAMPLE_SHAPE, dtype=np.float32))
    (folder / "factory.py").write_text(
        "import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), "
        "torch.nn.BatchNorm2d(4), torch.nn.ReLU())\n"
    )
    return folder


@pytest.fixture
def work(originals, tmp_path, monkeypatch):
    """A fresh copy of every input in the test's own folder, which is the working directory."""
    for item in originals.iterdir():
        if item.is_dir():
            shutil.copytree(item, tmp_path / item.name)
        else:
            shutil.copy(item, tmp_path / item.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# (command line with OUT where the output goes, the input OUT names)
CASES = {
    "diff target": (["diff", "net_ts.pt", "net.onnx", "-o", "OUT"], "net.onnx"),
    "diff target external data": (["diff", "net_ts.pt", "external/net.onnx", "-o", "OUT"], "external/net.data"),
    "verify target": (["verify", "net.pt2", "net.onnx", "-o", "OUT"], "net.onnx"),
    "verify external data": (["verify", "net.pt2", "external/net.onnx", "-o", "OUT"], "external/net.data"),
    "verify --input": (["verify", "net.pt2", "net.onnx", "--input", "x.npy", "-o", "OUT"], "x.npy"),
    "verify --model file": (
        ["verify", "net_sd.pt", "net.onnx", "--model", "factory.py:build", "-o", "OUT"],
        "factory.py",
    ),
    "fuse --against": (["fuse", "net_sd.pt", "--against", "net.onnx", "-o", "OUT"], "net.onnx"),
    "fuse --weights onto its model": (["fuse", "net_sd.pt", "--weights", "OUT"], "net_sd.pt"),
    "inspect": (["inspect", "net.pt2", "-o", "OUT"], "net.pt2"),
}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("spelling", ["direct", "dot-slash", "symlink"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_no_command_overwrites_any_of_its_inputs(case, spelling, work, cli):
    args, victim = CASES[case]
    given = {"direct": victim, "dot-slash": f"./{victim}", "symlink": "alias"}[spelling]
    if spelling == "symlink":
        (work / "alias").symlink_to(victim)
    before = _snapshot(work)
    code, out, err = cli(*[given if arg == "OUT" else arg for arg in args])
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and "refusing to overwrite an input" in err, err
    assert _snapshot(work) == before


@pytest.mark.parametrize("case", ["inspect", "diff target", "verify target", "fuse --against"])
def test_a_read_only_input_is_refused_too(case, work, cli):
    args, victim = CASES[case]
    os.chmod(work / victim, 0o444)
    before = _snapshot(work)
    code, out, err = cli(*[victim if arg == "OUT" else arg for arg in args])
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and ("refusing to overwrite an input" in err or "read-only" in err), err
    assert _snapshot(work) == before
    assert (os.stat(work / victim).st_mode & 0o777) == 0o444
