"""Starts openma's Workers under `wrangler dev` — workerd with local D1, KV, R2 and Durable
Objects, persisted in a fresh folder per test — and applies the D1 migrations the way the
deployment guide does. Expects the toolchain on PATH (../toolchain.sh) and the workers
built (../test.sh builds them once; `wrangler dev` runs them as built)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import threading
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest

CF = Path(__file__).resolve().parent.parent
REPO = CF.parent.parent
START_TIMEOUT_S = 180.0
SANDBOX_SERVER_BIN = Path(os.environ.get("OPENMA_SANDBOX_SERVER_BIN", str(REPO / "target" / "debug" / "openma-sandbox-server")))


def script(fake_model: str, replies: list[dict]) -> None:
    """The scripted fake model's next answers, in order (what it had queued is dropped)."""
    httpx2.post(f"{fake_model}/_fake/reset").raise_for_status()
    httpx2.post(f"{fake_model}/_fake/script", json=replies).raise_for_status()


def start_sandbox_server(root: Path, token: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """The program the SessionDOs' container image runs, `openma-sandbox-server`, on a
    loopback port with its sessions under `root`: the stand-in for Containers (which need
    Docker), reached at OPENMA_SANDBOX_URL. Its log is `root/stderr.log`."""
    assert SANDBOX_SERVER_BIN.exists(), f"{SANDBOX_SERVER_BIN} is missing: cargo build -p openma-sandbox-server"
    # each session's sandbox runs as its own uid, which must pass through the root's parents
    root.mkdir(parents=True, exist_ok=True)
    for d in [root, *root.parents]:
        d.chmod(d.stat().st_mode | 0o001)
    proc = subprocess.Popen([str(SANDBOX_SERVER_BIN), "--listen", "127.0.0.1:0", "--root", str(root / "sessions")],
                            stdout=subprocess.PIPE, stderr=(root / "stderr.log").open("w"), text=True,
                            env={**os.environ, "OPENMA_SANDBOX_TOKEN": token, **(env or {})})
    line = proc.stdout.readline().strip()
    ready = re.match(r"^openma-sandbox-server listening on (http://127\.0\.0\.1:\d+)$", line)
    assert ready, f"the sandbox server did not start: {line!r} {(root / 'stderr.log').read_text()}"
    return proc, ready.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeProviders:
    """Slack's Web API (`/slack/{method}`) and Linear's GraphQL (`/linear/graphql`): every
    call recorded, answered as the providers do."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.lock = threading.Condition()
        providers = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with providers.lock:
                    providers.calls.append({"path": self.path, "authorization": self.headers.get("authorization"), "body": body})
                    n = len(providers.calls)
                    providers.lock.notify_all()
                if self.path.startswith("/slack/"):
                    answer = {"ok": True, "ts": f"{n}.000100", "user": "openma", "team": "T1"}
                else:
                    answer = {"data": {"agentActivityCreate": {"success": True}}}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, what, label: str, timeout: float = 60.0, since: int = 0) -> dict:
        """The first call from the `since`-th on that `what` accepts, waiting for it up to
        `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                found = [c for c in self.calls[since:] if what(c)]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {label} within {timeout} s: {self.calls}")
                self.lock.wait(left)

    def stop(self) -> None:
        self.server.shutdown()


SLACK_SIGNING = "slack-signing-secret-0123456789"


def slack_signed(body: str, secret: str = SLACK_SIGNING, at: int | None = None) -> dict[str, str]:
    """Slack's `v0` signature headers for `body`."""
    ts = str(at if at is not None else int(time.time()))
    sig = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": ts, "x-slack-signature": f"v0={sig}"}


@dataclass
class Worker:
    """One `wrangler dev` process serving one worker (and the workers it binds)."""

    name: str
    base_url: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


# The keys of wrangler.jsonc whose values are paths relative to the worker's folder.
_PATH_KEYS = re.compile(r'"(main|migrations_dir|image|image_build_context|\$schema)": "([^"]+)"')


def prebuilt_config(worker: str, folder: Path, ratelimit: int | None = None) -> Path:
    """The worker's wrangler.jsonc without its `build` step, written into `folder` (a test's
    own, with the worker's `.dev.vars` beside it: nothing is written into the shared worker
    folders, so runs do not disturb each other), its paths made absolute. test.sh has built
    the worker once, and rebuilding it on every `wrangler dev` start (wasm-bindgen and
    wasm-opt, about a minute) would dominate the run. With `ratelimit`, the `API_RATE_LIMIT`
    binding that wrangler.jsonc leaves commented out, added to its `ratelimits`, at that many
    requests per minute."""
    text = (CF / worker / "wrangler.jsonc").read_text()
    start = text.index('"build": {')
    end = text.index("}", start) + 1
    if text[end] == ",":
        end += 1
    text = text[:start] + text[end:]
    # and no container image to build (Containers need Docker; the tests run the sandbox
    # server itself, at OPENMA_SANDBOX_URL)
    brace = text.index("{")
    text = text[: brace + 1] + '\n  "dev": { "enable_containers": false },' + text[brace + 1:]
    if ratelimit is not None:
        binding = f'{{ "name": "API_RATE_LIMIT", "namespace_id": "1001", "simple": {{ "limit": {ratelimit}, "period": 60 }} }},'
        text = text.replace('"ratelimits": [', '"ratelimits": [' + binding, 1)
    text = _PATH_KEYS.sub(lambda m: f'"{m.group(1)}": "{(CF / worker / m.group(2)).resolve()}"', text)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "wrangler.jsonc"
    path.write_text(text)
    return path


# A state folder migrated once per run, and the command's output (`Deployment.apply_migrations`).
_MIGRATED: tuple[Path, str] | None = None


@dataclass
class Deployment:
    """A local deployment's state folder, shared by the workers and wrangler's D1 commands."""

    state: Path
    tmp: Path
    started: list[Worker] = field(default_factory=list)

    def stop_all(self) -> None:
        for w in self.started:
            w.stop()

    def wrangler(self, worker: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["wrangler", *args, "--persist-to", str(self.state)],
            cwd=CF / worker, capture_output=True, text=True, timeout=timeout, check=False,
        )

    def apply_migrations(self) -> str:
        """`wrangler d1 migrations apply`, as the deployment guide runs it. A state folder
        nothing has touched yet gets a copy of one the command migrated earlier in this run
        (the same files; a wrangler start each saves seconds per test); its output is that run's."""
        if not any(self.state.iterdir()):
            global _MIGRATED
            if _MIGRATED is None:
                template = Path(tempfile.mkdtemp(prefix="openma-d1-migrated-"))
                _MIGRATED = (template, self._migrate(template))
            shutil.copytree(_MIGRATED[0], self.state, dirs_exist_ok=True)
            return _MIGRATED[1]
        return self._migrate(self.state)

    def _migrate(self, state: Path) -> str:
        r = subprocess.run(
            ["wrangler", "d1", "migrations", "apply", "openma-control", "--local", "--persist-to", str(state)],
            cwd=CF / "main", capture_output=True, text=True, timeout=120.0, check=False,
        )
        assert r.returncode == 0, f"wrangler d1 migrations apply failed:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def d1(self, sql: str) -> str:
        r = self.wrangler("main", "d1", "execute", "openma-control", "--local", "--json", "--command", sql)
        assert r.returncode == 0, f"wrangler d1 execute failed:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def kv_put(self, key: str, value: str) -> None:
        """Writes a key of openma-main's CONFIG_KV, as the deployment guide does (`wrangler kv
        key put`); before the workers start, as for D1."""
        r = self.wrangler("main", "kv", "key", "put", key, value, "--binding", "CONFIG_KV", "--local")
        assert r.returncode == 0, f"wrangler kv key put failed:\n{r.stdout}\n{r.stderr}"

    def start(self, worker: str, secrets: dict[str, str] | None = None, bound: dict[str, dict[str, str]] | None = None,
              scheduled: bool = False, ratelimit: int | None = None) -> Worker:
        """Serves `worker` on a port of its own, with the workers it binds (`bound`: name →
        their secrets) in the same workerd, as a deployment's service and Durable Object
        bindings connect them. Secrets go in each worker's `.dev.vars`, in this test's folder. With `scheduled`, the
        worker's cron runs on `GET /__scheduled`; with `ratelimit`, each API key may make that
        many requests a minute."""
        port = free_port()
        configs = []
        for name, values in [(worker, secrets or {}), *(bound or {}).items()]:
            folder = self.tmp / "workers" / f"{worker}-{port}" / name
            config = prebuilt_config(name, folder, ratelimit if name == worker else None)
            (folder / ".dev.vars").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
            configs += ["--config", str(config)]
        log = self.tmp / f"{worker}-{port}.log"
        proc = subprocess.Popen(
            ["wrangler", "dev", *configs, "--local", "--ip", "127.0.0.1", "--port", str(port),
             "--persist-to", str(self.state),
             "--show-interactive-dev-session=false", "--log-level", "log", *(["--test-scheduled"] if scheduled else [])],
            cwd=self.tmp / "workers" / f"{worker}-{port}" / worker, stdin=subprocess.DEVNULL, stdout=log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        w = Worker(worker, f"http://127.0.0.1:{port}", proc, log)
        self.started.append(w)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"wrangler dev for {worker} exited with {proc.returncode}:\n{w.output()}")
            try:
                httpx2.get(f"{w.base_url}/health", timeout=2.0)
                return w
            except httpx2.HTTPError:
                time.sleep(0.5)
        w.stop()
        raise AssertionError(f"wrangler dev for {worker} did not answer within {START_TIMEOUT_S} s:\n{w.output()}")


@pytest.fixture
def deployment(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    d = Deployment(state=state, tmp=tmp_path)
    yield d
    d.stop_all()
