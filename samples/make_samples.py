"""Build the committed sample model pairs (random weights, randomised BatchNorm statistics).

    python samples/make_samples.py            # writes into samples/

Pairs written (all small; < 2 MB together):

- ``rtdetr_stem.pt``: an Ultralytics-style checkpoint dict whose ``model`` is a pickled
  fp16 module of classes that claim to live in ``ultralytics`` (not installed), with
  ``rtdetr_stem_state_dict.pt`` (those weights as an fp32 state_dict) and
  ``rtdetr_stem.onnx``: exported
  the Ultralytics way: in fp32, each Conv+BN fused first, legacy exporter, metadata
  imgsz/stride/names;
- ``resnet_block.pt``: a whole pickled torchvision-style ResNet (fp32), with
  ``resnet_block_state_dict.pt`` and ``resnet_block.onnx`` from the dynamo exporter,
  which folds BatchNorm itself;
- ``rtdetr_like.pt`` / ``rtdetr_like.onnx``: a small RT-DETR/YOLO-style detector with
  RepConv branches, attention and LayerNorm, Ultralytics-style checkpoint and export
  (onnxslim applied when it is installed).

And ``bus.png``, a small synthetic street picture (sky, road, a bus) for
``graphinspect verify --image`` (needs Pillow; skipped without it).

The architectures are in :mod:`samples.lookalikes`, so a state_dict can be run with
``--model samples.lookalikes:rtdetr_stem`` from the repository root.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import sys
import types
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from samples import lookalikes  # noqa: E402

IMAGE_SIZE = 64

# Where the real classes live in Ultralytics; the samples pickle theirs under these names.
ULTRALYTICS_MODULES = {
    "Conv": "ultralytics.nn.modules.conv",
    "RepConv": "ultralytics.nn.modules.conv",
    "RepC3": "ultralytics.nn.modules.block",
    "AIFI": "ultralytics.nn.modules.transformer",
    "Head": "ultralytics.nn.modules.head",
    "DetectionModel": "ultralytics.nn.tasks",
}


def save_as_ultralytics(checkpoint: dict, path: Path) -> None:
    """torch.save ``checkpoint`` with the look-alike classes renamed into ``ultralytics``.

    The pickle then names ``ultralytics.nn.modules.conv.Conv`` and friends, exactly as a
    real Ultralytics checkpoint does, and cannot be unpickled normally without that
    package.
    """
    saved = {}
    created = []
    try:
        for name, module_name in ULTRALYTICS_MODULES.items():
            cls = getattr(lookalikes, name)
            saved[cls] = cls.__module__
            parts = module_name.split(".")
            for depth in range(1, len(parts) + 1):
                prefix = ".".join(parts[:depth])
                if prefix not in sys.modules:
                    sys.modules[prefix] = types.ModuleType(prefix)
                    created.append(prefix)
            setattr(sys.modules[module_name], name, cls)
            cls.__module__ = module_name
        torch.save(checkpoint, path)
    finally:
        for cls, module_name in saved.items():
            cls.__module__ = module_name
        for prefix in created:
            del sys.modules[prefix]


def ultralytics_checkpoint(model: torch.nn.Module) -> dict:
    """The dict a stripped Ultralytics best.pt holds: the fp16 model under 'model'."""
    return {
        "date": datetime.datetime(2026, 1, 1).isoformat(),
        "version": "8.3.0",
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "epoch": -1,
        "best_fitness": None,
        "model": copy.deepcopy(model).half(),
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": {"imgsz": IMAGE_SIZE, "batch": 16, "task": "detect"},
    }


def export_onnx(model: torch.nn.Module, path: Path, *, dynamo: bool, metadata: dict | None = None) -> None:
    import onnx

    example = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(
                model, (example,), str(path), dynamo=True, external_data=False, input_names=["images"], verbose=False
            )
        else:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=17,
                input_names=["images"],
                output_names=["output0"],
            )
    proto = onnx.load(str(path))
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(proto, str(path))


def ultralytics_metadata(model: lookalikes.DetectionModel) -> dict:
    return {
        "description": "graphinspect sample (random weights)",
        "author": "graphinspect",
        "version": "8.3.0",
        "task": "detect",
        "stride": 32,
        "batch": 1,
        "imgsz": [IMAGE_SIZE, IMAGE_SIZE],
        "names": json.dumps(model.names),
    }


def export_ultralytics_style(model: lookalikes.DetectionModel, path: Path, slim: bool) -> None:
    """Fuse (Conv+BN, RepConv branches), export with the legacy exporter, maybe onnxslim."""
    fused = lookalikes.ultralytics_fuse(copy.deepcopy(model).float().eval())
    export_onnx(fused, path, dynamo=False, metadata=ultralytics_metadata(model))
    if slim:
        try:
            import onnxslim
        except ImportError:
            return
        import onnx

        proto = onnx.load(str(path))
        metadata = {entry.key: entry.value for entry in proto.metadata_props}
        slimmed = onnxslim.slim(proto)
        del slimmed.metadata_props[:]
        for key, value in metadata.items():
            entry = slimmed.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(slimmed, str(path))


def build(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []

    torch.manual_seed(0)
    stem = lookalikes.randomise_batchnorm(lookalikes.rtdetr_stem(16), seed=1).eval()
    save_as_ultralytics(ultralytics_checkpoint(stem), out / "rtdetr_stem.pt")
    # What a user gets from that checkpoint: the fp16 weights, as an fp32 state_dict.
    # Ultralytics exports the fp16 checkpoint after .float(), so the export sees the same.
    stem = stem.half().float()
    torch.save(stem.state_dict(), out / "rtdetr_stem_state_dict.pt")
    export_ultralytics_style(stem, out / "rtdetr_stem.onnx", slim=False)
    written += [out / "rtdetr_stem.pt", out / "rtdetr_stem_state_dict.pt", out / "rtdetr_stem.onnx"]

    torch.manual_seed(1)
    resnet = lookalikes.randomise_batchnorm(lookalikes.resnet_block(16, 10), seed=2).eval()
    torch.save(resnet, out / "resnet_block.pt")
    torch.save(resnet.state_dict(), out / "resnet_block_state_dict.pt")
    export_onnx(resnet, out / "resnet_block.onnx", dynamo=True)
    written += [out / "resnet_block.pt", out / "resnet_block_state_dict.pt", out / "resnet_block.onnx"]

    torch.manual_seed(2)
    detector = lookalikes.randomise_batchnorm(lookalikes.rtdetr_like(16), seed=3).eval()
    save_as_ultralytics(ultralytics_checkpoint(detector), out / "rtdetr_like.pt")
    export_ultralytics_style(detector.half().float(), out / "rtdetr_like.onnx", slim=True)
    written += [out / "rtdetr_like.pt", out / "rtdetr_like.onnx"]

    if make_bus_image(out / "bus.png"):
        written.append(out / "bus.png")
    return written


def make_bus_image(path: Path, width: int = 240, height: int = 180) -> bool:
    """Draw a synthetic street picture (no photo may be shipped): a sky gradient, a road,
    a yellow bus with windows and wheels. 4:3, so letterboxing to a square pads it.
    Returns False when Pillow is not installed."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return False
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    horizon = height * 3 // 5
    for y in range(horizon):
        shade = y / horizon
        draw.line([(0, y), (width, y)], fill=(int(90 + 100 * shade), int(150 + 70 * shade), 235))
    for y in range(horizon, height):
        grey = 70 + (y - horizon) // 3
        draw.line([(0, y), (width, y)], fill=(grey, grey, grey + 5))
    for x in range(0, width, 40):
        draw.rectangle([x + 5, height - 22, x + 25, height - 19], fill=(235, 235, 235))
    left, top, right, bottom = width // 8, height // 4, width * 7 // 8, horizon + height // 8
    draw.rounded_rectangle([left, top, right, bottom], radius=10, fill=(245, 190, 30), outline=(60, 50, 20), width=2)
    for x in range(left + 12, right - 30, 30):
        draw.rectangle([x, top + 12, x + 22, top + 36], fill=(70, 110, 150), outline=(30, 30, 30))
    draw.rectangle([right - 26, top + 12, right - 8, bottom - 8], fill=(60, 90, 120), outline=(30, 30, 30))
    for cx in (left + 30, right - 40):
        draw.ellipse([cx - 14, bottom - 14, cx + 14, bottom + 14], fill=(25, 25, 25))
        draw.ellipse([cx - 6, bottom - 6, cx + 6, bottom + 6], fill=(150, 150, 150))
    draw.ellipse([width - 50, 12, width - 22, 40], fill=(255, 240, 170))
    image.save(path, optimize=True)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder")
    args = parser.parse_args()
    total = 0
    for path in build(args.out):
        size = path.stat().st_size
        total += size
        print(f"{path.name:32s} {size / 1024:8.1f} KiB")
    print(f"{'total':32s} {total / 1024:8.1f} KiB")


if __name__ == "__main__":
    main()
