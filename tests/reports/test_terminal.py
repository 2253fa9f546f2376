"""The terminal as a user meets it: --color with NO_COLOR/FORCE_COLOR, --quiet, --all,
the verdict line on stderr when -o takes the report, and progress only on a terminal."""

from __future__ import annotations

import io
import json
import re
import time

import pytest

from inspector import progress
from inspector.output import make_console, set_color_mode, wants_color
from tests.support import SAMPLES

PT, ONNX = str(SAMPLES / "rtdetr_stem.pt"), str(SAMPLES / "rtdetr_stem.onnx")
SGR = re.compile(r"\x1b\[[0-9;]*m")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def colourless(monkeypatch):
    for name in ("NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    set_color_mode("auto")


@pytest.mark.parametrize(
    "mode, env, tty, expected",
    [
        ("auto", {}, True, True),
        ("auto", {}, False, False),
        ("auto", {"NO_COLOR": "1"}, True, False),
        ("auto", {"FORCE_COLOR": "1"}, False, True),
        ("auto", {"FORCE_COLOR": "0"}, False, False),
        ("auto", {"NO_COLOR": "1", "FORCE_COLOR": "1"}, True, False),
        ("auto", {"NO_COLOR": ""}, True, True),  # set but empty: not set (no-color.org)
        ("always", {"NO_COLOR": "1"}, False, True),
        ("never", {"FORCE_COLOR": "1"}, True, False),
    ],
)
def test_wants_color(colourless, mode, env, tty, expected):
    for name, value in env.items():
        colourless.setenv(name, value)
    set_color_mode(mode)
    stream = Terminal() if tty else io.StringIO()
    assert wants_color(stream) is expected
    console = make_console(stream)
    assert (console.color_system is not None) is expected


def test_color_options_on_the_command_line(colourless, cli):
    # The cli fixture sets NO_COLOR=1; the options decide over it.
    colourless.setenv("NO_COLOR", "1")
    _, plain, _ = cli("diff", PT, ONNX)
    _, forced, _ = cli("diff", PT, ONNX, "--color", "always")
    assert "\x1b" not in plain and "\x1b[" in forced and SGR.sub("", forced) == plain
    colourless.delenv("NO_COLOR")
    colourless.setenv("FORCE_COLOR", "1")
    _, by_env, _ = cli("diff", PT, ONNX)
    assert by_env == forced
    _, never, _ = cli("diff", PT, ONNX, "--no-color")
    assert never == plain
    _, never, _ = cli("--color", "never", "diff", PT, ONNX)
    assert never == plain


def test_a_file_is_never_coloured_and_the_verdict_goes_to_stderr(colourless, cli, tmp_path):
    report = tmp_path / "report.txt"
    code, out, err = cli("diff", PT, ONNX, "--color", "always", "-o", str(report))
    assert code == 0 and out == ""
    text = report.read_text()
    assert "\x1b" not in text and text.startswith("Verdict: FAITHFUL")
    assert "OK: 7 layers" in text and "/model/model.5/box/Gemm" in text  # a file lists every layer
    assert SGR.sub("", err) == f"{text.splitlines()[0]}; report written to {report}\n"


def test_json_on_stdout_is_never_mixed_with_the_verdict(cli):
    code, out, err = cli("diff", PT, ONNX, "--format", "json", "-o", "-")
    assert code == 0 and err == ""
    assert json.loads(out)["summary"]["verdict"] == "faithful"


def test_quiet_prints_the_verdict_line_only(cli, tmp_path):
    code, out, err = cli("diff", PT, ONNX, "--quiet")
    assert code == 0 and err == ""
    assert out == (
        "Verdict: FAITHFUL (7 of 7 ONNX layers re-computed within tolerance; "
        "39.8K of 39.8K parameter elements re-computed)\n"
    )
    code, out, err = cli("diff", PT, ONNX, "--quiet", "--format", "json")
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "--quiet" in err
    report = tmp_path / "r.html"
    code, out, err = cli("diff", PT, ONNX, "-q", "-o", str(report))
    assert (
        code == 0 and out == "" and err.startswith("Verdict: FAITHFUL") and report.read_text().startswith("<!DOCTYPE")
    )


def test_all_lists_every_layer(cli, monkeypatch):
    monkeypatch.setenv("LINES", "12")  # a short terminal: a screenful is a few layers
    _, collapsed, _ = cli("diff", PT, ONNX)
    _, every, _ = cli("diff", PT, ONNX, "--all")
    assert collapsed.count("\nok ") < every.count("\nok ") == 7
    assert "more ok layers (--all lists them)" in collapsed and "more ok layers" not in every


# ----------------------------------------------------------------- progress


def test_progress_is_silent_outside_a_display_and_off_a_terminal(monkeypatch):
    with progress.step("nothing watches", total=3) as step:
        step.advance()  # no display: a no-op
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    monkeypatch.setattr(progress, "DELAY", 0.0)
    with progress.shown():
        with progress.step("a pipe", total=2) as step:
            time.sleep(0.05)
            step.advance(2)
    assert stderr.getvalue() == ""


def test_progress_appears_on_a_terminal_after_the_delay_and_goes(monkeypatch, colourless):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr(progress, "DELAY", 0.0)
    with progress.shown():
        with progress.step("Matching \x1b[2J layers", total=4) as step:
            time.sleep(0.3)
            for _ in range(4):
                step.advance()
            time.sleep(0.2)
    shown = terminal.getvalue()
    assert "Matching \\x1b[2J layers" in SGR.sub("", shown)  # the description, made visible
    assert "\x1b[2J" not in shown
    # Quick commands show nothing: with the usual delay, a short step never starts it.
    monkeypatch.setattr(progress, "DELAY", 5.0)
    quick = Terminal()
    monkeypatch.setattr("sys.stderr", quick)
    with progress.shown():
        with progress.step("quick", total=1) as step:
            step.advance()
    assert quick.getvalue() == ""
