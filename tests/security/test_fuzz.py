"""Every loader, fuzzed: exit 0, or one line and exit 2; never a traceback or a crash of
our own code (tests/security/fuzzing.py says what is mutated and how the property is
judged). A bounded, derandomised number of examples runs here; the longer run is
``python benchmarks/fuzz_loaders.py``, its last result in benchmarks/FUZZ.md."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.security import fuzzing  # noqa: E402

EXAMPLES = 8

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="each example runs in a forked child")


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    import contextlib
    import io

    from inspector.cli import main

    paths = fuzzing.make_seeds(tmp_path_factory.mktemp("seeds"))
    for path in paths.values():
        # Load each seed here once, so that every module is imported before the children fork.
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["inspect", str(path), "--format", "json"]) == 0
    return {name: path.read_bytes() for name, path in paths.items()}


@pytest.mark.parametrize("fmt", ["safetensors", "torch.save", "pickled module", "legacy", "torchscript", "pt2", "onnx"])
def test_fuzzed_files_end_in_one_line_or_load(fmt, seeds, tmp_path):
    seed = seeds[fmt]

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzzing.mutated(seed))
    def check(data):
        outcome = fuzzing.run_inspect(data, tmp_path)
        problem = outcome.problem(fmt)
        assert problem is None, problem

    check()
