"""Property-based fuzzing of every documented operation: no input may produce a 5xx.

Runs the schemathesis CLI against the server's own `/v1/openapi.json`, on a
server of its own (fresh data dir) so fuzzed objects never leak into the
other tests.

Environment:
  OPENMA_SCHEMATHESIS_EXAMPLES  max examples per operation (default 50)
  OPENMA_SCHEMATHESIS_SEED      hypothesis seed (default 20260401; "random" for a fresh one)
  OPENMA_SCHEMATHESIS_WORKERS   concurrent workers (default 1: with threads, hypothesis's
                                `ast.parse` of lambda sources races in CPython 3.11 and fails
                                the run with "AST constructor recursion depth mismatch")
  OPENMA_SCHEMATHESIS_TIMEOUT   hard limit for the whole run in seconds (default 240, max 300)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BETA, MODEL, make_client, start_server

EXAMPLES = int(os.environ.get("OPENMA_SCHEMATHESIS_EXAMPLES", "50"))
SEED = os.environ.get("OPENMA_SCHEMATHESIS_SEED", "20260401")
WORKERS = os.environ.get("OPENMA_SCHEMATHESIS_WORKERS", "1")
HARD_TIMEOUT_S = min(float(os.environ.get("OPENMA_SCHEMATHESIS_TIMEOUT", "240")), 300.0)


@pytest.fixture
def fuzz_server(tmp_path):
    srv = start_server(tmp_path / "fuzz-data")
    yield srv
    srv.stop()


def _seed_objects(server) -> dict[str, list[str]]:
    """Real agents, environments, sessions and memory stores, so that fuzzed requests on
    `/{id}` paths reach the handlers instead of stopping at 404."""
    c = make_client(server)
    try:
        agents = [c.beta.agents.create(name=f"fuzz-{i}", model=MODEL, system="s").id for i in range(3)]
        c.beta.agents.update(agents[0], system="second version")
        envs = [
            c.beta.environments.create(
                name=f"fuzz-{i}", config={"type": "cloud", "networking": {"type": "unrestricted"}}
            ).id
            for i in range(3)
        ]
        sessions = [c.beta.sessions.create(agent=agents[i], environment_id=envs[i]).id for i in range(3)]
        stores = [c.beta.memory_stores.create(name=f"fuzz-{i}").id for i in range(3)]
        memories = [c.beta.memory_stores.memories.create(s, path=f"/fuzz/{i}.md", content="x") for i, s in enumerate(stores)]
    finally:
        c.close()
    return {
        "agent_ids": agents,
        "environment_ids": envs,
        "session_ids": sessions,
        "memory_store_ids": stores,
        "memory_ids": [m.id for m in memories],
        "memory_version_ids": [m.memory_version_id for m in memories],
    }


def _config(ids: dict[str, list[str]]) -> str:
    lines = []
    for name, values in ids.items():
        lines += [f"[dictionaries.{name}]", "values = [" + ", ".join(f'"{v}"' for v in values) + "]", ""]
    lines.append("[parameters]")
    for key, dictionary, p in [
        ("path.agent_id", "agent_ids", 0.7),
        ("path.environment_id", "environment_ids", 0.7),
        ("path.session_id", "session_ids", 0.7),
        ("path.memory_store_id", "memory_store_ids", 0.7),
        ("path.memory_id", "memory_ids", 0.7),
        ("path.memory_version_id", "memory_version_ids", 0.7),
        ("query.agent_id", "agent_ids", 0.5),
        ("body.agent", "agent_ids", 0.5),
        ("body.agent_id", "agent_ids", 0.5),
        ("body.environment_id", "environment_ids", 0.5),
    ]:
        lines.append(f'"{key}" = {{ dictionary = "{dictionary}", probability = {p} }}')
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(HARD_TIMEOUT_S + 60)
def test_schemathesis_finds_no_server_errors(fuzz_server, tmp_path):
    st = Path(sys.executable).with_name("st")
    assert st.exists(), f"schemathesis CLI not found next to {sys.executable}"
    base = fuzz_server.base_url
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(_seed_objects(fuzz_server)))
    cmd = [
        str(st),
        "--config-file",
        str(config),
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
        # Authenticate only with the header above; generated x-api-key values
        # would turn most requests into 401s and hide the handlers from the fuzzer.
        "--generation-with-security-parameters",
        "false",
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
