"""Every zoo pair through ``graphinspect diff --format json``, as a user runs it.

Honest pairs (an export of the very model saved on the PyTorch side, maybe post-processed):
verdict "faithful", exit 0, nothing in the ONNX left unexplained
(``summary.coverage.unexplained.elements == 0``), no warning a user would have to chase
(but those :data:`EXPECTED_WARNINGS` names), and one BatchNorm eps for a model that has
one (a guessed eps lists the variants the folds took).

Tampered twins (the same export with ONE output channel or ONE element of ONE
initializer multiplied by 1.02, see zoo_tamper.py): verdict "differs", exit 1, at least
one layer with status "mismatch", and every mismatched layer has a mismatched param whose
``target_tensor`` is the tampered initializer or a view of it (``name[0:64]``): the diff
must point at the change, not elsewhere.

A state_dict against a float16 export (the two pairs of :data:`STATE_DICT_FP16`): both
of the above, and the one eps the model has reported for every fold.

Ids read ``family/pt-kind/export/postprocess[/role]`` (see zoo_matrix.py).
"""

from __future__ import annotations

import pytest

from tests.zoo.zoo_cli import describe, run_diff, tampered_names
from tests.zoo.zoo_matrix import HONEST, TWINS, Pair

EXPECTED_WARNINGS = {
    # ultralytics 8.4 exports YOLOv10's one-to-many head (cv2/cv3): its one2one_* layers,
    # the NMS-free head, are unused, which a user may not expect.
    "yolov10n": {"unmatched_source"},
}
MIXED_EPS = {"conv1d_bn"}
"""Families built with more than one BatchNorm eps (zoo_models.py)."""


def _pair_files(zoo, pair: Pair):
    manifest = zoo.family(pair.family)
    onnx_path = manifest.onnx(pair.onnx_key)
    if onnx_path is None:
        reason = manifest["unavailable"].get(pair.onnx_key, "not built")
        pytest.skip(f"the tool cannot make {pair.onnx_key} of {pair.family}: {reason}")
    return manifest, manifest.pt(pair.pt), onnx_path


@pytest.mark.parametrize("pair", HONEST, ids=[pair.id for pair in HONEST])
def test_honest_pair_is_faithful(zoo, pair: Pair):
    _, source, target = _pair_files(zoo, pair)
    _assert_faithful(pair, source, target)


@pytest.mark.parametrize("twin", TWINS, ids=[twin.id for twin in TWINS])
def test_tampered_twin_differs(zoo, twin):
    manifest, source, _ = _pair_files(zoo, twin.pair)
    _assert_differs(manifest, source, twin.id)


# A state_dict records no BatchNorm eps, and in float16 both of the eps tried fit a fold
# of large variances: these pairs check that the model's one eps is reported. They reuse
# files the matrix builds (the float16 export and its twin, made for the pickled model),
# so the zoo's cache key does not change.
STATE_DICT_FP16 = (
    (Pair("yolov8n", "state_dict", "ultralytics", "fp16"), "yolov8n/checkpoint/ultralytics/fp16/conv_weight"),
    (
        Pair("mobilenet_v3_small", "state_dict", "legacy", "fp16"),
        "mobilenet_v3_small/module/legacy/fp16/conv_bias",
    ),
)


@pytest.mark.parametrize("pair, twin_id", STATE_DICT_FP16, ids=[pair.id for pair, _ in STATE_DICT_FP16])
def test_state_dict_against_a_float16_export(zoo, pair: Pair, twin_id: str):
    manifest, source, target = _pair_files(zoo, pair)
    document = _assert_faithful(pair, source, target)
    (guessed,) = [f["message"] for f in document["findings"] if f["code"] == "guessed_eps"]
    assert guessed.endswith("fit with eps=0.001"), guessed  # both families use 1e-3 throughout
    _assert_differs(manifest, source, twin_id)


def _assert_faithful(pair: Pair, source, target) -> dict:
    """Diff an honest pair; its document, once shown faithful, complete, and quiet."""
    run = run_diff(source, target, record=pair.id)
    text = describe(run)
    assert run.document is not None and run.code in (0, 1), f"trouble (exit {run.code}), no report:\n{text}"
    summary = run.document["summary"]
    assert summary["verdict"] == "faithful" and run.code == 0, f"an honest export was not found faithful:\n{text}"
    coverage = summary.get("coverage")
    assert coverage is not None, f"summary.coverage is missing (diff@1 coverage accounting not reported):\n{text}"
    assert coverage["unexplained"]["elements"] == 0, f"ONNX numbers left unexplained: {coverage['unexplained']}\n{text}"
    findings = run.document["findings"]
    warned = {f["code"] for f in findings if f["severity"] in ("warning", "error")}
    assert warned <= EXPECTED_WARNINGS.get(pair.family, set()), f"an honest export warned {warned}:\n{text}"
    for finding in findings:
        if finding["code"] == "guessed_eps" and pair.family not in MIXED_EPS:
            assert finding["message"].count("eps=") == 1, f"one model, several eps: {finding['message']}\n{text}"
    return run.document


def _assert_differs(manifest, source, twin_id: str) -> None:
    """Diff ``source`` against the twin ``twin_id`` of the manifest: it differs, there."""
    if twin_id in manifest["twin_errors"]:
        pytest.fail(f"cannot make the twin: {manifest['twin_errors'][twin_id]}", pytrace=False)
    tampering = manifest["twins"][twin_id]
    target = manifest.folder / tampering["path"]
    run = run_diff(source, target, record=twin_id)
    changed = (
        f"tampered: {tampering['tensor']} (input {tampering['input_index']} of {tampering['op']} "
        f"{tampering['node']}, shape {tampering['shape']}, {tampering['dtype']}), "
        + (
            f"channel {tampering['index']} on axis {tampering['axis']}"
            if tampering["axis"] is not None
            else f"element {tampering['index']}"
        )
        + f" x1.02 ({tampering['before']:.4g} -> {tampering['after']:.4g})"
    )
    text = f"{changed}\n{describe(run)}"
    assert run.document is not None and run.code in (0, 1), f"trouble (exit {run.code}), no report:\n{text}"
    verdict = run.document["summary"]["verdict"]
    assert verdict != "faithful", f"a TAMPERED export was called faithful:\n{text}"
    assert verdict == "differs" and run.code == 1, f"verdict {verdict!r}, exit {run.code} (want 'differs', 1):\n{text}"
    names = tampered_names(tampering["tensor"])
    mismatched = [layer for layer in run.document["layers"] if layer["status"] == "mismatch"]
    assert mismatched, f"no layer is reported as mismatched:\n{text}"
    elsewhere = [
        layer["target"]
        for layer in mismatched
        if not any(
            p["status"] == "mismatch" and p.get("target_tensor") and names.match(p["target_tensor"])
            for p in layer["params"]
        )
    ]
    assert not elsewhere, f"mismatches reported away from the tampered tensor: {elsewhere}\n{text}"
