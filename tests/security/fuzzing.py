"""Fuzzing every loader: seed files, mutations, and the property every input must meet.

The property, for any file: ``graphinspect inspect FILE --format json`` exits 0, or exits
2 with one line ``graphinspect: error: ...`` that is not an internal error, and never
takes longer or more memory than its budgets allow. Each example runs in a forked child
(as the command line's supervisor runs it), so that a crash is seen as a crash: allowed
only where a native reader of torch parses the untrusted structure itself (TorchScript),
which the supervisor turns into one line (tests/security/test_isolation.py).

Mutations are structure-aware: raw byte edits and truncation of the whole file; for a
zip, byte edits of one entry re-zipped (so that the archive stays readable and the
edit reaches the parser behind it); for a JSON entry (.pt2 programs and weight configs,
safetensors headers), one value replaced by a hostile one (huge, negative, a bool, a
string, a list, null).

Used by tests/security/test_fuzz.py (a bounded number of examples, every run) and
benchmarks/fuzz_loaders.py (many more, with the result recorded).
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

HOSTILE_VALUES = st.sampled_from(
    [-1, -(2**31), 2**31, 2**62, 2**64, 0, True, None, "s0", "__import__('os')", [], [-1], [2**40, 2**40], {}, 1.5]
)

NATIVE_READERS = {"torchscript"}
"""Formats whose untrusted structure torch's own native code parses (a crash there is
the supervisor's to report, not a loader bug)."""


def make_seeds(folder: Path) -> dict[str, Path]:
    """One small valid file of each format the loaders read."""
    import torch

    from tests.security import corpus

    paths = corpus.export_pair(folder)
    net = corpus.tiny_net()
    legacy = folder / "legacy.pt"
    torch.save(net.state_dict(), legacy, _use_new_zipfile_serialization=False)
    module = folder / "module.pt"
    torch.save(net, module)
    safetensors = folder / "net.safetensors"
    tensors = {"0.weight": net[0].weight.detach().numpy(), "1.running_var": net[1].running_var.numpy()}
    header, data = {}, b""
    for name, array in tensors.items():
        raw = array.astype("float32").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    corpus.safetensors_file(safetensors, header, data)
    return {
        "safetensors": safetensors,
        "torch.save": paths["sd"],
        "pickled module": module,
        "legacy": legacy,
        "torchscript": paths["ts"],
        "pt2": paths["pt2"],
        "onnx": paths["onnx"],
    }


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """``seed`` changed by one structure-aware mutation (module docstring)."""
    if seed.startswith(b"PK\x03\x04") and draw(st.booleans()):
        return draw(_mutated_entry(seed))
    if seed[8:9] == b"{" and draw(st.booleans()):
        return draw(_mutated_safetensors_header(seed))
    return draw(_raw_edit(seed))


@st.composite
def _raw_edit(draw, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, max(len(out) - 1, 0)))
        if out:
            out[position] = draw(st.integers(0, 255))
    if draw(st.integers(0, 3)) == 0:
        del out[draw(st.integers(0, len(out))) :]
    return bytes(out)


@st.composite
def _mutated_entry(draw, data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = [(info.filename, archive.read(info)) for info in archive.infolist()]
    index = draw(st.integers(0, len(entries) - 1))
    name, content = entries[index]
    if name.endswith(".json"):
        content = json.dumps(draw(_json_edit(json.loads(content)))).encode()
    elif content:
        content = draw(_raw_edit(content))
    entries[index] = (name, content)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for entry_name, entry_data in entries:
            archive.writestr(entry_name, entry_data)
    return out.getvalue()


@st.composite
def _json_edit(draw, value):
    """``value`` with one leaf (or container) somewhere in it replaced by a hostile value."""
    if isinstance(value, dict) and value and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: draw(_json_edit(value[key]))}
    if isinstance(value, list) and value and draw(st.integers(0, 3)):
        index = draw(st.integers(0, len(value) - 1))
        return [*value[:index], draw(_json_edit(value[index])), *value[index + 1 :]]
    return draw(HOSTILE_VALUES)


@st.composite
def _mutated_safetensors_header(draw, data: bytes) -> bytes:
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    raw = json.dumps(draw(_json_edit(header))).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + length :]


@dataclass
class Outcome:
    """What one file did: the exit status (None: killed by ``signal``) and stderr."""

    status: int | None
    signal: int | None
    stderr: str

    def problem(self, fmt: str) -> str | None:
        """Why this outcome breaks the property (module docstring), or None."""
        if self.signal is not None:
            if fmt in NATIVE_READERS and self.signal != signal.SIGKILL:
                return None
            return f"crashed with {signal.Signals(self.signal).name}"
        if self.status == 0:
            return None
        lines = self.stderr.splitlines()
        if self.status != 2:
            return f"exit status {self.status}: {self.stderr[-300:]!r}"
        if len(lines) != 1 or not lines[0].startswith("graphinspect: error: "):
            return f"not one error line: {self.stderr[-500:]!r}"
        if "internal error" in lines[0]:
            return lines[0]
        return None


def run_inspect(data: bytes, folder: Path, suffix: str = ".bin") -> Outcome:
    """``graphinspect inspect`` on ``data`` in a forked child, its streams to files."""
    with tempfile.TemporaryDirectory(dir=folder) as work:
        path = Path(work) / f"fuzzed{suffix}"
        path.write_bytes(data)
        err_path = Path(work) / "stderr"
        pid = os.fork()
        if pid == 0:  # the child: never returns to the test runner
            status = 70
            try:
                with open(os.devnull, "wb") as null, open(err_path, "wb") as err:
                    os.dup2(null.fileno(), 1)
                    os.dup2(err.fileno(), 2)
                os.environ["GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
                import sys

                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the child exits right after
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                from inspector.cli import main

                status = main(["inspect", str(path), "--format", "json"])
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001 - reported through the exit status and stderr
                import traceback

                traceback.print_exc()
                sys.stderr.flush()
            finally:
                os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        stderr = err_path.read_text(errors="replace") if err_path.exists() else ""
        if os.WIFSIGNALED(wait_status):
            return Outcome(None, os.WTERMSIG(wait_status), stderr)
        return Outcome(os.WEXITSTATUS(wait_status), None, stderr)
