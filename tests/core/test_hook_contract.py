"""The hooks as a tested contract.

- every hook spec in :mod:`inspector.hookspecs` is in the plugin guide
  (``plugins/README.md``) with its exact signature, and the guide names no other hook;
- every ``Example::`` in a hook spec's docstring runs as it stands: it is executed as a
  fresh module, registered into a fresh manager, and used through the facade the way the
  example says;
- the facade's rules: registration order (and tryfirst/trylast), sorting of loaders and
  transforms, one warning per name clash, reporters sharing a name across schemas, and a
  plugin whose hook raises or returns non-records being skipped.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import textwrap
import types
import typing
from pathlib import Path

import numpy as np
import pytest

from inspector import PROJECT_NAME, hookspecs
from inspector.cli import build_parser
from inspector.diff import diff_models
from inspector.errors import InputError
from inspector.hookspecs import hookimpl
from inspector.ir import CONV, Layer, Model, Param
from inspector.manager import ENTRY_POINT_GROUP, get_plugin_manager
from inspector.output import choose_format, emit
from inspector.records import Check, Finding, ModelLoader, Reporter, Subcommand
from inspector.report import SCHEMA as DIFF_SCHEMA
from inspector.report import build_document
from inspector.transforms import Transform
from plugins import BUILTIN_PLUGINS
from tests.support import FAKE_SITE, REPO

GUIDE = REPO / "plugins" / "README.md"

HOOKS = sorted(
    name
    for name, value in vars(hookspecs).items()
    if name.startswith("graphinspect_") and hasattr(value, f"{PROJECT_NAME}_spec")
)
"""The hook specifications, found by pluggy's spec marker."""

FACADE = {
    "graphinspect_loaders": "loaders",
    "graphinspect_subcommands": "subcommands",
    "graphinspect_reporters": "reporters",
    "graphinspect_transforms": "transforms",
    "graphinspect_checks": "checks",
}
"""Hook -> the :class:`~inspector.manager.Plugins` method that returns its records."""

RECORD_TYPES = {
    "ModelLoader": ModelLoader,
    "Subcommand": Subcommand,
    "Reporter": Reporter,
    "Transform": Transform,
    "Check": Check,
}

BUILTIN_COMMANDS = ["inspect", "diff", "fuse", "verify", "report", "plugins"]


@pytest.fixture(autouse=True)
def _no_outside_plugins(monkeypatch):
    monkeypatch.delenv("GRAPHINSPECT_PLUGINS", raising=False)
    monkeypatch.setenv("GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD", "1")


def fresh(warnings: list[str] | None = None):
    """A manager with the built-ins only; warnings go to ``warnings``."""
    return get_plugin_manager(autoload=False, warn=(warnings if warnings is not None else []).append)


def spec_signature(name: str) -> str:
    """``def NAME(PARAMS) -> RETURN`` as the spec's source spells it."""
    signature = inspect.signature(getattr(hookspecs, name))
    returns = signature.return_annotation
    returns = returns if isinstance(returns, str) else inspect.formatannotation(returns)
    params = ", ".join(str(param) for param in signature.parameters.values())
    return f"def {name}({params}) -> {returns}"


def record_type(name: str) -> type:
    """The record type a spec's return annotation names (``Iterable[X]`` -> X)."""
    hints = typing.get_type_hints(getattr(hookspecs, name), localns=RECORD_TYPES)
    (item,) = typing.get_args(hints["return"])
    return item


# ----------------------------------------------------------------------- the specs


def test_the_specs_are_found_and_each_has_a_facade_method():
    assert HOOKS, "no hook specifications found in inspector.hookspecs"
    assert set(HOOKS) == set(FACADE), "a hook without a facade method here, or a facade method without a hook"
    plugins = fresh()
    for method in FACADE.values():
        assert callable(getattr(plugins, method))


@pytest.mark.parametrize("hook", HOOKS)
def test_spec_returns_an_iterable_of_its_record_type_and_the_facade_returns_it(hook):
    expected = record_type(hook)
    found = getattr(fresh(), FACADE[hook])()
    assert found, f"no built-in contributes to {hook}"
    assert all(isinstance(record, expected) for record in found)


def test_marker_project_and_entry_point_group_are_one_string():
    assert hookspecs.hookimpl.project_name == hookspecs.hookspec.project_name == ENTRY_POINT_GROUP == "graphinspect"


# ----------------------------------------------------------------------- the guide


def guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


@pytest.mark.parametrize("hook", HOOKS)
def test_guide_documents_the_hook_with_its_exact_signature(hook):
    documented = re.findall(rf"`(def {hook}\(.*?\) -> [^`]+)`", guide_text())
    assert documented, f"plugins/README.md has no `def {hook}(...) -> ...` line"
    assert documented == [spec_signature(hook)] * len(documented)


def test_guide_documents_no_hook_that_does_not_exist():
    text = guide_text()
    defined = set(re.findall(r"\bdef (graphinspect_\w+)\(", text))
    assert defined == set(HOOKS)
    mentioned = set(re.findall(r"\bgraphinspect_[a-z_]+\b", text))
    # graphinspect_csv is the example package in samples/example_plugin, not a hook.
    assert mentioned - set(HOOKS) - {"graphinspect_csv"} == set()


def test_guide_points_at_files_that_exist():
    for path in re.findall(r"\]\(([^)#:]+)\)", guide_text()):
        assert (GUIDE.parent / path).resolve().exists(), path


# ----------------------------------------------------------------------- the examples


def examples(docstring: str) -> list[str]:
    """The code blocks of the paragraphs starting with "Example" and ending in "::",
    dedented."""
    lines = inspect.cleandoc(docstring).splitlines()
    found = []
    position = 0
    while position < len(lines):
        paragraph_start = position == 0 or not lines[position - 1].strip()
        if paragraph_start and lines[position].startswith("Example"):
            end = position
            while end < len(lines) and lines[end].strip() and not lines[end].rstrip().endswith("::"):
                end += 1
            if end < len(lines) and lines[end].rstrip().endswith("::"):
                body = end + 1
                while body < len(lines) and (not lines[body].strip() or lines[body].startswith(" ")):
                    body += 1
                found.append(textwrap.dedent("\n".join(lines[end + 1 : body])).strip("\n") + "\n")
                position = body
                continue
        position += 1
    return found


def run_example(hook: str, code: str, number: int) -> types.ModuleType:
    module = types.ModuleType(f"example_{hook}_{number}")
    module.__file__ = f"<Example {number} of {hook}>"
    exec(compile(code, module.__file__, "exec"), module.__dict__)
    return module


def record_key(record) -> tuple:
    return type(record).__name__, record.name, getattr(record, "schemas", None)


def tiny_pair(weight: np.ndarray, target_weight: np.ndarray, extra_source: int = 0) -> tuple[Model, Model]:
    """A PyTorch-like model with one conv (and ``extra_source`` more) and an ONNX-like
    model whose one Conv, named by its scope, holds ``target_weight``."""

    def param(values: np.ndarray, tensor_name: str) -> Param:
        return Param("weight", values.shape, str(values.dtype), lambda: values, tensor_name)

    source_layers = [Layer("conv", CONV, "Conv2d", params={"weight": param(weight, "conv.weight")})]
    for number in range(extra_source):
        other = np.full((2, 2, 1, 1), number + 1, np.float32)
        source_layers.append(
            Layer(f"extra{number}", CONV, "Conv2d", params={"weight": param(other, f"extra{number}.weight")})
        )
    target_layers = [
        Layer("/conv/Conv", CONV, "Conv", params={"weight": param(target_weight, "onnx::Conv_1")}, hints=("conv",))
    ]
    return Model("pytorch-state-dict", "tiny.pt", layers=source_layers), Model(
        "onnx", "tiny.onnx", layers=target_layers
    )


WEIGHT = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)


def use_loader(plugins, added, tmp_path, capsys):
    (loader,) = added
    path = tmp_path / "weights.onnx"  # the extension lies: loaders read content
    with path.open("wb") as stream:
        np.save(stream, WEIGHT)
    model = plugins.load_model(path)
    assert model.format in loader.formats
    (layer,) = model.layers
    np.testing.assert_array_equal(layer.params["weight"].array(), WEIGHT)
    damaged = tmp_path / "damaged.npy"
    damaged.write_bytes(np.lib.format.MAGIC_PREFIX + b"\x01\x00 not a header")
    with pytest.raises(InputError, match="damaged.npy"):
        plugins.load_model(damaged)
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    with pytest.raises(InputError, match=rf"unknown model format .*\b{loader.formats[0]}\b"):
        plugins.load_model(text)


def use_subcommand(plugins, added, tmp_path, capsys):
    (command,) = added
    parser = build_parser(plugins)
    assert command.name in parser.format_help()
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"), helper.make_node("Relu", ["y"], ["z"], name="relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(np.ones((2, 3), np.float32), "w")],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), path)
    args = parser.parse_args([command.name, str(path), "--no-color"])
    capsys.readouterr()
    assert args._run(args, plugins) == 0
    layers = len(plugins.load_model(path).layers)
    assert capsys.readouterr().out == f"{layers} layers\n"


def use_reporter(plugins, added, tmp_path, capsys):
    (reporter,) = added
    source, target = tiny_pair(WEIGHT, WEIGHT.copy())
    document = build_document(diff_models(plugins, source, target))
    assert document["summary"]["verdict"] == "faithful"
    assert reporter.renders(document["schema"])
    assert choose_format(reporter.name, None, plugins, DIFF_SCHEMA, default="table") == reporter.name
    for suffix in reporter.suffixes:
        assert choose_format(None, f"report{suffix}", plugins, DIFF_SCHEMA, default="table") == reporter.name
    capsys.readouterr()
    emit(document, reporter.name, None, plugins, {"color": False})
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("faithful"), out


def use_transform(plugins, added, tmp_path, capsys):
    (transform,) = added
    source, target = tiny_pair(WEIGHT, -WEIGHT)
    result = diff_models(plugins, source, target)
    (layer,) = result.layers
    assert (layer.transform, layer.status, layer.sources) == (transform.name, "ok", ["conv"])
    assert result.verdict == "faithful"
    assert build_document(result)["summary"]["by_transform"] == {transform.name: 1}
    # Without it, the built-in transforms find the negated conv differs.
    source, target = tiny_pair(WEIGHT, -WEIGHT)
    assert diff_models(fresh(), source, target).verdict == "differs"


def use_check(plugins, added, tmp_path, capsys):
    (check,) = added
    source, target = tiny_pair(WEIGHT, WEIGHT.copy(), extra_source=2)  # 2 of 3 PyTorch layers unused
    result = diff_models(plugins, source, target)
    (finding,) = check.run(result)
    assert isinstance(finding, Finding) and finding.severity in ("error", "warning", "info")
    assert result.findings[-1] == finding  # registered last, so its findings come last
    source, target = tiny_pair(WEIGHT, WEIGHT.copy())  # every PyTorch layer used
    result = diff_models(plugins, source, target)
    assert list(check.run(result)) == []


USE = {
    "graphinspect_loaders": use_loader,
    "graphinspect_subcommands": use_subcommand,
    "graphinspect_reporters": use_reporter,
    "graphinspect_transforms": use_transform,
    "graphinspect_checks": use_check,
}
"""Hook -> how the test uses an example's contribution, as the example says it works."""


@pytest.mark.parametrize("hook", HOOKS)
def test_every_example_runs_and_does_what_it_says(hook, tmp_path, capsys):
    found = examples(getattr(hookspecs, hook).__doc__ or "")
    assert found, f"{hook} has no Example:: block"
    assert hook in USE, f"no test use for the examples of {hook}"
    method = FACADE[hook]
    baseline = {record_key(record) for record in getattr(fresh(), method)()}
    for number, code in enumerate(found, 1):
        assert "..." not in code, f"Example {number} of {hook} has a placeholder"
        warnings: list[str] = []
        plugins = fresh(warnings)
        plugins.register(run_example(hook, code, number), name=f"example{number}")
        added = [record for record in getattr(plugins, method)() if record_key(record) not in baseline]
        assert added, f"Example {number} of {hook} contributes nothing"
        assert all(isinstance(record, record_type(hook)) for record in added)
        USE[hook](plugins, added, tmp_path, capsys)
        assert warnings == []


def test_examples_are_found_in_a_docstring_shaped_like_the_specs():
    doc = """Summary.

    Example, with a description that
    goes on::

        x = 1

    Not code.

    Example::

        y = 2
        if y:
            z = 3
    """
    assert examples(doc) == ["x = 1\n", "y = 2\nif y:\n    z = 3\n"]
    assert examples("No example here.\n\n    code::\n\n        pass\n") == []


# ----------------------------------------------------------------------- the facade's rules


def _no_load(path: Path) -> Model:
    raise InputError(path, "never loaded")


def _render(document, stream, options) -> None:
    stream.write("rendered\n")


def make_record(hook: str, name: str, owner: str, **fields):
    """A record of ``hook``'s type called ``name``; ``owner`` is kept where the test can
    read it back (the loader's formats, the others' description or summary)."""
    if hook == "graphinspect_loaders":
        return ModelLoader(name, (owner,), lambda path, head: False, _no_load, **fields)
    if hook == "graphinspect_subcommands":
        return Subcommand(name, owner, lambda parser: None, lambda args, plugins: 0)
    if hook == "graphinspect_reporters":
        return Reporter(name, owner, fields.get("schemas", ("graphinspect/diff@1",)), _render)
    if hook == "graphinspect_transforms":
        return type("Made", (Transform,), {"name": name, "description": owner, **fields})()
    if hook == "graphinspect_checks":
        return Check(name, owner, lambda result: ())
    raise AssertionError(f"no record maker for {hook}")


def owner_of(record) -> str:
    if isinstance(record, ModelLoader):
        return record.formats[0]
    if isinstance(record, Subcommand):
        return record.summary
    return record.description


def make_plugin(
    hook: str,
    owner: str,
    *names: str,
    tryfirst: bool = False,
    trylast: bool = False,
    raises: bool = False,
    returns=None,
    **fields,
) -> types.ModuleType:
    """A plugin module implementing ``hook`` with records called ``names``."""

    def implementation():
        for name in names:
            yield make_record(hook, name, owner, **fields)
        if raises:
            raise RuntimeError("deliberately broken")

    if returns is not None:

        def implementation():
            return returns

    implementation.__name__ = hook
    module = types.ModuleType(owner)
    setattr(module, hook, hookimpl(tryfirst=tryfirst, trylast=trylast)(implementation))
    return module


def names(plugins, hook: str) -> list[str]:
    return [record.name for record in getattr(plugins, FACADE[hook])()]


def test_builtins_register_in_the_order_of_the_plugins_package():
    plugins = fresh()
    assert [record["name"] for record in plugins.describe()] == list(BUILTIN_PLUGINS)
    assert names(plugins, "graphinspect_subcommands") == BUILTIN_COMMANDS


def test_help_lists_the_builtin_commands_in_order(cli):
    code, out, err = cli("--help")
    assert code == 0 and err == ""
    listed = re.findall(r"^    (\w+)  ", out, re.M)
    assert listed == BUILTIN_COMMANDS


@pytest.mark.parametrize("hook", HOOKS)
def test_contributions_come_in_registration_order(hook):
    warnings: list[str] = []
    plugins = fresh(warnings)
    builtin = names(plugins, hook)
    # Registered zeta first, then alpha: neither alphabetical nor pluggy's own order
    # (last registered first).
    plugins.register(make_plugin(hook, "zeta", "z_two", "z_one"), name="zeta")
    plugins.register(make_plugin(hook, "alpha", "a_one"), name="alpha")
    assert names(plugins, hook) == [*builtin, "z_two", "z_one", "a_one"]
    assert warnings == []


@pytest.mark.parametrize("hook", ["graphinspect_subcommands", "graphinspect_reporters", "graphinspect_checks"])
def test_tryfirst_goes_before_the_builtins_and_trylast_after_later_plugins(hook):
    plugins = fresh()
    builtin = names(plugins, hook)
    plugins.register(make_plugin(hook, "last", "l_one", trylast=True), name="last")
    plugins.register(make_plugin(hook, "plain", "p_one"), name="plain")
    plugins.register(make_plugin(hook, "first", "f_one", tryfirst=True), name="first")
    assert names(plugins, hook) == ["f_one", *builtin, "p_one", "l_one"]


def test_a_tryfirst_reporter_takes_a_builtin_name_with_one_warning():
    warnings: list[str] = []
    plugins = fresh(warnings)
    plugins.register(make_plugin("graphinspect_reporters", "mine", "json", tryfirst=True), name="mine")
    assert owner_of(plugins.reporter("json", DIFF_SCHEMA)) == "mine"
    plugins.reporters()
    assert len(warnings) == 1
    assert "'mine'" in warnings[0] and "'plugins.reports.json'" in warnings[0] and "'json'" in warnings[0]


def test_loaders_are_asked_by_descending_priority_then_registration_order():
    plugins = fresh()
    plugins.register(make_plugin("graphinspect_loaders", "low", "low", priority=-1), name="low")
    plugins.register(make_plugin("graphinspect_loaders", "tie", "tie"), name="tie")
    plugins.register(make_plugin("graphinspect_loaders", "top", "top", priority=100), name="top")
    found = fresh().loaders()
    ordered = names(plugins, "graphinspect_loaders")
    assert ordered[0] == "top" and ordered[-1] == "low"
    priorities = [loader.priority for loader in plugins.loaders()]
    assert priorities == sorted(priorities, reverse=True)
    # "tie" has the built-in onnx loader's priority (0) and was registered after it.
    assert ordered.index("tie") == ordered.index("onnx") + 1
    assert [loader.name for loader in found] == [name for name in ordered if name not in ("low", "tie", "top")]


def test_transforms_are_tried_by_order_then_registration_order():
    plugins = fresh()
    plugins.register(make_plugin("graphinspect_transforms", "early", "early", order=5), name="early")
    plugins.register(make_plugin("graphinspect_transforms", "same", "same_b", order=20), name="same")
    transforms = plugins.transforms()
    assert transforms[0].name == "early"
    orders = [transform.order for transform in transforms]
    assert orders == sorted(orders)
    listed = [transform.name for transform in transforms]
    assert listed.index("same_b") == listed.index("fold_batchnorm") + 1  # fold_batchnorm: order 20


@pytest.mark.parametrize("hook", HOOKS)
def test_a_duplicate_name_is_skipped_with_one_warning_naming_both(hook):
    warnings: list[str] = []
    plugins = fresh(warnings)
    plugins.register(make_plugin(hook, "first", "dup"), name="first")
    plugins.register(make_plugin(hook, "second", "dup"), name="second")
    for _ in range(3):  # asked again and again, as commands do: still one warning
        kept = [record for record in getattr(plugins, FACADE[hook])() if record.name == "dup"]
    assert [owner_of(record) for record in kept] == ["first"]
    assert len(warnings) == 1, warnings
    assert "\n" not in warnings[0]
    assert "'first'" in warnings[0] and "'second'" in warnings[0] and "'dup'" in warnings[0]


@pytest.mark.parametrize(
    "hook, builtin_name, builtin_plugin",
    [
        ("graphinspect_subcommands", "diff", "plugins.commands.diff"),
        ("graphinspect_loaders", "onnx", "plugins.loaders.onnx"),
        ("graphinspect_transforms", "identity", "plugins.transforms.identity"),
        ("graphinspect_checks", "mismatch", "plugins.checks.findings"),
        ("graphinspect_reporters", "table", "plugins.reports.table"),
    ],
)
def test_a_third_party_record_cannot_take_a_builtin_name(hook, builtin_name, builtin_plugin):
    warnings: list[str] = []
    plugins = fresh(warnings)
    plugins.register(make_plugin(hook, "mine", builtin_name), name="mine")
    kept = [record for record in getattr(plugins, FACADE[hook])() if record.name == builtin_name]
    assert "mine" not in [owner_of(record) for record in kept]
    assert len(warnings) == 1
    assert f"'{builtin_plugin}'" in warnings[0] and "'mine'" in warnings[0]


def test_reporters_share_a_name_across_disjoint_schemas_but_not_overlapping_ones():
    warnings: list[str] = []
    plugins = fresh(warnings)
    hook = "graphinspect_reporters"
    plugins.register(make_plugin(hook, "diffs", "brief", schemas=("graphinspect/diff@1",)), name="diffs")
    plugins.register(make_plugin(hook, "inspects", "brief", schemas=("graphinspect/inspect@1",)), name="inspects")
    assert [owner_of(r) for r in plugins.reporters() if r.name == "brief"] == ["diffs", "inspects"]
    assert owner_of(plugins.reporter("brief", "graphinspect/inspect@1")) == "inspects"
    assert owner_of(plugins.reporter("brief", "graphinspect/diff@1")) == "diffs"
    assert warnings == []
    plugins.register(make_plugin(hook, "everything", "brief", schemas=("graphinspect/*",)), name="everything")
    assert [owner_of(r) for r in plugins.reporters() if r.name == "brief"] == ["diffs", "inspects"]
    assert len(warnings) == 1 and "'diffs'" in warnings[0] and "'everything'" in warnings[0]


@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize(
    "broken",
    [
        pytest.param({"raises": True}, id="raises"),
        pytest.param({"raises": True, "names": ("b_partial",)}, id="raises-part-way"),
        pytest.param({"returns": ["not a record"]}, id="returns-strings"),
        pytest.param({"returns": 42}, id="returns-no-iterable"),
    ],
)
def test_a_plugin_whose_hook_fails_is_skipped_with_one_warning_and_the_others_go_on(hook, broken):
    warnings: list[str] = []
    plugins = fresh(warnings)
    builtin = names(plugins, hook)
    broken = dict(broken)
    plugins.register(make_plugin(hook, "broken", *broken.pop("names", ()), **broken), name="broken")
    plugins.register(make_plugin(hook, "good", "g_one"), name="good")
    for _ in range(2):
        assert names(plugins, hook) == [*builtin, "g_one"]
    assert len(warnings) == 1, warnings
    assert "'broken'" in warnings[0] and hook in warnings[0] and "skipped" in warnings[0]


def test_a_broken_plugin_does_not_break_the_command_line(cli, tmp_path, monkeypatch):
    (tmp_path / "gi_contract_broken.py").write_text(
        textwrap.dedent("""
        from inspector.hookspecs import hookimpl

        @hookimpl
        def graphinspect_subcommands():
            return "inspect"

        @hookimpl
        def graphinspect_reporters():
            raise RuntimeError("deliberately broken")
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GRAPHINSPECT_PLUGINS", "gi_contract_broken")
    try:
        code, out, err = cli("--help")
        assert code == 0
        assert re.findall(r"^    (\w+)  ", out, re.M) == BUILTIN_COMMANDS
        assert err.splitlines() == [
            "graphinspect: warning: plugin 'gi_contract_broken': graphinspect_subcommands returned a str, "
            "not a Subcommand; its commands are skipped"
        ]
        code, out, err = cli("plugins", "--format", "json")  # asks for reporters twice
        assert code == 0, err
        assert json.loads(out)["schema"] == "graphinspect/plugins@1"
        assert err.splitlines()[1:] == [
            "graphinspect: warning: plugin 'gi_contract_broken': graphinspect_reporters raised "
            "RuntimeError: deliberately broken; its reporters are skipped"
        ]
    finally:
        sys.modules.pop("gi_contract_broken", None)


def test_a_plugin_object_that_cannot_be_hashed_is_ordered_like_any_other():
    plugins = fresh()

    def graphinspect_checks():
        return [make_record("graphinspect_checks", "unhashable", "ns")]

    plugins.register(types.SimpleNamespace(graphinspect_checks=hookimpl(graphinspect_checks)), name="ns")
    assert names(plugins, "graphinspect_checks")[-1] == "unhashable"


def test_an_entry_point_also_named_in_graphinspect_plugins_loads_once(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE_SITE))
    monkeypatch.setenv("GRAPHINSPECT_PLUGINS", "graphinspect_hello")
    warnings: list[str] = []
    try:
        plugins = get_plugin_manager(autoload=True, warn=warnings.append)
        assert [failure.name for failure in plugins.failures] == ["broken"]  # the deliberately broken one
        assert len(warnings) == 1 and "'broken'" in warnings[0]
        assert names(plugins, "graphinspect_subcommands").count("hello") == 1
    finally:
        for name in ("graphinspect_hello", "graphinspect_broken"):
            sys.modules.pop(name, None)


def test_a_misspelt_hook_name_costs_only_its_plugin(tmp_path, monkeypatch):
    (tmp_path / "misspelt_plugin.py").write_text(
        "from inspector.hookspecs import hookimpl\n\n@hookimpl\ndef graphinspect_reporter():\n    return []\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GRAPHINSPECT_PLUGINS", "misspelt_plugin")
    warnings: list[str] = []
    plugins = get_plugin_manager(autoload=False, warn=warnings.append)
    assert len(warnings) == 1 and "misspelt_plugin" in warnings[0] and "graphinspect_reporter" in warnings[0]
    assert not plugins.pm.has_plugin("misspelt_plugin")
    assert [c.name for c in plugins.subcommands()][:2] == ["inspect", "diff"]


def test_a_check_that_raises_becomes_one_warning_finding():
    import numpy as np

    from inspector.diff import diff_models
    from inspector.ir import CONV, Layer, Model, Param
    from inspector.records import Check

    class Broken:
        @hookimpl
        def graphinspect_checks(self):
            def run(result):
                raise RuntimeError("boom")

            yield Check("broken", "Raises.", run)

    weight = np.ones((2, 1, 1, 1), np.float32)
    source = Model(
        "pytorch-state-dict",
        "a.pt",
        [
            Layer(
                "conv",
                CONV,
                "Conv2d",
                params={"weight": Param("weight", weight.shape, "float32", lambda: weight, "conv.weight")},
            )
        ],
    )
    target = Model(
        "onnx",
        "a.onnx",
        [
            Layer(
                "/conv/Conv",
                CONV,
                "Conv",
                params={"weight": Param("weight", weight.shape, "float32", lambda: weight, "conv.weight")},
            )
        ],
    )
    plugins = get_plugin_manager(autoload=False, warn=lambda message: None)
    plugins.register(Broken(), "broken")
    result = diff_models(plugins, source, target)
    assert result.verdict == "faithful"
    (finding,) = [f for f in result.findings if f.code == "check_error"]
    assert finding.severity == "warning" and "'broken'" in finding.message and "RuntimeError: boom" in finding.message


def test_the_overview_lists_a_third_party_command_and_registers_only_the_builtin_commands(cli, tmp_path, monkeypatch):
    (tmp_path / "gi_contract_hello.py").write_text(
        textwrap.dedent("""
        from inspector.hookspecs import hookimpl
        from inspector.records import Subcommand

        @hookimpl
        def graphinspect_subcommands():
            yield Subcommand("hello", "Say hello.", lambda parser: None, lambda args, plugins: 0)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GRAPHINSPECT_PLUGINS", "gi_contract_hello")
    try:
        code, out, err = cli("--help")
        assert code == 0, err
        assert re.findall(r"^    (\w+)  ", out, re.M) == [*BUILTIN_COMMANDS, "hello"]
        assert cli("hello")[0] == 0
        overview = get_plugin_manager(autoload=False, builtin_kinds=("commands",))
        registered = [record["name"] for record in overview.describe()]
        assert registered == [name for name in BUILTIN_PLUGINS if name.startswith("plugins.commands.")] + [
            "gi_contract_hello"
        ]
    finally:
        sys.modules.pop("gi_contract_hello", None)
