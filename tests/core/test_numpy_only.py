"""The numpy-only test layer runs without torch and onnx.

The modules below are built on :mod:`tests.support.layers` and must not need an
exporter, a loader or a runtime: they run here again in a fresh interpreter where
``import torch`` (and onnx, onnxruntime, onnxscript, onnx_graphsurgeon) raises
ImportError, as it would on a machine with numpy alone. A test that reached for torch,
directly or through a plugin that imports it lazily, fails there.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import REPO

NUMPY_ONLY = (
    "tests/core/test_compare.py",
    "tests/core/test_match.py",
    "tests/core/test_targets.py",
    "tests/core/test_results.py",
    "tests/core/test_report.py",
    "tests/core/test_core_imports.py",
    "tests/transforms/test_identity.py",
    "tests/transforms/test_cast.py",
    "tests/transforms/test_fold_batchnorm.py",
    "tests/transforms/test_merge_branches.py",
    "tests/transforms/test_transpose.py",
    "tests/transforms/test_split_qkv.py",
    "tests/transforms/test_recurrent.py",
    "tests/transforms/test_gather.py",
    "tests/transforms/test_fold_scale.py",
    "tests/transforms/test_view.py",
    "tests/transforms/test_permute.py",
    "tests/core/test_kinds.py",
    "tests/checks/test_findings.py",
)
BLOCKED = ("torch", "onnx", "onnxruntime", "onnxscript", "onnx_graphsurgeon")

_RUN = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # "import torch" now raises ImportError
import pytest
code = pytest.main([*{paths!r}, "-q", "-p", "no:cacheprovider", "--no-header"])
leaked = sorted(name for name in {blocked!r} if sys.modules.get(name) is not None)
if leaked:
    print("imported anyway:", leaked)
    code = code or 1
sys.exit(code)
"""


def test_the_numpy_only_layer_runs_without_torch_or_onnx():
    assert all((REPO / path).is_file() for path in NUMPY_ONLY)
    env = {key: value for key, value in os.environ.items() if not key.startswith("GRAPHINSPECT_")}
    run = subprocess.run(
        [sys.executable, "-c", _RUN.format(blocked=BLOCKED, paths=NUMPY_ONLY)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1]
