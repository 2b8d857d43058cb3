"""The agent's MCP servers on the Workers, judged by the official SDK: the SessionDO connects
each server at the start of a turn over MCP's streamable HTTP transport (`fetch`; the older
HTTP+SSE transport for a server that refuses it), offers
its tools to the model as `mcp__<server>__<tool>`, asks for confirmation by the toolset's
policy, runs the call with the session's vault credential and records `agent.mcp_tool_use`
/ `agent.mcp_tool_result`; a server that is down, or refuses the credential, is a typed
`session.error` naming it and the turn goes on; the token is in no event, D1 row or log."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import httpx2
import pytest
from conftest import script
from test_conformance import KEY_A, SECRET, agent_vars, fake_model, sandbox_server, tool_use, turn, wait_idle  # noqa: F401  (fixtures)

TOKEN = "mcp-workers-token-" + "Zq9" * 8


FRESH = "mcp-workers-fresh-" + "Tk7" * 8
REFRESH_1, REFRESH_2 = "rt-one-" + "a1" * 10, "rt-two-" + "b2" * 10


class McpServer:
    """A streamable-HTTP MCP server: `initialize` (giving an `Mcp-Session-Id` every later
    request must carry; an unknown one is answered 404), `tools/list` in two pages, `tools/call` answered as an SSE stream
    with a notification before the response; every request needs `Bearer <token>`. Its
    `/oauth/token` grants `FRESH` (and rotates the refresh token) for `REFRESH_1`."""

    def __init__(self, token: str = TOKEN) -> None:
        self.calls: list[str] = []
        self.grants: list[dict[str, str]] = []
        self.sessions: set[str] = set()
        # drop every MCP session once the tools are listed (as a restarted server would)
        self.forget_after_listing = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, status: int, body: bytes = b"", content_type: str = "application/json", extra: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.path == "/oauth/token":
                    form = dict(urllib.parse.parse_qsl(raw.decode()))
                    outer.grants.append(form)
                    ok = form.get("grant_type") == "refresh_token" and form.get("refresh_token") == REFRESH_1 and form.get("client_id") == "client-1"
                    body = {"access_token": FRESH, "refresh_token": REFRESH_2, "expires_in": 3600, "token_type": "Bearer"} if ok else {"error": "invalid_grant"}
                    self.reply(200 if ok else 400, json.dumps(body).encode())
                    return
                req = json.loads(raw or b"null")
                if self.headers.get("authorization") != f"Bearer {token}":
                    self.reply(401)
                    return
                assert "text/event-stream" in self.headers.get("accept", "")
                method = req.get("method")
                outer.calls.append(method)
                if method != "initialize" and self.headers.get("mcp-session-id") not in outer.sessions:
                    self.reply(404)  # the transport's answer to an unknown session
                    return
                if "id" not in req:
                    self.reply(202)
                    return
                answer = lambda result: json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": result}).encode()  # noqa: E731
                if method == "initialize":
                    sid = uuid.uuid4().hex
                    outer.sessions.add(sid)
                    result = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "kb", "version": "1"}}
                    self.reply(200, answer(result), extra={"mcp-session-id": sid})
                elif method == "tools/list":
                    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
                    if req["params"].get("cursor") == "page2":
                        self.reply(200, answer({"tools": [{"name": "define", "description": "Defines a term.", "inputSchema": schema}]}))
                        if outer.forget_after_listing:
                            outer.sessions.clear()
                    else:
                        self.reply(200, answer({"tools": [{"name": "lookup", "description": "Looks a term up.", "inputSchema": schema}], "nextCursor": "page2"}))
                elif method == "tools/call":
                    q = req["params"].get("arguments", {}).get("q", "")
                    progress = json.dumps({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "looking"}})
                    result = answer({"content": [{"type": "text", "text": f"definition of {q}"}]}).decode()
                    self.reply(200, f"event: message\ndata: {progress}\n\nevent: message\ndata: {result}\n\n".encode(), content_type="text/event-stream")
                else:
                    self.reply(200, json.dumps({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32601, "message": "no"}}).encode())

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/mcp"


def down_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/mcp"


@pytest.fixture
def kb():
    s = McpServer()
    yield s
    s.server.shutdown()


@pytest.fixture
def mcp_main(deployment, fake_model, sandbox_server):
    """openma-main and openma-agent, both allowed to reach MCP servers on loopback."""
    deployment.apply_migrations()
    return deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A, "OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES": "1"},
                            bound={"agent": agent_vars(fake_model, sandbox_server, OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES="1")})


def test_mcp_tools_are_offered_confirmed_called_and_parsed(deployment, mcp_main, fake_model, kb):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=mcp_main.base_url, timeout=30.0)
    vault = a.beta.vaults.create(display_name="kb")
    a.beta.vaults.credentials.create(vault.id, auth={"type": "static_bearer", "mcp_server_url": kb.url, "token": TOKEN})
    agent = a.beta.agents.create(
        name="mcp", model="claude-sonnet-4-5",
        mcp_servers=[{"type": "url", "name": "kb", "url": kb.url}, {"type": "url", "name": "gone", "url": down_url()}],
        tools=[{"type": "mcp_toolset", "mcp_server_name": "kb"}, {"type": "mcp_toolset", "mcp_server_name": "gone"}],
    )
    session = a.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit, vault_ids=[vault.id])
    script(fake_model, [tool_use("mcp__kb__lookup", {"q": "otter"}), {"kind": "message", "blocks": [{"type": "text", "text": "an otter is a mammal"}]}])
    events = turn(a, session.id, "what is an otter?")
    [err] = [e for e in events if e.type == "session.error"]
    assert (err.error.type, err.error.mcp_server_name) == ("mcp_connection_failed_error", "gone"), err
    [use] = [e for e in events if e.type == "agent.mcp_tool_use"]
    assert (use.name, use.mcp_server_name, use.input, use.evaluated_permission) == ("lookup", "kb", {"q": "otter"}, "ask")
    idle = [e for e in events if e.type == "session.status_idle"][-1]
    assert idle.stop_reason.type == "requires_action" and idle.stop_reason.event_ids == [use.id]
    # both pages of the server's tools were offered, with their schemas
    requests = httpx2.get(f"{fake_model}/_fake/requests", timeout=10).json()
    offered = {t["name"]: t for t in requests[-1]["body"]["tools"]}
    assert {"mcp__kb__lookup", "mcp__kb__define"} <= set(offered), list(offered)
    assert offered["mcp__kb__lookup"]["input_schema"]["required"] == ["q"]

    seen = {e.id for e in a.beta.sessions.events.list(session.id, limit=1000)}
    a.beta.sessions.events.send(session.id, events=[{"type": "user.tool_confirmation", "tool_use_id": use.id, "result": "allow"}])
    after = wait_idle(a, session.id, seen)
    [result] = [e for e in after if e.type == "agent.mcp_tool_result"]
    assert result.mcp_tool_use_id == use.id and result.is_error is False
    assert [b.text for b in result.content] == ["definition of otter"]
    assert [e for e in after if e.type == "session.status_idle"][-1].stop_reason.type == "end_turn"
    # each connection is one MCP session (initialize, then the initialized notification); the
    # call runs on the session that listed the tools for its running interval
    assert kb.calls[:2] == ["initialize", "notifications/initialized"], kb.calls
    assert kb.calls[-5:] == ["initialize", "notifications/initialized", "tools/list", "tools/list", "tools/call"], kb.calls

    # a server that dropped the session since (404): the call did not run, and runs once on
    # a session opened afresh
    script(fake_model, [tool_use("mcp__kb__define", {"q": "vole"}), {"kind": "message", "blocks": [{"type": "text", "text": "a vole is small"}]}])
    [use] = [e for e in turn(a, session.id, "and a vole?") if e.type == "agent.mcp_tool_use"]
    kb.forget_after_listing = True
    seen = {e.id for e in a.beta.sessions.events.list(session.id, limit=1000)}
    a.beta.sessions.events.send(session.id, events=[{"type": "user.tool_confirmation", "tool_use_id": use.id, "result": "allow"}])
    [result] = [e for e in wait_idle(a, session.id, seen) if e.type == "agent.mcp_tool_result"]
    assert result.is_error is False and [b.text for b in result.content] == ["definition of vole"], result
    assert kb.calls[-8:] == ["initialize", "notifications/initialized", "tools/list", "tools/list", "tools/call", "initialize", "notifications/initialized", "tools/call"], kb.calls

    # the token is in no event, D1 row or log
    everything = json.dumps([e.model_dump(mode="json") for e in a.beta.sessions.events.list(session.id)])
    assert TOKEN not in everything
    assert TOKEN not in deployment.d1("SELECT * FROM credentials")
    assert TOKEN not in mcp_main.output()


def test_a_refused_credential_is_an_authentication_error_and_the_turn_goes_on(mcp_main, fake_model, kb):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=mcp_main.base_url, timeout=30.0)
    vault = a.beta.vaults.create(display_name="wrong")
    a.beta.vaults.credentials.create(vault.id, auth={"type": "static_bearer", "mcp_server_url": kb.url, "token": "not-the-token"})
    agent = a.beta.agents.create(name="mcp", model="claude-sonnet-4-5", mcp_servers=[{"type": "url", "name": "kb", "url": kb.url}],
                                 tools=[{"type": "mcp_toolset", "mcp_server_name": "kb"}])
    session = a.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit, vault_ids=[vault.id])
    script(fake_model, [{"kind": "message", "blocks": [{"type": "text", "text": "no tools today"}]}])
    events = turn(a, session.id, "look it up")
    [err] = [e for e in events if e.type == "session.error"]
    assert (err.error.type, err.error.mcp_server_name, err.error.retry_status.type) == ("mcp_authentication_failed_error", "kb", "exhausted"), err
    assert [e for e in events if e.type == "session.status_idle"][-1].stop_reason.type == "end_turn"
    requests = httpx2.get(f"{fake_model}/_fake/requests", timeout=10).json()
    # the refusing server's tools are not offered, and nothing past the refused handshake was asked
    assert not any(t["name"].startswith("mcp__") for t in requests[-1]["body"].get("tools", []))
    assert kb.calls == [], kb.calls


def test_a_refused_oauth_token_is_refreshed_once_and_the_new_tokens_are_kept_sealed(deployment, mcp_main, fake_model):
    kb = McpServer(token=FRESH)
    try:
        a = anthropic.Anthropic(api_key=KEY_A, base_url=mcp_main.base_url, timeout=30.0)
        vault = a.beta.vaults.create(display_name="oauth")
        stale = "stale-access-" + "x9" * 10
        cred = a.beta.vaults.credentials.create(vault.id, auth={
            "type": "mcp_oauth", "mcp_server_url": kb.url, "access_token": stale,
            "refresh": {"client_id": "client-1", "refresh_token": REFRESH_1, "token_endpoint": f"{kb.base}/oauth/token", "token_endpoint_auth": {"type": "none"}}})
        agent = a.beta.agents.create(name="oauth", model="claude-sonnet-4-5", mcp_servers=[{"type": "url", "name": "kb", "url": kb.url}],
                                     tools=[{"type": "mcp_toolset", "mcp_server_name": "kb", "default_config": {"permission_policy": {"type": "always_allow"}}}])
        session = a.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit, vault_ids=[vault.id])
        script(fake_model, [tool_use("mcp__kb__lookup", {"q": "otter"}), {"kind": "message", "blocks": [{"type": "text", "text": "done"}]}])
        events = turn(a, session.id, "look it up")
        assert not [e for e in events if e.type == "session.error"], [e.error for e in events if e.type == "session.error"]
        [result] = [e for e in events if e.type == "agent.mcp_tool_result"]
        assert [b.text for b in result.content] == ["definition of otter"] and result.is_error is False
        # one refresh (the server refused the stale token at the turn's first connection); the
        # call's connection used the stored new token
        assert len(kb.grants) == 1, kb.grants
        got = a.beta.vaults.credentials.retrieve(cred.id, vault_id=vault.id)
        assert got.auth.expires_at is not None  # from the grant's expires_in
        rows = deployment.d1("SELECT * FROM credentials")
        for secret in (FRESH, REFRESH_2, stale):
            assert secret not in rows and secret not in mcp_main.output()
    finally:
        kb.server.shutdown()


def test_mcp_oauth_validate_probes_refreshes_and_reports_scrubbed(mcp_main):
    kb = McpServer(token=FRESH)
    try:
        a = anthropic.Anthropic(api_key=KEY_A, base_url=mcp_main.base_url, timeout=30.0)
        vault = a.beta.vaults.create(display_name="validate")
        stale = "stale-access-" + "v7" * 10

        def oauth(refresh_token: str, vault):
            return a.beta.vaults.credentials.create(vault.id, auth={
                "type": "mcp_oauth", "mcp_server_url": kb.url, "access_token": stale,
                "refresh": {"client_id": "client-1", "refresh_token": refresh_token, "token_endpoint": f"{kb.base}/oauth/token", "token_endpoint_auth": {"type": "none"}}})

        good = oauth(REFRESH_1, vault)
        r = a.beta.vaults.credentials.mcp_oauth_validate(good.id, vault_id=vault.id)
        assert (r.type, r.status, r.refresh.status, r.has_refresh_token) == ("vault_credential_validation", "valid", "succeeded", True), r
        assert a.beta.vaults.credentials.retrieve(good.id, vault_id=vault.id).auth.expires_at is not None
        again = a.beta.vaults.credentials.mcp_oauth_validate(good.id, vault_id=vault.id)
        assert (again.status, again.refresh) == ("valid", None), again  # the stored new token passes the probe

        other = a.beta.vaults.create(display_name="validate-bad")  # one live credential per server and vault
        bad = oauth("rt-wrong-" + "c3" * 10, other)
        r = a.beta.vaults.credentials.mcp_oauth_validate(bad.id, vault_id=other.id)
        assert (r.status, r.refresh.status, r.refresh.http_response.status_code) == ("invalid", "failed", 400), r
        text = r.model_dump_json()
        assert stale not in text and "rt-wrong-" not in text
        bearer = a.beta.vaults.credentials.create(vault.id, auth={"type": "static_bearer", "mcp_server_url": "https://x.example.com/mcp", "token": "t" * 20})
        with pytest.raises(anthropic.BadRequestError):
            a.beta.vaults.credentials.mcp_oauth_validate(bearer.id, vault_id=vault.id)
    finally:
        kb.server.shutdown()


class LegacyMcpServer:
    """An MCP server of the older HTTP+SSE transport (2024-11-05): a `POST` to its URL is
    refused (405); `GET` opens an event stream whose `endpoint` event names
    `/messages?session=<id>`, where messages are POSTed (202) and whose answers come back on
    the stream. Before answering `tools/call` it pings its client and waits for the answer."""

    def __init__(self, token: str = TOKEN) -> None:
        import queue

        self.calls: list[str] = []
        self.pongs: list[dict] = []
        self.streams: dict[str, "queue.Queue[str | None]"] = {}
        self.posts_to_stream_url = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, status: int, body: bytes = b"") -> None:
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                if self.path != "/sse" or self.headers.get("authorization") != f"Bearer {token}":
                    self.reply(401 if self.path == "/sse" else 404)
                    return
                sid = uuid.uuid4().hex
                q = outer.streams[sid] = queue.Queue()
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.end_headers()
                try:
                    self.wfile.write(f"event: endpoint\ndata: /messages?session={sid}\n\n".encode())
                    self.wfile.flush()
                    while (msg := q.get()) is not None:
                        self.wfile.write(f"event: message\ndata: {msg}\n\n".encode())
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.path == "/sse":
                    outer.posts_to_stream_url += 1
                    self.reply(405)
                    return
                if self.headers.get("authorization") != f"Bearer {token}":
                    self.reply(401)
                    return
                sid = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("session", [""])[0]
                q = outer.streams.get(sid)
                if q is None:
                    self.reply(404)
                    return
                req = json.loads(raw)
                self.reply(202, b"Accepted")
                if "method" not in req:
                    outer.pongs.append(req)  # the client's answer to the ping
                    return
                outer.calls.append(req["method"])
                if "id" not in req:
                    return
                answer = lambda result: json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": result})  # noqa: E731
                if req["method"] == "initialize":
                    q.put(answer({"protocolVersion": "2024-11-05", "capabilities": {"tools": {}}, "serverInfo": {"name": "old", "version": "1"}}))
                elif req["method"] == "tools/list":
                    q.put(answer({"tools": [{"name": "lookup", "description": "Looks a term up.", "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}}]}))
                elif req["method"] == "tools/call":
                    q.put(json.dumps({"jsonrpc": "2.0", "id": "srv-ping", "method": "ping"}))
                    q.put(json.dumps({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "looking"}}))
                    q.put(answer({"content": [{"type": "text", "text": "old definition of " + req["params"]["arguments"]["q"]}]}))

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sse"

    def close(self) -> None:
        for q in self.streams.values():
            q.put(None)
        self.server.shutdown()


def test_a_server_of_the_older_http_sse_transport_is_spoken_to_over_its_event_stream(mcp_main, fake_model):
    """A server that refuses streamable HTTP's POST is tried with the 2024-11-05 HTTP+SSE
    transport, as natively: the SessionDO opens its event stream, posts to the endpoint it
    names (with the vault's credential), reads the answers from the stream, and answers the
    server's ping while waiting for a tool's result."""
    old = LegacyMcpServer()
    try:
        a = anthropic.Anthropic(api_key=KEY_A, base_url=mcp_main.base_url, timeout=30.0)
        vault = a.beta.vaults.create(display_name="old")
        a.beta.vaults.credentials.create(vault.id, auth={"type": "static_bearer", "mcp_server_url": old.url, "token": TOKEN})
        agent = a.beta.agents.create(name="old", model="claude-sonnet-4-5", mcp_servers=[{"type": "url", "name": "old", "url": old.url}],
                                     tools=[{"type": "mcp_toolset", "mcp_server_name": "old", "default_config": {"permission_policy": {"type": "always_allow"}}}])
        session = a.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit, vault_ids=[vault.id])
        script(fake_model, [tool_use("mcp__old__lookup", {"q": "otter"}), {"kind": "message", "blocks": [{"type": "text", "text": "done"}]}])
        events = turn(a, session.id, "look it up")
        assert not [e for e in events if e.type == "session.error"], [e.error for e in events if e.type == "session.error"]
        [result] = [e for e in events if e.type == "agent.mcp_tool_result"]
        assert [b.text for b in result.content] == ["old definition of otter"] and result.is_error is False, result
        assert old.posts_to_stream_url >= 1, "streamable HTTP was tried first"
        assert old.calls == ["initialize", "notifications/initialized", "tools/list", "tools/call"], old.calls
        assert old.pongs == [{"jsonrpc": "2.0", "id": "srv-ping", "result": {}}], old.pongs
        requests = httpx2.get(f"{fake_model}/_fake/requests", timeout=10).json()
        assert "mcp__old__lookup" in [t["name"] for t in requests[-1]["body"]["tools"]]
        assert TOKEN not in mcp_main.output()
    finally:
        old.close()
