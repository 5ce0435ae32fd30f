"""What the server serves: the artifact's task (its preprocessing and assets), N runtime sessions, and the
names clients may call the model by.

Built from an artifact by `ServingModel.from_artifact`, or directly (tests: FakeBackend and the real
tokenizer, no artifact). Warm-up runs every session on the batch shapes it will see before the server says
it is ready, so the first real requests do not pay for allocations and kernel selection.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from inferopt.artifact import Artifact, Placements
from inferopt.batching import BatchPolicy
from inferopt.drift.reference import DriftReference
from inferopt.runtime.base import Arrays, Backend, RuntimeSettings
from inferopt.serve.config import ServeConfig
from inferopt.tasks.base import DEFAULT_PATH, Task


@dataclass
class ServingModel:
    name: str
    artifact_id: str
    task: Task
    backends: list[Backend]
    settings: RuntimeSettings = field(default_factory=RuntimeSettings)
    info: dict[str, object] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # --served-model-name
    # The model paths besides the default one (`backends`): name -> its sessions, and the variant each runs.
    paths: dict[str, list[Backend]] = field(default_factory=dict)
    path_variants: dict[str, str] = field(default_factory=dict)
    drift: DriftReference | None = None  # what live traffic is compared with; None: the artifact has none

    @classmethod
    def from_artifact(
        cls,
        artifact: Artifact,
        *,
        sessions: int | None = None,
        aliases: tuple[str, ...] = (),
        min_warm: int = 1,
        placements: Placements | None = None,
    ) -> ServingModel:
        """Open `sessions` onnxruntime sessions on the default path (default: as many as the artifact's benchmark
        chose) and `min_warm` on each other path; never fewer than `min_warm` on any. Each path opens where its
        benchmark ran (`placements`, default: as the artifact records them, refused where this machine cannot)."""
        from inferopt.runtime.onnx import open_backend
        from inferopt.tasks.registry import for_artifact

        placements = placements or artifact.resolve_placements()
        settings = artifact.settings
        count = max(sessions or settings.sessions, min_warm)
        backends: list[Backend] = [
            open_backend(artifact.model_file, placements.default, settings.intra_op_threads) for _ in range(count)
        ]
        paths: dict[str, list[Backend]] = {
            name: [
                open_backend(file, placements.paths[name], path_settings.intra_op_threads)
                for _ in range(max(1, min_warm))
            ]
            for name, (file, path_settings, _) in artifact.paths.items()
        }
        return cls(
            name=artifact.model_name,
            artifact_id=artifact.artifact_id,
            task=for_artifact(artifact.manifest, artifact.path),
            backends=backends,
            settings=RuntimeSettings(count, settings.intra_op_threads, settings.batch_size),
            info={"recipe": artifact.manifest.get("recipe"), **backends[0].info()},
            aliases=aliases,
            paths=paths,
            path_variants={name: variant for name, (_, _, variant) in artifact.paths.items()},
            drift=DriftReference.read(artifact.drift_file) if artifact.drift_file is not None else None,
        )

    @property
    def all_paths(self) -> dict[str, list[Backend]]:
        """Every model path's sessions, the default one first."""
        return {DEFAULT_PATH: self.backends, **self.paths}

    @property
    def names(self) -> list[str]:
        """The names it answers to by path (KServe, OIP v2): its own, its aliases, its artifact id."""
        return list(dict.fromkeys((self.name, *self.aliases, self.name.rsplit("/", 1)[-1], self.artifact_id)))

    def answers_to(self, name: str) -> bool:
        return name in self.names

    @property
    def public_name(self) -> str:
        """The name responses carry: the first --served-model-name, else the model's own."""
        return self.aliases[0] if self.aliases else self.name


def batch_policy(config: ServeConfig, model: ServingModel) -> BatchPolicy:
    return BatchPolicy(
        max_batch=config.max_batch or model.settings.batch_size,
        max_wait_s=config.max_wait_ms / 1000.0,
        # A single largest input must always fit, whatever the flag says.
        max_tokens=max(config.max_batch_tokens, model.task.max_cost),
        max_queue=config.max_queue,
        max_padding=config.max_padding,
    )


def warm_up(model: ServingModel, policy: BatchPolicy) -> Arrays:
    """Run every session of every model path on every warm-up batch, the sessions in parallel: the server says
    ready only after all of them have run their real shapes. Returns the first batch's outputs on the default
    path, which tell the output shapes."""
    batches = model.task.warmup_batches(policy.max_batch, policy.max_tokens)

    def warm(backend: Backend) -> Arrays:
        # The first batch through run(), not warmup(): its outputs tell the shapes.
        outputs = backend.run(batches[0])
        for batch in batches[1:]:
            backend.warmup(batch)
        return outputs

    sessions = [backend for backends in model.all_paths.values() for backend in backends]
    with ThreadPoolExecutor(len(sessions), thread_name_prefix="inferopt-warmup") as pool:
        outputs = list(pool.map(warm, sessions))
    return outputs[0]
