"""``graphinspect fuse MODEL.pt``: the fused weights of a model, re-computed in float64.

Frameworks fuse a model before deploying it (Ultralytics ``model.fuse()``, timm
``reparameterize_model``) and exporters fold each BatchNorm into the conv before it,
which is why "the same" conv holds [-0.306, 0.345] in the .pt and [-2.926, 3.297] in
the .onnx. ``fuse`` does what the model's own framework does, no more and no less
(:mod:`plugins.commands.fuse.policy`: which groups, under which names; what is left
unfused and why), out of place, in float64, with the transform plugins that ``diff``
uses, and shows each fused layer's range before and after, and how much fusion scaled it::

    w' = w * s,   b' = (b - mean) * s + beta,   s = gamma / sqrt(var + eps)   (per channel)

The model is read safely (no code from the file runs). Options:

- ``--layer GLOB``: list only groups whose fused name or a source module matches;
- ``--weights FILE`` (.pt/.pth/.safetensors): write the fused state_dict, the tensors a
  ``state_dict()`` of the framework's fused model holds, named as it names them (it loads
  with ``load_state_dict(strict=True)``; :mod:`plugins.commands.fuse.weights`); always
  the whole model, whatever ``--layer`` lists;
- ``--fold-all``: also fold the Conv/Linear + BatchNorm pairs the framework keeps (an
  exporter folds them next);
- ``--against MODEL.onnx``: look each listed group up in a diff against the export
  (:mod:`plugins.commands.fuse.against`); where the file does not record BatchNorm eps (a bare
  state_dict) and the export fits another value than the guess, fuse uses that value;
- ``--format``/``-o FILE``: how and where the report goes (stdout by default), as
  in every command.

Exit status: 0 done (with ``--against``: every listed group found in the export and
re-computed within tolerance), 1 some group not found or different, 2 bad input or
usage (one line; nothing written).

The document (``"schema": "graphinspect/fuse@1"``; a contract: fields are only ever
added, never renamed or removed, within a major version)::

    {
      "schema": "graphinspect/fuse@1",
      "tool": {"name": "graphinspect", "version": "0.1.0"},
      "source": {"path", "format"},
      "framework": "ultralytics" | "timm" | "torch" | "state_dict",  # whose fusion is reproduced
      "fusion": "Ultralytics model.fuse()" | ...,                    # the same, in words
      "groups": [                               # the listed groups, in source order
        {"transform": "fold_batchnorm" | "merge_branches" | ...,
         "sources": ["model.0.conv", "model.0.bn"],      # PyTorch module paths
         "fused_name": "model.0.conv",          # the fused layer's path in the export
         "note": "eps 0.001 from the module",
         "params": [{"name": "weight" | "bias",  # the tensor is <fused_name>.<name>
                     "source_tensor": "<state_dict key>" | null,  # the conv's own tensor
                     "before_range": [lo, hi] | null,             # null: the conv has no bias
                     "after_range": [lo, hi],
                     "abs_max_ratio": float | null}]}             # max|after| / max|before|
      ],
      "unfused": [{"sources": [...], "reason": str}],   # groups left as they are, and why
      "dropped": [{"module", "tensors": n, "reason"}],   # modules the fusion removes (not written)
      "written": {"path", "format": "pytorch-state-dict" | "safetensors", "tensors": n} | null,
      "against": null | {
        "path", "verdict": "faithful" | "differs" | "incomplete",  # of the whole diff
        "checked": n, "mismatched": n, "not_found": n, "not_exported": n,
        "layers": [{"fused_name", "target": "<ONNX node>" | null,
                    "status": "ok" | "mismatch" | "not_found" | "not_exported",
                    "max_rel_err": float | null, "note": ""}]}
    }

Ranges are (min, max) over finite values. A merged block's "before" is its widest
branch conv (the kxk one).
"""

from __future__ import annotations

import argparse

from inspector.hookspecs import hookimpl
from inspector.records import Reporter, Subcommand
from plugins.commands.fuse.table import render_table

SCHEMA = "graphinspect/fuse@1"


def configure_parser(parser) -> None:
    parser.add_argument(
        "model", help="the PyTorch model (.pt/.pth checkpoint or pickled module, state_dict, safetensors)"
    )
    parser.add_argument(
        "--layer",
        metavar="GLOB",
        action="append",
        help="list only groups whose fused name or a source module matches GLOB (repeatable)",
    )
    parser.add_argument(
        "--weights",
        metavar="FILE",
        help="write the fused state_dict to FILE: .pt/.pth (torch.save, loadable with "
        "torch.load(weights_only=True)) or .safetensors. Names are the exporter's; fused "
        "weights and biases are float32, as exporters fold in fp32; other tensors keep their "
        "stored dtype. Always the whole model, whatever --layer lists",
    )
    parser.add_argument(
        "--fold-all",
        action="store_true",
        help="also fold the Conv/Linear + BatchNorm pairs the model's framework keeps when it fuses "
        "(what an ONNX exporter folds next), e.g. those outside timm's re-parameterisable blocks",
    )
    parser.add_argument(
        "--against",
        metavar="MODEL.onnx",
        help="check the fused groups against this export (exit 1 if one is not found or differs)",
    )
    parser.add_argument("--format", help="report format: table (default), json, or a reporter plugin's format")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the report to FILE instead of stdout (format from its suffix unless --format)",
    )
    parser.add_argument("--report", dest="output", help=argparse.SUPPRESS)  # the 0.1 spelling of -o


def run(args, plugins) -> int:
    from plugins.commands.fuse.command import run as run_fuse  # numpy and the loaders, not for --help

    return run_fuse(args, plugins)


@hookimpl
def graphinspect_subcommands():
    yield Subcommand(
        "fuse",
        "Re-compute the fused weights an exporter makes (Conv+BN folding, RepConv merging): "
        "ranges before and after, the fused state_dict (--weights), checked against an export (--against).",
        configure_parser,
        run,
    )


@hookimpl
def graphinspect_reporters():
    yield Reporter("table", "A rich table of the fused groups.", (SCHEMA,), render_table, suffixes=(".txt",))
