"""``graphinspect diff --pairs MANIFEST --jobs N --out-dir DIR`` (plugins/commands/_batch.py).

One real batch run, shared by most tests: six pairs built from the samples (faithful,
tampered so that it differs, a missing file, random bytes named .onnx, a file that
segfaults its worker through a crashing loader plugin, and a second faithful pair after
the crash), in two worker processes. Each pair's report is parsed back and compared
with the document a single in-process ``graphinspect diff --format json`` writes for the
same pair; each trouble row with the one line the single diff prints.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import textwrap
import time
from contextlib import redirect_stderr, redirect_stdout
from types import SimpleNamespace

import pytest

from inspector.cli import main
from plugins.commands import _batch, _batch_table
from plugins.commands._workers import run_in_workers
from tests.support import SAMPLES
from tests.support.runs import STEM_ONNX, STEM_PT, run, tamper
from tests.support.schemas import schema_errors

CRASHING_PLUGIN = textwrap.dedent(
    """
    import ctypes

    from inspector.hookspecs import hookimpl
    from inspector.records import ModelLoader


    def load(path):
        ctypes.string_at(0)  # a segmentation fault, as a crafted file can cause in native code


    @hookimpl
    def graphinspect_loaders():
        yield ModelLoader("crash", ("crash",), lambda path, head: head.startswith(b"SEGV"), load, priority=99)
    """
)

MANIFEST = """\
# a comment, then a blank line

models/stem.pt models/stem.onnx
models/stem.pt "models/tampered export.onnx"   # differs
models/stem.pt models/missing.onnx
'models/stem.pt' models/corrupt.onnx
models/stem.pt models/crash.onnx
{resnet_pt} {resnet_onnx}
"""
VERDICTS = ["faithful", "differs", "trouble", "trouble", "trouble", "faithful"]


def call(*argv: str) -> tuple[int, str, str]:
    """``graphinspect ARGV`` in-process: (exit status, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(list(argv))
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    models = folder / "models"
    models.mkdir()
    shutil.copy(STEM_PT, models / "stem.pt")
    shutil.copy(STEM_ONNX, models / "stem.onnx")
    tamper(models / "tampered export.onnx")
    (models / "corrupt.onnx").write_bytes(random.Random(12).randbytes(3000))
    (models / "crash.onnx").write_bytes(b"SEGV" + bytes(100))
    (folder / "crashing_loader.py").write_text(CRASHING_PLUGIN)
    manifest = folder / "pairs.txt"
    resnet = {"resnet_pt": SAMPLES / "resnet_block.pt", "resnet_onnx": SAMPLES / "resnet_block.onnx"}
    manifest.write_text(MANIFEST.format(**resnet))
    out = folder / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD", "1")
        patch.setenv("GRAPHINSPECT_PLUGINS", "crashing_loader")
        patch.syspath_prepend(str(folder))  # the spawned workers get the parent's sys.path
        code, stdout, stderr = call("diff", "--pairs", str(manifest), "--jobs", "2", "--out-dir", str(out))
        # The same pairs, each by a single diff, with the paths the batch hands on.
        paths = [(os.path.join(folder, s), os.path.join(folder, t)) for s, t in _manifest_pairs()]
        paths.append((str(resnet["resnet_pt"]), str(resnet["resnet_onnx"])))
        singles = {}
        for index, (source, target) in enumerate(paths, 1):
            if VERDICTS[index - 1] != "trouble":
                singles[index] = run(tmp_path_factory.mktemp("single"), "single", "diff", source, target)
            elif "crash" not in target:
                singles[index] = call("diff", source, target, "--format", "json")
    return SimpleNamespace(
        folder=folder, out=out, code=code, stdout=stdout, stderr=stderr, paths=paths, singles=singles
    )


def _manifest_pairs() -> list[tuple[str, str]]:
    return [
        ("models/stem.pt", "models/stem.onnx"),
        ("models/stem.pt", "models/tampered export.onnx"),
        ("models/stem.pt", "models/missing.onnx"),
        ("models/stem.pt", "models/corrupt.onnx"),
        ("models/stem.pt", "models/crash.onnx"),
    ]


def test_every_report_is_what_a_single_diff_writes_and_trouble_writes_none(batch):
    assert batch.code == 2  # some pair is in trouble
    assert sorted(p.name for p in batch.out.iterdir()) == [
        "001-stem.json",
        "002-tampered_export.json",
        "006-resnet_block.json",
        "summary.json",
    ]
    for index, name in ((1, "001-stem.json"), (2, "002-tampered_export.json"), (6, "006-resnet_block.json")):
        code, single = batch.singles[index]
        assert json.loads((batch.out / name).read_text()) == single
        assert code == (1 if index == 2 else 0)
    assert json.loads((batch.out / "001-stem.json").read_text())["source"]["path"] == batch.paths[0][0]


def test_the_summary_has_one_row_per_pair_with_the_single_diffs_numbers(batch):
    summary = json.loads((batch.out / "summary.json").read_text())
    assert schema_errors(summary) == []
    assert summary["exit_status"] == 2 and summary["jobs"] == 2
    assert summary["totals"] == {"pairs": 6, "faithful": 2, "differs": 1, "incomplete": 0, "trouble": 3}
    rows = summary["pairs"]
    assert [row["verdict"] for row in rows] == VERDICTS
    assert [row["line"] for row in rows] == [3, 4, 5, 6, 7, 8]
    assert [(row["source"], row["target"]) for row in rows] == batch.paths
    for row in rows:
        if row["verdict"] == "trouble":
            assert row["report"] is None and row["layers"] is None and row["exit_status"] == 2
            continue
        code, single = batch.singles[row["index"]]
        counts = single["summary"]
        assert row["exit_status"] == code and row["error"] is None
        assert row["layers"] == {
            "ok": counts["matched"],
            "mismatch": counts["mismatched"],
            "unmatched": counts["unmatched_target"],
        }
        explained = counts["coverage"]["explained"]["elements"]
        assert row["coverage"] == explained / (explained + counts["coverage"]["unexplained"]["elements"])
    assert rows[1]["layers"]["mismatch"] == 1


def test_a_bad_pair_is_its_own_one_line_trouble_and_the_others_go_on(batch):
    rows = json.loads((batch.out / "summary.json").read_text())["pairs"]
    for index in (3, 4):  # the same line a single diff prints
        code, stdout, stderr = batch.singles[index]
        assert code == 2 and stdout == ""
        assert f"graphinspect: error: {rows[index - 1]['error']}\n" == stderr
    crash = os.path.join(batch.folder, "models/crash.onnx")
    assert rows[4]["error"] == (
        f"{crash}: crashed the process (SIGSEGV) while reading it (crash loader); the file is damaged or crafted"
    )
    assert rows[5]["verdict"] == "faithful"  # a new worker took the pair after the crash


def test_the_table_lists_every_pair_in_order_and_fits_80_columns(batch):
    lines = batch.stdout.splitlines()
    labels = [line.split()[1] for line in lines[2:-2] if line.split() and line.split()[0].isdigit()]
    assert labels == [verdict.upper() for verdict in VERDICTS]
    assert lines[-1].startswith("6 pairs: 2 faithful, 1 differs, 0 incomplete, 3 trouble; 2 jobs, ")
    assert batch.stderr == ""
    summary = json.loads((batch.out / "summary.json").read_text())
    narrow = io.StringIO()
    _batch_table.render(summary, narrow, {"color": False, "width": 80})
    text = narrow.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    rows = [line for line in text.splitlines() if line[:1].isdigit() and "pairs:" not in line]
    for line, row in zip(rows, summary["pairs"], strict=True):
        cell = line.rsplit("  ", 1)[1]  # the target, cut from the left: its file name stays
        assert cell.startswith("\u2026") and row["target"].endswith(cell[1:]) and len(cell) >= 12
    assert "error   " + os.path.join(batch.folder, "models/missing.onnx")[:20] in text.replace("\n", " ")


def test_report_renders_the_saved_summary_again(batch, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # what the batch's stdout (not a terminal) got
    code, stdout, _ = call("report", str(batch.out / "summary.json"))
    assert code == 0
    assert stdout == batch.stdout


def test_exit_status_1_without_trouble_and_nothing_written_without_out_dir(tmp_path, monkeypatch):
    tampered = tamper(tmp_path / "tampered.onnx")
    (tmp_path / "pairs.txt").write_text(f"{STEM_PT} {STEM_ONNX}\n{STEM_PT} {tampered}\n")
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = call("diff", "--pairs", "pairs.txt", "--format", "json")
    assert code == 1 and stderr == ""
    summary = json.loads(stdout)
    assert [row["verdict"] for row in summary["pairs"]] == ["faithful", "differs"]
    assert [row["report"] for row in summary["pairs"]] == [None, None] and summary["out_dir"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.txt", "tampered.onnx"]


def test_stdin_manifest_all_faithful_exits_0(monkeypatch):
    monkeypatch.setattr("sys.stdin", SimpleNamespace(buffer=io.BytesIO(f"{STEM_PT} {STEM_ONNX}\n".encode())))
    code, stdout, _ = call("diff", "--pairs", "-", "--quiet")
    assert code == 0
    assert stdout.startswith("1 pair: 1 faithful, 0 differs, 0 incomplete, 0 trouble; 1 job, ")


@pytest.mark.parametrize(
    "text, where, problem",
    [
        ("a.pt b.onnx\nonly_one.pt\n", ":2", "expected two paths, SOURCE TARGET, found 1: only_one.pt"),
        ("a.pt b.onnx c.onnx\n", ":1", "expected two paths, SOURCE TARGET, found 3: a.pt b.onnx c.onnx"),
        ('# header\na.pt "b.onnx\n', ":2", "no closing quotation"),
        ("a.pt ''\n", ":1", "an empty path"),
        ("# only a comment\n\n", "", "lists no pairs (one 'SOURCE TARGET' pair a line)"),
    ],
)
def test_a_bad_manifest_line_is_one_line_naming_file_and_line_and_nothing_runs(tmp_path, text, where, problem):
    manifest = tmp_path / "pairs.txt"
    manifest.write_text(text)
    code, stdout, stderr = call("diff", "--pairs", str(manifest), "--out-dir", str(tmp_path / "out"))
    assert (code, stdout) == (2, "")
    assert stderr == f"graphinspect: error: {manifest}{where}: {problem}\n"
    assert not (tmp_path / "out").exists()


def test_manifest_syntax_quotes_comments_and_paths_relative_to_its_folder(tmp_path):
    manifest = tmp_path / "sub" / "pairs.txt"
    manifest.parent.mkdir()
    manifest.write_bytes(b'"my model.pt" model#2.onnx # why\r\n\r\n/abs/a.pt -x.onnx\n  # indented comment\n')
    pairs = _batch.read_manifest(str(manifest))
    folder = str(manifest.parent)
    assert [(p.index, p.line, p.source, p.target) for p in pairs] == [
        (1, 1, f"{folder}/my model.pt", f"{folder}/model#2.onnx"),
        (2, 3, "/abs/a.pt", f"{folder}/-x.onnx"),
    ]
    assert _batch.report_name(pairs[0], 2) == "001-model_2.json"
    assert _batch.report_name(pairs[0], 1234) == "0001-model_2.json"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["a.pt", "b.onnx", "--pairs", "pairs.txt"], "--pairs MANIFEST replaces SOURCE TARGET; give one or the other"),
        (["a.pt", "b.onnx", "--jobs", "2"], "--jobs goes with --pairs MANIFEST, not with SOURCE TARGET"),
        (["a.pt", "b.onnx", "--out-dir", "out"], "--out-dir goes with --pairs MANIFEST, not with SOURCE TARGET"),
        (["a.pt"], "diff needs SOURCE and TARGET (or --pairs MANIFEST)"),
    ],
)
def test_pairs_and_positionals_conflict_in_one_line(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairs.txt").write_text("a.pt b.onnx\n")
    assert call("diff", *argv) == (2, "", f"graphinspect: error: {message}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.txt"]


def test_jobs_must_be_positive_or_auto(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["diff", "--pairs", "pairs.txt", "--jobs", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith("argument --jobs: must be a positive number or 'auto', not '0'")


def test_an_output_that_is_an_input_is_refused_before_anything_runs(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(STEM_ONNX, models / "stem.onnx")
    original = (models / "stem.onnx").read_bytes()
    manifest = tmp_path / "pairs.txt"
    manifest.write_text(f"{STEM_PT} models/stem.onnx\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "001-stem.json").symlink_to(models / "stem.onnx")
    code, stdout, stderr = call("diff", "--pairs", str(manifest), "--out-dir", str(out))
    assert (code, stdout) == (2, "")
    assert stderr == (
        f"graphinspect: error: --out-dir {out}: 001-stem.json is the input {tmp_path}/models/stem.onnx; "
        "refusing to overwrite an input file\n"
    )
    assert (models / "stem.onnx").read_bytes() == original
    assert sorted(p.name for p in out.iterdir()) == ["001-stem.json"]
    code, _, stderr = call("diff", "--pairs", str(manifest), "-o", str(manifest))
    assert (
        code == 2
        and stderr
        == f"graphinspect: error: -o {manifest}: is the input {manifest}; refusing to overwrite an input file\n"
    )
    code, _, stderr = call("diff", "--pairs", str(manifest), "--out-dir", str(tmp_path / "no" / "out"))
    assert (
        code == 2
        and stderr == f"graphinspect: error: --out-dir {tmp_path}/no/out: folder {tmp_path}/no does not exist\n"
    )


def test_every_diff_option_is_passed_on_or_belongs_to_the_batch():
    from inspector.cli import build_parser
    from inspector.manager import get_plugin_manager

    parser = build_parser(get_plugin_manager())
    diff = parser._subparsers._group_actions[0].choices["diff"]
    dests = {action.dest for action in diff._actions} - {"help"}
    assert dests <= set(_batch.PAIR_OPTIONS) | _batch.SUMMARY_OPTIONS
    args = diff.parse_args(["--pairs", "m", "--rtol", "1e-3", "--layer", "a*", "--layer", "b", "--only-problems"])
    pair = _batch.Pair(1, 1, "-s.pt", "t.onnx")
    assert _batch.pair_argv(args, pair, "out/001-t.json") == [
        "diff", "--format", "json", "--rtol", "0.001", "--only-problems", "--layer", "a*", "--layer", "b",
        "-o", "out/001-t.json", "--", "-s.pt", "t.onnx",
    ]  # fmt: skip


def fail_on_odd(number: int) -> int:
    """A task for the worker pool: raises for odd numbers."""
    if number % 2:
        raise ValueError(f"odd\n{number}")
    return number * 10


def test_the_worker_pool_turns_a_raising_task_into_its_own_failure():
    results = {}
    run_in_workers(fail_on_odd, [(n,) for n in range(5)], 2, results.__setitem__, lambda s, problem: problem)
    assert results == {0: 0, 1: "internal error: ValueError: odd", 2: 20, 3: "internal error: ValueError: odd", 4: 40}


def sleep_on_odd(number: int) -> int:
    """A task for the worker pool: hangs (as a reader stuck on a crafted file would) for odd numbers."""
    if number % 2:
        time.sleep(600)
    return number * 10


def test_the_worker_pool_stops_a_task_past_its_timeout_and_goes_on():
    results, seconds = {}, {}

    def failed(spent: float, problem: str) -> str:
        seconds[len(seconds)] = spent
        return problem

    started = time.perf_counter()
    run_in_workers(sleep_on_odd, [(n,) for n in range(4)], 2, results.__setitem__, failed, timeout=1.5)
    stopped = "did not finish within 1.5 s (--timeout): stopped"
    assert results == {0: 0, 1: stopped, 2: 20, 3: stopped}
    assert all(1.5 <= spent < 30 for spent in seconds.values())
    assert time.perf_counter() - started < 60  # not the 600 s the tasks would sleep


def test_timeout_goes_with_pairs_and_is_positive_seconds(tmp_path, capsys):
    code, _, stderr = call("diff", str(STEM_PT), str(STEM_ONNX), "--timeout", "5")
    assert (code, stderr) == (2, "graphinspect: error: --timeout goes with --pairs MANIFEST, not with SOURCE TARGET\n")
    for bad in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(SystemExit) as exit_info:
            main(["diff", "--pairs", "m.txt", "--timeout", bad])
        assert exit_info.value.code == 2
        assert f"argument --timeout: must be a positive number of seconds, not {bad!r}" in capsys.readouterr().err


def test_the_summary_says_the_timeout(tmp_path):
    manifest = tmp_path / "pairs.txt"
    manifest.write_text(f"{STEM_PT} {STEM_ONNX}\n")
    code, stdout, _ = call("diff", "--pairs", str(manifest), "--timeout", "300", "--format", "json")
    document = json.loads(stdout)
    assert (code, document["timeout"], document["pairs"][0]["verdict"]) == (0, 300.0, "faithful")
    assert schema_errors(document) == []
    code, stdout, _ = call("diff", "--pairs", str(manifest), "--format", "json")
    assert json.loads(stdout)["timeout"] is None
