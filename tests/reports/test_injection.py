"""A model cannot write to the terminal or into a report: names are shown, not obeyed.

The ONNX model here is crafted in the test: escape sequences (clear the screen, move
the cursor, set a hyperlink, recolour), a carriage return and a bell in node, input,
metadata and opset names (``producer_name`` must be printable for the file to be read as
ONNX at all); rich markup (``[link=...]``, ``[/]``) in the producer, a custom domain, an
op type and metadata; and a tampered conv whose name tries
to erase its own MISMATCH row. Its PyTorch twin names its modules with escapes too.

Every medium is checked as a user meets it, through the command line: without colour
no ESC at all reaches the output; with colour, every ESC is one of our own colour codes
and the text without them is the text without colour (so markup was printed, not read);
the hostile strings are there, shown with their escapes (``\\x1b``); Markdown and HTML
are checked in their own tests for structure, here for the raw bytes.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from inspector.output import visible

SGR = re.compile(r"\x1b\[[0-9;]*m")
CLEAR = "\x1b[2J\x1b[H"
HYPERLINK = "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"
RECOLOUR = "\x1b[32m"
ERASE_LINE = "\r\x1b[2K"
MARKUP = "[link=https://evil.example]x[/link] [/] [bold red]"

NODE = f"/conv{ERASE_LINE}ok  all good{RECOLOUR}/Conv"
INPUT = f"images{CLEAR}"
PRODUCER = f"{MARKUP} [link=file:///etc/passwd]"  # printable: the ONNX sniffer refuses control characters here
DOMAIN = f"evil[/]{RECOLOUR}.domain"
OP_TYPE = "Custom[/]Op"
META_KEY = f"key{CLEAR}"
META_VALUE = f"{MARKUP}\x07{ERASE_LINE}{HYPERLINK}"
MODULE = f"conv{RECOLOUR}"
HOSTILE = [NODE, INPUT, PRODUCER, DOMAIN, OP_TYPE, META_KEY, META_VALUE]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An ONNX model whose tampered conv (channel 1 off) carries the hostile names, and
    a state_dict that explains the rest."""
    folder = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    torch.save(
        {f"{MODULE}.weight": torch.from_numpy(weight), f"{MODULE}.bias": torch.from_numpy(bias)},
        folder / "model.pt",
    )
    stored = weight.copy()
    stored[1] *= 1.5
    nodes = [
        helper.make_node("Conv", [INPUT, f"{MODULE}.weight", f"{MODULE}.bias"], ["c"], name=NODE, pads=[1, 1, 1, 1]),
        helper.make_node(OP_TYPE, ["c"], ["y"], name=f"custom{CLEAR}", domain=DOMAIN),
    ]
    graph = helper.make_graph(
        nodes,
        f"graph{CLEAR}",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(stored, f"{MODULE}.weight"), numpy_helper.from_array(bias, f"{MODULE}.bias")],
    )
    model = helper.make_model(
        graph,
        producer_name=PRODUCER,
        producer_version="1",
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)],
    )
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, META_VALUE
    onnx.save(model, folder / "model.onnx")
    return folder


def _check_terminal_text(plain: str, coloured: str) -> None:
    """No ESC, CR or BEL without colour; with colour, only our SGR codes, over the same text."""
    for control in ("\x1b", "\r", "\x07", "\x00"):
        assert control not in plain, repr(control)
    assert "\x1b" in coloured
    assert SGR.sub("", coloured) == plain
    assert "\r" not in coloured and "\x07" not in coloured


def test_inspect_shows_hostile_names_and_obeys_none(models, cli):
    args = ("inspect", str(models / "model.onnx"), "--all")
    code, plain, err = cli(*args, "--color", "never")
    assert (code, err) == (0, "")
    code, coloured, err = cli(*args, "--color", "always")
    assert (code, err) == (0, "")
    _check_terminal_text(plain, coloured)
    flat = plain.replace("\n", " ")
    for name in (INPUT, PRODUCER, DOMAIN, META_KEY):
        assert visible(name) in flat or all(part in flat for part in visible(name).split()), name
    assert MARKUP.split(" ")[0] in plain  # "[link=https://evil.example]x[/link]" printed as it is
    assert visible(NODE) in plain
    assert "\\x1b[2J\\x1b[H" in plain


@pytest.mark.parametrize("color", ["never", "always"])
def test_diff_table_keeps_the_mismatch_row_whole(models, cli, color):
    code, out, err = cli("diff", str(models / "model.pt"), str(models / "model.onnx"), "--color", color)
    assert code == 1 and "internal error" not in err, err
    plain = SGR.sub("", out)
    if color == "never":
        assert out == plain
    for control in ("\x1b", "\r", "\x07"):
        assert control not in plain
    # The status and the name the model chose are on one line, the name shown with its escapes.
    assert any(line.startswith("MISMATCH") and visible(NODE) in line for line in plain.splitlines()), plain
    assert visible(MODULE) in plain and "ch 1" in plain
    assert plain.splitlines()[0].startswith("Verdict: DIFFERS")


def test_every_escape_in_colour_output_is_ours(models, cli):
    code, coloured, _ = cli("diff", str(models / "model.pt"), str(models / "model.onnx"), "--color", "always")
    code, plain, _ = cli("diff", str(models / "model.pt"), str(models / "model.onnx"), "--color", "never")
    _check_terminal_text(plain, coloured)


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_report_files_hold_no_raw_control_character(models, cli, fmt, tmp_path):
    report = tmp_path / f"report.{'md' if fmt == 'markdown' else 'html'}"
    code, out, err = cli("diff", str(models / "model.pt"), str(models / "model.onnx"), "-o", str(report))
    assert code == 1 and out == ""
    text = report.read_text(encoding="utf-8")
    for control in ("\x1b", "\r", "\x07", "\x00"):
        assert control not in text
    assert (
        visible(NODE) in text if fmt == "markdown" else visible(NODE).replace("<", "&lt;") in text.replace("<wbr>", "")
    )
    # The verdict line still reached the terminal (stderr), as plain text.
    assert err.startswith("Verdict: DIFFERS (1 mismatched") and err.rstrip().endswith(str(report))
    assert "\x1b" not in err


def test_progress_and_verdict_descriptions_are_visible():
    from inspector.output import visible as shown

    assert shown("a\x1b[2Jb\r\n\t\x07\u202ec") == "a\\x1b[2Jb\\r\\n\\t\\x07\\u202ec"
    assert shown("plain name /model.0/conv") == "plain name /model.0/conv"
    assert shown("日本語 ünïcode") == "日本語 ünïcode"
