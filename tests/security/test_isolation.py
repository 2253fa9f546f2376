"""A crash of native code becomes one line naming the file, exit 2 (inspector/isolation.py).

The crash is real: a loader plugin (written here, loaded through GRAPHINSPECT_PLUGINS)
dereferences a null pointer or has the kernel kill its process, as a crafted file can
make torch's or protobuf's native readers do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inspector.isolation import crash_message

ROOT = Path(__file__).resolve().parents[2]

CRASHING_PLUGIN = textwrap.dedent(
    """
    import ctypes
    import os
    import signal

    from inspector.hookspecs import hookimpl
    from inspector.records import ModelLoader


    def sniff(path, head):
        if head.startswith(b"SNIFFCRASH"):
            ctypes.string_at(0)  # a segmentation fault outside any announced step
        return head.startswith((b"SEGV", b"KILL"))


    def load(path):
        with open(path, "rb") as stream:
            kind = stream.read(4)
        if kind == b"SEGV":
            ctypes.string_at(0)
        os.kill(os.getpid(), signal.SIGKILL)


    @hookimpl
    def graphinspect_loaders():
        yield ModelLoader("crash", ("crash",), sniff, load, priority=99)
    """
)


def run(tmp_path: Path, *args: str, supervised: bool = True) -> subprocess.CompletedProcess:
    (tmp_path / "crashing_loader.py").write_text(CRASHING_PLUGIN)
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}",
        "GRAPHINSPECT_PLUGINS": "crashing_loader",
        "GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONFAULTHANDLER": "",
    }
    if not supervised:
        env["GRAPHINSPECT_NO_SUPERVISOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "inspector", *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the supervisor needs fork")
def test_segfault_while_reading_a_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"SEGV and then some")
    result = run(tmp_path, "inspect", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"graphinspect: error: {path}: crashed the process (SIGSEGV) while reading it (crash loader); "
        "the file is damaged or crafted"
    ]
    assert result.stdout == ""
    # Without the supervisor the same file takes the process down by the signal.
    bare = run(tmp_path, "inspect", str(path), supervised=False)
    assert bare.returncode == -signal.SIGSEGV


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the supervisor needs fork")
def test_killed_while_reading_says_out_of_memory(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"KILL")
    result = run(tmp_path, "inspect", str(path))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"graphinspect: error: {path}: the process was killed (SIGKILL; out of memory?)")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the supervisor needs fork")
def test_crash_outside_an_announced_step_is_an_internal_error_line(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"SNIFFCRASH")
    result = run(tmp_path, "inspect", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["graphinspect: error: internal error: crashed the process (SIGSEGV)"]


def test_exit_status_and_output_pass_through_the_supervisor(tmp_path):
    sample = ROOT / "samples" / "rtdetr_stem.pt"
    ok = run(tmp_path, "inspect", str(sample), "--format", "json")
    assert ok.returncode == 0 and '"graphinspect/inspect@1"' in ok.stdout and ok.stderr == ""
    missing = run(tmp_path, "inspect", str(tmp_path / "absent.pt"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such file" in missing.stderr


def test_crash_message_escapes_the_announced_name():
    line = crash_message(signal.SIGBUS, "evil\n\x1b[2J.pt\0loading it")
    assert line == (
        "graphinspect: error: evil\\n\\x1b[2J.pt: crashed the process (SIGBUS) while loading it; "
        "the file is damaged or crafted"
    )
