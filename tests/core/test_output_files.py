"""Output files: written into what is there, never replaced (the behaviour of cp, tee,
sort -o). Devices, FIFOs and sockets are written into; symlinks are followed; regular
files are replaced atomically with the mode a plain open() gives (or the old file's);
inputs are never overwritten; every refusal is one line, exit 2, nothing written.

Each test works in its own temporary folder and checks, afterwards, the file type and
mode of the destination and that nothing else appeared in the folder."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from inspector import output_file
from inspector.output_file import OutputError, OutputFile
from tests.support import REPO, SAMPLES, run_cli

ROOT = os.geteuid() == 0
PT, ONNX = SAMPLES / "rtdetr_stem.pt", SAMPLES / "rtdetr_stem.onnx"


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def umask():
    """Set the process umask for one test (in-process commands create files with it)."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(saved)


def listing(path: Path) -> list[str]:
    return sorted(entry.name for entry in path.iterdir())


class Reader(threading.Thread):
    """Reads a FIFO (or accepts one connection on a Unix socket) until end of file."""

    def __init__(self, path: Path, kind: str = "fifo") -> None:
        super().__init__(daemon=True)
        self.path, self.kind, self.data = path, kind, b""
        if kind == "socket":
            self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.server.bind(str(path))
            self.server.listen(1)
        else:
            os.mkfifo(path)
        self.start()

    def run(self) -> None:
        if self.kind == "socket":
            connection, _ = self.server.accept()
            with connection:
                while chunk := connection.recv(65536):
                    self.data += chunk
            self.server.close()
        else:
            with open(self.path, "rb") as stream:
                self.data = stream.read()

    def result(self) -> bytes:
        self.join(timeout=60)
        assert not self.is_alive(), "the writer never closed the FIFO/socket"
        return self.data


def make_char_device(path: Path) -> None:
    """A character device with /dev/null's numbers; only root may make one."""
    if not ROOT:
        pytest.skip("os.mknod of a character device needs root")
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError as exc:
        pytest.skip(f"this container does not allow mknod: {exc}")
    path.chmod(0o666)  # mknod applies the umask


# ----------------------------------------------------------------------------- the writer


def test_new_file_gets_the_mode_open_would_give(folder, umask):
    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        umask(mask)
        target = folder / f"report-{mask:o}.txt"
        OutputFile.prepare(target).write_text("hello\n")
        assert stat.S_IMODE(target.stat().st_mode) == mode
        assert target.read_text() == "hello\n"
    assert listing(folder) == ["report-2.txt", "report-22.txt", "report-77.txt"]


def test_replacing_a_file_keeps_its_mode(folder, umask):
    umask(0o077)
    target = folder / "report.txt"
    target.write_text("old\n")
    target.chmod(0o640)
    OutputFile.prepare(target).write_text("new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert listing(folder) == ["report.txt"]


@pytest.mark.skipif(not ROOT, reason="giving a file to another owner needs root")
def test_replacing_a_file_keeps_its_owner_where_allowed(folder):
    target = folder / "report.txt"
    target.write_text("old\n")
    os.chown(target, 1234, 5678)
    OutputFile.prepare(target).write_text("new\n")
    info = target.stat()
    assert (info.st_uid, info.st_gid) == (1234, 5678)
    assert target.read_text() == "new\n"


def test_symlink_is_followed_and_stays_a_link(folder, umask):
    umask(0o022)
    real = folder / "real.json"
    real.write_text("old")
    real.chmod(0o604)
    link = folder / "link.json"
    link.symlink_to("real.json")
    OutputFile.prepare(link).write_text("new")
    assert link.is_symlink() and os.readlink(link) == "real.json"
    assert real.read_text() == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o604
    assert listing(folder) == ["link.json", "real.json"]


def test_dangling_symlink_creates_its_target(folder, umask, tmp_path):
    umask(0o022)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = folder / "link.json"
    link.symlink_to(elsewhere / "made.json")
    chain = folder / "chain.json"
    chain.symlink_to("link.json")
    OutputFile.prepare(chain).write_text("made")
    assert chain.is_symlink() and link.is_symlink()
    assert (elsewhere / "made.json").read_text() == "made"
    assert stat.S_IMODE((elsewhere / "made.json").stat().st_mode) == 0o644
    assert listing(folder) == ["chain.json", "link.json"]
    assert listing(elsewhere) == ["made.json"]


def test_symlink_loop_is_refused(folder):
    (folder / "a").symlink_to("b")
    (folder / "b").symlink_to("a")
    with pytest.raises(OutputError, match="too many levels of symbolic links"):
        OutputFile.prepare(folder / "a")


def test_character_device_is_written_into(folder):
    device = folder / "null"
    make_char_device(device)
    OutputFile.prepare(device).write_text("discarded\n")
    assert stat.S_ISCHR(device.lstat().st_mode)
    assert stat.S_IMODE(device.lstat().st_mode) == 0o666
    assert listing(folder) == ["null"]


def test_fifo_is_written_into(folder):
    fifo = folder / "pipe"
    reader = Reader(fifo)
    OutputFile.prepare(fifo).write_text("through the pipe\n")
    assert reader.result() == b"through the pipe\n"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert listing(folder) == ["pipe"]


def test_unix_socket_is_written_into(tmp_path):
    folder = tmp_path / "s"  # Unix socket paths are short
    folder.mkdir()
    path = folder / "sock"
    reader = Reader(path, "socket")
    OutputFile.prepare(path).write_text("over the socket\n")
    assert reader.result() == b"over the socket\n"
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert listing(folder) == ["sock"]


def test_block_device_is_refused(folder):
    if not ROOT:
        pytest.skip("os.mknod of a block device needs root")
    device = folder / "disk"
    try:
        os.mknod(device, 0o600 | stat.S_IFBLK, os.makedev(7, 200))
    except PermissionError as exc:
        pytest.skip(f"this container does not allow mknod: {exc}")
    with pytest.raises(OutputError, match="block device"):
        OutputFile.prepare(device)


def test_directory_missing_folder_and_long_name_are_refused(folder):
    (folder / "sub").mkdir()
    cases = {
        folder / "sub": "is a directory",
        folder / "missing" / "report.json": "does not exist",
        folder / ("x" * 256): "file name too long",
    }
    for path, problem in cases.items():
        with pytest.raises(OutputError, match=problem) as caught:
            OutputFile.prepare(path)
        assert "\n" not in str(caught.value) and str(caught.value).startswith("-o ")
    assert listing(folder) == ["sub"]
    assert listing(folder / "sub") == []


def test_a_name_near_the_limit_still_fits_its_temporary_name(folder):
    target = folder / ("r" * 250 + ".json")
    OutputFile.prepare(target).write_text("{}")
    assert listing(folder) == [target.name]


@pytest.mark.skipif(ROOT, reason="permissions do not bite as root")
def test_read_only_folder_and_file_are_refused(folder):
    locked = folder / "locked"
    locked.mkdir()
    kept = folder / "kept.json"
    kept.write_text("old")
    kept.chmod(0o444)
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            OutputFile.prepare(locked / "report.json")
        with pytest.raises(OutputError, match="read-only"):
            OutputFile.prepare(kept)
    finally:
        locked.chmod(0o755)
    assert kept.read_text() == "old"
    assert listing(locked) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(folder, monkeypatch):
    target = folder / "report.json"
    target.write_text("old")

    def half_then_full_disk(descriptor, data):
        os.write(descriptor, bytes(data)[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output_file, "_write_all", half_then_full_disk)
    with pytest.raises(OutputError, match="no space left on device"):
        OutputFile.prepare(target).write_text("new content")
    assert target.read_text() == "old"
    assert listing(folder) == ["report.json"]


def test_without_o_tmpfile_the_named_temporary_is_removed_too(folder, monkeypatch):
    target = folder / "report.json"
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)

    def fail(descriptor, data):
        raise OSError(errno.EIO, "Input/output error")

    OutputFile.prepare(target).write_text("first")
    assert target.read_text() == "first" and listing(folder) == ["report.json"]
    monkeypatch.setattr(output_file, "_write_all", fail)
    with pytest.raises(OutputError):
        OutputFile.prepare(target).write_text("second")
    assert target.read_text() == "first" and listing(folder) == ["report.json"]


def test_a_text_stream_replaces_the_file_only_when_complete(folder, umask):
    """open_text writes a report into the anonymous file as it is rendered: the old file
    stays until the block ends, a failure in the middle (the reporter's, or the disk's)
    leaves it as it was, and what ends up in the file is what write_text would write."""
    umask(0o022)
    target = folder / "report.html"
    target.write_text("old")
    target.chmod(0o640)
    with OutputFile.prepare(target).open_text() as stream:
        stream.write("caf\u00e9 ")
        stream.flush()
        assert target.read_text() == "old"  # nothing seen before the end
        stream.write("line\r\nend\n")
    assert target.read_bytes() == "caf\u00e9 line\r\nend\n".encode() and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert listing(folder) == ["report.html"]

    with pytest.raises(RuntimeError, match="a reporter's bug"):
        with OutputFile.prepare(target).open_text() as stream:
            stream.write("half a report")
            raise RuntimeError("a reporter's bug")
    assert target.read_text().startswith("caf\u00e9") and listing(folder) == ["report.html"]

    with pytest.raises(OutputError, match=r"report.html: cannot write: no space left on device"):
        with OutputFile.prepare(target).open_text() as stream:
            stream.write("x" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")  # as the stream's flush would
    assert target.read_text().startswith("caf\u00e9") and listing(folder) == ["report.html"]


def test_a_report_goes_to_its_file_as_it_is_rendered(folder):
    """emit streams a report into its file: a 64 MiB rendering costs a few MiB of memory
    at the peak, not the text, its join and its bytes (a 30,000-layer HTML page)."""
    import tracemalloc
    from types import SimpleNamespace

    from inspector.output import emit

    piece = "x" * 2**20

    def render(document, stream, options):
        for _ in range(64):
            stream.write(piece)

    plugins = SimpleNamespace(reporter=lambda fmt, schema: SimpleNamespace(render=render))
    target = folder / "report.html"
    tracemalloc.start()
    try:
        emit({"schema": "test@1"}, "html", OutputFile.prepare(target), plugins, {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert target.stat().st_size == 64 * 2**20
    assert peak < 8 * 2**20


def test_a_text_stream_to_a_fifo_is_written_once_complete(folder):
    fifo = folder / "pipe"
    reader = Reader(fifo)
    with OutputFile.prepare(fifo).open_text() as stream:
        stream.write("all of it\n")
    assert reader.result() == b"all of it\n"


def test_inputs_are_recognised_by_device_and_inode(folder, monkeypatch):
    original = folder / "model.onnx"
    original.write_bytes(b"input")
    (folder / "alias.onnx").symlink_to("model.onnx")
    os.link(original, folder / "hard.onnx")
    monkeypatch.chdir(folder)
    for given in ("./model.onnx", "alias.onnx", "hard.onnx", str(folder / "x" / ".." / "model.onnx")):
        if "x" in Path(given).parts:
            (folder / "x").mkdir(exist_ok=True)
        with pytest.raises(OutputError, match="refusing to overwrite an input"):
            OutputFile.prepare(given, inputs=["model.onnx"])
    assert original.read_bytes() == b"input"


# ----------------------------------------------------------------------------- every command


COMMANDS = {
    "inspect": ["inspect", str(PT)],
    "diff": ["diff", str(PT), str(ONNX), "--format", "json"],
    "verify": [
        "verify",
        str(SAMPLES / "resnet_block.pt"),
        str(SAMPLES / "resnet_block.onnx"),
        "--trust-pickle",
        "--format",
        "json",
    ],
    "plugins": ["plugins", "--format", "json"],
    "fuse-report": ["fuse", str(PT), "--format", "json", "-o"],
    "fuse-weights": ["fuse", str(PT), "--weights"],
}
"""Each command's arguments up to its output option (``-o`` unless it says otherwise)."""


def command(name: str, output: Path | str) -> list[str]:
    args = COMMANDS[name]
    return [*args, str(output)] if args[-1] in ("-o", "--weights") else [*args, "-o", str(output)]


def expected_exit(name: str) -> int:
    return 0


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_writes_into_a_fifo(name, folder, cli):
    fifo = folder / ("pipe.pt" if name == "fuse-weights" else "pipe.json")
    reader = Reader(fifo)
    code, out, err = cli(*command(name, fifo))
    data = reader.result()
    assert code == expected_exit(name), err
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and listing(folder) == [fifo.name]
    if name == "fuse-weights":
        import io

        import torch

        state = torch.load(io.BytesIO(data), weights_only=True)
        assert "model.0.conv.weight" in state and "model.0.bn.weight" not in state
    else:
        assert json.loads(data)["schema"].startswith("graphinspect/")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_writes_into_a_character_device(name, folder, cli):
    device = folder / "null"
    make_char_device(device)
    code, out, err = cli(*command(name, device))
    assert code == expected_exit(name), err
    assert stat.S_ISCHR(device.lstat().st_mode) and listing(folder) == ["null"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_follows_a_symlink(name, folder, cli, umask):
    umask(0o027)
    suffix = ".pt" if name == "fuse-weights" else ".json"
    real = folder / f"real{suffix}"
    link = folder / f"link{suffix}"
    link.symlink_to(real.name)
    code, out, err = cli(*command(name, link))
    assert code == expected_exit(name), err
    assert link.is_symlink() and real.is_file() and real.stat().st_size > 0
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert listing(folder) == sorted([link.name, real.name])


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_refuses_a_directory(name, folder, cli):
    code, out, err = cli(*command(name, folder))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "is a directory" in err and str(folder) in err
    assert listing(folder) == []


@pytest.mark.parametrize("name", ["inspect", "diff", "verify", "fuse-report", "fuse-weights"])
def test_every_command_refuses_to_overwrite_its_input(name, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [str(a) for a in COMMANDS[name]]
    first_input = Path(args[1])
    local = tmp_path / first_input.name
    shutil.copy(first_input, local)
    args[1] = local.name  # given as "x"; -o names it as "./x" and through a symlink
    (tmp_path / "alias").symlink_to(local.name)
    before = local.read_bytes()
    for given in (f"./{local.name}", "alias"):
        full = [*args, given] if args[-1] in ("-o", "--weights") else [*args, "-o", given]
        code, out, err = cli(*full)
        assert code == 2 and out == "", err
        assert err.count("\n") == 1 and "refusing to overwrite an input" in err
    assert local.read_bytes() == before
    assert listing(tmp_path) == sorted(["alias", local.name])


def test_external_data_file_is_an_input_too(tmp_path, cli):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 2, 2])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True, location="m.data", size_threshold=0)
    data = (tmp_path / "m.data").read_bytes()
    code, out, err = cli("inspect", str(tmp_path / "m.onnx"), "--format", "json", "-o", str(tmp_path / "m.data"))
    assert code == 2 and "refusing to overwrite an input" in err and err.count("\n") == 1
    assert (tmp_path / "m.data").read_bytes() == data
    assert listing(tmp_path) == ["m.data", "m.onnx"]


def test_fuse_weights_and_report_must_differ(folder, cli):
    code, out, err = cli("fuse", str(PT), "--weights", str(folder / "a.pt"), "-o", str(folder / "report.json"))
    assert code == 0, err  # two different new files
    (folder / "b.json").symlink_to("c.pt")
    code, out, err = cli("fuse", str(PT), "--weights", str(folder / "c.pt"), "-o", str(folder / "b.json"))
    assert code == 2 and "name the same file" in err
    assert not (folder / "c.pt").exists()


# ----------------------------------------------------------------------------- stdout


def test_dash_and_dev_stdout_write_to_standard_output(tmp_path):
    for given in ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"):
        result = run_cli("plugins", "--format", "json", "-o", given, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["schema"] == "graphinspect/plugins@1"
        assert os.path.islink("/dev/stdout")
    assert listing(tmp_path) == []


def test_dev_stdout_redirected_to_a_file_appends_in_place(tmp_path):
    """``cmd -o /dev/stdout > out`` writes through the shell's descriptor: the file the
    shell opened gets the report; nothing is renamed over it."""
    out = tmp_path / "out.json"
    with open(out, "wb") as stream:
        inode = os.fstat(stream.fileno()).st_ino
        result = subprocess.run(
            [sys.executable, "-m", "inspector", "plugins", "--format", "json", "-o", "/dev/stdout"],
            stdout=stream,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD": "1"},
            timeout=120,
        )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_ino == inode
    assert json.loads(out.read_text())["schema"] == "graphinspect/plugins@1"
    assert listing(tmp_path) == ["out.json"]


def test_a_fresh_process_under_umask_077_and_022(tmp_path):
    for mask, mode in ((0o077, 0o600), (0o022, 0o644)):
        target = tmp_path / f"report-{mask:o}.json"
        result = subprocess.run(
            [sys.executable, "-m", "inspector", "diff", str(PT), str(ONNX), "-o", str(target)],
            capture_output=True,
            text=True,
            cwd=REPO,
            umask=mask,
            env={**os.environ, "GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD": "1"},
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert stat.S_IMODE(target.stat().st_mode) == mode
        assert json.loads(target.read_text())["summary"]["verdict"] == "faithful"
    assert listing(tmp_path) == ["report-22.json", "report-77.json"]
