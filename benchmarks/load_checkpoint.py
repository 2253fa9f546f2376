"""How long the torch loader takes on an Ultralytics-like checkpoint, against torch.load.

Builds, in a temporary directory, a checkpoint shaped like an Ultralytics best.pt: a dict
``{"model": <pickled fp16 nn.Module>, "ema": None, "train_args": {...}, ...}`` whose module
classes live in a package (``fakeultra``) written next to it. About 30 M parameters in a
few hundred submodules (Conv+BN+SiLU blocks, C2f-like stages, a detection head).

Then, in one process, best of ``--repeat`` runs:

- baseline: ``torch.load(path, weights_only=False)`` with the package importable (what
  Ultralytics itself does; it runs the pickle's code, which graphinspect never does);
- graphinspect: ``plugins.loaders.torch.load_torch_save(path)`` with the package removed
  from ``sys.modules`` and ``sys.path``, so every class is a stand-in.

It prints both times and the ratio. Run from the repository root:

    python benchmarks/load_checkpoint.py [--repeat 5] [--width 1.0]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PACKAGE = "fakeultra"

MODEL_SOURCE = textwrap.dedent(
    """
    import torch
    import torch.nn as nn


    class Conv(nn.Module):
        default_act = nn.SiLU()

        def __init__(self, c1, c2, k=1, s=1):
            super().__init__()
            self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
            self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
            self.act = self.default_act


    class Bottleneck(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.cv1 = Conv(c, c, 3)
            self.cv2 = Conv(c, c, 3)
            self.add = True


    class C2f(nn.Module):
        def __init__(self, c1, c2, n):
            super().__init__()
            self.c = c2 // 2
            self.cv1 = Conv(c1, 2 * self.c, 1)
            self.cv2 = Conv((2 + n) * self.c, c2, 1)
            self.m = nn.ModuleList(Bottleneck(self.c) for _ in range(n))


    class DFL(nn.Module):
        def __init__(self, c1=16):
            super().__init__()
            self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
            self.c1 = c1


    class Detect(nn.Module):
        def __init__(self, nc, channels):
            super().__init__()
            self.nc, self.nl, self.reg_max = nc, len(channels), 16
            self.no = nc + self.reg_max * 4
            self.stride = torch.zeros(self.nl)
            c2, c3 = max(16, channels[0] // 4), max(channels[0], nc)
            self.cv2 = nn.ModuleList(
                nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * self.reg_max, 1)) for x in channels
            )
            self.cv3 = nn.ModuleList(
                nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in channels
            )
            self.dfl = DFL(self.reg_max)


    class DetectionModel(nn.Module):
        def __init__(self, width=1.0, nc=80):
            super().__init__()
            w = lambda c: max(16, int(c * width * 0.74) // 8 * 8)
            layers = [Conv(3, w(64), 3, 2), Conv(w(64), w(128), 3, 2), C2f(w(128), w(128), 3),
                      Conv(w(128), w(256), 3, 2), C2f(w(256), w(256), 6),
                      Conv(w(256), w(512), 3, 2), C2f(w(512), w(512), 6),
                      Conv(w(512), w(768), 3, 2), C2f(w(768), w(768), 3),
                      C2f(w(768), w(512), 3), C2f(w(512), w(256), 3),
                      Conv(w(256), w(256), 3, 2), C2f(w(256), w(512), 3),
                      Conv(w(512), w(512), 3, 2), C2f(w(512), w(768), 3),
                      Detect(nc, (w(256), w(512), w(768)))]
            for index, layer in enumerate(layers):
                layer.i, layer.f, layer.type = index, -1, f"{__name__}.{type(layer).__name__}"
            self.model = nn.Sequential(*layers)
            self.names = {index: f"class{index}" for index in range(nc)}
            self.stride = torch.tensor([8.0, 16.0, 32.0])
            self.yaml = {"nc": nc, "scales": {"l": [1.0, 1.0, 512]}, "backbone": [[-1, 1, "Conv", [64, 3, 2]]]}
            self.task = "detect"
            self.args = {"imgsz": 640, "task": "detect", "batch": 16}
    """
)


def write_package(directory: Path, name: str = PACKAGE) -> None:
    """Write the model classes as package ``name`` under ``directory``."""
    package = directory / name
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "nn.py").write_text(MODEL_SOURCE)


def build_checkpoint(directory: Path, width: float) -> tuple[Path, int, int]:
    """Save the checkpoint; return its path, parameter count and module count."""
    import torch

    write_package(directory)
    sys.path.insert(0, str(directory))
    module = importlib.import_module(f"{PACKAGE}.nn")
    model = module.DetectionModel(width=width).half().eval()
    checkpoint = {
        "date": "2025-01-01T00:00:00",
        "version": "8.3.0",
        "license": "AGPL-3.0",
        "epoch": -1,
        "best_fitness": 0.5,
        "model": model,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": {"imgsz": 640, "epochs": 100, "batch": 16, "model": "yolov8l.yaml"},
        "train_metrics": {"metrics/mAP50(B)": 0.7},
    }
    path = directory / "best.pt"
    torch.save(checkpoint, path)
    params = sum(p.numel() for p in model.parameters())
    modules = sum(1 for _ in model.modules())
    return path, params, modules


def forget_package() -> None:
    """Make the package unimportable, as on a machine without it."""
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    sys.path[:] = [entry for entry in sys.path if not (Path(entry) / PACKAGE).exists()]


def best_of(repeat: int, function) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0 is about 30 M parameters)")
    args = parser.parse_args()

    start = time.perf_counter()
    import torch

    torch_import = time.perf_counter() - start
    from plugins.loaders.torch import load_torch_save

    with tempfile.TemporaryDirectory() as temp:
        path, params, modules = build_checkpoint(Path(temp), args.width)
        size_mb = path.stat().st_size / 1e6
        baseline = best_of(args.repeat, lambda: torch.load(path, weights_only=False, map_location="cpu"))
        forget_package()
        model = load_torch_save(path)
        loader = best_of(args.repeat, lambda: load_torch_save(path))
        # Touch every value once, to show reading stays a view of the mapped file.
        read = best_of(1, lambda: [param.array() for _, param in model.params()])

    print(f"torch {torch.__version__}, import took {torch_import:.2f} s")
    print(
        f"checkpoint: {params / 1e6:.1f} M fp16 parameters, {modules} modules, {size_mb:.1f} MB, "
        f"{len(model.layers)} layers with tensors"
    )
    print(f"baseline torch.load(weights_only=False): {baseline * 1000:.1f} ms (best of {args.repeat})")
    print(f"graphinspect load_torch_save:            {loader * 1000:.1f} ms (best of {args.repeat})")
    print(f"ratio graphinspect / baseline:           {loader / baseline:.2f}")
    print(f"then reading every param as numpy:       {read * 1000:.1f} ms")


if __name__ == "__main__":
    main()
