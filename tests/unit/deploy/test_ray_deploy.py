"""`inferopt deploy ray` without Ray: the missing extra is one line naming the install, bad flags are one line naming
the flag, the flags map onto Ray Serve's deployment options, and the replica's ASGI wrapper holds Ray's startup
until the model is ready (and fails it when the model fails), with no Ray and no model involved."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from inferopt.deploy.ray import LOOPBACK_ONLY, RayDeployConfig
from inferopt.deploy.ray_replica import ReplicaApp
from inferopt.errors import InputError
from inferopt.serve.config import ServeConfig


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from inferopt import cli

    monkeypatch.setattr(sys, "argv", ["inferopt", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return int(exit_info.value.code or 0), capsys.readouterr().err


def test_without_ray_the_command_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    monkeypatch.delenv(LOOPBACK_ONLY, raising=False)  # restored after: the command sets it for a local Ray
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code, err = run_cli(monkeypatch, capsys, "deploy", "ray", str(tmp_path))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "pip install 'inferopt[ray]'" in err and "Ray Serve" in err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--replicas", "2", "--max-replicas", "3"], "--replicas"),
        (["--replicas", "0"], "--replicas 0"),
        (["--min-replicas", "2"], "--min-replicas needs --max-replicas"),
        (["--min-replicas", "3", "--max-replicas", "2"], "--max-replicas 2"),
        (["--max-replicas", "2", "--target-ongoing-requests", "0"], "--target-ongoing-requests 0"),
        (["--max-replicas", "2", "--target-ongoing-requests", "64", "--max-ongoing-requests", "32"], "exceeds"),
        (["--max-ongoing-requests", "0"], "--max-ongoing-requests 0"),
        (["--num-cpus", "-1"], "--num-cpus -1"),
        (["--port", "0"], "--port 0"),
        (["--route-prefix", "api"], "--route-prefix 'api'"),
        (["--route-prefix", "/api/"], "--route-prefix '/api/'"),
        (["--name", "a/b"], "--name 'a/b'"),
        (["--no-blocking"], "--no-blocking needs --address"),
        (["--high-throughput", "--address", "127.0.0.1:6379"], "--high-throughput configures the local Ray"),
        (["--metrics-port", "65535", "--replicas", "2"], "--metrics-port 65535"),
        (["--metrics-port", "7999", "--replicas", "2", "--port", "8000"], "overlaps --port 8000"),
        (["--max-batch", "0"], "--max-batch 0"),
        (["--cache", "disk"], "--cache 'disk'"),
        (["--log-level", "loud"], "--log-level 'loud'"),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], named: str
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code, err = run_cli(monkeypatch, capsys, "deploy", "ray", str(tmp_path), *flags)
    assert code == 2, err
    assert named in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_empty_keys_file_is_refused_before_any_replica_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    keys = tmp_path / "keys"
    keys.write_text("# none yet\n")
    code, err = run_cli(monkeypatch, capsys, "deploy", "ray", str(tmp_path), "--api-keys-file", str(keys))
    assert code == 2 and "holds no key" in err and len(err.strip().splitlines()) == 1
    code, err = run_cli(monkeypatch, capsys, "deploy", "ray", str(tmp_path), "--api-key", "has space")
    assert code == 2 and "has whitespace" in err and "has space" not in err


def test_a_pinned_id_is_checked_against_the_artifact() -> None:
    ServeConfig(require_id="b1344a9f7bce8a4a").check_artifact_id("b1344a9f7bce8a4a")
    with pytest.raises(InputError, match="--require-id b1344a9f7bce8a4a: this artifact is 0000000000000000"):
        ServeConfig(require_id="b1344a9f7bce8a4a").check_artifact_id("0000000000000000")


def config(**kwargs: Any) -> RayDeployConfig:
    return RayDeployConfig(serve=ServeConfig(artifact=Path("/a"), drain_timeout_s=7.0), **kwargs)


def test_a_fixed_count_and_autoscaling_become_ray_serve_options() -> None:
    fixed = config(replicas=3, num_cpus=0.5, max_ongoing_requests=100).deployment_options()
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 0.5} and fixed["max_ongoing_requests"] == 100
    assert fixed["graceful_shutdown_timeout_s"] == 7.0  # serve's --drain-timeout-s
    assert fixed["logging_config"] == {"enable_access_log": False}  # inferopt's access log is the one line
    scaled = config(min_replicas=0, max_replicas=4, target_ongoing_requests=16).deployment_options()
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"] == {
        "min_replicas": 0,
        "initial_replicas": 1,  # scale-to-zero still starts one, so deploying proves the model loads
        "max_replicas": 4,
        "target_ongoing_requests": 16,
    }
    assert config().deployment_options()["num_replicas"] == 1
    assert config(route_prefix="/embed", port=9000).url == "http://127.0.0.1:9000/embed"
    with pytest.raises(InputError, match="No artifact"):
        RayDeployConfig(serve=ServeConfig())


class FakeInferoptApp:
    """An ASGI app shaped like create_app's: app.state.inferopt has a phase; the lifespan completes at once (the
    model loads in the background, as in serve/app.py); HTTP requests echo the path they were given."""

    def __init__(self) -> None:
        self.state = SimpleNamespace(inferopt=SimpleNamespace(phase="loading", detail="loading the model"))
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            assert (await receive())["type"] == "lifespan.startup"
            await send({"type": "lifespan.startup.complete"})
            return
        self.seen.append((scope["path"], scope.get("root_path", "")))


def startup(app: ReplicaApp, inner: FakeInferoptApp, outcome: tuple[str, str]) -> tuple[list[str], list[dict]]:
    """Run the lifespan's startup; `outcome` (phase, detail) is reached while it waits. Returns the phases seen
    when each message was sent, and the messages."""
    sent: list[dict] = []
    phases: list[str] = []

    async def receive() -> dict:
        return {"type": "lifespan.startup"}

    async def send(message: dict) -> None:
        phases.append(inner.state.inferopt.phase)
        sent.append(message)

    async def main() -> None:
        task = asyncio.create_task(app({"type": "lifespan"}, receive, send))
        await asyncio.sleep(0.2)
        assert sent == []  # held while the model loads
        inner.state.inferopt.phase, inner.state.inferopt.detail = outcome
        await asyncio.wait_for(task, 2)

    asyncio.run(main())
    return phases, sent


def test_the_replica_reports_started_only_once_the_model_is_ready() -> None:
    inner = FakeInferoptApp()
    phases, sent = startup(ReplicaApp(inner), inner, ("ready", "ready"))
    assert sent == [{"type": "lifespan.startup.complete"}] and phases == ["ready"]


def test_a_model_that_fails_to_load_fails_the_replica_startup_and_its_health_check() -> None:
    inner = FakeInferoptApp()
    app = ReplicaApp(inner)
    _, sent = startup(app, inner, ("failed", "loading failed: no such file"))
    assert sent == [{"type": "lifespan.startup.failed", "message": "loading failed: no such file"}]
    with pytest.raises(RuntimeError, match="no such file"):
        app.check_health()


def test_a_ready_replica_serves_its_own_metrics_on_its_port() -> None:
    from inferopt.serve.testing import free_port

    inner = FakeInferoptApp()
    inner.state.inferopt.metrics = SimpleNamespace(render=lambda: b"inferopt_up 1\n")
    inner.state.inferopt.ready = SimpleNamespace(drift=None)
    port = free_port()
    app = ReplicaApp(inner, metrics_at=lambda: ("127.0.0.1", port))

    async def receive() -> dict:
        return {"type": "lifespan.startup"}

    async def sent(_: dict) -> None:
        return None

    async def get(request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        answer = await reader.read()
        writer.close()
        return answer

    async def main() -> tuple[bytes, bytes]:
        inner.state.inferopt.phase = "ready"
        await app({"type": "lifespan"}, receive, sent)
        scraped = await get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        posted = await get(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert app.metrics_server is not None
        app.metrics_server.close()
        return scraped, posted

    scraped, posted = asyncio.run(main())
    assert scraped.startswith(b"HTTP/1.1 200 OK") and scraped.endswith(b"\r\n\r\ninferopt_up 1\n")
    assert b"Content-Type: text/plain" in scraped
    assert posted.startswith(b"HTTP/1.1 405")


@pytest.mark.parametrize(("device", "gpus"), [(None, 1.0), ("cpu", 0.0)])
def test_a_gpu_measured_artifact_reserves_a_gpu_per_replica_unless_sent_to_the_cpu(
    device: str | None, gpus: float
) -> None:
    from inferopt.artifact import Artifact
    from inferopt.deploy.ray import _with_artifact
    from inferopt.runtime.placement import Placement

    artifact = Artifact(Path("/a"), {"runtime": {"placement": Placement.cuda().to_dict()}, "files": {}})
    deployed = _with_artifact(RayDeployConfig(serve=ServeConfig(Path("a"), device=device), replicas=2), artifact)
    assert deployed.num_gpus == gpus and deployed.serve.artifact == Path("/a").resolve()
    actor = deployed.deployment_options()["ray_actor_options"]
    assert actor == ({"num_cpus": 1.0, "num_gpus": 1.0} if gpus else {"num_cpus": 1.0})
    assert ("1 GPU each" in deployed.describe()) == bool(gpus)
