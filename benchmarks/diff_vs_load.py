"""How long ``graphinspect diff`` takes against merely loading both files.

    python benchmarks/diff_vs_load.py [--width 64] [--repeat 3] [--keep DIR]

Builds an RT-DETR/YOLO-style network of about 30M parameters (Conv+BN+SiLU blocks,
RepC3/RepConv blocks, attention), saves it the Ultralytics way (a checkpoint dict holding
the pickled fp16 module) and exports the fused fp32 copy with the legacy exporter. Then,
in this one process, after a warm-up, best of ``--repeat`` runs:

- baseline: ``torch.load(weights_only=False)`` of the checkpoint (its classes importable)
  plus ``onnx.load`` of the export: merely loading both files;
- diff: graphinspect's safe loaders for both files plus ``diff_models`` (match, re-compute
  every tensor in float64, compare, findings);

and, as whole commands (each a fresh interpreter, imports included):

- ``python -c "import torch, onnx; torch.load(...); onnx.load(...)"`` against
- ``python -m inspector diff ckpt.pt model.onnx --format json -o /dev/null``.

It prints the times and the ratios diff / load. The issue's bound is 1.5x.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_pair(folder: Path, width: int) -> tuple[Path, Path, int]:
    import copy

    import torch
    from torch import nn

    from samples import lookalikes as L
    from samples.make_samples import save_as_ultralytics, ultralytics_checkpoint

    torch.manual_seed(0)
    w = width
    model = L.DetectionModel(
        [
            L.Conv(3, w, 7, 2, act=nn.ReLU()),
            L.Conv(w, 2 * w, 3, 2),
            L.RepC3(2 * w, 2 * w, 3),
            L.Conv(2 * w, 4 * w, 3, 2),
            L.RepC3(4 * w, 4 * w, 3),
            L.Conv(4 * w, 8 * w, 3, 2),
            L.RepC3(8 * w, 8 * w, 3),
            L.RepConv(8 * w, 8 * w, identity=True),
            L.AIFI(8 * w, heads=8, hidden=16 * w),
            L.Conv(8 * w, 8 * w, 1, 1),
            L.Head(8 * w),
        ]
    )
    L.randomise_batchnorm(model, seed=1).eval()
    parameters = sum(p.numel() for p in model.parameters())
    checkpoint = folder / "model.pt"
    save_as_ultralytics(ultralytics_checkpoint(model), checkpoint)
    fused = L.ultralytics_fuse(copy.deepcopy(model).half().float().eval())
    export = folder / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(fused, (torch.rand(1, 3, 64, 64),), str(export), dynamo=False, opset_version=17)
    return checkpoint, export, parameters


def best_of(repeat: int, work) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64, help="base width (64: about 30M parameters)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the pair in this folder and keep it")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="graphinspect-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint, export, parameters = build_pair(folder, args.width)
    print(
        f"model: {parameters / 1e6:.1f}M parameters; {checkpoint.stat().st_size / 2**20:.0f} MiB checkpoint, "
        f"{export.stat().st_size / 2**20:.0f} MiB ONNX"
    )

    import onnx
    import torch

    from inspector.diff import diff_models
    from inspector.manager import get_plugin_manager

    plugins = get_plugin_manager(autoload=False)

    def load_both() -> None:
        import samples.make_samples as make

        # The baseline may import the model's classes: register them under their pickled names.
        make_modules = make.ULTRALYTICS_MODULES
        import types

        from samples import lookalikes

        for name, module_name in make_modules.items():
            parts = module_name.split(".")
            for depth in range(1, len(parts) + 1):
                sys.modules.setdefault(".".join(parts[:depth]), types.ModuleType(".".join(parts[:depth])))
            setattr(sys.modules[module_name], name, getattr(lookalikes, name))
        torch.load(checkpoint, weights_only=False)
        onnx.load(str(export))

    def diff() -> None:
        source = plugins.load_model(checkpoint)
        target = plugins.load_model(export)
        result = diff_models(plugins, source, target)
        assert result.verdict == "faithful", result.verdict

    load_both()
    diff()
    load_time = best_of(args.repeat, load_both)
    diff_time = best_of(args.repeat, diff)
    print(f"in-process  load both: {load_time:.3f} s   diff: {diff_time:.3f} s   ratio: {diff_time / load_time:.2f}x")

    python = sys.executable
    register = (
        f"import sys, types; sys.path.insert(0, {str(ROOT)!r})\n"
        "from samples import lookalikes\nfrom samples.make_samples import ULTRALYTICS_MODULES as M\n"
        "for n, m in M.items():\n"
        "    parts = m.split('.')\n"
        "    [sys.modules.setdefault('.'.join(parts[:d]), types.ModuleType('.'.join(parts[:d]))) for d in "
        "range(1, len(parts) + 1)]\n"
        "    setattr(sys.modules[m], n, getattr(lookalikes, n))\n"
    )
    baseline_cmd = [
        python,
        "-c",
        register
        + f"import torch, onnx\ntorch.load({str(checkpoint)!r}, weights_only=False)\nonnx.load({str(export)!r})\n",
    ]
    diff_cmd = [
        python,
        "-m",
        "inspector",
        "diff",
        str(checkpoint),
        str(export),
        "--format",
        "json",
        "-o",
        str(folder / "report.json"),
    ]

    def run(command) -> None:
        completed = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD": "1"},
        )
        if completed.returncode not in (0,):
            raise SystemExit(f"command failed ({completed.returncode}): {completed.stderr.strip()[-500:]}")

    run(baseline_cmd)
    run(diff_cmd)
    baseline = best_of(args.repeat, lambda: run(baseline_cmd))
    whole = best_of(args.repeat, lambda: run(diff_cmd))
    print(f"whole cmd   load both: {baseline:.3f} s   diff: {whole:.3f} s   ratio: {whole / baseline:.2f}x")


if __name__ == "__main__":
    main()
