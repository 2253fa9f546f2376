"""``graphinspect fuse`` on every zoo family, against each framework's own fusion.

What a user of each framework expects (see zoo_fusion.py for how the references are
made, by the frameworks themselves):

- ``fuse --weights`` writes the state_dict of the model the framework fuses: it loads
  with ``load_state_dict(strict=True)`` into that model, every tensor equals the
  framework's own within float32 tolerance, and the loaded model computes what the
  unfused model computes;
- ``fuse --against`` an honest export that holds that fusion reproduces every group
  (exit 0), and against a tampered twin names the group whose tensor was changed, and
  only that one (exit 1);
- a bare state_dict (no class names) leaves blocks that look re-parameterisable
  unfused and lists them; the export (``--against``) settles them.

The command line runs in-process (the ``cli`` fixture, as the main suite's command tests
do): each run then costs a second or two instead of a fresh torch import.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.zoo.zoo_matrix import BY_NAME, FAMILIES

torch = pytest.importorskip("torch")

AGAINST: dict[str, str | None] = {
    **{family.name: "ultralytics/none" for family in FAMILIES if family.source == "ultralytics"},
    **{name: "legacy-reparam/none" for name in ("repvgg_a0", "mobileone_s0", "fastvit_t8")},
    # The legacy exporter folds Conv+BN only: ConvTranspose/Linear + BN are folded by dynamo.
    "convtranspose2d_bn": "dynamo/none",
    "linear_bn1d": "dynamo/none",
    # LeViT's LinearNorm/NormLinear are fused by timm, by no exporter.
    "levit_128s": None,
    # Nothing to fuse (no BatchNorm; timm keeps resnet18d's, see the --fold-all test).
    **dict.fromkeys(("convnext_tiny", "vit", "swin", "deit_tiny", "lstm_bi2", "gru2", "tied_embedding", "resnet18d")),
}
"""The export of each family that holds its framework's fusion (default: legacy/none;
None: not checked against an export)."""

TWINS = (
    "yolov8n/checkpoint/ultralytics/none/conv_weight",
    "yolov8n/checkpoint/dynamo/none/conv_weight",
    "yolo11n/checkpoint/ultralytics-slim/none/conv_bias",
    "rtdetr-l/checkpoint/ultralytics/none/merged_branch_conv",
    "resnet18/module/legacy/fp16/conv_weight",
    "repvgg_a0/module/legacy-reparam/none/merged_branch_conv",
    "mobileone_s0/module/legacy-reparam/none/merged_branch_conv",
    "fastvit_t8/module/legacy-reparam/none/merged_branch_conv",
)
"""Twins whose tampered tensor is a fused group's (one per kind of export and fusion)."""

STATE_DICT_BLOCKS = {"rtdetr-l": "RepConv", "yolov10n": "RepVGGDW", "repvgg_a0": "RepVggBlock"}
"""Families whose state_dict holds re-parameterisable blocks, and their class."""


def _pickled_kind(family) -> str:
    return "checkpoint" if family.source == "ultralytics" else "module"


def _fuse_json(cli, *args: str) -> tuple[int, dict]:
    code, out, err = cli("fuse", *args, "--format", "json")
    assert code in (0, 1), f"exit {code}: {err}"
    return code, json.loads(out)


def _close(got, want, name: str) -> None:
    """Equal within float32 fusion noise, relative to the tensor's scale."""
    got, want = got.double(), want.double()
    assert got.shape == want.shape, f"{name}: shape {list(got.shape)}, the framework's {list(want.shape)}"
    if not want.is_floating_point() or not torch.isfinite(want).all():
        if want.is_floating_point():  # NaN marks values torch cannot fuse: checked through the outputs
            return
        assert torch.equal(got, want), name
        return
    scale = max(float(want.abs().max()), 1e-12)
    error = float((got - want).abs().max()) / scale
    assert error < 1e-5, f"{name}: max error {error:.3g} of the tensor's scale"


def _example(onnx_path: Path):
    """An input fit for the family's model, from its export's declared input."""
    import onnx

    (declared,) = [i for i in onnx.load(str(onnx_path), load_external_data=False).graph.input]
    shape = [d.dim_value or 1 for d in declared.type.tensor_type.shape.dim]
    generator = torch.Generator().manual_seed(0)
    if declared.type.tensor_type.elem_type == onnx.TensorProto.INT64:
        return torch.randint(0, 50, shape, generator=generator)
    return torch.rand(shape, generator=generator)


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        return _first_tensor(value[0])
    if isinstance(value, dict):
        return _first_tensor(next(iter(value.values())))
    raise TypeError(type(value))


@pytest.fixture
def zoo_path(monkeypatch):
    """The hand-built models were pickled as ``zoo_models.*``: importable while a test runs."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))


@pytest.mark.parametrize("name", [family.name for family in FAMILIES])
def test_fused_weights_are_the_frameworks(zoo, cli, tmp_path, zoo_path, name):
    from tests.zoo.zoo_fusion import framework_fused, load_module

    family = BY_NAME[name]
    manifest = zoo.family(name)
    source = manifest.pt(_pickled_kind(family))
    export = AGAINST.get(name, "legacy/none")
    weights = tmp_path / "fused.pt"
    args = [str(source), "--weights", str(weights)]
    if export:
        args += ["--against", str(manifest.onnx(export))]
    code, document = _fuse_json(cli, *args)

    reference = framework_fused(family, source)
    expected = reference.state_dict()
    state = torch.load(weights, weights_only=True)
    assert sorted(state) == sorted(expected), (
        f"missing {sorted(set(expected) - set(state))[:5]}, extra {sorted(set(state) - set(expected))[:5]}"
    )
    for key, values in expected.items():
        _close(state[key], values, key)
    reference.load_state_dict(state, strict=True)

    original = load_module(source)
    example = _example(manifest.onnx(f"{next(iter(family.exports))}/none"))
    with torch.no_grad():
        want, got = _first_tensor(original(example)), _first_tensor(reference.eval()(example))
    scale = float(want.abs().max())
    assert float((got - want).abs().max()) <= 1e-4 * max(scale, 1.0), "the fused model computes something else"

    if export:
        against = document["against"]
        bad = [(layer["fused_name"], layer["status"]) for layer in against["layers"] if layer["status"] != "ok"]
        assert code == 0 and not [entry for entry in bad if entry[1] != "not_exported"], bad
        assert against["checked"] == len(document["groups"])


@pytest.mark.parametrize("name", ["resnet18d", "fastvit_t8"])
def test_fold_all_is_what_the_exporter_folds(zoo, cli, tmp_path, zoo_path, name):
    """timm keeps the BatchNorms outside its blocks; --fold-all folds them as exporters do."""
    from timm.utils.model import reparameterize_model

    from tests.zoo.zoo_fusion import fuse_traced_pairs, load_module

    manifest = zoo.family(name)
    source = manifest.pt("module")
    export = "legacy-reparam/none" if name == "fastvit_t8" else "legacy/none"
    weights = tmp_path / "fused.pt"
    code, document = _fuse_json(
        cli, str(source), "--fold-all", "--weights", str(weights), "--against", str(manifest.onnx(export))
    )
    assert code == 0 and document["unfused"] == []
    assert {layer["status"] for layer in document["against"]["layers"]} == {"ok"}
    reference = fuse_traced_pairs(reparameterize_model(load_module(source)))
    state = torch.load(weights, weights_only=True)
    expected = reference.state_dict()
    assert sorted(state) == sorted(expected)
    for key, values in expected.items():
        _close(state[key], values, key)


@pytest.mark.parametrize("twin_id", TWINS)
def test_against_a_tampered_twin_names_its_group(zoo, cli, twin_id):
    family = BY_NAME[twin_id.split("/")[0]]
    twin = next(twin for twin in family.twins if twin.id == twin_id)
    manifest = zoo.family(family.name)
    tampering = manifest["twins"][twin_id]
    code, document = _fuse_json(
        cli, str(manifest.pt(twin.pair.pt)), "--against", str(manifest.folder / tampering["path"])
    )
    layers = document["against"]["layers"]
    wrong = [(layer["target"], layer["status"]) for layer in layers if layer["status"] not in ("ok", "not_exported")]
    assert code == 1
    assert wrong == [(tampering["node"], "mismatch")], f"tampered {tampering['node']}: {wrong[:5]}"


@pytest.mark.parametrize("name", sorted(STATE_DICT_BLOCKS))
def test_state_dict_blocks_are_listed_then_settled_by_the_export(zoo, cli, tmp_path, zoo_path, name):
    from tests.zoo.zoo_fusion import framework_fused, load_module

    family = BY_NAME[name]
    manifest = zoo.family(name)
    pickled = load_module(manifest.pt(_pickled_kind(family)))
    blocks = {path for path, module in pickled.named_modules() if type(module).__name__ == STATE_DICT_BLOCKS[name]}
    assert blocks

    # No class names: every block is left as it is and listed, never guessed.
    weights = tmp_path / "plain.pt"
    code, document = _fuse_json(cli, str(manifest.pt("state_dict")), "--weights", str(weights))
    assert code == 0
    assert {entry["module"] for entry in document["unfused"]} == blocks
    assert not [
        g for g in document["groups"] if any(s.startswith(tuple(f"{b}." for b in blocks)) for s in g["sources"])
    ]
    state = torch.load(weights, weights_only=True)
    original = pickled.state_dict()
    for key in (key for key in original if key.startswith(tuple(f"{b}." for b in blocks))):
        assert torch.equal(state[key].float(), original[key].float()), key

    # The export shows each block merged: fused as it was, named as the framework names it.
    weights = tmp_path / "settled.pt"
    export = AGAINST.get(name, "legacy/none")
    code, document = _fuse_json(
        cli, str(manifest.pt("state_dict")), "--weights", str(weights), "--against", str(manifest.onnx(export))
    )
    assert document["unfused"] == []
    merged = {g["fused_name"] for g in document["groups"] if g["transform"] == "merge_branches"}
    expected = framework_fused(family, manifest.pt(_pickled_kind(family))).state_dict()
    state = torch.load(weights, weights_only=True)
    assert len(merged) == len(blocks)
    for name_ in merged:
        for role in ("weight", "bias"):
            _close(state[f"{name_}.{role}"], expected[f"{name_}.{role}"], f"{name_}.{role}")
    # Pairs folded here and by the framework (it keeps some: RT-DETR's input_proj) agree;
    # those of a branch the framework removes (YOLOv10's one2one_*) are not in the export.
    statuses = {layer["fused_name"]: layer["status"] for layer in document["against"]["layers"]}
    for group in document["groups"]:
        if f"{group['fused_name']}.weight" not in expected:
            assert statuses[group["fused_name"]] == "not_exported", group["fused_name"]
            continue
        folded_there = group["transform"] == "fold_batchnorm" and f"{group['sources'][1]}.running_mean" not in expected
        if folded_there:
            for role in ("weight", "bias"):
                key = f"{group['fused_name']}.{role}"
                _close(state[key], expected[key], key)
