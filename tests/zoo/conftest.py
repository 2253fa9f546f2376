"""The conformance zoo: real architectures through `graphinspect diff`, in their own venv.

Runs with ``.ci/zoo`` (which makes ``.ci/zoo-venv`` with the ``zoo`` extra: torchvision,
timm, ultralytics, ...) or, in a venv that has them, ``python -m pytest tests/zoo``. The
main suite never collects this folder (see tests/conftest.py).

Models are built lazily, one family at a time, the first time a test needs it, into a
session's temporary folder, or into ``$GRAPHINSPECT_ZOO_CACHE/<key>`` (kept between runs;
the key changes with the tool versions and the builder's source, see zoo_build.py).
Nothing is downloaded: every model is built from its config with random weights.
``GRAPHINSPECT_ZOO_RECORD=DIR`` also writes every diff run (command, exit code, stderr,
JSON document) to DIR, one file per test id, for reading the failures afterwards.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Ultralytics reads these when it is first imported (by a builder): its settings go to a
# throwaway folder, and it never syncs, phones home, auto-installs packages or checks for
# updates. Set here, before any test module imports anything.
_YOLO_CONFIG = tempfile.mkdtemp(prefix="zoo-yolo-config-")
atexit.register(shutil.rmtree, _YOLO_CONFIG, True)
os.environ["YOLO_CONFIG_DIR"] = _YOLO_CONFIG
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "false"
os.environ["YOLO_VERBOSE"] = "false"

from tests.zoo.zoo_build import Manifest, cache_root, load_or_build  # noqa: E402


class Zoo:
    """The session's families, each built on first use and memoised."""

    def __init__(self, root):
        self.root = root
        self._families: dict[str, Manifest] = {}
        self._failed: dict[str, str] = {}

    def family(self, name: str) -> Manifest:
        if name in self._failed:
            pytest.fail(f"building family {name} failed earlier in this session: {self._failed[name]}", pytrace=False)
        if name not in self._families:
            try:
                self._families[name] = load_or_build(self.root, name)
            except Exception as exc:
                self._failed[name] = f"{type(exc).__name__}: {exc}"
                raise
        return self._families[name]


@pytest.fixture(scope="session")
def zoo():
    """The families, built into $GRAPHINSPECT_ZOO_CACHE/<key> (kept) or a temporary folder
    that is removed at the end of the session (a few GB: pytest's own tmp_path would
    keep the last three sessions' worth)."""
    if os.environ.get("GRAPHINSPECT_ZOO_CACHE"):
        yield Zoo(cache_root(None))
        return
    folder = tempfile.mkdtemp(prefix="graphinspect-zoo-")
    try:
        yield Zoo(cache_root(Path(folder)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
