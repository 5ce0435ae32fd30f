"""ServeConfig: validation as one-line errors, the cache flag, flags and INFEROPT_* variables, defaults from
the artifact, warm-up shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inferopt.errors import InputError
from inferopt.runtime.base import RuntimeSettings
from inferopt.runtime.fake import FakeBackend
from inferopt.serve.config import ServeConfig
from inferopt.serve.model import ServingModel, batch_policy
from inferopt.serve.testing import bundled_text_task


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_queue": 0}, "--max-queue 0 must be at least 1"),
        ({"port": 70000}, "--port 70000 is not a TCP port"),
        ({"max_wait_ms": -1}, "--max-wait-ms -1 is negative"),
        ({"max_padding": 1.5}, "--max-padding 1.5 is not a share"),
        ({"max_items": 10, "max_queue": 5}, "--max-items 10 exceeds --max-queue 5"),
        ({"cache": "memcached://x"}, "--cache 'memcached://x' is not understood"),
        ({"cache": "redis://127.0.0.1:6379/zero"}, "the database 'zero' is not a number"),
        ({"jobs": "memory"}, "--jobs 'memory' is not understood"),
        ({"jobs_concurrency": 0}, "--jobs-concurrency 0 must be at least 1"),
        ({"runtime_nice": 20}, "--runtime-nice 20 is not a niceness step"),
        ({"runtime_nice": -1}, "--runtime-nice -1 is not a niceness step"),
        ({"device": "gpu"}, "--device 'gpu' is not a choice"),
        (
            {"jobs": "redis://127.0.0.1:6379/14", "jobs_chunk_items": 64, "max_queue": 32},
            "--jobs-chunk-items 64 exceeds",
        ),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message) as refused:
        ServeConfig(**kwargs)
    assert "\n" not in str(refused.value)


def test_items_per_request_follows_a_small_queue_unless_set() -> None:
    assert ServeConfig().items_per_request == 2048
    assert ServeConfig(max_queue=1000).items_per_request == 1000  # --max-queue alone must not be refused
    assert ServeConfig(max_queue=1000, max_items=10).items_per_request == 10


def test_cache_modes() -> None:
    assert ServeConfig().cache_enabled and ServeConfig().redis_url is None
    assert not ServeConfig(cache="off").cache_enabled
    assert ServeConfig(cache="redis://127.0.0.1:6379/3").redis_url == "redis://127.0.0.1:6379/3"


def test_defaults_come_from_the_artifacts_settings(minilm_dir: Path) -> None:
    task = bundled_text_task(256)
    model = ServingModel(
        "m", "id", task, [FakeBackend(4)], settings=RuntimeSettings(sessions=1, intra_op_threads=2, batch_size=16)
    )
    assert batch_policy(ServeConfig(), model).max_batch == 16
    policy = batch_policy(ServeConfig(max_batch=8, max_wait_ms=3, max_batch_tokens=100), model)
    assert (policy.max_batch, policy.max_wait_s, policy.max_tokens) == (8, 0.003, 256)  # >= one longest input
    shapes = [batch["input_ids"].shape for batch in task.warmup_batches(policy.max_batch, policy.max_tokens)]
    assert shapes == [(1, 16), (1, 256), (8, 16)]


def test_served_model_names_must_be_names() -> None:
    assert ServeConfig(served_model_names=("text-embedding-3-small",)).served_model_names == ("text-embedding-3-small",)
    for bad in ("", "a/b"):
        with pytest.raises(InputError, match="cannot be a model name"):
            ServeConfig(served_model_names=(bad,))


def test_flags_and_environment_reach_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The command builds ServeConfig from flags, falling back to INFEROPT_* variables."""
    import typer

    from inferopt.serve import command

    seen: list[ServeConfig] = []
    monkeypatch.setattr(command, "serve", lambda config, log_level: seen.append(config))
    app = typer.Typer()
    app.command()(command.serve_command)
    env = {"INFEROPT_MAX_WAIT_MS": "7.5", "INFEROPT_CACHE": "off", "INFEROPT_PORT": "9"}
    result = CliRunner().invoke(app, [str(tmp_path), "--port", "8123", "--max-batch", "4"], env=env)
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.port, config.max_batch, config.max_wait_ms, config.cache) == (8123, 4, 7.5, "off")
    assert config.artifact == tmp_path and config.sessions is None and config.device is None
    result = CliRunner().invoke(app, [str(tmp_path), "--device", "cpu"], env=env)
    assert result.exit_code == 0 and seen[-1].device == "cpu", result.output


def test_served_model_names_come_from_flags_or_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import typer

    from inferopt.serve import command

    seen: list[ServeConfig] = []
    monkeypatch.setattr(command, "serve", lambda config, log_level: seen.append(config))
    app = typer.Typer()
    app.command()(command.serve_command)
    runner = CliRunner()
    flags = runner.invoke(app, [str(tmp_path), "--served-model-name", "a", "--served-model-name", "b"])
    env = runner.invoke(app, [str(tmp_path)], env={"INFEROPT_SERVED_MODEL_NAMES": "text-embedding-3-small default"})
    assert flags.exit_code == env.exit_code == 0, flags.output + env.output
    assert [c.served_model_names for c in seen] == [("a", "b"), ("text-embedding-3-small", "default")]


def test_job_flags_come_from_flags_or_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import typer

    from inferopt.serve import command

    seen: list[ServeConfig] = []
    monkeypatch.setattr(command, "serve", lambda config, log_level: seen.append(config))
    app = typer.Typer()
    app.command()(command.serve_command)
    env = {"INFEROPT_JOBS": "redis://127.0.0.1:6379/2", "INFEROPT_JOBS_TTL": "60"}
    flags = ["--jobs-concurrency", "3", "--jobs-max-items", "50", "--jobs-max-pending", "7", "--jobs-chunk-items", "8"]
    result = CliRunner().invoke(app, [str(tmp_path), *flags], env=env)
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.jobs, config.jobs_ttl, config.jobs_concurrency) == ("redis://127.0.0.1:6379/2", 60, 3)
    assert (config.jobs_max_items, config.jobs_max_pending, config.jobs_chunk_items) == (50, 7, 8)
    assert ServeConfig().jobs is None and ServeConfig().jobs_max_request_bytes == 32 * 1024 * 1024
