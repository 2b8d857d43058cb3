"""The native server's official-SDK conformance suites, run unchanged against the Workers
under `wrangler dev` (conformance/conftest.py's target mode) — openma-main with the
openma-agent it binds, whose SessionDOs call the scripted fake model over loopback — plus
tenant isolation on D1 and the deployment guide's smoke test, as written.

Each suite in SUITES runs in a child pytest with OPENMA_TARGET_URL and
OPENMA_TARGET_API_KEY set, less the tests SUITES names with the reason; its own output is
shown when it fails."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anthropic
import httpx2
import pytest
from conftest import free_port, script, start_sandbox_server

REPO = Path(__file__).resolve().parents[3]
SECRET = "test-root-secret-0123456789abcdefghijklmnop"
KEY_A = "sk-oma-workers-conformance-key-a-0123456789"
KEY_B = "sk-oma-workers-conformance-key-b-0123456789"
MODEL_KEY = "sk-ant-workers-model-key-never-stored-0123456789"
SUITE_TIMEOUT_S = 600

# The suites the Workers pass, each with the tests left out (and why); none may skip.
SUITES = {
    "test_agents.py": {},
    "test_environments.py": {},
    "test_file_blocks.py": {},
    "test_files.py": {},
    "test_memory_mounts.py": {},
    "test_memory_stores.py": {},
    "test_model_cards.py": {},
    "test_sessions.py": {},
    "test_session_runtime.py": {},
    "test_session_threads.py": {},
    "test_session_tool_runner.py": {},
    "test_skills.py": {},
    "test_vaults.py": {},
}
SANDBOX_TOKEN = "sbx-workers-conformance-0123456789abcdef"
FAKE_MODEL_BIN = Path(os.environ.get("OPENMA_FAKE_MODEL_BIN", str(REPO / "target" / "debug" / "openma-fake-model")))
# Further tenants, for the suites' cross-tenant tests (the native suite makes them with the
# admin CLI, which the Workers do not have).
SPARE_KEYS = [f"sk-oma-workers-spare-{i}-{'0' * 24}" for i in range(4)]


def tenant_rows(name: str, key: str) -> str:
    """A tenant and its key, written as `openma api-keys create` would: only the key's
    SHA-256 is stored."""
    return (
        f"INSERT INTO tenants (id, name, created_at) VALUES ('tenant_{name}', '{name}', 1);"
        "INSERT INTO api_keys (id, tenant_id, name, prefix, hash, created_at) "
        f"VALUES ('apikey_{name}', 'tenant_{name}', 'k', '{key[:13]}', '{hashlib.sha256(key.encode()).hexdigest()}', 1);"
    )


@pytest.fixture(scope="module")
def fake_model(tmp_path_factory):
    """The scripted model (openma-fake-model) the SessionDOs call over loopback."""
    assert FAKE_MODEL_BIN.exists(), f"{FAKE_MODEL_BIN} is missing: cargo build -p openma-fake-model"
    log = tmp_path_factory.mktemp("fake-model") / "stderr.log"
    proc = subprocess.Popen([str(FAKE_MODEL_BIN), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    line = proc.stdout.readline().strip()
    ready = re.match(r"^fake model listening on (http://127\.0\.0\.1:\d+)/?$", line)
    assert ready, f"the fake model did not start: {line!r} {log.read_text()}"
    yield ready.group(1)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sandbox_server():
    """The stand-in for the SessionDOs' containers, shared by the module's tests."""
    # outside pytest's own folder, which any other pytest run closes to other users (0700),
    # and each session's sandbox runs as a user of its own
    root = Path(tempfile.mkdtemp(prefix="openma-sandbox-server-"))
    proc, url = start_sandbox_server(root, SANDBOX_TOKEN)
    yield {"url": url, "sessions": root / "sessions", "log": root / "stderr.log"}
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(root, ignore_errors=True)


def agent_vars(fake_model: str, sandbox_server: dict, **extra: str) -> dict[str, str]:
    """openma-agent's secrets and vars: the scripted model, the root secret (to open model
    card keys), the sandbox server, and the back-off the native suite runs with
    (conformance/conftest.py), so retries take ms."""
    return {"ANTHROPIC_API_KEY": MODEL_KEY, "ANTHROPIC_BASE_URL": fake_model, "OPENMA_MODEL_MAX_RETRIES": "2", "OPENMA_MODEL_RETRY_BASE_MS": "20",
            "PLATFORM_ROOT_SECRET": SECRET,
            "OPENMA_SANDBOX_URL": sandbox_server["url"], "OPENMA_SANDBOX_TOKEN": SANDBOX_TOKEN, **extra}


@pytest.fixture
def main(deployment, fake_model, sandbox_server):
    deployment.apply_migrations()
    # Written before the worker starts: two workerd processes writing one local SQLite
    # file can hold each other up for minutes.
    tenants = [("b", KEY_B), *((f"spare{i}", k) for i, k in enumerate(SPARE_KEYS))]
    deployment.d1("".join(tenant_rows(name, key) for name, key in tenants))
    return deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A}, bound={"agent": agent_vars(fake_model, sandbox_server)})


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_the_native_conformance_suite_passes_against_the_workers(main, fake_model, suite, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENMA_"))}
    env.update({
        "OPENMA_TARGET_URL": main.base_url, "OPENMA_TARGET_API_KEY": KEY_A, "OPENMA_TARGET_TENANT_KEYS": ",".join(SPARE_KEYS),
        "OPENMA_TARGET_FAKE_MODEL_URL": fake_model,
    })
    left_out = [arg for name in SUITES[suite] for arg in ("--deselect", f"{suite}::{name}")]
    r = subprocess.run(
        # its own base temp: a pytest using the shared one takes other users' access to
        # /tmp/pytest-of-<user> away, and with it the sandbox user's path to the server's root
        [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "suite"), suite, *left_out],
        cwd=REPO / "conformance", env=env, capture_output=True, text=True, timeout=SUITE_TIMEOUT_S, check=False,
    )
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    print(f"conformance/{suite} against wrangler dev: {summary}")
    failed = "\n".join(line for line in r.stdout.splitlines() if line.startswith(("FAILED ", "ERROR ")))
    assert r.returncode == 0, f"{suite} failed against the Workers:\n{failed}\n{r.stdout[-12000:]}\n{r.stderr[-4000:]}\n{main.output()[-4000:]}"
    assert "skipped" not in summary, f"{suite} skipped tests on the Workers:\n{r.stdout[-6000:]}"


def test_a_tenant_cannot_see_or_change_another_tenants_agents_environments_or_sessions(main):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    b = anthropic.Anthropic(api_key=KEY_B, base_url=main.base_url, timeout=30.0, max_retries=0)
    agent = a.beta.agents.create(name="private", model="claude-sonnet-4-5")
    env = a.beta.environments.create(name="private", config={"type": "cloud", "networking": {"type": "unrestricted"}})

    for call in (
        lambda: b.beta.agents.retrieve(agent.id),
        lambda: b.beta.agents.update(agent.id, version=agent.version, name="stolen"),
        lambda: b.beta.agents.archive(agent.id),
        lambda: b.beta.agents.versions.list(agent.id),
    ):
        with pytest.raises(anthropic.NotFoundError) as e:
            call()
        assert agent.id in e.value.message
    for call in (
        lambda: b.beta.environments.retrieve(env.id),
        lambda: b.beta.environments.update(env.id, name="stolen"),
        lambda: b.beta.environments.archive(env.id),
        lambda: b.beta.environments.delete(env.id),
    ):
        with pytest.raises(anthropic.NotFoundError) as e:
            call()
        assert env.id in e.value.message
    session = a.beta.sessions.create(agent=agent.id, environment_id=env.id, title="private")
    for call in (
        lambda: b.beta.sessions.retrieve(session.id),
        lambda: b.beta.sessions.update(session.id, title="stolen"),
        lambda: b.beta.sessions.archive(session.id),
        lambda: b.beta.sessions.delete(session.id),
        lambda: b.beta.sessions.create(agent=agent.id, environment_id=env.id),
    ):
        with pytest.raises(anthropic.NotFoundError):
            call()
    assert [x.id for x in b.beta.agents.list()] == [] and [x.id for x in b.beta.environments.list()] == []
    assert [x.id for x in b.beta.sessions.list()] == []
    assert (a.beta.sessions.retrieve(session.id).title, a.beta.sessions.retrieve(session.id).archived_at) == ("private", None)
    same = a.beta.agents.retrieve(agent.id)
    assert (same.name, same.version, same.archived_at) == ("private", 1, None)
    same_env = a.beta.environments.retrieve(env.id)
    assert (same_env.name, same_env.archived_at) == ("private", None)


def test_credential_secrets_are_sealed_in_d1_and_never_echoed(deployment, main):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    token = "tok-" + "s3cr3t" * 6
    vault = a.beta.vaults.create(display_name="sealed")
    cred = a.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/sse", "token": token}
    )
    assert token not in cred.model_dump_json()
    assert token not in a.beta.vaults.credentials.retrieve(cred.id, vault_id=vault.id).model_dump_json()

    rows = json.loads(deployment.d1("SELECT body, secrets FROM credentials"))[0]["results"]
    assert len(rows) == 1 and token not in json.dumps(rows)
    sealed = json.loads(rows[0]["secrets"])
    assert set(sealed) == {"token"} and sealed["token"] != token
    assert token not in main.output()

    # Archiving the vault archives the credential and purges its sealed secret in D1.
    a.beta.vaults.archive(vault.id)
    rows = json.loads(deployment.d1("SELECT archived, secrets, body FROM credentials"))[0]["results"]
    assert rows[0]["archived"] == 1 and rows[0]["secrets"] == "{}"
    archived = a.beta.vaults.credentials.retrieve(cred.id, vault_id=vault.id)
    assert archived.archived_at is not None and archived.updated_at == archived.archived_at


def test_a_configured_rate_limit_answers_429_per_api_key(deployment):
    """With the `API_RATE_LIMIT` binding (here 5 requests a minute), an API key past its
    limit gets `429 rate_limit_error` with `retry-after`, as natively with
    `--rate-limit-per-minute`; another key, and `/health`, are not held back."""
    deployment.apply_migrations()
    deployment.d1(tenant_rows("b", KEY_B))
    main = deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A}, ratelimit=5)
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0, max_retries=0)
    # the limiter counts in fixed windows: 11 requests span at most two, so one is refused
    refused = None
    for _ in range(11):
        try:
            a.beta.agents.list()
        except anthropic.RateLimitError as e:
            refused = e
            break
    assert refused is not None, "11 requests in a row were all let through a limit of 5 a minute"
    assert refused.status_code == 429 and refused.body["error"]["type"] == "rate_limit_error", refused.body
    assert refused.response.headers["retry-after"] == "60" and refused.response.headers.get("request-id")
    b = anthropic.Anthropic(api_key=KEY_B, base_url=main.base_url, timeout=30.0, max_retries=0)
    assert b.beta.agents.list().data == []
    assert httpx2.get(f"{main.base_url}/health", timeout=10.0).status_code == 200


def test_a_tenants_limits_in_kv_refuse_new_sessions_and_turns(deployment, fake_model, sandbox_server):
    """Per-tenant configuration in KV (`tenants/{id}/limits`, the native TenantLimits as
    JSON), checked with the native rule: past its hard monthly spend a tenant's new sessions
    are refused with 402; at its running-session limit, work that would start one more
    session waits with 429 until one goes idle; a tenant without a key has no limits; a key
    that does not parse, or sets the sandbox limit the Workers cannot apply, refuses the work
    rather than skip the check."""
    deployment.apply_migrations()
    deployment.d1("".join(tenant_rows(name, key) for name, key in [("b", KEY_B), ("spare0", SPARE_KEYS[0]), ("spare1", SPARE_KEYS[1]), ("spare2", SPARE_KEYS[2])]))
    deployment.kv_put("tenants/tenant_b/limits", '{"monthly_hard_micros": 0}')
    deployment.kv_put("tenants/tenant_spare0/limits", '{"max_running_sessions": 1}')
    deployment.kv_put("tenants/tenant_spare1/limits", "not json")
    deployment.kv_put("tenants/tenant_spare2/limits", '{"max_running_sandboxes": 1}')
    main = deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A}, bound={"agent": agent_vars(fake_model, sandbox_server)})

    def post(key: str, path: str, body: dict) -> httpx2.Response:
        return httpx2.post(f"{main.base_url}{path}", json=body, headers={"x-api-key": key}, timeout=60.0)

    agent_of = {k: post(k, "/v1/agents", {"name": "quota", "model": "claude-sonnet-4-5", "tools": [{"type": "agent_toolset_20260401"}]}).json()["id"]
                for k in (KEY_A, KEY_B, *SPARE_KEYS[:3])}
    broke = post(KEY_B, "/v1/sessions", {"agent": agent_of[KEY_B]})
    assert broke.status_code == 402 and broke.json()["error"]["type"] == "billing_error", broke.text
    assert "monthly spend limit ($0.00 of $0.00)" in broke.json()["error"]["message"]
    assert post(KEY_A, "/v1/sessions", {"agent": agent_of[KEY_A]}).status_code == 200, "no key, no limits"
    unreadable = post(SPARE_KEYS[1], "/v1/sessions", {"agent": agent_of[SPARE_KEYS[1]]})
    assert unreadable.status_code == 500 and "tenants/tenant_spare1/limits" in unreadable.json()["error"]["message"], unreadable.text
    unsupported = post(SPARE_KEYS[2], "/v1/sessions", {"agent": agent_of[SPARE_KEYS[2]]})
    assert unsupported.status_code == 500 and "`max_running_sandboxes`" in unsupported.json()["error"]["message"], unsupported.text

    # one running session at most: a turn that runs a while holds the only place
    k = SPARE_KEYS[0]
    first = post(k, "/v1/sessions", {"agent": agent_of[k]}).json()["id"]
    second = post(k, "/v1/sessions", {"agent": agent_of[k]}).json()["id"]
    message = {"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]}
    script(fake_model, [tool_use("bash", {"command": "sleep 4"}), {"kind": "message", "blocks": [{"type": "text", "text": "slept"}]}])
    assert post(k, f"/v1/sessions/{first}/events", message).status_code == 200
    deadline = time.monotonic() + 30
    while httpx2.get(f"{main.base_url}/v1/sessions/{first}", headers={"x-api-key": k}, timeout=30.0).json()["status"] != "running":
        assert time.monotonic() < deadline, "the first session did not start running"
        time.sleep(0.1)
    waiting = post(k, f"/v1/sessions/{second}/events", message)
    assert waiting.status_code == 429 and waiting.headers["retry-after"] == "5", waiting.text
    assert "already runs 1 sessions at once" in waiting.json()["error"]["message"]
    starting = post(k, "/v1/sessions", {"agent": agent_of[k], "initial_events": message["events"]})
    assert starting.status_code == 429, starting.text
    while httpx2.get(f"{main.base_url}/v1/sessions/{first}", headers={"x-api-key": k}, timeout=30.0).json()["status"] != "idle":
        assert time.monotonic() < deadline + 30, "the first session's turn did not end"
        time.sleep(0.2)
    script_reply(fake_model, "now it is my turn")
    assert post(k, f"/v1/sessions/{second}/events", message).status_code == 200, "a place is free again"


def test_credentials_are_refused_with_503_while_the_root_secret_is_wrong(deployment):
    deployment.apply_migrations()
    first = deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A})
    a = anthropic.Anthropic(api_key=KEY_A, base_url=first.base_url, timeout=30.0)
    vault = a.beta.vaults.create(display_name="v")
    a.beta.vaults.credentials.create(vault.id, auth={"type": "static_bearer", "mcp_server_url": "https://a.example.com/mcp", "token": "t" * 20})
    first.stop()

    wrong = deployment.start("main", {"PLATFORM_ROOT_SECRET": "x" * 40, "OPENMA_BOOTSTRAP_API_KEY": KEY_A})
    b = anthropic.Anthropic(api_key=KEY_A, base_url=wrong.base_url, timeout=30.0, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as e:
        b.beta.vaults.credentials.create(vault.id, auth={"type": "static_bearer", "mcp_server_url": "https://b.example.com/mcp", "token": "u" * 20})
    assert e.value.status_code == 503 and "not the secret this database was sealed with" in e.value.message
    # Reads need no secret and still work; nothing new was written.
    assert [c.auth.mcp_server_url for c in b.beta.vaults.credentials.list(vault.id)] == ["https://a.example.com/mcp"]


def test_the_deployment_guides_smoke_test_passes_as_written(deployment, main, fake_model):
    """docs/cloudflare.md step 6 (the seed's): create an agent with `x-api-key`, a session
    with `agent_id`, send "say hi", then stream — an `agent.message` comes back over SSE.
    The scripted model answers at a model's pace, so the stream opened after the send
    still sees the answer."""
    import httpx2

    httpx2.post(f"{fake_model}/_fake/reset").raise_for_status()
    reply = {"kind": "message", "blocks": [{"type": "text", "text": "hi"}], "chunk_delay_ms": 700, "split": 1}
    httpx2.post(f"{fake_model}/_fake/script", json=[reply]).raise_for_status()
    h = {"x-api-key": KEY_A, "content-type": "application/json"}
    with httpx2.Client(base_url=main.base_url, timeout=30.0) as http:
        aid = http.post("/v1/agents", headers=h, json={
            "name": "smoke", "model": "claude-sonnet-4-6", "system": "Reply with exactly one word.", "tools": [{"type": "bash"}],
        }).json()["id"]
        sid = http.post("/v1/sessions", headers=h, json={"agent_id": aid}).json()["id"]
        sent = http.post(f"/v1/sessions/{sid}/events", headers=h, json={"events": [{"type": "user.message", "content": [{"type": "text", "text": "say hi"}]}]})
        assert sent.status_code == 200, sent.text
        seen = []
        with http.stream("GET", f"/v1/sessions/{sid}/events/stream", headers={"x-api-key": KEY_A}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    seen.append(event["type"])
                    if event["type"] == "agent.message":
                        assert event["content"] == [{"type": "text", "text": "hi"}]
                    if event["type"] == "session.status_idle":
                        break
    assert "agent.message" in seen, seen
    model_calls = [r for r in httpx2.get(f"{fake_model}/_fake/requests").json() if r["path"] == "/v1/messages"]
    assert model_calls[-1]["body"]["system"][0]["text"] == "Reply with exactly one word."
    # the provider key reached the provider, and nothing else: not the log, D1 or the SessionDO's SQLite
    assert model_calls[-1]["credentials"]["x-api-key"] == hashlib.sha256(MODEL_KEY.encode()).hexdigest()
    assert MODEL_KEY not in main.output()
    stored = [p for p in deployment.state.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in stored), stored
    assert not [p for p in stored if MODEL_KEY.encode() in p.read_bytes()]


def test_an_idle_stream_gets_a_heartbeat(main):
    """Proxies close silent connections: a stream with nothing to say sends `ping` every 15 s,
    as the native server does."""
    import httpx2

    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    agent = a.beta.agents.create(name="quiet", model="claude-sonnet-4-5")
    env = a.beta.environments.create(name="quiet", config={"type": "cloud", "networking": {"type": "unrestricted"}})
    session = a.beta.sessions.create(agent=agent.id, environment_id=env.id)
    with httpx2.Client(base_url=main.base_url, timeout=httpx2.Timeout(30.0, read=25.0)) as http:
        with http.stream("GET", f"/v1/sessions/{session.id}/events/stream", headers={"x-api-key": KEY_A}) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "event: ping"
            assert next(lines) == "data: {}"


def script_reply(fake_model: str, text: str) -> None:
    """The fake model's next answer: one text block."""
    script(fake_model, [{"kind": "message", "blocks": [{"type": "text", "text": text}]}])


def session_after_one_turn(a: anthropic.Anthropic) -> tuple[str, list[tuple[str, str]]]:
    """A new session that has answered one message: its id and its log (id, type)."""
    agent = a.beta.agents.create(name="one-turn", model="claude-sonnet-4-5")
    env = a.beta.environments.create(name="one-turn", config={"type": "cloud", "networking": {"type": "unrestricted"}})
    session = a.beta.sessions.create(agent=agent.id, environment_id=env.id)
    a.beta.sessions.events.send(session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "hello"}]}])
    deadline = time.monotonic() + 30
    while a.beta.sessions.retrieve(session.id).status != "idle" or not any(e.type == "agent.message" for e in a.beta.sessions.events.list(session.id)):
        assert time.monotonic() < deadline, "the turn did not finish"
        time.sleep(0.2)
    return session.id, [(e.id, e.type) for e in a.beta.sessions.events.list(session.id)]


def tool_use(name: str, input: dict) -> dict:
    return {"kind": "message", "blocks": [{"type": "tool_use", "name": name, "input": input}]}


def turn(a: anthropic.Anthropic, session_id: str, text: str) -> list:
    """Sends a message and waits for the turn to end: the events it added."""
    before = {e.id for e in a.beta.sessions.events.list(session_id, limit=1000)}
    a.beta.sessions.events.send(session_id, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}])
    return wait_idle(a, session_id, before)


def wait_idle(a: anthropic.Anthropic, session_id: str, seen: set[str], timeout: float = 60.0) -> list:
    """The events after `seen` up to the next `session.status_idle`."""
    deadline = time.monotonic() + timeout
    while True:
        events = [e for e in a.beta.sessions.events.list(session_id, limit=1000) if e.id not in seen]
        if any(e.type == "session.status_idle" for e in events):
            return events
        assert time.monotonic() < deadline, [e.type for e in events]
        time.sleep(0.2)


def result_text(event) -> str:
    return "".join(b.text for b in event.content if b.type == "text")


def test_builtin_tools_run_in_the_sessions_sandbox_and_its_workspace_outlives_the_sandbox(deployment, main, fake_model, sandbox_server):
    """The SessionDO runs the built-in tools on its sandbox server (the container's program;
    here the stand-in at OPENMA_SANDBOX_URL): started while the first model call runs, with
    the environment's network policy, the shell kept between turns. The workspace is kept in
    R2 after each turn that changed it, so a sandbox that starts without the session — a new
    container — gets it back; deleting the session ends its sandbox and the snapshot. The
    sandbox's time goes to the ledger."""
    import httpx2

    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    agent = a.beta.agents.create(name="coder", model="claude-sonnet-4-5", tools=[{"type": "agent_toolset_20260401"}])
    networking = {"type": "limited", "allowed_hosts": ["api.example.com"], "allow_package_managers": True, "allow_mcp_servers": False}
    env = a.beta.environments.create(name="coder-env", config={"type": "cloud", "networking": networking})
    session = a.beta.sessions.create(agent=agent.id, environment_id=env.id)
    held = sandbox_server["sessions"] / session.id

    # a turn without tools: the sandbox is prepared while the model answers (here in about a
    # second, streamed in four parts), with the environment's network policy
    script(fake_model, [{"kind": "message", "blocks": [{"type": "text", "text": "ready"}], "split": 4, "chunk_delay_ms": 250}])
    turn(a, session.id, "get ready")
    assert (held / "workspace").is_dir(), sandbox_server["log"].read_text()[-3000:]
    policy = json.loads((held / "egress.json").read_text())
    assert policy == {"type": "limited", "allowed_hosts": ["api.example.com"], "package_managers": True, "mcp_hosts": []}

    script(fake_model, [
        tool_use("write", {"file_path": "/workspace/hi.py", "content": "print('hi from', __name__)\n"}),
        tool_use("bash", {"command": "cd /workspace && export MOOD=fine && python3 hi.py"}),
        tool_use("edit", {"file_path": "/workspace/hi.py", "old_string": "hi from", "new_string": "bye from"}),
        tool_use("grep", {"pattern": "bye", "path": "/workspace"}),
        {"kind": "message", "blocks": [{"type": "text", "text": "done"}]},
    ])
    events = turn(a, session.id, "write and run a program")
    uses = [e for e in events if e.type == "agent.tool_use"]
    results = [e for e in events if e.type == "agent.tool_result"]
    assert [u.name for u in uses] == ["write", "bash", "edit", "grep"]
    assert [r.tool_use_id for r in results] == [u.id for u in uses]
    assert all(r.is_error is False for r in results), [result_text(r) for r in results]
    assert "hi from __main__" in result_text(results[1]) and "hi.py" in result_text(results[3])
    assert (held / "workspace" / "hi.py").read_text() == "print('bye from', __name__)\n"
    # the sandbox's time is in the ledger, sourced by the command that spent it (the file
    # tools report none)
    metered = json.loads(deployment.d1(f"SELECT kind, source, quantity FROM ledger_entries WHERE session_id = '{session.id}' AND kind LIKE 'sandbox_%'"))[0]["results"]
    walls = [r for r in metered if r["kind"] == "sandbox_wall_ms"]
    assert [r["source"] for r in walls] == [uses[1].id] and walls[0]["quantity"] > 0, metered

    # the shell stays between turns
    script(fake_model, [tool_use("bash", {"command": "pwd; echo mood=$MOOD"}), {"kind": "message", "blocks": [{"type": "text", "text": "again"}]}])
    events = turn(a, session.id, "again")
    [result] = [e for e in events if e.type == "agent.tool_result"] or [[e.model_dump(mode="json") for e in events]]
    assert "/workspace" in result_text(result) and "mood=fine" in result_text(result), result_text(result)

    # a sandbox that starts without the session (as a new container does) gets its workspace back
    r = httpx2.delete(f"{sandbox_server['url']}/v1/sessions/{session.id}", headers={"authorization": f"Bearer {SANDBOX_TOKEN}"})
    assert r.status_code == 204 and not held.exists()
    script(fake_model, [tool_use("bash", {"command": "python3 /workspace/hi.py"}), {"kind": "message", "blocks": [{"type": "text", "text": "restored"}]}])
    [result] = [e for e in turn(a, session.id, "run it again") if e.type == "agent.tool_result"]
    assert result.is_error is False and "bye from __main__" in result_text(result), result_text(result)
    assert json.loads((held / "egress.json").read_text())["type"] == "limited", "the restored session keeps its policy"

    snapshots = [p for p in (deployment.state / "v3" / "r2").rglob("*") if p.is_file() and p.read_bytes()[:2] == b"\x1f\x8b"]
    assert len(snapshots) == 1, snapshots
    a.beta.sessions.delete(session.id)
    assert not held.exists(), "deleting the session ends its sandbox"
    assert not snapshots[0].exists(), "and deletes its workspace snapshot"


def test_mounts_follow_the_session_into_a_restored_sandbox_and_outputs_are_taken_once_per_change(deployment, main, fake_model, sandbox_server):
    """The SessionDO lays the session's mounts into its sandbox before a tool runs: a file
    mounted or unmounted through the API is there or gone at the next tool, also in a sandbox
    restored from a workspace snapshot taken while the old mount was there. The outputs a turn
    leaves are taken into the Files API before the session is idle; bytes already taken are
    not taken again, changed bytes replace the earlier file."""
    import httpx2

    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    agent = a.beta.agents.create(name="filer", model="claude-sonnet-4-5", tools=[{"type": "agent_toolset_20260401"}])
    first = a.beta.files.upload(file=("first.txt", b"one\n", "text/plain"))
    second = a.beta.files.upload(file=("second.txt", b"two\n", "text/plain"))
    session = a.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit, resources=[{"type": "file", "file_id": first.id, "mount_path": "/in/first.txt"}])
    held = sandbox_server["sessions"] / session.id

    def run(command: str) -> str:
        script(fake_model, [tool_use("bash", {"command": command}), {"kind": "message", "blocks": [{"type": "text", "text": "ok"}]}])
        [result] = [e for e in turn(a, session.id, "go") if e.type == "agent.tool_result"]
        return result_text(result)

    def outputs() -> dict:
        return {f.filename: a.beta.files.download(f.id).read() for f in a.beta.files.list(scope_id=session.id).data if f.filename == "out.txt"}

    out = run("cat /mnt/session/uploads/in/first.txt && echo v1 > /mnt/session/outputs/out.txt")
    assert out.strip() == "one", out
    assert outputs() == {"out.txt": b"v1\n"}, "taken before the session went idle"
    assert (held / "uploads" / "in" / "first.txt").exists()

    # the same bytes again: not taken twice; then new bytes replace them
    run("echo v1 > /mnt/session/outputs/out.txt")
    assert len([f for f in a.beta.files.list(scope_id=session.id).data if f.filename == "out.txt"]) == 1
    run("echo v2 > /mnt/session/outputs/out.txt")
    assert outputs() == {"out.txt": b"v2\n"}

    # swap the mounts, then lose the sandbox: the snapshot still holds the first file
    added = a.beta.sessions.resources.add(session.id, type="file", file_id=second.id, mount_path="/second.txt")
    [old] = [r for r in a.beta.sessions.resources.list(session.id).data if r.id != added.id]
    a.beta.sessions.resources.delete(old.id, session_id=session.id)
    r = httpx2.delete(f"{sandbox_server['url']}/v1/sessions/{session.id}", headers={"authorization": f"Bearer {SANDBOX_TOKEN}"})
    assert r.status_code == 204 and not held.exists()
    listing = run("find /mnt/session/uploads -type f | sort; cat /mnt/session/uploads/second.txt; cat /mnt/session/outputs/out.txt")
    assert listing.split() == ["/mnt/session/uploads/second.txt", "two", "v2"], listing


def test_memory_mounts_are_told_to_the_model_and_laid_whole_into_a_restored_sandbox(deployment, main, fake_model, sandbox_server):
    """A session's memory store is in its sandbox at its mount path and named in the system
    prompt; what the agent writes there is a memory version by the session. A sandbox that
    starts without the session has the mount laid again whole from D1: into an empty
    workspace, or over the workspace restored from R2, whose snapshot may hold a memory
    deleted through the API meanwhile. A SessionDO that restarts keeps syncing from where it
    was, so a change not yet saved is not lost."""
    import httpx2

    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    agent = a.beta.agents.create(name="rememberer", model="claude-sonnet-4-5", tools=[{"type": "agent_toolset_20260401"}])
    store = a.beta.memory_stores.create(name="Team Notes", description="what the team decided")
    a.beta.memory_stores.memories.create(store.id, path="/keep.md", content="keep")
    gone = a.beta.memory_stores.memories.create(store.id, path="/gone.md", content="gone")
    session = a.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit, resources=[{"type": "memory_store", "memory_store_id": store.id}])
    mount = session.resources[0].mount_path
    assert mount == "/mnt/memory/team-notes"

    def run(command: str, tool: str = "bash") -> str:
        use = tool_use(tool, {"command": command} if tool == "bash" else {"file_path": command})
        script(fake_model, [use, {"kind": "message", "blocks": [{"type": "text", "text": "ok"}]}])
        [result] = [e for e in turn(a, session.id, "go") if e.type == "agent.tool_result"]
        return result_text(result)

    def lose_the_sandbox():
        r = httpx2.delete(f"{sandbox_server['url']}/v1/sessions/{session.id}", headers={"authorization": f"Bearer {SANDBOX_TOKEN}"})
        assert r.status_code == 204

    # a turn that wrote nothing keeps no workspace: a new sandbox starts empty, mounts laid again
    assert "keep" in run(f"{mount}/keep.md", tool="read")
    lose_the_sandbox()
    out = run(f"mkdir -p {mount}/sub && echo mine > {mount}/sub/new.md && find {mount} -type f | sort")
    assert out.split() == [f"{mount}/gone.md", f"{mount}/keep.md", f"{mount}/sub/new.md"], out
    system = [r for r in httpx2.get(f"{fake_model}/_fake/requests").json() if r["path"] == "/v1/messages"][-1]["body"]["system"]
    note = "".join(b["text"] for b in system)
    assert "# Memory" in note and f"## Team Notes ({mount}, read-write)" in note and "what the team decided" in note, note
    [mine] = [m for m in a.beta.memory_stores.memories.list(store.id, view="full") if m.type == "memory" and m.path == "/sub/new.md"]
    assert mine.content == "mine\n"
    [version] = list(a.beta.memory_stores.memory_versions.list(store.id, memory_id=mine.id))
    assert version.operation == "created" and version.created_by.type == "session_actor" and version.created_by.session_id == session.id

    a.beta.memory_stores.memories.delete(gone.id, memory_store_id=store.id)
    lose_the_sandbox()
    out = run(f"find {mount} -type f | sort; cat {mount}/keep.md")
    assert out.split() == [f"{mount}/keep.md", f"{mount}/sub/new.md", "keep"], out

    # a change in the mount that was never saved (its tool cut short), then the object
    # restarts: the sync goes on from the snapshot in its storage, so the next writing tool
    # saves the change, rather than the mount being laid again whole over it
    (sandbox_server["sessions"] / session.id / "memory" / "team-notes" / "half.md").write_text("half\n")
    main.stop()
    again = deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A},
                             bound={"agent": agent_vars(fake_model, sandbox_server)})
    a = anthropic.Anthropic(api_key=KEY_A, base_url=again.base_url, timeout=30.0)
    out = run(f"cat {mount}/half.md")
    assert out.strip() == "half", out
    [half] = [m for m in a.beta.memory_stores.memories.list(store.id, view="full") if m.type == "memory" and m.path == "/half.md"]
    assert half.content == "half\n"
    [version] = list(a.beta.memory_stores.memory_versions.list(store.id, memory_id=half.id))
    assert version.created_by.type == "session_actor" and version.created_by.session_id == session.id


def test_an_interrupt_stops_a_long_tool_run_and_an_unreachable_sandbox_is_an_error_result(deployment, main, fake_model):
    """A turn waiting on a long command ends within seconds of `user.interrupt`, with an
    honest result for the call; and when the sandbox cannot be reached, the call gets an
    error result saying so and the turn carries on to the model's answer."""
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    agent = a.beta.agents.create(name="sleeper", model="claude-sonnet-4-5", tools=[{"type": "agent_toolset_20260401"}])
    env = a.beta.environments.create(name="sleeper-env", config={"type": "cloud", "networking": {"type": "unrestricted"}})
    session = a.beta.sessions.create(agent=agent.id, environment_id=env.id)
    script(fake_model, [tool_use("bash", {"command": "sleep 60"}), {"kind": "message", "blocks": [{"type": "text", "text": "never"}]}])
    a.beta.sessions.events.send(session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "wait"}]}])
    deadline = time.monotonic() + 30
    while not any(e.type == "agent.tool_use" for e in a.beta.sessions.events.list(session.id)):
        assert time.monotonic() < deadline, "the model's tool call did not arrive"
        time.sleep(0.1)
    time.sleep(0.5)  # the command is running now
    t0 = time.monotonic()
    a.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}])
    while a.beta.sessions.retrieve(session.id).status != "idle":
        assert time.monotonic() - t0 < 10, "the interrupt did not end the turn"
        time.sleep(0.1)
    events = list(a.beta.sessions.events.list(session.id))
    [result] = [e for e in events if e.type == "agent.tool_result"]
    assert result.is_error and "interrupted" in result_text(result), result_text(result)
    assert not any(e.type == "agent.message" for e in events), "the turn stopped: the model was not called again"

    # the same deployment with its sandbox server gone
    main.stop()
    closed = f"http://127.0.0.1:{free_port()}"
    again = deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A},
                             bound={"agent": agent_vars(fake_model, {"url": closed})})
    a = anthropic.Anthropic(api_key=KEY_A, base_url=again.base_url, timeout=30.0)
    session = a.beta.sessions.create(agent=agent.id, environment_id=env.id)
    script(fake_model, [tool_use("bash", {"command": "echo hi"}), {"kind": "message", "blocks": [{"type": "text", "text": "it failed"}]}])
    events = turn(a, session.id, "try")
    [result] = [e for e in events if e.type == "agent.tool_result"]
    assert result.is_error and "sandbox cannot be" in result_text(result), result_text(result)
    assert [e for e in events if e.type == "agent.message"], [e.type for e in events]


# The stdio MCP server program the Rust tests use too: `note` writes its text (and $GREETING)
# to /workspace/from-mcp.txt and answers with its uid.
STDIO_SERVER = (REPO / "crates/openma-fake-model/src/stdio_mcp_server.py").read_text()


def test_an_environments_stdio_mcp_server_runs_in_the_session_sandbox(main, fake_model, sandbox_server):
    """An environment's stdio MCP servers run on the session's sandbox server, in the
    session's sandbox: the SessionDO gives them to the server when it opens the session, lists
    their tools at the turn's start through the server's streamable-HTTP bridge, and calls
    them there; the program and the agent's shell share the workspace and the user. The
    session keeps the environment it took at its first turn. A name both the agent and the
    environment use is refused at create, as natively."""
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    agent = a.beta.agents.create(name="stdio", model="claude-sonnet-4-5", tools=[{"type": "agent_toolset_20260401"}])
    server = {"type": "stdio", "name": "local", "command": ["python3", "-u", "-c", STDIO_SERVER], "env": {"GREETING": "from the sandbox"},
              "default_config": {"permission_policy": {"type": "always_allow"}}}
    env = a.beta.environments.create(name="stdio", config={"type": "cloud", "mcp_servers": [server]})
    session = a.beta.sessions.create(agent=agent.id, environment_id=env.id)
    script(fake_model, [tool_use("mcp__local__note", {"text": "hello"}), tool_use("bash", {"command": "cat /workspace/from-mcp.txt; echo; id -u"}),
                        {"kind": "message", "blocks": [{"type": "text", "text": "done"}]}])
    events = turn(a, session.id, "note it")
    results = [e for e in events if e.type in ("agent.mcp_tool_result", "agent.tool_result")]
    errors = [e for e in events if e.type == "session.error"]
    assert [e.type for e in results] == ["agent.mcp_tool_result", "agent.tool_result"] and not errors, [(e.type, getattr(e, "error", None)) for e in events]
    noted, shell = result_text(results[0]), result_text(results[1])
    assert results[0].is_error is False and noted.startswith("noted by uid "), noted + sandbox_server["log"].read_text()[-3000:]
    lines = shell.splitlines()
    assert lines[0] == "hello from the sandbox" and lines[1] == noted.removeprefix("noted by uid "), shell
    offered = [t["name"] for t in httpx2.get(f"{fake_model}/_fake/requests", timeout=10).json()[-1]["body"]["tools"]]
    assert "mcp__local__note" in offered, offered
    assert (sandbox_server["sessions"] / session.id / "workspace" / "from-mcp.txt").is_file(), "it ran on the sandbox server"

    clash = a.beta.agents.create(name="clash", model="claude-sonnet-4-5", mcp_servers=[{"type": "url", "name": "local", "url": "https://mcp.example.com/mcp"}],
                                 tools=[{"type": "mcp_toolset", "mcp_server_name": "local"}])
    with pytest.raises(anthropic.BadRequestError) as e:
        a.beta.sessions.create(agent=clash.id, environment_id=env.id)
    assert "both name a server `local`" in e.value.body["error"]["message"], e.value.body

    # the session took its environment at its first turn: a later change is for new sessions
    a.beta.environments.update(env.id, config={"type": "cloud", "mcp_servers": []})
    script(fake_model, [{"kind": "message", "blocks": [{"type": "text", "text": "still here"}]}])
    turn(a, session.id, "again")
    offered = [t["name"] for t in httpx2.get(f"{fake_model}/_fake/requests", timeout=10).json()[-1]["body"]["tools"]]
    assert "mcp__local__note" in offered, offered


def test_an_environments_packages_are_built_by_the_sandbox_server_and_its_limits_apply(main, fake_model, sandbox_server):
    """The SessionDO gives the session's sandbox server its environment's packages and limits
    when it opens the session (during the first model call): the server builds the packages'
    layer from the real registries, the first shell waits for it and mounts it, and the
    limits lower the sandbox's. A package that cannot be built is the tool's clear error."""
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    agent = a.beta.agents.create(name="packaged", model="claude-sonnet-4-5", tools=[{"type": "agent_toolset_20260401"}])
    env = a.beta.environments.create(name="pkgs", config={"type": "cloud", "packages": {"pip": ["six"]}, "limits": {"open_files": 300}})
    session = a.beta.sessions.create(agent=agent.id, environment_id=env.id)
    script(fake_model, [tool_use("bash", {"command": "python3 -c 'import six; print(\"six\", six.__version__)'; ulimit -n"}),
                        {"kind": "message", "blocks": [{"type": "text", "text": "done"}]}])
    before = {e.id for e in a.beta.sessions.events.list(session.id, limit=1000)}
    a.beta.sessions.events.send(session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "use six"}]}])
    [result] = [e for e in wait_idle(a, session.id, before, timeout=300) if e.type == "agent.tool_result"]
    out = result_text(result)
    assert result.is_error is False and "six 1." in out, out + sandbox_server["log"].read_text()[-3000:]
    assert "300" in [line.strip() for line in out.splitlines()], f"the environment's open_files limit applies: {out}"
    layers = sandbox_server["sessions"].parent / "layers"
    assert any((d / "root").is_dir() for d in layers.iterdir()), "the layer is on the sandbox server"
    # no environment-wide layer to report: the native `/build` extension is refused, not faked
    build = httpx2.get(f"{main.base_url}/v1/environments/{env.id}/build", headers={"x-api-key": KEY_A}, timeout=30)
    assert build.status_code == 400 and build.json()["error"]["details"]["error_code"] == "unsupported_feature", build.text
    assert httpx2.get(f"{main.base_url}/v1/environments/env_nope/build", headers={"x-api-key": KEY_A}, timeout=30).status_code == 404

    broken = a.beta.environments.create(name="broken", config={"type": "cloud", "packages": {"pip": ["openma-no-such-package-zq9"]}})
    session = a.beta.sessions.create(agent=agent.id, environment_id=broken.id)
    script(fake_model, [tool_use("bash", {"command": "echo never"}), {"kind": "message", "blocks": [{"type": "text", "text": "oh"}]}])
    before = {e.id for e in a.beta.sessions.events.list(session.id, limit=1000)}
    a.beta.sessions.events.send(session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "try"}]}])
    [result] = [e for e in wait_idle(a, session.id, before, timeout=300) if e.type == "agent.tool_result"]
    assert result.is_error is True and "failed to build" in result_text(result), result_text(result)


# Answers with the SHA-256 of what it received, so no secret it got travels back into the
# session's events (which the test then searches for the secrets).
ECHO = """
import hashlib, http.server, json, ssl, sys
def digest(v):
    return v and hashlib.sha256(v.encode()).hexdigest()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
        out = json.dumps({"auth": digest(self.headers.get("authorization")), "body": digest(body)}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


def https_echo_server(folder: Path) -> tuple[subprocess.Popen, int, Path]:
    """An HTTPS server on loopback for `api.test` and `other.test`, with a test CA of its
    own, answering with what it received; its port and the CA's PEM."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress test upstream CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.test")])).issuer_name(ca_name)
            .public_key(leaf_key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.test"), x509.DNSName("other.test")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.key").write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / "echo.py").write_text(ECHO)
    proc = subprocess.Popen([sys.executable, str(folder / "echo.py"), str(folder / "leaf.pem"), str(folder / "leaf.key")], stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline().strip()), folder / "ca.pem"


def test_environment_variable_credentials_are_placeholders_in_the_sandbox_and_secrets_only_at_their_hosts(deployment, fake_model, tmp_path):
    """A session's `environment_variable` credentials, as natively: its shell sees each as a
    variable holding a placeholder, and the sandbox server's egress proxy (HTTPS terminated
    with its own CA, which the sandbox trusts) puts the secret in its place only in requests
    to the credential's allowed hosts, in the enabled locations. A secret rotated in the vault
    applies from the next tool; a credential whose hosts the environment forbids is reported
    once. The secret is in no answer, event, file of the local state or
    of the sandbox server, nor any log."""
    secret, rotated = "sk-live-REAL-secret-8fQ2", "sk-live-ROTATED-secret-3kP9"

    def sha256(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    echo, port, ca = https_echo_server(tmp_path)
    root = Path(tempfile.mkdtemp(prefix="openma-sandbox-server-"))
    sandbox, url = start_sandbox_server(root, SANDBOX_TOKEN, env={
        "OPENMA_UNSAFE_EGRESS_RESOLVE": f"api.test=127.0.0.1:{port},other.test=127.0.0.1:{port}", "OPENMA_UNSAFE_EGRESS_UPSTREAM_CA": str(ca)})
    try:
        deployment.apply_migrations()
        main = deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A}, bound={"agent": agent_vars(fake_model, {"url": url})})
        a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
        vault = a.beta.vaults.create(display_name="deploy")
        cred = a.beta.vaults.credentials.create(vault.id, auth={"type": "environment_variable", "secret_name": "DEPLOY_TOKEN", "secret_value": secret,
                                                                "networking": {"type": "limited", "allowed_hosts": ["api.test"]},
                                                                "injection_location": {"header": True, "body": False}})
        agent = a.beta.agents.create(name="deployer", model="claude-sonnet-4-5", tools=[{"type": "agent_toolset_20260401"}])
        env = a.beta.environments.create(name="open", config={"type": "cloud", "networking": {"type": "unrestricted"}})
        session = a.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[vault.id])

        def run(command: str) -> str:
            script(fake_model, [tool_use("bash", {"command": command}), {"kind": "message", "blocks": [{"type": "text", "text": "ok"}]}])
            [result] = [e for e in turn(a, session.id, "go") if e.type == "agent.tool_result"]
            return result_text(result)

        placeholder = run("echo \"seen=$DEPLOY_TOKEN\"").strip().removeprefix("seen=")
        assert placeholder.startswith("openma_placeholder_") and secret not in placeholder, placeholder
        allowed = json.loads(run("curl -sS --max-time 20 https://api.test/x -H \"Authorization: Bearer $DEPLOY_TOKEN\" --data \"token=$DEPLOY_TOKEN\""))
        assert allowed["auth"] == sha256(f"Bearer {secret}"), "the header location is enabled and the host allowed"
        assert allowed["body"] == sha256(f"token={placeholder}"), "the body location is disabled: the placeholder goes as it is"
        # not intercepted: the sandbox sees the test server's own certificate, hence -k
        other = json.loads(run("curl -sS -k --max-time 20 https://other.test/x -H \"Authorization: Bearer $DEPLOY_TOKEN\""))
        assert other["auth"] == sha256(f"Bearer {placeholder}"), "a host the credential does not allow never gets the secret"

        a.beta.vaults.credentials.update(cred.id, vault_id=vault.id, auth={"type": "environment_variable", "secret_value": rotated})
        again = json.loads(run("curl -sS --max-time 20 https://api.test/y -H \"Authorization: Bearer $DEPLOY_TOKEN\""))
        assert again["auth"] == sha256(f"Bearer {rotated}"), "the rotated secret applies from the next tool"

        # a credential allowed to reach a host the environment forbids is reported once per
        # session, at a turn's start, with its ids; the session goes on
        limited = a.beta.environments.create(name="limited", config={"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["api.test"]}})
        wide = a.beta.vaults.credentials.create(vault.id, auth={"type": "environment_variable", "secret_name": "WIDE_TOKEN", "secret_value": "wide-secret-0123456789",
                                                                "networking": {"type": "limited", "allowed_hosts": ["api.test", "deploy.example.org"]}})
        fenced = a.beta.sessions.create(agent=agent.id, environment_id=limited.id, vault_ids=[vault.id])
        for _ in range(2):
            script(fake_model, [{"kind": "message", "blocks": [{"type": "text", "text": "ok"}]}])
            turn(a, fenced.id, "go")
        errors = [e for e in a.beta.sessions.events.list(fenced.id, limit=1000) if e.type == "session.error"]
        assert len(errors) == 1, errors
        error = errors[0].error
        assert error.type == "credential_host_unreachable_error" and (error.credential_id, error.vault_id) == (wide.id, vault.id), error
        assert "deploy.example.org" in error.message and "api.test," not in error.message, error.message

        events = "".join(e.model_dump_json() for e in a.beta.sessions.events.list(session.id, limit=1000))
        stored = [p for p in deployment.state.rglob("*") if p.is_file()] + [p for p in root.rglob("*") if p.is_file() and p.name != "stderr.log"]
        for s in (secret, rotated):
            assert s not in events and s not in main.output() and s not in (root / "stderr.log").read_text()
            assert not [p for p in stored if s.encode() in p.read_bytes()], f"{s} is stored in the clear"
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
        echo.terminate()
        echo.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def test_a_large_upload_streams_to_r2_in_parts_and_one_past_the_limit_is_413(deployment, fake_model, sandbox_server):
    """An upload larger than one R2 part (8 MiB) goes up as a multipart upload and comes back
    byte for byte; past OPENMA_MAX_FILE_MB it is refused with 413 and leaves no file."""
    deployment.apply_migrations()
    main = deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A, "OPENMA_MAX_FILE_MB": "24"},
                            bound={"agent": agent_vars(fake_model, sandbox_server)})
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=120.0, max_retries=0)
    data = os.urandom(20 * 1024 * 1024 + 12345)  # two full parts and a short last one
    f = a.beta.files.upload(file=("big.bin", io.BytesIO(data), "application/octet-stream"))
    assert f.size_bytes == len(data)
    back = a.beta.files.download(f.id).read()
    assert hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest()
    row = json.loads(deployment.d1(f"SELECT sha256 FROM files WHERE id = '{f.id}'"))[0]["results"][0]
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    with pytest.raises(anthropic.APIStatusError) as too_big:
        a.beta.files.upload(file=("bigger.bin", io.BytesIO(os.urandom(25 * 1024 * 1024)), "application/octet-stream"))
    assert too_big.value.status_code == 413, too_big.value
    assert [x.id for x in a.beta.files.list()] == [f.id]


def test_each_model_request_and_running_interval_is_in_the_ledger_and_usage_reports_it(deployment, main, fake_model):
    """The SessionDO writes each model request's tokens (at the deployment's list prices)
    and the turn's running time to D1's ledger; `/v1/usage` sums it by session and kind as
    JSON and CSV, only for the caller's tenant; `/v1/usage/export` pages the rows with
    cursors and resumes after an acknowledgement."""
    import httpx2

    script(fake_model, [{"kind": "message", "blocks": [{"type": "text", "text": "metered"}], "usage": {"input_tokens": 1200, "output_tokens": 34}}])
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    session_id, _ = session_after_one_turn(a)
    params = [("group_by[]", "session"), ("group_by[]", "kind")]
    report = httpx2.get(f"{main.base_url}/v1/usage", params=params, headers={"x-api-key": KEY_A}, timeout=30.0).json()
    mine = {l["kind"]: l for l in report["data"] if l["session_id"] == session_id}
    assert mine["input_tokens"]["quantity"] == 1200 and mine["output_tokens"]["quantity"] == 34, report
    assert mine["runtime_ms"]["quantity"] > 0, report
    assert report["total_amount_micros"] == sum(l["amount_micros"] for l in report["data"]) and report["currency"] == "USD", report
    rows = json.loads(deployment.d1(f"SELECT kind, source FROM ledger_entries WHERE session_id = '{session_id}'"))[0]["results"]
    events = {e.id: e.type for e in a.beta.sessions.events.list(session_id)}
    assert {events[r["source"]] for r in rows} == {"span.model_request_end", "session.status_idle"}, (rows, events)
    csv = httpx2.get(f"{main.base_url}/v1/usage", params=[*params, ("format", "csv")], headers={"x-api-key": KEY_A}, timeout=30.0)
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.splitlines()[0] == "session_id,kind,quantity,amount_usd", csv.text
    assert f"{session_id},input_tokens,1200," in csv.text, csv.text
    other = httpx2.get(f"{main.base_url}/v1/usage", params=params, headers={"x-api-key": KEY_B}, timeout=30.0).json()
    assert other["data"] == [] and other["total_amount_micros"] == 0, other

    # the export pages the same rows once they are settled (2 s), and resumes after an ack
    time.sleep(2.2)
    export = httpx2.get(f"{main.base_url}/v1/usage/export", params={"limit": 2}, headers={"x-api-key": KEY_A}, timeout=30.0).json()
    assert len(export["data"]) == 2 and export["has_more"] and export["acknowledged_cursor"] == "ledger_0", export
    ack = httpx2.post(f"{main.base_url}/v1/usage/export/ack", json={"cursor": export["next_cursor"]}, headers={"x-api-key": KEY_A}, timeout=30.0)
    assert ack.json() == {"cursor": export["next_cursor"]}, ack.text
    rest = httpx2.get(f"{main.base_url}/v1/usage/export", headers={"x-api-key": KEY_A}, timeout=30.0).json()
    exported = [e["source"] + "/" + e["kind"] for e in export["data"] + rest["data"]]
    assert sorted(exported) == sorted(f"{r['source']}/{r['kind']}" for r in rows) and not rest["has_more"], (exported, rows)
    back = httpx2.post(f"{main.base_url}/v1/usage/export/ack", json={"cursor": "ledger_0"}, headers={"x-api-key": KEY_A}, timeout=30.0)
    assert back.json() == {"cursor": export["next_cursor"]}, "an acknowledgement never moves back"
    assert httpx2.get(f"{main.base_url}/v1/usage/export", headers={"x-api-key": KEY_B}, timeout=30.0).json()["data"] == []


def test_a_budget_stops_the_session_and_raising_it_resumes(main, fake_model):
    """The native budget story (tests/runtime.rs) on the Workers: a one-cent budget stops the
    turn before the next model call once a request overshoots it, further work is refused
    with `budget_reached`, and raising the budget resumes the session to the end of its turn."""
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    agent = a.beta.agents.create(name="budgeted", model="claude-sonnet-4-6", tools=[{"type": "agent_toolset_20260401"}])
    env = a.beta.environments.create(name="budgeted", config={"type": "cloud", "networking": {"type": "unrestricted"}})
    with pytest.raises(anthropic.BadRequestError):
        a.beta.sessions.create(agent=agent.id, environment_id=env.id, budget={"type": "limit", "max_list_cost": {"amount": "025", "currency": "USD"}})
    one_cent = {"type": "limit", "max_list_cost": {"amount": "1", "currency": "USD"}}
    session = a.beta.sessions.create(agent=agent.id, environment_id=env.id, budget=one_cent)
    script(fake_model, [
        {"kind": "message", "blocks": [{"type": "tool_use", "name": "read", "input": {"file_path": "/workspace/x"}}], "usage": {"input_tokens": 100, "output_tokens": 1000}},
        {"kind": "message", "blocks": [{"type": "text", "text": "done"}]},
    ])

    def settled(after: int) -> list:
        deadline = time.monotonic() + 30
        while True:
            events = list(a.beta.sessions.events.list(session.id))
            if len(events) > after and events[-1].type == "session.status_idle":
                return events
            assert time.monotonic() < deadline, [e.type for e in events]
            time.sleep(0.2)

    a.beta.sessions.events.send(session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "go"}]}])
    events = settled(0)
    assert events[-1].stop_reason.type == "budget_reached", events[-1]
    assert events[-2].type == "session.usage" and events[-2].usage.list_cost.amount == "2", events[-2]
    assert sum(e.type == "span.model_request_start" for e in events) == 1, "no request after the cap"
    with pytest.raises(anthropic.BadRequestError) as refused:
        a.beta.sessions.events.send(session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "more"}]}])
    assert refused.value.body["error"]["details"]["error_code"] == "budget_reached", refused.value.body
    with pytest.raises(anthropic.BadRequestError):
        a.beta.sessions.update(session.id, budget=one_cent)
    a.beta.sessions.update(session.id, budget={"type": "limit", "max_list_cost": {"amount": "500", "currency": "USD"}})
    resumed = settled(len(events))
    assert any(e.type == "session.status_running" for e in resumed[len(events):]), [e.type for e in resumed]
    assert resumed[-1].stop_reason.type == "end_turn", resumed[-1]


def object_log_rows(deployment) -> list[int]:
    """The rows of every SessionDO's event log, read from the objects' SQLite files."""
    import sqlite3

    logs = []
    for db in deployment.state.rglob("*.sqlite"):
        if "SessionDO" in str(db):
            with sqlite3.connect(db) as c:
                if c.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone():
                    logs.append(c.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    return logs


def test_archiving_moves_the_log_to_r2_and_out_of_the_session_object(deployment, main, fake_model):
    """An archived session's events live in R2 (gzip JSON lines, the native archive format)
    and no longer in its Durable Object's SQLite; the API reads them as before, and deleting
    the session deletes the archive."""

    def gzip_blobs() -> list[Path]:
        return [p for p in (deployment.state / "v3" / "r2").rglob("*") if p.is_file() and p.read_bytes()[:2] == b"\x1f\x8b"]

    script_reply(fake_model, "archived answer")
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    session_id, before = session_after_one_turn(a)
    assert object_log_rows(deployment) == [len(before)]

    a.beta.sessions.archive(session_id)
    after = [(e.id, e.type) for e in a.beta.sessions.events.list(session_id)]
    assert after[: len(before)] == before and after[-1][1] == "session.status_terminated"

    assert object_log_rows(deployment) == [0]
    assert len(gzip_blobs()) == 1
    a.beta.sessions.delete(session_id)
    assert gzip_blobs() == []


def r2_objects(deployment) -> list[Path]:
    """The objects of the local R2 bucket (miniflare keeps each one's bytes in a file)."""
    return sorted(p for p in (deployment.state / "v3" / "r2").rglob("*") if p.is_file() and "blobs" in p.parts)


def test_the_cron_archives_idle_sessions_logs(deployment, fake_model):
    """openma-agent's cron moves the log of a session idle longer than
    OPENMA_ARCHIVE_IDLE_AFTER to R2 and out of its SessionDO, records it in D1, and the API
    reads the log as before; it also empties expired files, whose download then says
    `file_expired`."""
    import httpx2

    deployment.apply_migrations()
    secrets = {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A}
    cron_vars = {"ANTHROPIC_API_KEY": MODEL_KEY, "ANTHROPIC_BASE_URL": fake_model, "OPENMA_ARCHIVE_IDLE_AFTER": "1s"}
    script_reply(fake_model, "idle soon")
    main = deployment.start("main", secrets, bound={"agent": cron_vars})
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    session_id, before = session_after_one_turn(a)
    # an upload past its expiry (the column the scan reads, moved back in time)
    expiring = a.beta.files.upload(file=("old.txt", io.BytesIO(b"expired bytes"), "text/plain"), expires_in_seconds=3600)
    deployment.d1(f"UPDATE files SET expires_at = 1 WHERE id = '{expiring.id}'")
    blobs_before = r2_objects(deployment)
    assert blobs_before, "the upload is not in the local R2 bucket"
    main.stop()

    time.sleep(1.5)
    cron = deployment.start("agent", cron_vars, scheduled=True)
    httpx2.get(f"{cron.base_url}/__scheduled", params={"cron": "*/10 * * * *"}, timeout=30.0).raise_for_status()
    deadline = time.monotonic() + 20
    while "housekeeping: archived" not in cron.output():
        assert time.monotonic() < deadline, cron.output()[-3000:]
        time.sleep(0.2)
    assert "housekeeping: archived 1 of 1 due session logs" in cron.output(), cron.output()[-3000:]
    assert "emptied 1 expired files" in cron.output(), cron.output()[-3000:]
    cron.stop()
    # the expired upload's bytes are gone from R2 (the archived log's blob came in their place)
    assert len(r2_objects(deployment)) == len(blobs_before), (blobs_before, r2_objects(deployment))

    assert object_log_rows(deployment) == [0]
    row = json.loads(deployment.d1(f"SELECT log_archive_key, log_archived_events FROM sessions WHERE id = '{session_id}'"))[0]["results"][0]
    assert row["log_archive_key"].startswith("event-logs/") and row["log_archive_key"].endswith(f"/{session_id}"), row
    assert row["log_archived_events"] == len(before), row

    again = deployment.start("main", secrets, bound={"agent": cron_vars})
    a = anthropic.Anthropic(api_key=KEY_A, base_url=again.base_url, timeout=30.0)
    assert [(e.id, e.type) for e in a.beta.sessions.events.list(session_id)] == before
    with pytest.raises(anthropic.NotFoundError) as gone:
        a.beta.files.download(expiring.id)
    assert gone.value.body["error"]["details"]["error_code"] == "file_expired", gone.value.body
