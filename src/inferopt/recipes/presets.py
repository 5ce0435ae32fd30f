"""The default set of variants optimize builds, by what the model is (its fusion profile), whether there is a
PyTorch module to run, and what the CPU can do."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from inferopt.accuracy.budget import Budget
from inferopt.hardware import CpuInfo

SMOOTHING_CANDIDATES = (0.6, 0.7, 0.8)


def default_recipes(
    cpu: CpuInfo,
    fusion: str,
    budget: Budget,
    *,
    quick: bool,
    torch: bool,
    gpu: tuple[str, ...] = (),
    distill_minutes: float = 0.0,
    seed: int = 0,
) -> list[Any]:
    """`fusion`: the source's fusion profile kind; `torch`: whether a PyTorch module exists (not for a user's
    ONNX file); `gpu`: the GPU providers this machine has (runtime/placement.py's gpu_providers), whose variants
    are measured beside the CPU ones and chosen among them by the same budget; `distill_minutes`: the training
    budget of each pruned + distilled student (full runs with a PyTorch module only; 0: none, which is what a
    task without distillation data passes)."""
    students = _student_recipes(cpu, fusion, distill_minutes, seed) if torch and not quick and distill_minutes else []
    return _cpu_recipes(cpu, fusion, budget, quick=quick, torch=torch) + students + _gpu_recipes(gpu, quick=quick)


STUDENT_LAYER_SHARE = 1 / 3  # transformer students: 4 of MiniLM's 6 layers, the least missed 2 removed
STUDENT_CHANNEL_SHARE = 0.25  # CNN students: a quarter of each block's expanded channels
STUDENT_HIDDEN_SHARE = 0.5  # MLP students (the risk scorer, a recommender's MLP): half the hidden units


def _student_recipes(cpu: CpuInfo, fusion: str, minutes: float, seed: int) -> list[Any]:
    """One student per model, in two forms that share its pruning and distillation: as exported (fused for
    transformers) and with per-channel dynamic INT8 on that (the plain INT8 preset for this CPU), so the
    selection sees whether fewer multiplies and cheaper ones compound."""
    from inferopt.recipes.graph import GraphConfig
    from inferopt.recipes.int8_dynamic import DynamicInt8Config
    from inferopt.recipes.prune import PruneConfig

    if fusion == "bert":
        student = PruneConfig(
            name="student-layers", drop_layers=STUDENT_LAYER_SHARE, distill_minutes=minutes, seed=seed
        )
        return [
            replace(student, name="student-layers-fused", then=GraphConfig(name="fused", transformer_fusions=True)),
            replace(student, name="student-layers-int8", then=DynamicInt8Config.for_cpu(cpu)),
        ]
    if fusion == "none":
        student = PruneConfig(
            name="student-hidden", drop_hidden=STUDENT_HIDDEN_SHARE, distill_minutes=minutes, seed=seed
        )
        return [student, replace(student, name="student-hidden-int8", then=_plain_int8(cpu))]
    if fusion == "cnn":
        from inferopt.recipes.int8_static import StaticInt8Config

        student = PruneConfig(
            name="student-channels", drop_channels=STUDENT_CHANNEL_SHARE, distill_minutes=minutes, seed=seed
        )
        int8 = StaticInt8Config(
            name="int8-static-percentile",
            op_types=(),
            calibration_method="percentile",
            calibration_items=64,
            reduce_range=not cpu.has_int8_dot,
        )
        return [student, replace(student, name="student-channels-int8", then=int8)]
    if fusion == "embedding":
        from inferopt.recipes.embedding_int8 import EmbeddingInt8Config

        student = PruneConfig(
            name="student-hidden", drop_hidden=STUDENT_HIDDEN_SHARE, distill_minutes=minutes, seed=seed
        )
        both = EmbeddingInt8Config(
            name="int8-tables-matmul", tables=True, linear=True, reduce_range=not cpu.has_int8_dot
        )
        return [student, replace(student, name="student-hidden-int8", then=both)]
    return []


def _plain_int8(cpu: CpuInfo) -> Any:
    from inferopt.recipes.int8_dynamic import DynamicInt8Config

    return DynamicInt8Config.for_cpu(cpu, name="int8-dynamic", graph="plain")


def _gpu_recipes(providers: tuple[str, ...], *, quick: bool) -> list[Any]:
    from inferopt.recipes.gpu import GpuConfig
    from inferopt.runtime.placement import CUDA, TENSORRT

    if CUDA not in providers:
        return []
    recipes: list[Any] = [] if quick else [GpuConfig(name="onnx-fp32-cuda", precision="fp32")]
    recipes.append(GpuConfig(name="onnx-fp16-cuda"))
    if TENSORRT in providers:
        recipes.append(GpuConfig(name="tensorrt-fp16", provider="tensorrt"))
    return recipes


def _cpu_recipes(cpu: CpuInfo, fusion: str, budget: Budget, *, quick: bool, torch: bool) -> list[Any]:
    from inferopt.recipes.half import HalfPrecisionConfig
    from inferopt.recipes.torch_eager import TorchEagerConfig

    baselines: list[Any] = [TorchEagerConfig()] if torch else []
    if torch and not quick and HalfPrecisionConfig.available(cpu):
        baselines.append(HalfPrecisionConfig())
    if fusion == "bert":
        return baselines + _transformer_recipes(cpu, budget, quick=quick)
    if fusion == "cnn":
        return baselines + _cnn_recipes(cpu, quick=quick)
    if fusion == "embedding":
        return baselines + _embedding_recipes(cpu, quick=quick)
    return baselines + _plain_recipes(cpu, quick=quick)


def _transformer_recipes(cpu: CpuInfo, budget: Budget, *, quick: bool) -> list[Any]:
    from inferopt.recipes.graph import GraphConfig
    from inferopt.recipes.int8_dynamic import DynamicInt8Config
    from inferopt.recipes.int8_sensitivity import SensitivityInt8Config
    from inferopt.recipes.int8_static import StaticInt8Config

    fused = GraphConfig(name="onnx-fused", transformer_fusions=True)
    if quick:
        return [fused, DynamicInt8Config.study_default(), DynamicInt8Config.smoothquant(cpu, 0.7)]
    limits = budget.to_dict()
    # The guided recipe aims a little above the budget: it calibrates on other data than the eval set.
    sensitivity = SensitivityInt8Config(
        reduce_range=not cpu.has_int8_dot,
        target_mean_cosine=max(0.995, limits.get("mean_cosine", 0.0) + 0.001),
        target_min_cosine=max(0.98, limits.get("min_cosine", 0.0) + 0.005),
    )
    return [
        GraphConfig(),
        fused,
        DynamicInt8Config.study_default(),
        DynamicInt8Config.for_cpu(cpu),
        DynamicInt8Config.matmul_only(cpu),
        # Smoothing strengths are candidates, not a tuned constant: the eval data decides among them.
        *(DynamicInt8Config.smoothquant(cpu, alpha) for alpha in SMOOTHING_CANDIDATES),
        sensitivity,
        StaticInt8Config(),
    ]


CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
LINEAR = ("MatMul", "Gemm")


def _cnn_recipes(cpu: CpuInfo, *, quick: bool) -> list[Any]:
    """Convolutional nets: the FP32 graph (the session fuses Conv + activation; the export already folded
    BatchNorm into the convolutions), static QDQ INT8 with per-channel weights under each calibration method
    (naive per-tensor static INT8 is where CNNs lose most), and dynamic INT8 where it applies: the linear layers
    (the classifier head). Dynamic INT8 of the convolutions (ConvInteger) is left out: on EfficientNet-Lite0 it
    measured 0.54 top-1 agreement at 15 images/s, against FP32's 57 on the same host and run."""
    from inferopt.recipes.graph import GraphConfig
    from inferopt.recipes.int8_dynamic import DynamicInt8Config
    from inferopt.recipes.int8_static import StaticInt8Config

    def static(method: str) -> StaticInt8Config:
        return StaticInt8Config(
            name=f"int8-static-{method}",
            op_types=(),
            calibration_method=method,
            calibration_items=64,
            reduce_range=not cpu.has_int8_dot,
        )

    methods = ("percentile",) if quick else CALIBRATION_METHODS
    dynamic = replace(DynamicInt8Config.for_cpu(cpu, name="int8-dynamic-linear", graph="plain"), op_types=LINEAR)
    return [GraphConfig(), *(static(m) for m in methods), *([] if quick else [dynamic])]


def _embedding_recipes(cpu: CpuInfo, *, quick: bool) -> list[Any]:
    """Embedding tables plus an MLP (recommenders): the FP32 graph, row-wise INT8 tables, INT8 MatMul on the
    MLP, both, and FP16 storage of the weights."""
    from inferopt.recipes.embedding_int8 import EmbeddingInt8Config
    from inferopt.recipes.fp16_storage import FP16StorageConfig
    from inferopt.recipes.graph import GraphConfig

    reduce = not cpu.has_int8_dot
    both = EmbeddingInt8Config(name="int8-tables-matmul", tables=True, linear=True, reduce_range=reduce)
    if quick:
        return [GraphConfig(), both]
    return [
        GraphConfig(),
        EmbeddingInt8Config(name="int8-tables"),
        EmbeddingInt8Config(name="int8-matmul", tables=False, linear=True, reduce_range=reduce),
        both,
        FP16StorageConfig(),
    ]


def _plain_recipes(cpu: CpuInfo, *, quick: bool) -> list[Any]:
    """Any other graph (CNNs, recurrent nets, MLPs): the export as is, INT8 dynamic on the ops ONNX Runtime
    quantizes by default (MatMul, Gemm, LSTM, Gather, ...), and static QDQ INT8 on its default ops (Conv,
    MatMul, Gemm, ...)."""
    from inferopt.recipes.graph import GraphConfig
    from inferopt.recipes.int8_dynamic import DynamicInt8Config
    from inferopt.recipes.int8_static import StaticInt8Config

    dynamic = DynamicInt8Config.for_cpu(cpu, name="int8-dynamic", graph="plain")
    if quick:
        return [GraphConfig(), dynamic]
    return [GraphConfig(), dynamic, StaticInt8Config(op_types=())]
