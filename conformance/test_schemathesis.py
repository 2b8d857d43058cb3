"""Property-based fuzzing of every documented operation: no input may produce a 5xx.

Runs the schemathesis CLI against the server's own `/v1/openapi.json`, on a
server of its own (fresh data dir) so fuzzed objects never leak into the
other tests.

Environment:
  OPENMA_SCHEMATHESIS_EXAMPLES  max examples per operation (default 25)
  OPENMA_SCHEMATHESIS_SEED      hypothesis seed (default 20260401; "random" for a fresh one)
  OPENMA_SCHEMATHESIS_WORKERS   concurrent workers (default 2)
  OPENMA_SCHEMATHESIS_TIMEOUT   hard limit for the whole run in seconds (default 240, max 300)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BETA, start_server

EXAMPLES = int(os.environ.get("OPENMA_SCHEMATHESIS_EXAMPLES", "25"))
SEED = os.environ.get("OPENMA_SCHEMATHESIS_SEED", "20260401")
WORKERS = os.environ.get("OPENMA_SCHEMATHESIS_WORKERS", "2")
HARD_TIMEOUT_S = min(float(os.environ.get("OPENMA_SCHEMATHESIS_TIMEOUT", "240")), 300.0)


@pytest.fixture
def fuzz_server(tmp_path):
    srv = start_server(tmp_path / "fuzz-data")
    yield srv
    srv.stop()


@pytest.mark.timeout(HARD_TIMEOUT_S + 60)
def test_schemathesis_finds_no_server_errors(fuzz_server, tmp_path):
    st = Path(sys.executable).with_name("st")
    assert st.exists(), f"schemathesis CLI not found next to {sys.executable}"
    base = fuzz_server.base_url
    cmd = [
        str(st),
        "run",
        f"{base}/v1/openapi.json",
        "--url",
        base,
        "--header",
        f"Authorization: Bearer {fuzz_server.api_key}",
        "--header",
        f"anthropic-beta: {BETA}",
        "--header",
        "anthropic-version: 2026-10-21",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(EXAMPLES),
        # The stateful phase is unbounded by --max-examples; keep the run bounded.
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        WORKERS,
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path / "report"),
        "--no-color",
    ]
    if SEED != "random":
        cmd += ["--seed", SEED]

    try:
        res = subprocess.run(
            cmd,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=HARD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"")
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        pytest.fail(
            f"schemathesis did not finish within {HARD_TIMEOUT_S:.0f}s "
            f"(lower OPENMA_SCHEMATHESIS_EXAMPLES?)\n{out[-6000:]}"
        )

    output = res.stdout + res.stderr
    tail = "\n".join(output.splitlines()[-200:])
    assert res.returncode == 0, (
        f"schemathesis exited {res.returncode} (server errors or an invalid schema); "
        f"server stderr tail:\n{fuzz_server.stderr_tail()}\n--- schemathesis output ---\n{tail}"
    )
    assert fuzz_server.proc.poll() is None, "the server died during fuzzing"
