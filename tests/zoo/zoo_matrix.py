"""What the zoo builds and checks: families, the pairs diffed, the tampered twins.

Pure data (imports neither torch nor onnx), so collection is fast and the test ids are
known before anything is built. A test id reads ``family/pt-kind/export/postprocess``
(a twin adds ``/role``), e.g. ``resnet18/module/legacy/fp16`` or
``rtdetr-l/checkpoint/ultralytics/none/merged_branch_conv``.

PyTorch side (``pt``):
    ``module``          ``torch.save(model)``, a whole pickled module
    ``state_dict``      ``torch.save(model.state_dict())``
    ``checkpoint``      Ultralytics' ``Model.save()``: a dict whose ``model`` is the fp16 pickled module
    ``checkpoint-ema``  Ultralytics' trainer checkpoint (``BaseTrainer.save_model``): ``model`` None, ``ema`` fp16

Exports:
    ``legacy``               ``torch.onnx.export(..., dynamo=False, opset_version=17)``
    ``dynamo``               ``torch.onnx.export(..., dynamo=True)`` (its defaults: optimised, external data)
    ``legacy-reparam``,
    ``dynamo-reparam``       the same, of the model re-parameterised with timm's ``reparameterize_model``
    ``ultralytics``          ``YOLO(checkpoint).export(format="onnx")`` (fuses, then the legacy exporter)
    ``ultralytics-slim``     the same with ``simplify=True`` (onnxslim)
    ``ultralytics-dynamic``  the same with ``dynamic=True``
    For Ultralytics models, ``legacy``/``dynamo`` export the unfused model with the head
    in export mode (as Ultralytics' exporter sets it), leaving folding to the exporter.

Post-processing of a copy (``post``): ``none``, ``onnxslim`` (``onnxslim.slim``),
``ort-basic``/``ort-extended`` (ONNX Runtime's offline optimisation,
``SessionOptions.optimized_model_filepath``), ``fp16``
(``onnxruntime.transformers.float16.convert_float_to_float16``, ``keep_io_types=True``),
``extdata`` (``onnx.save(..., save_as_external_data=True)``).

Twin roles (which initializer is changed; chosen from the ONNX graph by :mod:`zoo_tamper`):
``conv_weight``, ``conv_bias``, ``linear_weight``, ``linear_bias``, ``norm_affine``,
``pos_table``, ``class_token``, ``layer_scale``, ``recurrent_weight``,
``recurrent_input_weight``, ``recurrent_bias``, ``embedding``, ``merged_branch_conv``.

The matrix is chosen to run in about 15 minutes on 2 cores: every family gets both
PyTorch kinds against its first export, every export against the pickled kind, and the
post-processing goes on a representative subset.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    family: str
    pt: str
    export: str
    post: str = "none"

    @property
    def id(self) -> str:
        return f"{self.family}/{self.pt}/{self.export}/{self.post}"

    @property
    def onnx_key(self) -> str:
        return f"{self.export}/{self.post}"


@dataclass(frozen=True)
class Twin:
    pair: Pair
    role: str
    scope: str | None = None  # a regex the consuming node's scope must match (see zoo_tamper)

    @property
    def id(self) -> str:
        return f"{self.pair.id}/{self.role}"


@dataclass(frozen=True)
class Family:
    name: str
    source: str  # torchvision | timm | hand | ultralytics
    exports: dict[str, str]  # export name -> the builder's variant ("model", "reparam") or Ultralytics options
    honest: tuple[Pair, ...]
    twins: tuple[Twin, ...]
    config: str = ""  # Ultralytics model yaml
    pt_kinds: tuple[str, ...] = ("module", "state_dict")
    notes: str = ""

    def onnx_keys(self) -> list[str]:
        """Every (export, post) file the family needs, in build order."""
        keys = [f"{export}/none" for export in self.exports]
        for pair in (*self.honest, *(twin.pair for twin in self.twins)):
            if pair.onnx_key not in keys:
                keys.append(pair.onnx_key)
        return keys


def _torch_family(
    name: str,
    source: str,
    roles: tuple[str, ...],
    *,
    exports: dict[str, str] | None = None,
    post: tuple[str, ...] = (),
    twin_export: str | None = None,
    extra_twins: tuple[tuple[str, str, str], ...] = (),
    scopes: dict[str, str] | None = None,
    sd_export: str | None = None,
    sd_twins: tuple[str, ...] = (),
) -> Family:
    """The default plan of a torch family: the pickled module against every export, the
    state_dict against the first (or ``sd_export``), post-processing on the first export,
    one twin per role on ``twin_export`` (default: the first export), plus ``extra_twins``
    given as (export, post, role), plus ``sd_twins``: roles twinned against the state_dict."""
    exports = exports or {"legacy": "model", "dynamo": "model"}
    first = next(iter(exports))
    honest = [Pair(name, "module", export) for export in exports]
    honest.append(Pair(name, "state_dict", sd_export or first))
    honest += [Pair(name, "module", first, p) for p in post]
    scopes = scopes or {}
    twins = [Twin(Pair(name, "module", twin_export or first), role, scopes.get(role)) for role in roles]
    twins += [Twin(Pair(name, "module", export, p), role, scopes.get(role)) for export, p, role in extra_twins]
    twins += [Twin(Pair(name, "state_dict", sd_export or first), role, scopes.get(role)) for role in sd_twins]
    return Family(name, source, exports, tuple(honest), tuple(twins))


REPARAM_EXPORTS = {"legacy": "model", "legacy-reparam": "reparam", "dynamo-reparam": "reparam"}
REPARAM_SCOPE = {"merged_branch_conv": r"reparam"}


def _ultralytics_family(
    name: str,
    config: str,
    *,
    honest: tuple[tuple[str, str, str], ...],
    twins: tuple[tuple[str, str, str, str], ...],
    exports: dict[str, str],
    scopes: dict[str, str] | None = None,
) -> Family:
    scopes = scopes or {}
    return Family(
        name,
        "ultralytics",
        exports,
        tuple(Pair(name, pt, export, post) for pt, export, post in honest),
        tuple(Twin(Pair(name, pt, export, post), role, scopes.get(role)) for pt, export, post, role in twins),
        config=config,
        pt_kinds=("checkpoint", "checkpoint-ema", "state_dict"),
    )


_U = {"ultralytics": "", "ultralytics-slim": "simplify"}
_BASIC = (("checkpoint", "ultralytics", "none"), ("state_dict", "ultralytics", "none"))
_BASIC_TWINS = (
    ("checkpoint", "ultralytics", "none", "conv_weight"),
    ("checkpoint", "ultralytics", "none", "conv_bias"),
)
"""The tampered twins every Ultralytics family gets: one conv weight channel, one conv bias."""

FAMILIES: tuple[Family, ...] = (
    # ------------------------------------------------------------------ Ultralytics
    _ultralytics_family(
        "yolov8n",
        "yolov8n.yaml",
        exports={**_U, "dynamo": "", "legacy": ""},
        honest=(
            *_BASIC,
            ("checkpoint-ema", "ultralytics", "none"),
            ("checkpoint", "ultralytics-slim", "none"),
            ("checkpoint", "dynamo", "none"),
            ("state_dict", "legacy", "none"),
            ("checkpoint", "ultralytics", "fp16"),
            ("checkpoint", "ultralytics-slim", "ort-extended"),
        ),
        twins=(
            *_BASIC_TWINS,
            ("checkpoint", "ultralytics-slim", "none", "conv_weight"),
            ("checkpoint", "dynamo", "none", "conv_weight"),
            ("checkpoint", "ultralytics", "fp16", "conv_weight"),
            ("checkpoint", "ultralytics-slim", "ort-extended", "conv_weight"),
        ),
    ),
    _ultralytics_family(
        "yolov8n-seg",
        "yolov8n-seg.yaml",
        exports={"ultralytics": ""},
        honest=_BASIC,
        twins=_BASIC_TWINS,
    ),
    _ultralytics_family(
        "yolov8n-pose",
        "yolov8n-pose.yaml",
        exports={"ultralytics": ""},
        honest=_BASIC,
        twins=_BASIC_TWINS,
    ),
    _ultralytics_family(
        "yolo11n",
        "yolo11n.yaml",
        exports={**_U, "dynamo": ""},
        honest=(*_BASIC, ("checkpoint", "ultralytics-slim", "none"), ("checkpoint", "dynamo", "none")),
        twins=(
            *_BASIC_TWINS,
            ("checkpoint", "ultralytics-slim", "none", "conv_bias"),
        ),
    ),
    _ultralytics_family(
        "yolo11n-seg",
        "yolo11n-seg.yaml",
        exports={"ultralytics": ""},
        honest=_BASIC,
        twins=(("checkpoint", "ultralytics", "none", "conv_weight"),),
    ),
    _ultralytics_family(
        "yolo11n-pose",
        "yolo11n-pose.yaml",
        exports={"ultralytics": ""},
        honest=_BASIC,
        twins=(("checkpoint", "ultralytics", "none", "conv_weight"),),
    ),
    _ultralytics_family(
        "yolov10n",
        "yolov10n.yaml",
        exports=_U,
        honest=(*_BASIC, ("checkpoint", "ultralytics-slim", "none")),
        twins=(
            *_BASIC_TWINS,
            ("state_dict", "ultralytics", "none", "conv_weight"),
        ),
    ),
    _ultralytics_family(
        "rtdetr-l",
        "rtdetr-l.yaml",
        exports={"ultralytics": "", "ultralytics-dynamic": "dynamic"},
        honest=(*_BASIC, ("checkpoint", "ultralytics-dynamic", "none")),
        twins=(
            *(
                ("checkpoint", "ultralytics", "none", role)
                for role in (
                    "conv_weight",
                    "conv_bias",
                    "merged_branch_conv",
                    "norm_affine",
                    "linear_weight",
                    "linear_bias",
                )
            ),
            ("checkpoint", "ultralytics-dynamic", "none", "conv_weight"),
            ("checkpoint", "ultralytics-dynamic", "none", "linear_weight"),
        ),
        # RepC3's RepConv blocks, fused by the exporter into one conv named after the RepConv
        scopes={"merged_branch_conv": r"/m/m\.\d+/conv/"},
    ),
    # ------------------------------------------------------------------ torchvision
    _torch_family(
        "resnet18",
        "torchvision",
        ("conv_weight", "conv_bias", "linear_weight", "linear_bias"),
        post=("onnxslim", "ort-basic", "ort-extended", "fp16", "extdata"),
        extra_twins=(
            ("dynamo", "none", "conv_weight"),
            ("legacy", "fp16", "conv_weight"),
            ("legacy", "ort-extended", "conv_bias"),
            ("legacy", "ort-basic", "conv_weight"),
            ("legacy", "onnxslim", "conv_weight"),
            ("legacy", "extdata", "conv_weight"),
        ),
    ),
    _torch_family(
        "mobilenet_v3_small",
        "torchvision",
        ("conv_weight", "conv_bias", "linear_weight"),
        post=("fp16",),
        extra_twins=(("legacy", "fp16", "conv_bias"),),
    ),
    _torch_family(
        "efficientnet_b0",
        "torchvision",
        ("conv_weight", "conv_bias"),
        post=("ort-extended",),
        extra_twins=(("legacy", "ort-extended", "conv_weight"),),
    ),
    _torch_family(
        "convnext_tiny",
        "torchvision",
        ("conv_weight", "norm_affine", "layer_scale", "linear_weight"),
        post=("onnxslim",),
        extra_twins=(("dynamo", "none", "layer_scale"), ("dynamo", "none", "norm_affine")),
    ),
    _torch_family(
        "vit",
        "torchvision",
        ("conv_weight", "class_token", "pos_table", "norm_affine", "linear_weight"),
        post=("onnxslim", "ort-extended", "fp16"),
        extra_twins=(("dynamo", "none", "pos_table"), ("dynamo", "none", "class_token")),
        # the same roles against the state_dict too: a whole pickled torchvision ViT
        # holds a functools.partial, which a safe loader may refuse
        sd_twins=("class_token", "pos_table", "linear_weight"),
    ),
    _torch_family(
        "swin",
        "torchvision",
        ("conv_weight", "pos_table", "norm_affine", "linear_weight"),
        post=("onnxslim",),
        extra_twins=(("dynamo", "none", "pos_table"),),
    ),
    _torch_family("regnet_y_400mf", "torchvision", ("conv_weight", "conv_bias")),
    _torch_family(
        "densenet121",
        "torchvision",
        ("conv_weight", "norm_affine", "linear_weight"),
        post=("ort-basic",),
        extra_twins=(("dynamo", "none", "norm_affine"),),
    ),
    # ------------------------------------------------------------------ timm
    _torch_family("resnet18d", "timm", ("conv_weight", "conv_bias"), post=("extdata",)),
    _torch_family(
        "repvgg_a0",
        "timm",
        ("merged_branch_conv", "conv_bias"),
        exports=REPARAM_EXPORTS,
        twin_export="legacy-reparam",
        sd_export="legacy-reparam",
        scopes=REPARAM_SCOPE,
        post=("onnxslim",),
        extra_twins=(("legacy", "none", "conv_weight"),),
    ),
    _torch_family(
        "mobileone_s0",
        "timm",
        ("merged_branch_conv", "linear_weight"),
        exports=REPARAM_EXPORTS,
        twin_export="legacy-reparam",
        sd_export="legacy-reparam",
        scopes=REPARAM_SCOPE,
        extra_twins=(("legacy", "none", "conv_weight"),),
    ),
    _torch_family(
        "fastvit_t8",
        "timm",
        ("merged_branch_conv", "layer_scale", "conv_bias"),
        exports=REPARAM_EXPORTS,
        twin_export="legacy-reparam",
        sd_export="legacy-reparam",
        scopes=REPARAM_SCOPE,
        extra_twins=(("legacy", "none", "conv_weight"),),
    ),
    _torch_family(
        "deit_tiny",
        "timm",
        ("class_token", "pos_table", "norm_affine", "linear_weight", "linear_bias"),
        post=("ort-extended",),
        extra_twins=(("dynamo", "none", "class_token"), ("dynamo", "none", "pos_table")),
    ),
    _torch_family(
        "levit_128s",
        "timm",
        ("conv_weight", "pos_table", "linear_weight"),
        extra_twins=(("dynamo", "none", "pos_table"),),
    ),
    # ------------------------------------------------------------------ hand-built
    _torch_family("conv1d_bn", "hand", ("conv_weight", "conv_bias")),
    _torch_family("conv3d_bn", "hand", ("conv_weight", "conv_bias")),
    _torch_family("convtranspose2d_bn", "hand", ("conv_weight", "conv_bias")),
    _torch_family("linear_bn1d", "hand", ("linear_weight", "linear_bias")),
    _torch_family(
        "lstm_bi2",
        "hand",
        ("recurrent_weight", "recurrent_input_weight", "recurrent_bias", "linear_weight"),
        post=("onnxslim", "ort-basic"),
        extra_twins=(("dynamo", "none", "recurrent_weight"), ("legacy", "ort-basic", "recurrent_weight")),
    ),
    _torch_family("gru2", "hand", ("recurrent_weight", "recurrent_bias")),
    _torch_family(
        "tied_embedding",
        "hand",
        ("embedding", "linear_weight", "linear_bias", "norm_affine"),
        post=("onnxslim",),
        extra_twins=(("legacy", "onnxslim", "embedding"),),
    ),
)

BY_NAME = {family.name: family for family in FAMILIES}
HONEST: tuple[Pair, ...] = tuple(pair for family in FAMILIES for pair in family.honest)
TWINS: tuple[Twin, ...] = tuple(twin for family in FAMILIES for twin in family.twins)
