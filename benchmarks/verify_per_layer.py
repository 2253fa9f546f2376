"""What ``verify --per-layer`` costs on a ~30M-parameter model, against plain inference.

Builds, in a temporary directory, a ResNet-18-shaped network widened to about 30 M
parameters (:func:`samples.lookalikes.resnet18`, random weights, randomised BatchNorm),
saves it as a state_dict and exports it with the legacy exporter (not timed). Then, in
one process, best of ``--repeat`` interleaved rounds on one 1x3xHxW input:

- baseline: one PyTorch forward plus one ONNX Runtime run of a session created
  beforehand (what ``verify`` without ``--per-layer`` runs);
- per-layer: :func:`plugins.commands.verify.per_layer.compare_layers`, all ``--per-layer`` runs:
  the model bytes with every matched tensor as an extra output, that session's creation,
  its one run (which also gives the model's outputs), the one hooked PyTorch forward and
  the comparisons; and the same with the extra session created beforehand, as the
  baseline's is (the like-for-like ratio). Session creation is also timed alone;
- plain verify's runs: its session's creation plus one run of each framework, which
  ``--per-layer`` replaces.

The diff (matching, run once; ``--per-layer`` needs it) is timed separately. Run from
the repository root:

    python benchmarks/verify_per_layer.py [--repeat 3] [--width 104] [--size 224]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def best_of_interleaved(repeat: int, *functions) -> list[float]:
    """The best time of each function over ``repeat`` rounds, one call of each per round
    (interleaved, so that a busy moment of the machine does not favour one of them)."""
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeat):
        for function, measured in zip(functions, times):
            start = time.perf_counter()
            function()
            measured.append(time.perf_counter() - start)
    return [min(measured) for measured in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--width", type=int, default=104, help="ResNet-18 base width (64 is the real one, 11.7 M parameters)"
    )
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    args = parser.parse_args()

    import numpy as np
    import torch

    from inspector.diff import diff_models
    from inspector.manager import get_plugin_manager
    from plugins.commands.verify.per_layer import compare_layers, extra_outputs_model, plan_layers
    from plugins.commands.verify.runners import build_torch_runner, onnx_session, run_session
    from samples import lookalikes

    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        model = lookalikes.randomise_batchnorm(lookalikes.resnet18(args.width, 1000)).eval()
        parameters = sum(p.numel() for p in model.parameters())
        example = torch.rand(1, 3, args.size, args.size)
        weights, exported = Path(folder) / "model.pt", Path(folder) / "model.onnx"
        torch.save(model.state_dict(), weights)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(exported), dynamo=False, opset_version=17, input_names=["images"])

        plugins = get_plugin_manager(autoload=False)
        source, target = plugins.load_model(weights), plugins.load_model(exported)
        factory = Path(folder) / "factory.py"
        factory.write_text(
            f"from samples.lookalikes import resnet18\n\ndef build():\n    return resnet18({args.width}, 1000)\n"
        )
        runner = build_torch_runner(source, f"{factory}:build", trust_pickle=False)
        array = example.numpy()
        feeds = {"images": array}

        start = time.perf_counter()
        diff = diff_models(plugins, source, target)
        diff_time = time.perf_counter() - start

        session = onnx_session(str(exported), str(exported))
        run_session(session, feeds, str(exported))  # warm-up, as the per-layer run is measured warm too

        def baseline() -> None:
            runner.run([array])
            run_session(session, feeds, str(exported))

        plans_holder = []

        def per_layer() -> None:
            plans = plan_layers(diff, runner, None)
            compare_layers(plans, runner, target, [array], feeds, 1e-3, 1024 * 2**20)
            plans_holder[:] = plans

        tensors = list(dict.fromkeys(plan.tensor for plan in plan_layers(diff, runner, None) if plan.comparable))
        layer_session = onnx_session(extra_outputs_model(target, tensors), str(exported), basic_optimizations=True)

        def per_layer_warm() -> None:
            plans = plan_layers(diff, runner, None)
            compare_layers(plans, runner, target, [array], feeds, 1e-3, 1024 * 2**20, session=layer_session)

        def session_creation() -> None:
            onnx_session(extra_outputs_model(target, tensors), str(exported), basic_optimizations=True)

        def plain_verify() -> None:
            # What plain verify does to get outputs: make its session, run both once.
            plain = onnx_session(str(exported), str(exported))
            runner.run([array])
            run_session(plain, feeds, str(exported))

        baseline_time, per_layer_time, warm_time, session_time, plain_time = best_of_interleaved(
            args.repeat, baseline, per_layer, per_layer_warm, session_creation, plain_verify
        )
        compared = [plan for plan in plans_holder if plan.status != "not_comparable"]
        activation_mb = sum(int(np.prod(plan.shape)) * 4 for plan in compared) / 2**20

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"model: ResNet-18 layout at width {args.width}: {parameters / 1e6:.1f} M parameters, input "
        f"1x3x{args.size}x{args.size}"
    )
    print(
        f"per-layer compares {len(compared)} of {len(plans_holder)} matched layers, {activation_mb:.0f} MiB of "
        "activations"
    )
    print(f"diff (matching, once):                    {diff_time * 1000:8.1f} ms")
    print(f"baseline: PyTorch forward + ORT run:      {baseline_time * 1000:8.1f} ms (best of {args.repeat})")
    print(f"per-layer work (all of compare_layers):   {per_layer_time * 1000:8.1f} ms (best of {args.repeat})")
    print(f"  the same with its session made before:  {warm_time * 1000:8.1f} ms")
    print(f"  the extra session's creation alone:     {session_time * 1000:8.1f} ms")
    print(f"ratio per-layer / baseline:               {per_layer_time / baseline_time:8.2f}")
    print(f"ratio, both sessions made before:         {warm_time / baseline_time:8.2f}")
    print(f"plain verify's runs, its session included: {plain_time * 1000:7.1f} ms")
    print(f"ratio per-layer / plain verify's runs:    {per_layer_time / plain_time:8.2f}")


if __name__ == "__main__":
    main()
