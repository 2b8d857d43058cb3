"""openma-integrations under `wrangler dev`, with openma-main (which passes the providers'
deliveries on over its INTEGRATIONS binding) and openma-agent: Slack and Linear threads
drive sessions end to end against fake Slack and Linear APIs over loopback — signatures
checked, each delivery processed once, the answer posted back to the thread by the
session's SessionDO, a tool call waiting for a confirmation answered with Slack's buttons
— and the integrations' secrets never leave D1 sealed. A GitHub App's issue does the same
against a fake GitHub (JWTs verified with the App's public key, installation tokens, issue
comments, git over HTTP), its session starting on a clone of the repository that the
sandbox server makes with the token, which goes nowhere else."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anthropic
import httpx2
import pytest
from conftest import SLACK_SIGNING as SIGNING, FakeProviders, script, slack_signed
from test_conformance import KEY_A, KEY_B, SECRET, agent_vars, fake_model, sandbox_server, tenant_rows  # noqa: F401  (fixtures)

BOT_TOKEN = "xoxb-workers-bot-token-0123456789"
LINEAR_SECRET = "linear-webhook-secret-0123456789"
LINEAR_TOKEN = "lin_api_workers_token_0123456789"


@pytest.fixture
def providers():
    p = FakeProviders()
    yield p
    p.stop()


@pytest.fixture
def workers(deployment, fake_model, sandbox_server):
    """openma-main serving the API and passing deliveries on, with openma-integrations and
    openma-agent bound."""
    deployment.apply_migrations()
    deployment.d1(tenant_rows("b", KEY_B))
    # the fake providers are on loopback, which an integration's api_base_url may name only so
    return deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A, "OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES": "1"},
                            bound={"integrations": {"PLATFORM_ROOT_SECRET": SECRET}, "agent": agent_vars(fake_model, sandbox_server)})


def mention(event_id: str, ts: str, text: str, thread_ts: str | None = None) -> str:
    event = {"type": "app_mention", "channel": "C42", "user": "U7", "text": text, "ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return json.dumps({"type": "event_callback", "event_id": event_id, "event": event})


def deliver(base: str, path: str, body: str, headers: dict[str, str], content_type: str = "application/json") -> httpx2.Response:
    return httpx2.post(f"{base}{path}", content=body.encode(), headers={"content-type": content_type, **headers}, timeout=30.0)


def sessions_of(a: anthropic.Anthropic) -> list:
    return list(a.beta.sessions.list(limit=100))


def slack_says(call: dict, text: str) -> bool:
    """A message of the thread now says `text` (posted, or a progress message updated)."""
    return call["path"] in ("/slack/chat.postMessage", "/slack/chat.update") and call["body"].get("text") == text


def test_a_slack_thread_drives_one_session_and_gets_its_answers_and_buttons(deployment, workers, fake_model, providers):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=workers.base_url, timeout=30.0)
    agent = a.beta.agents.create(name="slack-agent", model="claude-sonnet-4-5", tools=[
        {"type": "agent_toolset_20260401", "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]}])
    h = {"x-api-key": KEY_A}
    created = httpx2.post(f"{workers.base_url}/v1/integrations", headers=h, timeout=30.0, json={
        "provider": "slack", "agent_id": agent.id, "signing_secret": SIGNING, "bot_token": BOT_TOKEN, "api_base_url": f"{providers.url}/slack"})
    assert created.status_code == 200, created.text
    integration = created.json()
    assert SIGNING not in created.text and BOT_TOKEN not in created.text
    events_path, clicks_path = integration["events_path"], integration["interactivity_path"]
    listed = httpx2.get(f"{workers.base_url}/v1/integrations", headers=h, timeout=30.0).json()["data"]
    assert [i["id"] for i in listed] == [integration["id"]]
    # another tenant neither sees it nor can delete it
    other = httpx2.get(f"{workers.base_url}/v1/integrations/{integration['id']}", headers={"x-api-key": KEY_B}, timeout=30.0)
    assert other.status_code == 404

    # Slack's URL check, and deliveries that are not Slack's
    challenge = json.dumps({"type": "url_verification", "challenge": "abc123"})
    ok = deliver(workers.base_url, events_path, challenge, slack_signed(challenge))
    assert ok.status_code == 200 and ok.json() == {"challenge": "abc123"}, ok.text
    assert deliver(workers.base_url, events_path, challenge, {}).status_code == 401
    assert deliver(workers.base_url, events_path, challenge, slack_signed(challenge, secret="wrong")).status_code == 401
    assert deliver(workers.base_url, events_path, challenge, slack_signed(challenge, at=int(time.time()) - 600)).status_code == 401
    assert deliver(workers.base_url, "/integrations/slack/intg_nope/events", challenge, slack_signed(challenge)).status_code == 404

    # a mention starts the thread's session; a progress message is posted into the thread as
    # the turn begins and becomes the answer
    script(fake_model, [{"kind": "message", "blocks": [{"type": "text", "text": "Hello from the Workers."}]}])
    first = mention("Ev1", "1700000000.000100", "<@UAPP> hello")
    assert deliver(workers.base_url, events_path, first, slack_signed(first)).status_code == 200
    working = providers.wait_for(lambda c: c["path"] == "/slack/chat.postMessage" and "Working on it" in c["body"].get("text", ""), "progress")
    assert working["body"]["channel"] == "C42" and working["body"]["thread_ts"] == "1700000000.000100"
    answer = providers.wait_for(lambda c: slack_says(c, "Hello from the Workers."), "answer")
    assert answer["path"] == "/slack/chat.update" and answer["body"]["channel"] == "C42"
    assert answer["authorization"] == working["authorization"] == f"Bearer {BOT_TOKEN}"
    [session] = sessions_of(a)
    assert session.metadata["integration_id"] == integration["id"] and session.metadata["slack_thread_ts"] == "1700000000.000100"
    said = [e for e in a.beta.sessions.events.list(session.id) if e.type == "user.message"]
    assert "<@U7> wrote in Slack:" in said[0].content[0].text and "hello" in said[0].content[0].text

    # Slack's retry of the same event is acknowledged and ignored
    model_calls = len([r for r in httpx2.get(f"{fake_model}/_fake/requests").json() if r["path"] == "/v1/messages"])
    assert deliver(workers.base_url, events_path, first, slack_signed(first)).status_code == 200
    time.sleep(2)
    assert len(sessions_of(a)) == 1
    assert len([r for r in httpx2.get(f"{fake_model}/_fake/requests").json() if r["path"] == "/v1/messages"]) == model_calls

    # a reply in the thread continues the session; a tool call that needs a confirmation
    # comes with Allow/Deny buttons, and Allow runs it
    script(fake_model, [{"kind": "message", "blocks": [{"type": "tool_use", "name": "bash", "input": {"command": "echo confirmed-$((6*7))"}}]},
                        {"kind": "message", "blocks": [{"type": "text", "text": "It printed confirmed-42."}]}])
    second = mention("Ev2", "1700000001.000200", "<@UAPP> run it", thread_ts="1700000000.000100")
    assert deliver(workers.base_url, events_path, second, slack_signed(second)).status_code == 200
    ask = providers.wait_for(lambda c: c["path"] == "/slack/chat.postMessage" and "blocks" in c["body"], "buttons")
    assert ask["body"]["thread_ts"] == "1700000000.000100"
    allow = ask["body"]["blocks"][1]["elements"][0]
    assert allow["action_id"] == "openma_allow" and allow["value"].startswith(f"{session.id}|")
    form = urllib.parse.urlencode({"payload": json.dumps({"user": {"id": "U7"}, "actions": [{"action_id": "openma_allow", "value": allow["value"]}]})})
    form_type = "application/x-www-form-urlencoded"
    assert deliver(workers.base_url, clicks_path, form, slack_signed(form, secret="wrong"), form_type).status_code == 401
    assert deliver(workers.base_url, clicks_path, form, slack_signed(form), form_type).status_code == 200
    providers.wait_for(lambda c: slack_says(c, "It printed confirmed-42."), "the answer after Allow")
    assert len(sessions_of(a)) == 1
    result = [e for e in a.beta.sessions.events.list(session.id, limit=1000) if e.type == "agent.tool_result"]
    assert "confirmed-42" in result[-1].model_dump_json(), result

    # a button naming a session of no integration is refused
    env = a.beta.environments.create(name="loner", config={"type": "cloud", "networking": {"type": "unrestricted"}})
    loner = a.beta.sessions.create(agent=agent.id, environment_id=env.id)
    forged = urllib.parse.urlencode({"payload": json.dumps({"user": {"id": "U7"}, "actions": [{"action_id": "openma_allow", "value": f"{loner.id}|toolu_x"}]})})
    assert deliver(workers.base_url, clicks_path, forged, slack_signed(forged), form_type).status_code == 403

    # the secrets are sealed in D1: neither is stored, logged or found in any local file
    stored = [p for p in deployment.state.rglob("*") if p.is_file()]
    for secret in (SIGNING, BOT_TOKEN):
        assert not [p for p in stored if secret.encode() in p.read_bytes()], secret
        assert secret not in workers.output()

    # deleting the integration refuses its deliveries from then on; its session stays
    assert httpx2.delete(f"{workers.base_url}/v1/integrations/{integration['id']}", headers={"x-api-key": KEY_B}, timeout=30.0).status_code == 404
    assert httpx2.delete(f"{workers.base_url}/v1/integrations/{integration['id']}", headers=h, timeout=30.0).status_code == 200
    third = mention("Ev3", "1700000002.000300", "<@UAPP> again")
    assert deliver(workers.base_url, events_path, third, slack_signed(third)).status_code == 404
    assert a.beta.sessions.retrieve(session.id).id == session.id


def linear_signed(body: str, delivery: str, secret: str = LINEAR_SECRET) -> dict[str, str]:
    import hashlib
    import hmac
    return {"linear-signature": hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest(), "linear-delivery": delivery}


def test_a_linear_agent_session_gets_a_thought_then_the_answer_as_activities(workers, fake_model, providers):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=workers.base_url, timeout=30.0)
    agent = a.beta.agents.create(name="linear-agent", model="claude-sonnet-4-5")
    h = {"x-api-key": KEY_A}
    integration = httpx2.post(f"{workers.base_url}/v1/integrations", headers=h, timeout=30.0, json={
        "provider": "linear", "agent_id": agent.id, "signing_secret": LINEAR_SECRET, "bot_token": LINEAR_TOKEN,
        "api_base_url": f"{providers.url}/linear"}).json()
    script(fake_model, [{"kind": "message", "blocks": [{"type": "text", "text": "Fixed in the next release."}]}])
    now_ms = int(time.time() * 1000)
    created = json.dumps({"type": "AgentSessionEvent", "action": "created", "webhookTimestamp": now_ms,
                          "agentSession": {"id": "as_1", "issue": {"identifier": "ENG-7", "title": "Crash on start", "description": "It crashes."}}})
    path = integration["events_path"]
    assert deliver(workers.base_url, path, created, linear_signed(created, "d1", secret="wrong")).status_code == 401
    stale = created.replace(str(now_ms), str(now_ms - 120_000))
    assert deliver(workers.base_url, path, stale, linear_signed(stale, "d0")).status_code == 401
    assert deliver(workers.base_url, path, created, linear_signed(created, "d1")).status_code == 200

    def activity(kind: str):
        return lambda c: c["path"] == "/linear/graphql" and c["body"].get("variables", {}).get("input", {}).get("content", {}).get("type") == kind

    thought = providers.wait_for(activity("thought"), "a thought activity")
    assert thought["body"]["variables"]["input"]["agentSessionId"] == "as_1" and thought["authorization"] == LINEAR_TOKEN
    response = providers.wait_for(activity("response"), "a response activity")
    assert response["body"]["variables"]["input"]["content"]["body"] == "Fixed in the next release."
    [session] = list(a.beta.sessions.list())
    assert session.metadata["linear_issue"] == "ENG-7"
    # the same delivery again is ignored
    assert deliver(workers.base_url, path, created, linear_signed(created, "d1")).status_code == 200
    time.sleep(2)
    assert len([c for c in providers.calls if activity("thought")(c)]) == 1


GITHUB_SECRET = "github-webhook-secret-0123456789"
GITHUB_TOKEN = "ghs_workers-installation-token-0123456789"


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)})
    assert out.returncode == 0, f"git {args}: {out.stderr}"
    return out.stdout.strip()


class FakeGitHub:
    """GitHub for an App: the REST API under `/api` (installation tokens only for a JWT the
    App's public key verifies; issue comments recorded) and bare repositories under `/git`
    over git's "dumb" HTTP protocol, only for the installation token presented as GitHub
    takes it (`Basic x-access-token:<token>`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        key = root / "app.pem"
        subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(key), "2048"], check=True, capture_output=True)
        self.private_key = key.read_text()
        subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(root / "app.pub")], check=True, capture_output=True)
        work = root / "work"
        work.mkdir()
        git(work, "init", "-q", "-b", "main")
        git(work, "config", "user.email", "t@example.com")
        git(work, "config", "user.name", "t")
        (work / "README.md").write_text("the acme app\n")
        git(work, "add", ".")
        git(work, "commit", "-q", "-m", "first")
        git(work, "checkout", "-q", "-b", "feature")
        (work / "feature.txt").write_text("on the branch\n")
        git(work, "add", ".")
        git(work, "commit", "-q", "-m", "feature")
        (root / "git" / "acme").mkdir(parents=True)
        git(root, "clone", "-q", "--bare", "work", "git/acme/app.git")
        git(root / "git" / "acme" / "app.git", "update-server-info")
        self.comments: list[dict] = []
        self.jwts: list[str] = []
        self.lock = threading.Condition()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                want = "Basic " + base64.b64encode(f"x-access-token:{GITHUB_TOKEN}".encode()).decode()
                path = urllib.parse.urlparse(self.path).path
                if not path.startswith("/git/") or ".." in path:
                    return self.reply(404, b"{}")
                if self.headers.get("authorization") != want:
                    self.send_response(401)
                    self.send_header("www-authenticate", 'Basic realm="fake"')
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return None
                file = hub.root / path.lstrip("/")
                return self.reply(200, file.read_bytes(), "application/octet-stream") if file.is_file() else self.reply(404, b"")

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                auth = self.headers.get("authorization", "")
                if re.fullmatch(r"/api/app/installations/\d+/access_tokens", self.path):
                    if not hub.verify(auth.removeprefix("Bearer ")):
                        return self.reply(401, b'{"message": "A JSON web token could not be decoded"}')
                    return self.reply(201, json.dumps({"token": GITHUB_TOKEN, "expires_at": "2099-01-01T00:00:00Z"}).encode())
                if re.fullmatch(r"/api/repos/[^/]+/[^/]+/issues/\d+/comments", self.path):
                    if auth != f"Bearer {GITHUB_TOKEN}":
                        return self.reply(401, b'{"message": "Bad credentials"}')
                    with hub.lock:
                        hub.comments.append({"path": self.path, "body": body["body"]})
                        hub.lock.notify_all()
                    return self.reply(201, b'{"id": 1}')
                return self.reply(404, b"{}")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def verify(self, jwt: str) -> bool:
        """The JWT is RS256 by the App's key, issued by its id, and lives ten minutes."""
        parts = jwt.split(".")
        if len(parts) != 3:
            return False
        unb64 = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))  # noqa: E731
        (self.root / "jwt.sig").write_bytes(unb64(parts[2]))
        (self.root / "jwt.in").write_bytes(f"{parts[0]}.{parts[1]}".encode())
        ok = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(self.root / "app.pub"), "-signature", str(self.root / "jwt.sig"), str(self.root / "jwt.in")],
                            capture_output=True).returncode == 0
        claims = json.loads(unb64(parts[1]))
        self.jwts.append(jwt)
        return ok and json.loads(unb64(parts[0]))["alg"] == "RS256" and claims["iss"] == "4242" and claims["exp"] - claims["iat"] == 600

    def wait_for_comment(self, n: int, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.comments) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"no comment #{n} within {timeout} s: {self.comments}"
                self.lock.wait(left)
            return self.comments[n - 1]

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def github(tmp_path):
    hub = FakeGitHub(tmp_path / "github")
    yield hub
    hub.stop()


@pytest.fixture
def github_workers(deployment, fake_model, sandbox_server, github):
    """The workers of `workers`, with GitHub's git at the fake."""
    deployment.apply_migrations()
    deployment.d1(tenant_rows("b", KEY_B))
    at = {"OPENMA_GITHUB_URL": f"{github.url}/git"}
    return deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A, "OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES": "1", **at},
                            bound={"integrations": {"PLATFORM_ROOT_SECRET": SECRET, **at}, "agent": agent_vars(fake_model, sandbox_server)})


def github_signed(body: str, event: str, delivery: str, secret: str = GITHUB_SECRET) -> dict[str, str]:
    import hashlib
    import hmac
    sig = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    return {"x-hub-signature-256": f"sha256={sig}", "x-github-event": event, "x-github-delivery": delivery}


def issue_comment(number: int, text: str, user_type: str = "User") -> str:
    return json.dumps({
        "action": "created", "installation": {"id": 77}, "repository": {"full_name": "acme/app"},
        "issue": {"number": number, "title": "The build is red", "body": "It fails on main."},
        "comment": {"body": text, "user": {"login": "octo", "type": user_type}, "performed_via_github_app": None},
        "sender": {"login": "octo", "type": user_type}})


def test_repositories_are_cloned_into_the_sandbox_with_a_token_that_goes_nowhere_else(deployment, github_workers, github, sandbox_server, fake_model):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=github_workers.base_url, timeout=60.0)
    agent = a.beta.agents.create(name="repo-agent", model="claude-sonnet-4-5", tools=[{"type": "agent_toolset_20260401"}])
    env = a.beta.environments.create(name="repo-env", config={"type": "cloud", "networking": {"type": "unrestricted"}})
    repo = "https://github.com/acme/app"
    # a clone that cannot be made is the caller's error, and leaves no session behind
    for bad in [{"type": "github_repository", "url": repo, "authorization_token": "wrong-token"},
                {"type": "github_repository", "url": "https://github.com/acme/missing", "authorization_token": GITHUB_TOKEN},
                {"type": "github_repository", "url": repo, "authorization_token": GITHUB_TOKEN, "checkout": {"type": "branch", "name": "nope"}}]:
        with pytest.raises(anthropic.BadRequestError) as refused:
            a.beta.sessions.create(agent=agent.id, environment_id=env.id, resources=[bad])
        assert "cannot clone" in str(refused.value) and "wrong-token" not in str(refused.value), refused.value
    assert sessions_of(a) == []
    session = a.beta.sessions.create(agent=agent.id, environment_id=env.id, resources=[
        {"type": "github_repository", "url": repo, "authorization_token": GITHUB_TOKEN, "checkout": {"type": "branch", "name": "feature"}}])
    assert session.resources[0].type == "github_repository" and session.resources[0].mount_path == "/workspace/app"
    assert GITHUB_TOKEN not in session.model_dump_json()
    script(fake_model, [
        {"kind": "message", "blocks": [{"type": "tool_use", "name": "bash", "input": {"command": "cd /workspace/app && cat feature.txt && git log --oneline | wc -l && cat .git/config; env"}}]},
        {"kind": "message", "blocks": [{"type": "text", "text": "done"}]}])
    a.beta.sessions.events.send(session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "look"}]}])
    result = wait_for_tool_result(a, session.id)
    assert "on the branch" in result and "\n2\n" in result, result
    assert GITHUB_TOKEN not in result and "x-access-token" not in result, result
    # the token is nowhere: not in D1, R2 or DO storage, the logs, or the sandbox's files
    stored = [p for p in deployment.state.rglob("*") if p.is_file()] + [p for p in sandbox_server["sessions"].rglob("*") if p.is_file()]
    assert [p for p in stored if p.name == "config" and p.parent.name == ".git"], "the clone is in the sandbox"
    assert not [p for p in stored if GITHUB_TOKEN.encode() in p.read_bytes()]
    assert GITHUB_TOKEN not in github_workers.output() and GITHUB_TOKEN not in sandbox_server["log"].read_text()


def test_a_github_issue_drives_a_session_on_its_repository_and_gets_comments(github_workers, github, fake_model):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=github_workers.base_url, timeout=60.0)
    agent = a.beta.agents.create(name="gh-agent", model="claude-sonnet-4-5", tools=[
        {"type": "agent_toolset_20260401", "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]}])
    h = {"x-api-key": KEY_A}
    created = httpx2.post(f"{github_workers.base_url}/v1/integrations", headers=h, timeout=30.0, json={
        "provider": "github", "agent_id": agent.id, "signing_secret": GITHUB_SECRET, "app_id": "4242", "app_slug": "helper",
        "private_key": github.private_key, "api_base_url": f"{github.url}/api"})
    assert created.status_code == 200, created.text
    path = created.json()["events_path"]
    assert "PRIVATE KEY" not in created.text and GITHUB_SECRET not in created.text

    first = issue_comment(7, "@helper why is the build red?")
    assert deliver(github_workers.base_url, path, first, github_signed(first, "issue_comment", "g1", secret="wrong")).status_code == 401
    # a bot's mention and an event of no interest are acknowledged and ignored
    bot = issue_comment(7, "@helper hi", user_type="Bot")
    assert deliver(github_workers.base_url, path, bot, github_signed(bot, "issue_comment", "g0")).status_code == 200
    script(fake_model, [
        {"kind": "message", "blocks": [{"type": "tool_use", "name": "bash", "input": {"command": "cat /workspace/app/README.md"}}]},
        {"kind": "message", "blocks": [{"type": "text", "text": "The README says: the acme app."}]}])
    assert deliver(github_workers.base_url, path, first, github_signed(first, "issue_comment", "g1")).status_code == 200
    # the tool call waits for a confirmation, asked for in a comment
    ask = github.wait_for_comment(1)
    assert ask["path"] == "/api/repos/acme/app/issues/7/comments" and "`@helper allow`" in ask["body"], ask
    [session] = sessions_of(a)
    assert session.metadata["github_repository"] == "acme/app" and session.metadata["github_number"] == "7"
    assert session.resources[0].mount_path == "/workspace/app"
    said = [e for e in a.beta.sessions.events.list(session.id) if e.type == "user.message"][0].content[0].text
    assert "@octo" in said and "/workspace/app" in said and "why is the build red?" in said
    # the same delivery again is ignored; `@helper allow` runs the call and the answer is posted
    assert deliver(github_workers.base_url, path, first, github_signed(first, "issue_comment", "g1")).status_code == 200
    allow = issue_comment(7, "@helper allow")
    assert deliver(github_workers.base_url, path, allow, github_signed(allow, "issue_comment", "g2")).status_code == 200
    answer = github.wait_for_comment(2)
    assert answer["body"] == "The README says: the acme app.", answer
    result = wait_for_tool_result(a, session.id)
    assert "the acme app" in result, result
    assert len(sessions_of(a)) == 1 and len(github.comments) == 2
    # each worker that calls GitHub minted one token and reused it: openma-integrations for
    # the clone, the SessionDO (openma-agent) for both comments
    assert len(github.jwts) == 2


def wait_for_tool_result(a: anthropic.Anthropic, session_id: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        results = [e for e in a.beta.sessions.events.list(session_id, limit=1000) if e.type == "agent.tool_result"]
        if results:
            return "\n".join(b.get("text", "") for b in results[-1].model_dump()["content"])
        time.sleep(0.3)
    raise AssertionError(f"no tool result within {timeout} s")
