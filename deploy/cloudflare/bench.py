"""Request latency of openma-main under `wrangler dev` next to the native server's, in one
run on one machine: p50/p99 over N sequential requests per row, and the ratios.

    source deploy/cloudflare/toolchain.sh
    conformance/.venv/bin/python deploy/cloudflare/bench.py --openma target/release/openma [-n 500]

Rows: `GET /health` (the worker makes four binding calls: two D1 queries, one KV read, one
R2 head; the native server pings its SQLite database and blob directory), `POST /v1/agents`
(authentication, then an agent and its first version written in one transaction — one D1
batch on the worker) and `GET /v1/agents/{id}` (authentication and one read).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
from conftest import Deployment, free_port  # noqa: E402


def measure(url: str, n: int, headers: dict[str, str] | None = None, body: dict | None = None) -> list[float]:
    """Milliseconds of `n` sequential requests (a POST of `body` when given, else a GET)."""
    def send(c: httpx2.Client) -> httpx2.Response:
        return c.post(url, json=body) if body is not None else c.get(url)

    with httpx2.Client(timeout=30.0, headers=headers or {}) as c:
        for _ in range(20):
            send(c)
        out = []
        for _ in range(n):
            t = time.perf_counter()
            r = send(c)
            out.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--openma", required=True, help="the native openma binary")
    ap.add_argument("-n", type=int, default=500, help="requests per server")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "state").mkdir()
        d = Deployment(state=tmp / "state", tmp=tmp)
        d.apply_migrations()
        key = "sk-oma-bench-bootstrap-key-0123456789"
        worker = d.start("main", {"PLATFORM_ROOT_SECRET": "bench-root-secret-0123456789abcdefghijkl",
                                  "OPENMA_BOOTSTRAP_API_KEY": key})
        port = free_port()
        native = subprocess.Popen(
            [a.openma, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp / "native")],
            env={**os.environ, "PLATFORM_ROOT_SECRET": "bench-root-secret-0123456789abcdefghijkl", "OPENMA_BOOTSTRAP_API_KEY": key,
                 "OPENMA_RATE_LIMIT_PER_MINUTE": "0"},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        auth = {"x-api-key": key, "anthropic-beta": "managed-agents-2026-04-01"}
        agent = {"name": "bench", "model": "claude-sonnet-4-5", "system": "You are terse."}
        rows: dict[str, list[tuple[float, float, float]]] = {}
        try:
            for line in native.stdout:
                if re.match(r"^openma listening on ", line):
                    break
            for base in (f"http://127.0.0.1:{port}", worker.base_url):
                one = httpx2.post(f"{base}/v1/agents", json=agent, headers=auth, timeout=30.0).json()["id"]
                for name, url, headers, body in [
                    ("GET /health", f"{base}/health", None, None),
                    ("POST /v1/agents", f"{base}/v1/agents", auth, agent),
                    ("GET /v1/agents/{id}", f"{base}/v1/agents/{one}", auth, None),
                ]:
                    xs = measure(url, a.n, headers, body)
                    rows.setdefault(name, []).append((pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
        finally:
            native.terminate()
            native.wait(timeout=20)
            worker.stop()

    print(f"{a.n} sequential requests per row, after 20 warm-up requests; ms")
    print(f"{'request':<22} {'native p50':>10} {'p99':>7} {'mean':>7} {'worker p50':>11} {'p99':>7} {'mean':>7} {'ratio p50':>10} {'p99':>6}")
    for name, ((np50, np99, nmean), (wp50, wp99, wmean)) in rows.items():
        print(f"{name:<22} {np50:>10.2f} {np99:>7.2f} {nmean:>7.2f} {wp50:>11.2f} {wp99:>7.2f} {wmean:>7.2f} "
              f"{wp50 / np50:>9.1f}x {wp99 / np99:>5.1f}x")


if __name__ == "__main__":
    main()
