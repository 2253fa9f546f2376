"""Build a family's files: the PyTorch side, its exports, post-processed copies, twins.

One folder per family, written whole or not at all (built in ``<name>.partial`` and
renamed), with a ``manifest.json``::

    {"family": "resnet18",
     "pt": {"module": "module.pt", "state_dict": "state_dict.pt"},
     "onnx": {"legacy/none": "legacy.onnx", "legacy/fp16": "legacy.fp16.onnx", ...},
     "unavailable": {"dynamo/none": "TorchExportError: ..."},   # a tool could not do it
     "twins": {"<twin id>": {"path": "twins/...onnx", "tensor": ..., "op": ..., ...}},
     "twin_errors": {"<twin id>": "no initializer in role ..."},
     "seconds": {"build": 1.2, "legacy/none": 0.4, ...}}

Paths are relative to the family folder, so a cache folder can be moved. Where the
folders live is :func:`cache_root`'s business: a session's temporary folder, or
``$GRAPHINSPECT_ZOO_CACHE/<key>`` where the key names the versions of the tools that
made the files and a hash of this builder's source.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import shutil
import time
import traceback
import warnings
from pathlib import Path

from tests.zoo.zoo_matrix import BY_NAME, Family

HERE = Path(__file__).resolve().parent
BUILDER_SOURCES = ("zoo_models.py", "zoo_build.py", "zoo_tamper.py", "zoo_matrix.py")
KEYED_DISTRIBUTIONS = ("torch", "torchvision", "timm", "ultralytics", "onnx", "onnxruntime", "onnxscript", "onnxslim")
IMGSZ = 64


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def cache_key() -> str:
    """torch/torchvision/timm/ultralytics versions + a hash of the builder's source and
    of every keyed tool's version (the exporters and post-processors too): files made by
    other versions are never reused."""
    digest = hashlib.sha256()
    for name in BUILDER_SOURCES:
        digest.update((HERE / name).read_bytes())
    for distribution in KEYED_DISTRIBUTIONS:
        digest.update(f"{distribution}=={_version(distribution)};".encode())
    named = "-".join(f"{d}{_version(d)}" for d in KEYED_DISTRIBUTIONS[:4])
    return f"{named}-{digest.hexdigest()[:12]}".replace("+", "_")


def cache_root(default: Path | None) -> Path:
    """``$GRAPHINSPECT_ZOO_CACHE/<cache_key()>`` when the variable is set, else ``default``."""
    folder = os.environ.get("GRAPHINSPECT_ZOO_CACHE")
    root = Path(folder).expanduser() / cache_key() if folder else default
    root.mkdir(parents=True, exist_ok=True)
    return root


class Manifest(dict):
    """A family's manifest.json with its folder; paths resolved on access."""

    def __init__(self, folder: Path, data: dict):
        super().__init__(data)
        self.folder = folder

    def pt(self, kind: str) -> Path:
        return self.folder / self["pt"][kind]

    def onnx(self, key: str) -> Path | None:
        rel = self["onnx"].get(key)
        return None if rel is None else self.folder / rel


def load_or_build(root: Path, name: str) -> Manifest:
    """The family's manifest, building its folder first if the cache does not have it."""
    folder = root / name
    manifest = folder / "manifest.json"
    if not manifest.exists():
        partial = root / f"{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        data = build_family(BY_NAME[name], partial)
        (partial / "manifest.json").write_text(json.dumps(data, indent=1, sort_keys=True))
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return Manifest(folder, json.loads(manifest.read_text()))


# ----------------------------------------------------------------------------- build


@contextlib.contextmanager
def _quiet():
    """Exporters print progress and warnings; keep the test log readable."""
    loggers = [
        logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "ultralytics")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _failure(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = next((line for line in text if line.strip()), "")
    return f"{type(exc).__name__}: {first[:400]}"


def build_family(family: Family, folder: Path) -> dict:
    import torch

    started = time.perf_counter()
    torch.manual_seed(0)
    data: dict = {
        "family": family.name,
        "pt": {},
        "onnx": {},
        "unavailable": {},
        "twins": {},
        "twin_errors": {},
        "seconds": {},
    }
    if family.source == "ultralytics":
        _build_ultralytics(family, folder, data)
    else:
        _build_torch(family, folder, data)
    for key in family.onnx_keys():
        export, post = key.split("/")
        if post == "none" or key in data["onnx"] or key in data["unavailable"]:
            continue
        base = data["onnx"].get(f"{export}/none")
        if base is None:
            data["unavailable"][key] = f"the {export} export is unavailable"
            continue
        _timed(
            data,
            key,
            lambda base=base, export=export, post=post: postprocess(
                folder / base, folder / f"{export}.{post}.onnx", post
            ),
            f"{export}.{post}.onnx",
        )
    twins = folder / "twins"
    twins.mkdir()
    from tests.zoo.zoo_tamper import NoCandidate, make_twin

    for twin in family.twins:
        base = data["onnx"].get(twin.pair.onnx_key)
        if base is None:
            data["twin_errors"][twin.id] = (
                f"{twin.pair.onnx_key} is unavailable: {data['unavailable'].get(twin.pair.onnx_key)}"
            )
            continue
        path = twins / (twin.id.replace("/", "__") + ".onnx")
        try:
            tampering = make_twin(folder / base, path, twin.role, twin.scope)
        except NoCandidate as exc:
            data["twin_errors"][twin.id] = str(exc)
            continue
        data["twins"][twin.id] = {"path": str(path.relative_to(folder)), **tampering.as_dict()}
    data["seconds"]["build"] = round(time.perf_counter() - started, 2)
    return data


def _timed(data: dict, key: str, make, rel: str) -> None:
    started = time.perf_counter()
    try:
        with _quiet():
            make()
    except Exception as exc:  # a tool that cannot do it: recorded, the tests skip with this reason
        data["unavailable"][key] = _failure(exc)
        data.setdefault("tracebacks", {})[key] = traceback.format_exc()[-4000:]
    else:
        data["onnx"][key] = rel
    data["seconds"][key] = round(time.perf_counter() - started, 2)


def export_torch(model, inputs: tuple, path: Path, exporter: str) -> None:
    """The two torch exporters, called as a user would."""
    import torch

    model.eval()
    if exporter == "legacy":
        torch.onnx.export(model, inputs, str(path), dynamo=False, opset_version=17)
    elif exporter == "dynamo":
        torch.onnx.export(model, inputs, str(path), dynamo=True)
    else:
        raise ValueError(exporter)


def _build_torch(family: Family, folder: Path, data: dict) -> None:
    import torch

    from tests.zoo import zoo_models

    built = getattr(zoo_models, f"build_{family.name}")()
    torch.save(built.model, folder / "module.pt")
    torch.save(built.model.state_dict(), folder / "state_dict.pt")
    data["pt"] = {"module": "module.pt", "state_dict": "state_dict.pt"}
    for export, variant in family.exports.items():
        exporter = export.split("-")[0]
        module = built.variant(variant)
        _timed(
            data,
            f"{export}/none",
            lambda module=module, export=export, exporter=exporter: export_torch(
                module, built.inputs, folder / f"{export}.onnx", exporter
            ),
            f"{export}.onnx",
        )


# ----------------------------------------------------------------------------- Ultralytics


def ultralytics_quiet_settings() -> None:
    """No settings sync, no analytics, no auto-install, nothing fetched (the environment
    variables are set in conftest.py before Ultralytics is imported)."""
    from ultralytics.utils import SETTINGS

    SETTINGS.update(
        {
            "sync": False,
            "clearml": False,
            "comet": False,
            "dvc": False,
            "mlflow": False,
            "raytune": False,
            "tensorboard": False,
            "wandb": False,
            "vscode_msg": False,
            "openvino_msg": False,
        }
    )


def _ultralytics_class(family: Family):
    from ultralytics import RTDETR, YOLO

    return RTDETR if family.config.startswith("rtdetr") else YOLO


def _build_ultralytics(family: Family, folder: Path, data: dict) -> None:
    import torch

    from tests.zoo.zoo_models import SEED, randomise

    ultralytics_quiet_settings()
    cls = _ultralytics_class(family)
    torch.manual_seed(SEED)
    with _quiet():
        model = cls(family.config)
    randomise(model.model)
    # The checkpoint stores fp16; round now so that every export below sees the same values.
    model.model.half().float()
    checkpoint = folder / "checkpoint.pt"
    with _quiet():
        model.save(str(checkpoint))  # Ultralytics' own Model.save(): {"model": fp16 module, "ema": None, ...}
    _save_trainer_checkpoint(checkpoint, folder / "checkpoint-ema.pt")
    with _quiet():
        loaded = cls(str(checkpoint)).model
    torch.save(loaded.state_dict(), folder / "state_dict.pt")
    data["pt"] = {"checkpoint": "checkpoint.pt", "checkpoint-ema": "checkpoint-ema.pt", "state_dict": "state_dict.pt"}
    for export, option in family.exports.items():
        key = f"{export}/none"
        if export.startswith("ultralytics"):
            _timed(
                data,
                key,
                lambda export=export, option=option: _ultralytics_export(
                    cls, checkpoint, folder / f"{export}.onnx", option
                ),
                f"{export}.onnx",
            )
        else:
            _timed(
                data,
                key,
                lambda export=export: _raw_export(cls, checkpoint, folder / f"{export}.onnx", export),
                f"{export}.onnx",
            )


def _save_trainer_checkpoint(checkpoint: Path, target: Path) -> None:
    """A checkpoint laid out as ``BaseTrainer.save_model`` writes last.pt: the fp16 EMA
    module under ``ema``, ``model`` None, with the trainer's bookkeeping."""
    import torch

    saved = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    ema = saved["model"]
    torch.save(
        {
            "epoch": 9,
            "best_fitness": 0.5,
            "stopper": {"best_fitness": 0.5, "best_epoch": 9},
            "model": None,
            "ema": ema,
            "updates": 1000,
            "modelopt": None,
            "optimizer": None,
            "scaler": {},
            "train_args": {"model": "zoo.yaml", "imgsz": IMGSZ, "batch": 16, "epochs": 10},
            "train_metrics": {"fitness": 0.5},
            "train_results": {},
            "date": saved.get("date"),
            "version": saved.get("version"),
            "license": saved.get("license"),
            "docs": saved.get("docs"),
        },
        str(target),
    )


def _ultralytics_export(cls, checkpoint: Path, target: Path, option: str) -> None:
    kwargs = {"simplify": option == "simplify", "dynamic": option == "dynamic"}
    written = Path(cls(str(checkpoint)).export(format="onnx", imgsz=IMGSZ, **kwargs))
    shutil.move(str(written), str(target))


def _raw_export(cls, checkpoint: Path, target: Path, exporter: str) -> None:
    """The unfused model straight through torch's exporter, its head put in export mode
    the way Ultralytics' exporter does it (otherwise the head returns training outputs
    and the dynamo exporter stops at a data-dependent branch)."""
    import torch
    from ultralytics.nn.modules.head import Detect, RTDETRDecoder

    model = copy.deepcopy(cls(str(checkpoint)).model).float().eval()
    for module in model.modules():
        if isinstance(module, (Detect, RTDETRDecoder)):
            module.dynamic = False
            module.export = True
            module.format = "onnx"
    export_torch(model, (torch.rand(1, 3, IMGSZ, IMGSZ),), target, exporter)


# ----------------------------------------------------------------------------- post-processing


def postprocess(source: Path, target: Path, post: str) -> None:
    """A copy of ``source`` as users post-process exports (see zoo_matrix)."""
    import onnx

    if post == "onnxslim":
        import onnxslim

        onnx.save(onnxslim.slim(onnx.load(str(source))), str(target))
    elif post in ("ort-basic", "ort-extended"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            if post == "ort-basic"
            else ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        )
        options.optimized_model_filepath = str(target)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    elif post == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(target))
    elif post == "extdata":
        onnx.save(
            onnx.load(str(source)),
            str(target),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{target.name}.data",
        )
    else:
        raise ValueError(post)
    if not target.exists():
        raise RuntimeError(f"{post} wrote nothing")
