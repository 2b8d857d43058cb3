"""Latency of `GET /health` on openma-main under `wrangler dev` next to the native server's,
in one run on one machine: p50/p99 over N sequential requests, and the ratio.

    source deploy/cloudflare/toolchain.sh
    conformance/.venv/bin/python deploy/cloudflare/bench.py --openma target/release/openma [-n 500]

The worker's /health makes four binding calls (two D1 queries, one KV read, one R2 head);
the native one pings its SQLite database and blob directory. A third row times an
authenticated request on the worker (the API-key lookup in D1).
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


def measure(url: str, n: int, headers: dict[str, str] | None = None, expect: int = 200) -> list[float]:
    with httpx2.Client(timeout=30.0, headers=headers or {}) as c:
        for _ in range(20):
            c.get(url)
        out = []
        for _ in range(n):
            t = time.perf_counter()
            r = c.get(url)
            out.append((time.perf_counter() - t) * 1000)
            assert r.status_code == expect, r.text
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
            env={**os.environ, "PLATFORM_ROOT_SECRET": "bench-root-secret-0123456789abcdefghijkl"},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            for line in native.stdout:
                if re.match(r"^openma listening on ", line):
                    break
            rows = []
            for name, url in [("native openma serve", f"http://127.0.0.1:{port}/health"),
                              ("openma-main on wrangler dev", f"{worker.base_url}/health")]:
                xs = measure(url, a.n)
                rows.append((name, pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
            # An authenticated request: one D1 read of api_keys by hash (no route behind it yet).
            xs = measure(f"{worker.base_url}/v1/agents", a.n, {"x-api-key": key}, expect=404)
            auth = ("openma-main, API-key auth (D1)", pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs))
        finally:
            native.terminate()
            native.wait(timeout=20)
            worker.stop()

    print(f"GET /health, {a.n} sequential requests each, after 20 warm-up requests")
    print(f"{'server':<30} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, p50, p99, mean in rows + [auth]:
        print(f"{name:<30} {p50:>8.2f} {p99:>8.2f} {mean:>8.2f}")
    print(f"ratio workers/native: p50 {rows[1][1] / rows[0][1]:.2f}x, p99 {rows[1][2] / rows[0][2]:.2f}x")


if __name__ == "__main__":
    main()
