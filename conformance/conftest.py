"""Shared fixtures for the openma conformance suite.

The suite drives a real `openma serve` process with the official Python SDK
(`anthropic` 2.10.0, see requirements.txt).  One server is started per pytest
session; every test creates its own objects (with unique names) so tests do
not depend on each other.

The server's model provider is a scripted fake (`openma-fake-model`, one per pytest
session): `ANTHROPIC_BASE_URL` points at it, so session runs never leave the machine.
Tests script its answers through the `fake` fixture.

Environment:
  OPENMA_BIN             path of the openma binary (default: <repo>/target/debug/openma)
  OPENMA_FAKE_MODEL_BIN  path of the fake model (default: <repo>/target/debug/openma-fake-model)
  OPENMA_TARGET_URL      drive an already running deployment at this URL instead (the
                         Cloudflare Workers under `wrangler dev`, say) with the key in
  OPENMA_TARGET_API_KEY  ; OPENMA_TARGET_TENANT_KEYS (comma-separated) are keys of further
                         tenants of that deployment, handed out where a test would create
                         a tenant with the admin CLI; tests that need more of the native
                         server's admin CLI or its model provider are skipped there
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import anthropic
import httpx2
import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BIN = REPO / "target" / "debug" / "openma"
DEFAULT_FAKE_BIN = REPO / "target" / "debug" / "openma-fake-model"

MODEL = "claude-sonnet-4-5"
BETA = "managed-agents-2026-04-01"
READY_RE = re.compile(r"^openma listening on (http://127\.0\.0\.1:(\d+))$")
FAKE_READY_RE = re.compile(r"^fake model listening on (http://127\.0\.0\.1:(\d+))/?$")
STARTUP_TIMEOUT_S = 30.0
ADMIN_TIMEOUT_S = 30.0
SDK_TIMEOUT_S = 30.0

ERROR_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "timeout_error",
    "api_error",
    "overloaded_error",
    "memory_precondition_failed_error",
    "memory_path_conflict_error",
    "conflict_error",
}

# The SDK picks up credentials / base URLs from the environment; the suite
# must only ever talk to the server it started, with the keys it created.
for _var in list(os.environ):
    if _var.startswith("ANTHROPIC_"):
        del os.environ[_var]


TARGET_URL = os.environ.get("OPENMA_TARGET_URL")
TARGET_API_KEY = os.environ.get("OPENMA_TARGET_API_KEY", "")
TARGET_TENANT_KEYS = [k for k in os.environ.get("OPENMA_TARGET_TENANT_KEYS", "").split(",") if k]


def openma_bin() -> Path:
    return Path(os.environ.get("OPENMA_BIN", str(DEFAULT_BIN)))


def fake_model_bin() -> Path:
    return Path(os.environ.get("OPENMA_FAKE_MODEL_BIN", str(DEFAULT_FAKE_BIN)))


def new_api_key() -> str:
    return "sk-oma-" + secrets.token_hex(24)


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # Keep the server's own view clean: no model-provider keys, no client
        # settings, no data dir / listen address other than the ones we pass.
        if not k.startswith("ANTHROPIC_")
        and not k.startswith("OPENAI_")
        and k
        not in (
            "OPENMA_BOOTSTRAP_API_KEY",
            "OPENMA_DATA_DIR",
            "OPENMA_LISTEN",
            "OPENMA_URL",
            "OPENMA_API_KEY",
            "OPENMA_TARGET_URL",
            "OPENMA_TARGET_API_KEY",
            "OPENMA_TARGET_FAKE_MODEL_URL",
            "OPENMA_TARGET_TENANT_KEYS",
        )
    }
    env["RUST_LOG"] = "warn"
    if extra:
        env.update(extra)
    return env


@dataclass
class Server:
    """A running `openma serve` child process, or (`proc` None) a deployment started
    elsewhere (`OPENMA_TARGET_URL`)."""

    bin: Path | None
    data_dir: Path | None
    api_key: str
    proc: subprocess.Popen | None
    base_url: str
    port: int
    stderr_path: Path | None
    stdout_lines: list[str] = field(default_factory=list)
    startup_stdout: list[str] = field(default_factory=list)
    # A target deployment's keys of tenants no test has used yet.
    spare_tenant_keys: list[str] = field(default_factory=list)

    def stderr_tail(self, n: int = 40) -> str:
        if self.stderr_path is None:
            return ""
        try:
            lines = self.stderr_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def admin(self, *args: str) -> str:
        """Run an admin subcommand against this server's data dir; return stdout."""
        if self.bin is None:
            pytest.skip("needs the native server's admin CLI, which a target deployment (OPENMA_TARGET_URL) has not")
        cmd = [str(self.bin), *args, "--data-dir", str(self.data_dir)]
        res = subprocess.run(
            cmd,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=ADMIN_TIMEOUT_S,
        )
        if res.returncode != 0:
            raise AssertionError(
                f"`{' '.join(cmd)}` exited {res.returncode}\n"
                f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
            )
        return res.stdout

    def create_tenant_key(self, tenant: str) -> str:
        """Create a tenant and an API key for it; return the key. A target deployment
        hands out one of its spare tenants' keys instead."""
        if self.bin is None:
            if not self.spare_tenant_keys:
                pytest.skip("the target deployment has no spare tenant left (OPENMA_TARGET_TENANT_KEYS)")
            return self.spare_tenant_keys.pop(0)
        self.admin("tenants", "create", tenant)
        out = self.admin("api-keys", "create", "--name", "k", "--tenant", tenant)
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        assert lines, "`openma api-keys create` printed nothing"
        return lines[-1]

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


def _pump(stream, q: "queue.Queue[str | None]", sink: list[str]) -> None:
    for line in iter(stream.readline, ""):
        line = line.rstrip("\r\n")
        sink.append(line)
        q.put(line)
    q.put(None)


def _launch(
    what: str,
    cmd: list[str],
    env: dict[str, str],
    ready_re: re.Pattern,
    stderr_path: Path,
    hint: str,
) -> tuple[subprocess.Popen, str, int, list[str], list[str]]:
    """Start `cmd` and wait for its ready line on stdout; fail the test run otherwise."""
    binary = Path(cmd[0])
    if not binary.is_file():
        pytest.fail(f"{what} binary not found at {binary} ({hint})", pytrace=False)
    stderr_f = open(stderr_path, "wb")
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_f,
        text=True,
        bufsize=1,
    )
    stderr_f.close()
    lines: list[str] = []
    q: "queue.Queue[str | None]" = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, q, lines), daemon=True).start()

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    base_url = port = None
    seen: list[str] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            line = q.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:  # stdout closed: the process died
            break
        seen.append(line)
        m = ready_re.match(line.strip())
        if m:
            base_url, port = m.group(1), int(m.group(2))
            break

    if base_url is None:
        rc = proc.poll()
        if rc is None:
            proc.kill()
            proc.wait(timeout=10)
        try:
            err = stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            err = ""
        pytest.fail(
            f"`{what}` did not print its ready line ({ready_re.pattern}) within "
            f"{STARTUP_TIMEOUT_S:.0f}s (exit code {proc.returncode}).\nstdout so far: {seen!r}\n"
            f"stderr tail:\n{err}",
            pytrace=False,
        )
    return proc, base_url, port, lines, seen


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def start_server(
    data_dir: Path, api_key: str | None = None, model_base_url: str | None = None, env: dict[str, str] | None = None
) -> Server:
    """Start `openma serve`. With `model_base_url`, its Anthropic provider is that URL
    (the fake model) and model retries are fast (2 retries, 20 ms base); `env` adds
    variables (e.g. `OPENMA_BLOB_URL`)."""
    binary = openma_bin()
    api_key = api_key or new_api_key()
    data_dir.mkdir(parents=True, exist_ok=True)
    # Each session sandbox runs as its own uid and must pass through every directory above
    # the data dir (pytest makes its temp dirs 0700): let others traverse, not list.
    for d in [data_dir, *data_dir.parents]:
        if d == Path("/"):
            break
        mode = d.stat().st_mode & 0o7777
        if mode & 0o001 == 0:
            d.chmod(mode | 0o711 if mode & 0o700 == 0o700 else mode | 0o001)
    extra = {"OPENMA_BOOTSTRAP_API_KEY": api_key, **(env or {})}
    if model_base_url is not None:
        extra.update(
            {
                "ANTHROPIC_BASE_URL": model_base_url,
                "ANTHROPIC_API_KEY": "sk-ant-fake",
                "OPENMA_MODEL_MAX_RETRIES": "2",
                "OPENMA_MODEL_RETRY_BASE_MS": "20",
            }
        )
    stderr_path = data_dir.parent / (data_dir.name + ".stderr.log")
    proc, base_url, port, lines, seen = _launch(
        "openma serve",
        [str(binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
        _child_env(extra),
        READY_RE,
        stderr_path,
        "build it with `cargo build -p openma-server` or set OPENMA_BIN",
    )
    return Server(
        bin=binary,
        data_dir=data_dir,
        api_key=api_key,
        proc=proc,
        base_url=base_url,
        port=port,
        stderr_path=stderr_path,
        stdout_lines=lines,
        startup_stdout=seen,
    )


@dataclass
class FakeModel:
    """A running `openma-fake-model`: a scripted Anthropic `/v1/messages` provider.

    `script([...])` appends replies to its FIFO (JSON forms in
    crates/openma-fake-model/src/script.rs: `{"kind": "message", "blocks": [...]}`,
    `{"kind": "error", "status": 429}`, `{"kind": "cut", ...}`, `{"kind": "stream_error", ...}`);
    with an empty FIFO it answers the text `ok`. `requests()` are the captured model
    requests (method, path, headers, body)."""

    proc: subprocess.Popen | None
    base_url: str
    stderr_path: Path | None
    http: httpx2.Client

    def script(self, replies: list[dict] | dict) -> dict:
        r = self.http.post("/_fake/script", json=replies)
        assert r.status_code == 200, f"fake model refused the script: {r.status_code} {r.text}"
        return r.json()

    def reset(self) -> None:
        r = self.http.post("/_fake/reset")
        assert r.status_code == 200, r.text

    def requests(self) -> list[dict]:
        r = self.http.get("/_fake/requests")
        assert r.status_code == 200, r.text
        return r.json()

    def health(self) -> dict:
        return self.http.get("/_fake/health").json()

    def stop(self) -> None:
        self.http.close()
        if self.proc is not None:
            _stop(self.proc)


def start_fake_model(stderr_path: Path) -> FakeModel:
    proc, base_url, _port, _lines, _seen = _launch(
        "openma-fake-model",
        [str(fake_model_bin()), "--listen", "127.0.0.1:0"],
        _child_env(),
        FAKE_READY_RE,
        stderr_path,
        "build it with `cargo build -p openma-fake-model` or set OPENMA_FAKE_MODEL_BIN",
    )
    return FakeModel(
        proc=proc,
        base_url=base_url,
        stderr_path=stderr_path,
        http=httpx2.Client(base_url=base_url, timeout=10.0),
    )


def make_client(server: Server, api_key: str | None = None, **kw: Any) -> anthropic.Anthropic:
    kw.setdefault("timeout", SDK_TIMEOUT_S)
    return anthropic.Anthropic(
        api_key=server.api_key if api_key is None else api_key,
        base_url=server.base_url,
        **kw,
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def fake_model(tmp_path_factory) -> FakeModel:
    """The session-wide fake model process (use the `fake` fixture in tests). A target
    deployment (`OPENMA_TARGET_URL`) names the one it calls in `OPENMA_TARGET_FAKE_MODEL_URL`."""
    if TARGET_URL:
        url = os.environ.get("OPENMA_TARGET_FAKE_MODEL_URL")
        if not url:
            pytest.skip("the target deployment (OPENMA_TARGET_URL) names no fake model (OPENMA_TARGET_FAKE_MODEL_URL)")
        fm = FakeModel(proc=None, base_url=url, stderr_path=None, http=httpx2.Client(base_url=url, timeout=10.0))
        yield fm
        fm.stop()
        return
    root = tmp_path_factory.mktemp("fake-model")
    fm = start_fake_model(root / "fake-model.stderr.log")
    yield fm
    fm.stop()


@pytest.fixture
def fake(fake_model: FakeModel) -> FakeModel:
    """The fake model, emptied (script, captured requests, default reply) for this test."""
    fake_model.reset()
    yield fake_model


@pytest.fixture(scope="session")
def server(request, tmp_path_factory) -> Server:
    if TARGET_URL:
        port = httpx2.URL(TARGET_URL).port or 443
        yield Server(
            bin=None, data_dir=None, api_key=TARGET_API_KEY, proc=None, base_url=TARGET_URL, port=port, stderr_path=None,
            spare_tenant_keys=list(TARGET_TENANT_KEYS),
        )
        return
    fake_model = request.getfixturevalue("fake_model")
    root = tmp_path_factory.mktemp("openma")
    srv = start_server(root / "data", model_base_url=fake_model.base_url)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server: Server) -> anthropic.Anthropic:
    c = make_client(server)
    yield c
    c.close()


@pytest.fixture(scope="session")
def raw(server: Server) -> httpx2.Client:
    """A plain HTTP client (no auth header) for wire-level checks."""
    c = httpx2.Client(base_url=server.base_url, timeout=SDK_TIMEOUT_S)
    yield c
    c.close()


@pytest.fixture(scope="session")
def tenant_b(server: Server) -> str:
    """API key of a second tenant, created with the admin CLI while the server runs."""
    return server.create_tenant_key("tenant-b-" + uuid.uuid4().hex[:8])


@pytest.fixture(scope="session")
def client_b(server: Server, tenant_b: str) -> anthropic.Anthropic:
    c = make_client(server, api_key=tenant_b)
    yield c
    c.close()


@dataclass
class Counted:
    client: anthropic.Anthropic
    requests: list[httpx2.Request]

    def calls(self, method: str | None = None, path_prefix: str | None = None) -> list[httpx2.Request]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method)
            and (path_prefix is None or r.url.path.startswith(path_prefix))
        ]


@pytest.fixture
def counted(server: Server) -> Counted:
    """An SDK client (default retry policy) that records every HTTP request it sends."""
    seen: list[httpx2.Request] = []
    http = httpx2.Client(event_hooks={"request": [seen.append]}, timeout=SDK_TIMEOUT_S)
    c = make_client(server, http_client=http)
    yield Counted(c, seen)
    c.close()


@pytest.fixture
def uid(request) -> str:
    """A short unique tag for object names created by the current test."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_agent(client: anthropic.Anthropic, uid: str) -> Callable[..., Any]:
    counter = iter(range(10_000))

    def _make(c: anthropic.Anthropic | None = None, **kw: Any):
        kw.setdefault("name", f"agent-{uid}-{next(counter)}")
        kw.setdefault("model", MODEL)
        return (c or client).beta.agents.create(**kw)

    return _make


@pytest.fixture
def make_env(client: anthropic.Anthropic, uid: str) -> Callable[..., Any]:
    counter = iter(range(10_000))

    def _make(c: anthropic.Anthropic | None = None, **kw: Any):
        kw.setdefault("name", f"env-{uid}-{next(counter)}")
        kw.setdefault("config", {"type": "cloud", "networking": {"type": "unrestricted"}})
        return (c or client).beta.environments.create(**kw)

    return _make


# --------------------------------------------------------------------------- helpers


def parse_ts(value: Any) -> datetime:
    """Parse an RFC 3339 timestamp (as str or the SDK's datetime)."""
    if isinstance(value, datetime):
        return value
    assert isinstance(value, str) and value, f"not a timestamp: {value!r}"
    v = value.replace("Z", "+00:00")
    # fromisoformat in 3.11 accepts up to 6 fractional digits; trim longer ones.
    v = re.sub(r"(\.\d{6})\d+", r"\1", v)
    dt = datetime.fromisoformat(v)
    assert dt.tzinfo is not None, f"timestamp without offset: {value!r}"
    return dt


def assert_error_envelope(err: anthropic.APIStatusError, status: int, error_type: str | None = None) -> dict:
    """The body is Anthropic's error envelope and the request id is exposed."""
    assert err.status_code == status, f"expected HTTP {status}, got {err.status_code}: {err.body!r}"
    body = err.body
    assert isinstance(body, dict), f"error body is not JSON: {body!r}"
    assert body.get("type") == "error", body
    e = body.get("error")
    assert isinstance(e, dict), body
    assert isinstance(e.get("message"), str) and e["message"], body
    assert e.get("type") in ERROR_TYPES, body
    if error_type is not None:
        assert e["type"] == error_type, body
    assert isinstance(body.get("request_id"), str) and body["request_id"], body
    assert err.request_id, "missing `request-id` response header"
    assert err.request_id == body["request_id"], (err.request_id, body["request_id"])
    return body


def dump(obj: Any) -> Any:
    """SDK model -> plain JSON-ish dict (keeps unknown fields)."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return obj


# --------------------------------------------------------------------------- session runtime helpers

RUN_TIMEOUT_S = 10.0  # a scripted run on the fake model takes milliseconds; be generous


def user_message(text: str) -> dict:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def text_reply(text: str, **kw: Any) -> dict:
    """A fake-model reply: one text block (kw: chunk_delay_ms, split, usage, stop_reason)."""
    return {"kind": "message", "blocks": [{"type": "text", "text": text}], **kw}


def tool_use_reply(name: str, input: dict | None = None, text: str | None = None, **kw: Any) -> dict:
    """A fake-model reply calling tool `name` (optionally preceded by a text block)."""
    blocks: list[dict] = [{"type": "text", "text": text}] if text else []
    blocks.append({"type": "tool_use", "name": name, "input": input or {}})
    return {"kind": "message", "blocks": blocks, **kw}


def is_idle(ev: Any, stop: str | None = None) -> bool:
    if getattr(ev, "type", None) != "session.status_idle":
        return False
    return stop is None or ev.stop_reason.type == stop


class EventTap:
    """An open SDK event stream (`client.beta.sessions.events.stream`) with deadlines.

    The stream is opened in the constructor: once it returns, the server holds the
    subscription, so every event caused by a later send is seen. Events are read on
    demand, in the calling thread (no reader thread: closing then really closes the
    connection), each socket read bounded by the stream's read timeout and each wait by
    its own deadline. `wait_for` consumes the tap like a queue (a cursor moves past
    each match); `events` keeps everything read so far.
    """

    def __init__(self, stream: Any, label: str = "stream") -> None:
        self.stream = stream
        self.label = label
        self.events: list[Any] = []
        self.error: BaseException | None = None
        self.ended = False
        self.cursor = 0
        self._it = iter(stream)

    def _describe(self) -> str:
        kinds = [getattr(e, "type", "?") for e in self.events]
        return f"{self.label}: read so far {kinds} (ended={self.ended}, error={self.error!r})"

    def _read_one(self) -> bool:
        """Read the next event into `events`; False once the stream has ended or failed."""
        if self.ended:
            return False
        try:
            self.events.append(next(self._it))
            return True
        except StopIteration:
            self.ended = True
        except Exception as e:  # noqa: BLE001 - read timeout, dropped connection: reported by the wait
            self.error = e
            self.ended = True
        return False

    def wait_for(self, pred: Callable[[Any], bool], timeout: float = RUN_TIMEOUT_S, what: str = "event") -> Any:
        """The first event after the cursor that matches; the cursor moves past it."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self.cursor, len(self.events)):
                if pred(self.events[i]):
                    self.cursor = i + 1
                    return self.events[i]
            self.cursor = len(self.events)
            if time.monotonic() > deadline or not self._read_one():
                raise AssertionError(f"no {what} within {timeout}s; {self._describe()}")

    def wait_type(self, kind: str, timeout: float = RUN_TIMEOUT_S) -> Any:
        return self.wait_for(lambda e: getattr(e, "type", None) == kind, timeout, what=f"`{kind}`")

    def wait_idle(self, stop: str | None = None, timeout: float = RUN_TIMEOUT_S) -> Any:
        """The next `session.status_idle` (with `stop_reason.type == stop` when given)."""
        what = f"`session.status_idle` ({stop or 'any stop_reason'})"
        return self.wait_for(lambda e: is_idle(e, stop), timeout, what=what)

    def wait_end(self, timeout: float = RUN_TIMEOUT_S) -> None:
        """Read until the server closes the stream."""
        deadline = time.monotonic() + timeout
        while self._read_one():
            if time.monotonic() > deadline:
                raise AssertionError(f"stream not closed within {timeout}s; {self._describe()}")
        if self.error is not None:
            raise AssertionError(f"stream failed instead of ending; {self._describe()}")

    def since(self, start: int = 0) -> list[Any]:
        return list(self.events[start:])

    def types(self, start: int = 0) -> list[str]:
        return [e.type for e in self.events[start:]]

    def close(self) -> None:
        try:
            self.stream.close()
        except Exception:  # noqa: BLE001 - closing a half-read response may raise
            pass


@pytest.fixture
def tap(client: anthropic.Anthropic) -> Callable[..., EventTap]:
    """`tap(session_id, **stream_kwargs)` opens an `EventTap`; all are closed at teardown."""
    opened: list[EventTap] = []

    def _open(session_id: str, c: anthropic.Anthropic | None = None, **kw: Any) -> EventTap:
        kw.setdefault("timeout", httpx2.Timeout(SDK_TIMEOUT_S, read=RUN_TIMEOUT_S))
        t = EventTap((c or client).beta.sessions.events.stream(session_id, **kw), label=f"stream {session_id}")
        opened.append(t)
        return t

    yield _open
    for t in opened:
        t.close()
