"""How fast can `inferopt load` send, and does it count like a tool nobody here wrote?

    python benchmarks/loadgen_ceiling.py [--rates 1000 2000 3000 4000 6000 8000] [--duration 10]
                                         [--concurrency 16] [--workers 1] [--json OUT]

1. Ceiling: open-loop runs against a trivial loopback endpoint (fixed JSON answer, uvloop) at rising
   rates; the ceiling is the highest rate that is still VALID (<= 1% of requests sent > 1 ms late) and
   achieved within 2% of the offered rate.
2. Cross-check: closed loop at a fixed concurrency, `inferopt load --concurrency N` and `wrk -t1 -cN`
   against the same server in the same run: a CPU-bound server that spends 0.5 ms of CPU on each request,
   one at a time, like a model server (the server, not the client, sets the pace, so both must measure the
   same throughput), then the trivial endpoint (the client's own CPU cost decides; a C tool is expected to
   win there).

Both servers run as subprocesses of this script (`--serve trivial|busy --port P`). Ratios within one run
are what count: absolute numbers drift with whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BODY = b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.6,0.8]}],"model":"trivial"}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
REQUEST_BODY = '{"input": "A man with a hard hat is dancing."}'
BUSY_S = 0.0005


class _Endpoint(asyncio.Protocol):
    """Reads requests framed by Content-Length; answers each with RESPONSE, at once or after BUSY_S of CPU."""

    def __init__(self, busy: bool) -> None:
        self.busy = busy
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            start = head.find(b"content-length:")
            length = int(head[start + 15 :].split(b"\r\n", 1)[0]) if start >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            if self.busy:  # a model's forward pass: the CPU is busy and nothing else on this loop runs
                until = time.perf_counter() + BUSY_S
                while time.perf_counter() < until:
                    pass
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]


def serve(kind: str, port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Endpoint(kind == "busy"), "127.0.0.1", port, backlog=4096)
        await server.serve_forever()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, f"http://127.0.0.1:{port}/v1/embeddings"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start")


def inferopt_load(url: str, inputs: Path, duration: float, *extra: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", "inferopt", "load", url, "--duration", str(duration), "--warmup", "2",
               "--inputs", str(inputs), "--json", out.name, *extra]  # fmt: skip
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
        return json.loads(Path(out.name).read_text(encoding="utf-8"))


def wrk_throughput(url: str, concurrency: int, duration: float) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(REQUEST_BODY)}\n'
                     'wrk.headers["Content-Type"] = "application/json"\n')  # fmt: skip
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{int(duration)}s", "-s", script.name, url]
    output = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    Path(script.name).unlink()
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    return float(match.group(1))


def ceiling(url: str, inputs: Path, rates: list[float], duration: float, workers: int) -> list[dict[str, Any]]:
    rows = []
    for rate in rates:
        r = inferopt_load(url, inputs, duration, "--rate", str(rate), "--workers", str(workers))
        lat, lag = r["latency_ms"], r["dispatch_lag_ms"]
        row = {"rate": rate, "achieved": r["achieved_rate"], "late_pct": 100 * r["late_fraction"],
               "lag_p99_ms": lag["p99"], "p50_ms": lat["p50"], "p99_ms": lat["p99"], "valid": r["valid"],
               "errors": sum(r["errors"].values())}  # fmt: skip
        rows.append(row)
        print(f"  open loop {rate:>7.0f} req/s: achieved {row['achieved']:>8.1f}  late {row['late_pct']:.2f}%  "
              f"lag p99 {row['lag_p99_ms']} ms  p99 {row['p99_ms']} ms  {'VALID' if row['valid'] else 'INVALID'}",
              flush=True)  # fmt: skip
    return rows


def cross_check(url: str, inputs: Path, concurrency: int, duration: float) -> dict[str, float]:
    ours = inferopt_load(url, inputs, duration + 2, "--concurrency", str(concurrency))["achieved_rate"]
    theirs = wrk_throughput(url, concurrency, duration)
    return {"inferopt": float(ours), "wrk": theirs, "ratio": float(ours) / theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", choices=["trivial", "busy"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rates", type=float, nargs="+", default=[1000, 2000, 3000, 4000, 6000, 8000])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    inputs = Path(tempfile.mkdtemp()) / "inputs.txt"
    inputs.write_text(json.loads(REQUEST_BODY)["input"] + "\n", encoding="utf-8")
    from inferopt.hardware import environment

    results: dict[str, Any] = {"date": time.strftime("%F"), "environment": environment()}
    trivial, trivial_url = start_server("trivial")
    busy, busy_url = start_server("busy")
    try:
        print(f"1. ceiling, open loop, {args.workers} sender process(es), {args.duration:g}s per rate", flush=True)
        results["ceiling"] = rows = ceiling(trivial_url, inputs, args.rates, args.duration, args.workers)
        good = [r["rate"] for r in rows if r["valid"] and not r["errors"] and r["achieved"] >= 0.98 * r["rate"]]
        results["ceiling_rate"] = max(good) if good else None
        print(f"   ceiling: {results['ceiling_rate']} req/s")
        for name, url in (("busy 0.5 ms", busy_url), ("trivial", trivial_url)):
            check = cross_check(url, inputs, args.concurrency, args.duration)
            results[f"cross_check_{name.split()[0]}"] = check
            print(f"2. closed loop c={args.concurrency}, {name} server: inferopt {check['inferopt']:.1f} req/s, "
                  f"wrk {check['wrk']:.1f} req/s, ratio {check['ratio']:.3f}", flush=True)  # fmt: skip
    finally:
        for proc in (trivial, busy):
            proc.terminate()
            proc.wait()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
