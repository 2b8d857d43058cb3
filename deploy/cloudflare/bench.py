"""Request latency of the Workers (openma-main with the openma-agent it binds) under
`wrangler dev` next to the native server's, in one run on one machine: p50/p99 over N
sequential requests per row, and the ratios. Both call the same scripted fake model
(openma-fake-model) over loopback.

    source deploy/cloudflare/toolchain.sh
    conformance/.venv/bin/python deploy/cloudflare/bench.py --openma target/release/openma [-n 500] [--turns 100] [--files 50] [--threads 30] [--clones 30]

Rows: `GET /health` (the worker makes four binding calls: two D1 queries, one KV read, one
R2 head; the native server pings its SQLite database and blob directory), `POST /v1/agents`
(authentication, then an agent and its first version written in one transaction — one D1
batch on the worker), `GET /v1/agents/{id}` (authentication and one read), `POST
/v1/sessions` (the agent, environment and session rows) and a turn: `user.message` sent
until `session.status_idle` arrives on the event stream (on the worker: forwarded to the
session's Durable Object, whose alarm calls the model with fetch and appends the events
to its SQLite), then a turn in which the model calls `bash` once (`echo hi`) before it
answers: the native server runs it in its own bubblewrap sandbox, the worker on an
`openma-sandbox-server` over loopback (the program its container runs; Containers need
Docker, absent here); then a turn of a session with a mounted file whose `bash` call sorts it
into a new output (the native server takes it from the sandbox's outputs at the turn's end;
the worker's SessionDO lays the mount into the sandbox server, and at the turn's end reads
the output from the workspace pack it keeps in R2 — both before the session is idle); then
a turn of a session with a memory store mounted whose `bash` call appends to a memory (laid
into the sandbox before the call, read back and saved as a version by the session after it:
the native server in its own sandbox directory, the worker's SessionDO through the sandbox
server's `…/memory` requests and D1); then the same bash turn in a session whose vault holds
an `environment_variable` credential (the worker gives the sandbox server the credentials
before every tool).
Then `POST /v1/files` of a 1 MiB file (multipart; the native server
streams it to its blob directory, the worker to local R2) and `GET /v1/files/{id}/content`
of it. Last, a Slack thread: a signed `app_mention` in a new thread, POSTed to the
integration's events URL, until the answer reaches the fake Slack API (the thread's progress
message updated to it: the session created, the turn run, the answer posted; on the
workers: openma-main → openma-integrations → the SessionDO, which posts). Then a turn whose
`web_fetch` reads an HTML page from a loopback site (the native server resolves, pins and
fetches it itself; the worker's SessionDO fetches it with `fetch`), and `POST /v1/sessions`
with a `github_repository` cloned from a fake GitHub over git's HTTP protocol (the native
server runs git itself; the worker's SessionDO has its sandbox server run it, then keeps the
workspace in R2). The console rows, after the plain turns: five sign-ins (argon2id
verification; the throttle allows five a minute, so its "p99" is the slowest of them),
`GET /console` signed in (the
dashboard: ten recent sessions and agents, the month's list cost; D1 on the worker) and the
page of the session that took those turns (its events embedded: on the worker read from its
SessionDO).
"""

from __future__ import annotations

import argparse
import json
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
from conftest import SLACK_SIGNING, Deployment, FakeProviders, free_port, script, slack_signed, start_sandbox_server  # noqa: E402
from test_integrations import GITHUB_TOKEN, FakeGitHub  # noqa: E402
from test_web_tools import FakeWeb  # noqa: E402

FAKE_MODEL = Path(__file__).resolve().parents[2] / "target" / "debug" / "openma-fake-model"


def start_fake_model() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([str(FAKE_MODEL), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    url = re.match(r"^fake model listening on (http://\S+?)/?$", line)
    assert url, f"the fake model did not start: {line!r}"
    return proc, url.group(1)


def measure_turns(base: str, headers: dict[str, str], session_id: str, n: int) -> list[float]:
    """Milliseconds from sending `user.message` to `session.status_idle` on the stream."""
    out = []
    with httpx2.Client(base_url=base, timeout=30.0, headers=headers) as c:
        for i in range(n + 5):
            t = time.perf_counter()
            sent = c.post(f"/v1/sessions/{session_id}/events", json={"events": [{"type": "user.message", "content": [{"type": "text", "text": f"turn {i}"}]}]})
            assert sent.status_code == 200, sent.text
            echo = sent.json()["data"][0]["id"]
            with c.stream("GET", f"/v1/sessions/{session_id}/events/stream", headers={"last-event-id": echo}) as stream:
                for line in stream.iter_lines():
                    if line.startswith("event: session.status_idle"):
                        break
            if i >= 5:  # the first turns warm up
                out.append((time.perf_counter() - t) * 1000)
    return out


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


def measure_files(base: str, headers: dict[str, str], n: int, size: int) -> tuple[list[float], list[float]]:
    """Milliseconds of `n` uploads of `size` random bytes, and of downloading each back."""
    data = os.urandom(size)
    up, down = [], []
    with httpx2.Client(base_url=base, timeout=60.0, headers=headers) as c:
        for i in range(n + 5):
            t = time.perf_counter()
            r = c.post("/v1/files", files={"file": ("bench.bin", data, "application/octet-stream")})
            assert r.status_code == 200, r.text
            t2 = time.perf_counter()
            got = c.get(f"/v1/files/{r.json()['id']}/content")
            assert got.status_code == 200 and got.content == data, got.status_code
            if i >= 5:  # the first ones warm up
                up.append((t2 - t) * 1000)
                down.append((time.perf_counter() - t2) * 1000)
    return up, down


def measure_slack_threads(base: str, headers: dict[str, str], agent_id: str, slack: FakeProviders, n: int) -> list[float]:
    """Milliseconds from a signed mention in a new thread to its answer in the thread."""
    made = httpx2.post(f"{base}/v1/integrations", headers=headers, timeout=30.0, json={
        "provider": "slack", "agent_id": agent_id, "signing_secret": SLACK_SIGNING, "bot_token": "xoxb-bench-0123456789",
        "api_base_url": f"{slack.url}/slack"})
    assert made.status_code == 200, made.text
    path = made.json()["events_path"]
    out = []
    with httpx2.Client(base_url=base, timeout=30.0) as c:
        for i in range(n + 3):
            ts = f"{int(time.time())}.{i:06d}"
            body = json.dumps({"type": "event_callback", "event_id": f"Ev{base[-5:]}{i}", "event": {
                "type": "app_mention", "channel": "C1", "user": "U1", "text": "hello", "ts": ts}})
            before = len(slack.calls)
            t = time.perf_counter()
            sent = c.post(path, content=body.encode(), headers={"content-type": "application/json", **slack_signed(body)})
            assert sent.status_code == 200, sent.text
            # the answer: the thread's progress message updated to it
            slack.wait_for(lambda call: call["body"].get("text") == "ok", f"the answer in thread {ts}", timeout=30.0, since=before)
            if i >= 3:
                out.append((time.perf_counter() - t) * 1000)
    return out


CONSOLE_EMAIL = "bench@example.com"
CONSOLE_PASSWORD = "a long bench console password"


def users_sql(openma: str, *args: str) -> str:
    """The rows that make the bench's console member (`openma users sql`, as the guide says)."""
    r = subprocess.run([openma, "users", "sql", "--email", CONSOLE_EMAIL, "--role", "owner", *args],
                       input=CONSOLE_PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--openma", required=True, help="the native openma binary")
    ap.add_argument("-n", type=int, default=500, help="requests per server")
    ap.add_argument("--turns", type=int, default=100, help="turns and session creations per server")
    ap.add_argument("--files", type=int, default=50, help="1 MiB uploads and downloads per server")
    ap.add_argument("--threads", type=int, default=30, help="Slack threads per server")
    ap.add_argument("--clones", type=int, default=30, help="sessions created with a repository clone per server")
    a = ap.parse_args()
    fake, fake_url = start_fake_model()
    text = {"kind": "message", "blocks": [{"type": "text", "text": "ok"}]}
    bash = {"kind": "message", "blocks": [{"type": "tool_use", "name": "bash", "input": {"command": "echo hi"}}]}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "state").mkdir()
        d = Deployment(state=tmp / "state", tmp=tmp)
        d.apply_migrations()
        key = "sk-oma-bench-bootstrap-key-0123456789"
        sandbox_token = "sbx-bench-0123456789abcdef"
        sandbox, sandbox_url = start_sandbox_server(tmp / "sandbox-server", sandbox_token)
        model = {"ANTHROPIC_API_KEY": "sk-ant-bench", "ANTHROPIC_BASE_URL": fake_url}
        root = {"PLATFORM_ROOT_SECRET": "bench-root-secret-0123456789abcdefghijkl"}
        slack, site, hub = FakeProviders(), FakeWeb(), FakeGitHub(tmp / "github")
        github = {"OPENMA_GITHUB_URL": f"{hub.url}/git"}
        # a console member on each side, in the default tenant: on D1 with `openma users sql`,
        # before the workers start (two workerd processes writing one local SQLite can hold
        # each other up); the bootstrap key then finds the tenant by its name
        d.d1("INSERT INTO tenants (id, name, created_at) VALUES ('tenant_default', 'default', 1);" + users_sql(a.openma, "--tenant", "default"))
        worker = d.start("main", {**root, **github, "OPENMA_BOOTSTRAP_API_KEY": key, "OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES": "1"},
                         bound={"integrations": root, "agent": {**model, **root, "OPENMA_SANDBOX_URL": sandbox_url, "OPENMA_SANDBOX_TOKEN": sandbox_token,
                                                               "OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES": "1"}})
        port = free_port()
        native = subprocess.Popen(
            [a.openma, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp / "native")],
            env={**os.environ, "PLATFORM_ROOT_SECRET": "bench-root-secret-0123456789abcdefghijkl", "OPENMA_BOOTSTRAP_API_KEY": key,
                 "OPENMA_RATE_LIMIT_PER_MINUTE": "0", "OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES": "1", **github, **model},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        auth = {"x-api-key": key, "anthropic-beta": "managed-agents-2026-04-01"}
        agent = {"name": "bench", "model": "claude-sonnet-4-5", "system": "You are terse."}
        rows: dict[str, list[tuple[float, float, float]]] = {}
        try:
            for line in native.stdout:
                if re.match(r"^openma listening on ", line):
                    break
            native_member = subprocess.run([a.openma, "--data-dir", str(tmp / "native"), "users", "create", "--email", CONSOLE_EMAIL, "--role", "owner"],
                                           env={**os.environ, "OPENMA_PASSWORD": CONSOLE_PASSWORD}, capture_output=True, text=True, timeout=60)
            assert native_member.returncode == 0, native_member.stderr
            for base in (f"http://127.0.0.1:{port}", worker.base_url):
                one = httpx2.post(f"{base}/v1/agents", json=agent, headers=auth, timeout=30.0).json()["id"]
                for name, url, headers, body in [
                    ("GET /health", f"{base}/health", None, None),
                    ("POST /v1/agents", f"{base}/v1/agents", auth, agent),
                    ("GET /v1/agents/{id}", f"{base}/v1/agents/{one}", auth, None),
                ]:
                    xs = measure(url, a.n, headers, body)
                    rows.setdefault(name, []).append((pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
                env = httpx2.post(f"{base}/v1/environments", json={"name": "bench", "config": {"type": "cloud", "networking": {"type": "unrestricted"}}},
                                  headers=auth, timeout=30.0).json()["id"]
                xs = measure(f"{base}/v1/sessions", a.turns, auth, {"agent": one, "environment_id": env})
                rows.setdefault("POST /v1/sessions", []).append((pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
                session = httpx2.post(f"{base}/v1/sessions", json={"agent": one, "environment_id": env}, headers=auth, timeout=30.0).json()["id"]
                script(fake_url, [text] * (a.turns + 5))
                xs = measure_turns(base, auth, session, a.turns)
                rows.setdefault("turn (message → idle)", []).append((pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
                # the console: its dashboard, and the page of the session that just took the turns
                # five sign-ins: all the throttle allows an e-mail in a minute (argon2id each)
                xs = []
                for _ in range(5):
                    t = time.perf_counter()
                    signed_in = httpx2.post(f"{base}/console/login", data={"email": CONSOLE_EMAIL, "password": CONSOLE_PASSWORD}, timeout=60.0)
                    xs.append((time.perf_counter() - t) * 1000)
                    assert signed_in.status_code == 303, signed_in.text
                rows.setdefault("console sign-in (5)", []).append((pct(xs, 0.5), max(xs), statistics.mean(xs)))
                cookie = {"cookie": signed_in.headers["set-cookie"].split(";")[0]}
                xs = measure(f"{base}/console", a.n, cookie)
                rows.setdefault("GET /console (dashboard)", []).append((pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
                xs = measure(f"{base}/console/sessions/{session}", a.turns, cookie)
                rows.setdefault("GET /console/sessions/{id}", []).append((pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
                coder = httpx2.post(f"{base}/v1/agents", json={**agent, "tools": [{"type": "agent_toolset_20260401"}]}, headers=auth, timeout=30.0).json()["id"]
                session = httpx2.post(f"{base}/v1/sessions", json={"agent": coder, "environment_id": env}, headers=auth, timeout=30.0).json()["id"]
                script(fake_url, [bash, text] * (a.turns + 5))
                xs = measure_turns(base, auth, session, a.turns)
                rows.setdefault("turn with a bash call", []).append((pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
                # a mounted file read and an output left each turn (new bytes: taken each time)
                data = httpx2.post(f"{base}/v1/files", files={"file": ("in.csv", b"b,2\na,1\n" * 64, "text/csv")}, headers=auth, timeout=30.0).json()["id"]
                session = httpx2.post(f"{base}/v1/sessions", json={"agent": coder, "environment_id": env, "resources": [{"type": "file", "file_id": data, "mount_path": "/in.csv"}]},
                                      headers=auth, timeout=30.0).json()["id"]
                write = {"kind": "message", "blocks": [{"type": "tool_use", "name": "bash", "input": {
                    "command": "mkdir -p /mnt/session/outputs && (date +%s%N; sort /mnt/session/uploads/in.csv) > /mnt/session/outputs/sorted.csv"}}]}
                script(fake_url, [write, text] * (a.turns + 5))
                xs = measure_turns(base, auth, session, a.turns)
                rows.setdefault("turn leaving an output", []).append((pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
                # a memory store mounted: each turn's bash call appends to a memory (laid into
                # the sandbox before the call, read back and saved as a version after it)
                store = httpx2.post(f"{base}/v1/memory_stores", json={"name": "bench notes"}, headers=auth, timeout=30.0).json()["id"]
                httpx2.post(f"{base}/v1/memory_stores/{store}/memories", json={"path": "/log.md", "content": "start\n"}, headers=auth, timeout=30.0)
                session = httpx2.post(f"{base}/v1/sessions", json={"agent": coder, "environment_id": env, "resources": [{"type": "memory_store", "memory_store_id": store}]},
                                      headers=auth, timeout=30.0).json()["id"]
                note = {"kind": "message", "blocks": [{"type": "tool_use", "name": "bash", "input": {"command": "date +%s%N >> /mnt/memory/bench-notes/log.md"}}]}
                script(fake_url, [note, text] * (a.turns + 5))
                xs = measure_turns(base, auth, session, a.turns)
                rows.setdefault("turn writing a memory", []).append((pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
                # a vault with an environment_variable credential: the shell sees its placeholder
                # (the native server records it once; the worker's SessionDO looks the
                # credentials up and gives them to the sandbox server before every tool)
                vault = httpx2.post(f"{base}/v1/vaults", json={"display_name": "bench"}, headers=auth, timeout=30.0).json()["id"]
                httpx2.post(f"{base}/v1/vaults/{vault}/credentials", json={"auth": {"type": "environment_variable", "secret_name": "BENCH_TOKEN",
                            "secret_value": "bench-secret-0123456789", "networking": {"type": "unrestricted"}}}, headers=auth, timeout=30.0)
                session = httpx2.post(f"{base}/v1/sessions", json={"agent": coder, "environment_id": env, "vault_ids": [vault]}, headers=auth, timeout=30.0).json()["id"]
                seen = {"kind": "message", "blocks": [{"type": "tool_use", "name": "bash", "input": {"command": "echo ${#BENCH_TOKEN}"}}]}
                script(fake_url, [seen, text] * (a.turns + 5))
                xs = measure_turns(base, auth, session, a.turns)
                rows.setdefault("turn with a bash call, a vault credential", []).append((pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
                up, down = measure_files(base, auth, a.files, 1024 * 1024)
                rows.setdefault("upload 1 MiB file", []).append((pct(up, 0.5), pct(up, 0.99), statistics.mean(up)))
                rows.setdefault("download 1 MiB file", []).append((pct(down, 0.5), pct(down, 0.99), statistics.mean(down)))
                script(fake_url, [text] * (a.threads + 5))
                xs = measure_slack_threads(base, auth, one, slack, a.threads)
                rows.setdefault("Slack mention → answer", []).append((pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
                session = httpx2.post(f"{base}/v1/sessions", json={"agent": coder, "environment_id": env}, headers=auth, timeout=30.0).json()["id"]
                fetch = {"kind": "message", "blocks": [{"type": "tool_use", "name": "web_fetch", "input": {"url": f"{site.url}/page"}}]}
                script(fake_url, [fetch, text] * (a.turns + 5))
                xs = measure_turns(base, auth, session, a.turns)
                rows.setdefault("turn with a web_fetch", []).append((pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
                clone = {"agent": coder, "environment_id": env, "resources": [
                    {"type": "github_repository", "url": "https://github.com/acme/app", "authorization_token": GITHUB_TOKEN}]}
                xs = measure(f"{base}/v1/sessions", a.clones, auth, clone)
                rows.setdefault("POST /v1/sessions + clone", []).append((pct(xs, 0.5), pct(xs, 0.99), statistics.mean(xs)))
        finally:
            native.terminate()
            native.wait(timeout=20)
            worker.stop()
            sandbox.terminate()
            slack.stop()
            site.server.shutdown()
            hub.stop()
            fake.terminate()

    print(f"{a.n} sequential requests per row ({a.turns} for sessions and turns, {a.files} for files, {a.threads} Slack threads, "
          f"{a.clones} clones), after warm-up; ms")
    print(f"{'request':<22} {'native p50':>10} {'p99':>7} {'mean':>7} {'worker p50':>11} {'p99':>7} {'mean':>7} {'ratio p50':>10} {'p99':>6}")
    for name, ((np50, np99, nmean), (wp50, wp99, wmean)) in rows.items():
        print(f"{name:<22} {np50:>10.2f} {np99:>7.2f} {nmean:>7.2f} {wp50:>11.2f} {wp99:>7.2f} {wmean:>7.2f} "
              f"{wp50 / np50:>9.1f}x {wp99 / np99:>5.1f}x")


if __name__ == "__main__":
    main()
