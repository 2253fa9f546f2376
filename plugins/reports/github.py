"""The ``github`` reporter: GitHub Actions annotations and a step summary.

``graphinspect diff A.pt B.onnx --format github`` in a workflow step prints one workflow
command per problem (:mod:`plugins.reports._problems`)::

    ::error file=B.onnx,title=graphinspect%3A Conv differs (/m.2/Conv)::/m.2/Conv (Conv, ...): weight differs ...

which GitHub shows as annotations on the run and the pull request, then one ``notice``
(faithful/same) or ``error`` line with the verdict and the summary in words. GitHub shows
at most 10 annotations of each level per step, so at most :data:`MAX_PER_LEVEL` are
printed per level, and one more line says how many were left out. Messages and
properties are escaped as the runner expects (``%``, CR and LF; in properties also ``:``
and ``,``), so a node name cannot end a command early or start another one.

When ``GITHUB_STEP_SUMMARY`` is set (inside a workflow step), the report in Markdown is
added to the step summary file (after what earlier commands of the step wrote), through
:class:`~inspector.output_file.OutputFile` like every file graphinspect writes: the
``markdown`` reporter's rendering where one renders the document (diff), else a short
summary of the outputs and the first divergent layer (verify).
"""

from __future__ import annotations

import io
import os
from typing import Any

from inspector.hookspecs import hookimpl
from inspector.output import fmt_float
from inspector.records import Reporter
from plugins.reports._problems import SCHEMAS, VERIFY_SCHEMA, onnx_path, passed, problems, verdict

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
MAX_PER_LEVEL = 10


def render(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """Print the annotations; add the Markdown report to the step summary when in a step."""
    path = onnx_path(document)
    shown = {"error": 0, "warning": 0}
    left_out = 0
    for problem in problems(document):
        if shown[problem.level] >= MAX_PER_LEVEL:
            left_out += 1
            continue
        shown[problem.level] += 1
        title = f"graphinspect: {problem.title}" + (f" ({problem.layer})" if problem.layer else "")
        stream.write(command(problem.level, problem.message, file=path, title=title) + "\n")
    if left_out:
        stream.write(
            command(
                "warning",
                f"{left_out} more problem{'s' if left_out != 1 else ''} not annotated (GitHub shows "
                f"{MAX_PER_LEVEL} per level); the full report is in the step summary",
                file=path,
                title="graphinspect: more problems",
            )
            + "\n"
        )
    word = verdict(document)
    stream.write(
        command(
            "notice" if passed(document) else "error",
            _verdict_text(document),
            file=path,
            title=f"graphinspect: {word.upper()}",
        )
        + "\n"
    )
    summary_path = os.environ.get(STEP_SUMMARY_ENV)
    if summary_path:
        append_step_summary(summary_path, step_summary(document))


def command(level: str, message: str, **properties: str) -> str:
    """One workflow command line: ``::level key=value,...::message``, escaped."""
    given = ",".join(f"{key}={_escape_property(value)}" for key, value in properties.items() if value)
    return f"::{level} {given}::{_escape_data(message)}" if given else f"::{level}::{_escape_data(message)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _verdict_text(document: dict[str, Any]) -> str:
    if document["schema"] == VERIFY_SCHEMA:
        differing = [output["name"] for output in document["outputs"] if output["status"] != "same"]
        text = f"verify {document['source']['path']} {document['target']['path']}: {document['verdict']}"
        if differing:
            text += f"; outputs beyond tolerance: {', '.join(differing)}"
        if document.get("first_divergent"):
            text += f"; first divergent layer: {document['first_divergent']}"
        return text
    return document["summary"]["text"]


# ----------------------------------------------------------------------------- step summary


def step_summary(document: dict[str, Any]) -> str:
    """The Markdown added to the step summary: the ``markdown`` reporter's where one
    renders the document, else :func:`_verify_markdown`."""
    from inspector.manager import get_plugin_manager

    plugins = get_plugin_manager(warn=lambda message: None)  # the run has warned already
    for reporter in plugins.reporters():
        if reporter.name == "markdown" and reporter.renders(document["schema"]):
            buffer = io.StringIO()
            reporter.render(document, buffer, {"color": False, "to_file": True})
            return buffer.getvalue()
    return _verify_markdown(document) if document["schema"] == VERIFY_SCHEMA else ""


def append_step_summary(path: str, markdown: str) -> None:
    """Add ``markdown`` after what the file holds (the step summary is shared by every
    command of the step), written whole through :class:`OutputFile`."""
    from inspector.output_file import OutputFile

    if not markdown:
        return
    output = OutputFile.prepare(path, STEP_SUMMARY_ENV)
    before = ""
    if not output.is_stream and os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as existing:
            before = existing.read()
    if before and not before.endswith("\n"):
        before += "\n"
    output.write_text(before + ("\n" if before else "") + markdown)


def _verify_markdown(document: dict[str, Any]) -> str:
    lines = [f"## graphinspect verify: {document['verdict'].upper()}", ""]
    source, target = document["source"], document["target"]
    lines.append(f"- **PyTorch:** {_code(source['path'])} (run as {_code(source['runner'])})")
    lines.append(f"- **ONNX:** {_code(target['path'])}")
    lines.append("")
    lines.append("| Output | Shape | Max abs | Max rel | Cosine | Status |")
    lines.append("|---|---|---:|---:|---:|---|")
    for output in document["outputs"]:
        shape = "x".join(str(d) for d in output["shape"])
        lines.append(
            f"| {_code(output['name'], table=True)} | {shape} | {fmt_float(output['max_abs_err'])} | "
            f"{fmt_float(output['max_rel_err'])} | {fmt_float(output['cosine'], 6)} | {output['status']} |"
        )
    lines.append("")
    if document.get("first_divergent"):
        lines.append(f"First divergent layer: {_code(document['first_divergent'])}.")
        lines.append("")
    for lint in document["lint"]:
        if lint["severity"] in ("error", "warning"):
            lines.append(f"- **{lint['severity']}** {_code(lint['code'])}: {_code(lint['message'])}")
    return "\n".join(lines).rstrip("\n") + "\n"


def _code(value: str, table: bool = False) -> str:
    """``value`` as a Markdown code span (a fence longer than any backtick run in it);
    in a table, "|" is escaped, which GitHub honours inside code spans."""
    value = value.replace("\n", " ")
    longest = run = 0
    for char in value:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    padded = f" {value} " if longest or value.startswith("`") or value.endswith("`") else value
    span = f"{fence}{padded}{fence}"
    return span.replace("|", "\\|") if table else span


@hookimpl
def graphinspect_reporters():
    yield Reporter(
        "github",
        "GitHub Actions: ::error annotations per problem, and the report in the step summary.",
        SCHEMAS,
        render,
    )
