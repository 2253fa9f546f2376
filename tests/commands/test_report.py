"""``graphinspect report RESULT.json``: a saved document rendered again, in every format.

The reference is the command itself: ``diff ... --format F -o a`` and ``report saved.json
--format F -o b`` must write the same bytes, for every reporter that renders the diff
document (found through the plugin manager, so a new format is covered without editing
this file). Bad files are refused in one line, exit 2, with nothing written.
"""

from __future__ import annotations

import io
import json
import sys

import pytest

from inspector.manager import get_plugin_manager
from tests.support import REPO, run_cli
from tests.support.runs import STEM_FACTORY, STEM_ONNX, STEM_PT, STEM_STATE_DICT, TAMPERED_NODE, tamper


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    return folder, tamper(folder / "tampered.onnx")


@pytest.fixture
def saved(pair, cli):
    folder, tampered = pair
    code, _, _ = cli("diff", str(STEM_PT), str(tampered), "-o", str(folder / "saved.json"))
    assert code == 1
    return folder / "saved.json"


def diff_formats() -> list[str]:
    plugins = get_plugin_manager(autoload=False)
    return sorted({reporter.name for reporter in plugins.reporters() if reporter.renders("graphinspect/diff@1")})


def test_the_diff_document_has_every_format_of_this_issue():
    assert {"table", "json", "markdown", "html", "junit", "sarif", "github", "model-explorer"} <= set(diff_formats())


@pytest.mark.parametrize("fmt", diff_formats())
def test_report_renders_a_saved_diff_as_the_command_does(pair, saved, cli, fmt, tmp_path):
    _, tampered = pair
    direct, again = tmp_path / f"direct.{fmt}", tmp_path / f"again.{fmt}"
    diff_code, _, diff_err = cli("diff", str(STEM_PT), str(tampered), "--format", fmt, "-o", str(direct))
    code, out, err = cli("report", str(saved), "--format", fmt, "-o", str(again))
    assert (diff_code, code, out) == (1, 0, "")
    assert err == diff_err.replace(str(direct), str(again))  # the verdict line, beside the file
    assert again.read_bytes() == direct.read_bytes()
    assert TAMPERED_NODE in again.read_text(encoding="utf-8")


def test_report_to_the_terminal_matches_the_command(pair, saved, cli):
    _, tampered = pair
    _, direct, _ = cli("diff", str(STEM_PT), str(tampered))
    code, again, err = cli("report", str(saved))
    assert (code, err) == (0, "")
    assert again == direct


def test_report_colours_a_terminal_as_the_command_does(pair, saved, cli, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    _, tampered = pair
    monkeypatch.delenv("NO_COLOR")
    outputs = []
    for args in (["diff", str(STEM_PT), str(tampered)], ["report", str(saved)], ["report", str(saved), "--no-color"]):
        monkeypatch.setattr(sys, "stdout", Terminal())
        cli(*args)
        outputs.append(sys.stdout.getvalue())
        monkeypatch.delenv("NO_COLOR", raising=False)  # --no-color sets it for the process
    direct, again, plain = outputs
    assert "\x1b[" in direct
    assert again == direct
    assert "\x1b[" not in plain and TAMPERED_NODE in plain


@pytest.mark.parametrize(
    "suffix, first", [(".html", "<!DOCTYPE html>"), (".md", "## graphinspect diff"), (".xml", "<?xml"), (".sarif", "{")]
)
def test_the_suffix_of_o_chooses_the_format(saved, cli, tmp_path, suffix, first):
    out = tmp_path / f"report{suffix}"
    assert cli("report", str(saved), "-o", str(out))[0] == 0
    assert out.read_text(encoding="utf-8").lstrip().startswith(first)


def test_report_reads_stdin(saved, cli, monkeypatch):
    piped = saved.read_bytes()  # as `graphinspect diff ... --format json | graphinspect report -` pipes it
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(piped)))
    code, out, err = cli("report", "-", "--format", "junit")
    assert (code, err) == (0, "")
    assert 'failures="1"' in out and TAMPERED_NODE in out
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"not json")))
    code, out, err = cli("report", "-")
    assert (code, out) == (2, "") and err.startswith("graphinspect: error: <stdin>: is not valid JSON")


def test_every_document_renders_again(pair, cli, tmp_path):
    """inspect, fuse, verify and plugins documents: their own table, and json round-trips."""
    _, tampered = pair
    runs = {
        "inspect": ["inspect", str(STEM_ONNX)],
        "fuse": ["fuse", str(STEM_PT), "--against", str(tampered)],
        "verify": ["verify", str(STEM_STATE_DICT), str(tampered), "--model", STEM_FACTORY, "--per-layer"],
        "plugins": ["plugins"],
    }
    for name, args in runs.items():
        saved = tmp_path / f"{name}.json"
        cli(*args, "-o", str(saved))
        _, direct, _ = cli(*args)
        code, again, err = cli("report", str(saved))
        assert (code, err) == (0, ""), name
        assert again == direct, name
        code, out, _ = cli("report", str(saved), "--format", "json")
        assert json.loads(out) == json.loads(saved.read_text(encoding="utf-8")), name
    for fmt in ("junit", "sarif", "github", "model-explorer"):
        code, out, err = cli("report", str(tmp_path / "verify.json"), "--format", fmt)
        assert (code, err) == (0, ""), fmt
        assert TAMPERED_NODE in out, fmt


def _variants(saved_text: str) -> dict[str, tuple[bytes, str]]:
    document = json.loads(saved_text)
    no_summary = {key: value for key, value in document.items() if key != "summary"}
    broken_layer = json.loads(saved_text)
    del broken_layer["layers"][0]["params"]
    return {
        "empty": (b"", "is empty"),
        "not json": (b"Source  model.pt\n", "is not valid JSON (line 1, column 1"),
        "binary": (b"\x80\x81\x00PK", "not UTF-8"),
        "array": (b"[1, 2]", "the JSON is a list"),
        "no schema": (b'{"tool": {}}', 'no "schema" field'),
        "unknown schema": (
            b'{"schema": "acme/result@1"}',
            "is a document of schema acme/result@1, which no reporter renders",
        ),
        "newer major": (
            json.dumps({**document, "schema": "graphinspect/diff@2"}).encode(),
            "is a graphinspect/diff@2 document; graphinspect 0.1.0 reads graphinspect/diff@1",
        ),
        "cut short": (json.dumps(no_summary).encode(), "missing: summary"),
        "broken layer": (json.dumps(broken_layer).encode(), "is not a valid graphinspect/diff@1 document (no field"),
    }


@pytest.mark.parametrize(
    "variant",
    ["empty", "not json", "binary", "array", "no schema", "unknown schema", "newer major", "cut short", "broken layer"],
)
def test_a_bad_result_is_one_line_and_nothing_is_written(saved, cli, tmp_path, variant):
    content, problem = _variants(saved.read_text(encoding="utf-8"))[variant]
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    out = tmp_path / "out.md"
    kept = tmp_path / "kept.md"
    kept.write_text("before\n", encoding="utf-8")
    for target in (out, kept):
        code, stdout, err = cli("report", str(bad), "-o", str(target))
        assert (code, stdout) == (2, "")
        assert err.count("\n") == 1 and err.startswith(f"graphinspect: error: {bad}: "), err
        assert problem in err
    assert not out.exists()
    assert kept.read_text(encoding="utf-8") == "before\n"
    code, stdout, err = cli("report", str(bad), "--format", "markdown")
    assert (code, stdout) == (2, "")


def test_missing_file_directory_and_unknown_format(saved, cli, tmp_path):
    code, _, err = cli("report", str(tmp_path / "nothing.json"))
    assert code == 2 and err == f"graphinspect: error: {tmp_path / 'nothing.json'}: no such file\n"
    code, _, err = cli("report", str(tmp_path))
    assert code == 2 and err == f"graphinspect: error: {tmp_path}: is a directory, not a saved result\n"
    code, _, err = cli("report", str(saved), "--format", "csv")
    assert code == 2 and "unknown --format 'csv'" in err and "sarif" in err
    code, _, err = cli("report", str(saved), "-o", str(saved))
    assert code == 2 and "refusing to overwrite an input file" in err


def test_report_exits_0_whatever_the_verdict(saved):
    # The saved diff differs (its command exited 1); rendering it succeeded.
    assert run_cli("report", str(saved), cwd=REPO).returncode == 0


def test_the_readme_workflow_runs(pair, cli, tmp_path, monkeypatch):
    """The GitHub Actions example of the README, its graphinspect lines run on the tampered
    pair as the workflow would: the diff fails (exit 1), every report step succeeds."""
    import shutil

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    workflow = readme.split("# .github/workflows/export.yml\n", 1)[1].split("```", 1)[0]
    lines = [
        line.strip().removeprefix("- ").removeprefix("run: ").split("  #")[0].strip()
        for line in workflow.splitlines()
        if "graphinspect " in line and not line.strip().startswith(("- run: pip", "#"))
    ]
    commands = [line.split()[1:] for line in lines if line.startswith("graphinspect ")]
    assert [command[0] for command in commands] == ["diff", "report", "report", "report", "report"]
    _, tampered = pair
    shutil.copy(STEM_PT, tmp_path / "model.pt")
    shutil.copy(tampered, tmp_path / "model.onnx")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    codes = [cli(*command)[0] for command in commands]
    assert codes == [1, 0, 0, 0, 0]
    assert json.loads((tmp_path / "graphinspect.sarif").read_text(encoding="utf-8"))["runs"][0]["results"]
    assert (tmp_path / "graphinspect.xml").read_text(encoding="utf-8").count("<failure") == 1
    assert (tmp_path / "graphinspect.html").read_text(encoding="utf-8").lstrip().startswith("<!DOCTYPE html>")
    assert (tmp_path / "summary.md").read_text(encoding="utf-8").startswith("## graphinspect diff: DIFFERS")


def test_with_o_the_verdict_line_goes_to_the_terminal_as_the_command_says_it(pair, saved, cli, tmp_path):
    _, tampered = pair
    diff_code, _, diff_err = cli("diff", str(STEM_PT), str(tampered), "-o", str(tmp_path / "by_diff.md"))
    report = tmp_path / "by_report.md"
    code, out, err = cli("report", str(saved), "-o", str(report))
    assert (diff_code, code, out) == (1, 0, "")
    verdict = diff_err.split("; report written to")[0]
    assert verdict.startswith("Verdict: DIFFERS (")
    assert err == f"{verdict}; report written to {report}\n"
    # Not a diff or verify document: nothing to say beside the file.
    plugins_json = tmp_path / "plugins.json"
    assert cli("plugins", "-o", str(plugins_json))[0] == 0
    code, _, err = cli("report", str(plugins_json), "-o", str(tmp_path / "plugins.txt"))
    assert (code, err) == (0, "")
