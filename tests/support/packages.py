"""A Python package that exists only while a test pickles its classes.

A pickled module names its classes by import path; loading it must not need them. These
tests write the package into a temporary folder, import it to build and save the model,
and then make it unimportable again, so that the loader sees what a user without the
model's package sees.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType


@contextlib.contextmanager
def temporary_package(folder: Path, prefix: str, module: str, source: str) -> Iterator[tuple[str, ModuleType]]:
    """Write ``<prefix>_<random>/<module>.py`` holding ``source`` under ``folder`` and
    yield (package name, imported module); afterwards neither is importable."""
    package = f"{prefix}_{uuid.uuid4().hex[:8]}"
    (folder / package).mkdir()
    (folder / package / "__init__.py").write_text("")
    (folder / package / f"{module}.py").write_text(source)
    sys.path.insert(0, str(folder))
    try:
        yield package, importlib.import_module(f"{package}.{module}")
    finally:
        if str(folder) in sys.path:
            sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.split(".")[0] == package]:
            del sys.modules[name]
