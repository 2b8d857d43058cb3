"""MCP toolsets through the official SDK: an agent with `mcp_servers` + `mcp_toolset`, a
session whose vault holds the server's bearer token, the scripted model calling the MCP
tool; the SDK parses `agent.mcp_tool_use` / `agent.mcp_tool_result` (stream and list),
confirms an `always_ask` call, and a server that is down is a typed `session.error`.

The fake MCP server (JSON-RPC over streamable HTTP, JSON answers) runs on 127.0.0.1, so
this module's server runs with the test-only `OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES=1`.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading

import anthropic
import httpx2
import pytest

from conftest import MODEL, RUN_TIMEOUT_S, SDK_TIMEOUT_S, EventTap, make_client, start_server, text_reply, tool_use_reply, user_message

TOKEN = "mcp-conformance-token-5Rq"


class _McpServer:
    """A minimal MCP server: `initialize`, `tools/list` (one `lookup` tool), `tools/call`;
    every request must carry `Authorization: Bearer TOKEN`."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._send(405)

            def do_DELETE(self) -> None:  # noqa: N802
                self._send(200)

            def do_POST(self) -> None:  # noqa: N802
                req = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"null")
                if self.headers.get("authorization") != f"Bearer {TOKEN}":
                    self._send(401)
                    return
                method = req.get("method")
                outer.calls.append(method)
                if "id" not in req:
                    self._send(202)
                    return
                if method == "initialize":
                    result = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "kb", "version": "1"}}
                elif method == "tools/list":
                    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
                    result = {"tools": [{"name": "lookup", "description": "Looks a term up.", "inputSchema": schema}]}
                elif method == "tools/call":
                    q = req["params"].get("arguments", {}).get("q", "")
                    result = {"content": [{"type": "text", "text": f"definition of {q}"}]}
                else:
                    self._send(200, {"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32601, "message": "no"}})
                    return
                self._send(200, {"jsonrpc": "2.0", "id": req["id"], "result": result})

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mcp"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def mcp_client(tmp_path_factory, fake_model):
    srv = start_server(tmp_path_factory.mktemp("openma-mcp") / "data", model_base_url=fake_model.base_url, env={"OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES": "1"})
    c = make_client(srv)
    yield c
    c.close()
    srv.stop()


@pytest.fixture
def kb():
    s = _McpServer()
    yield s
    s.stop()


def _down_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"


def test_mcp_tool_use_confirmed_called_and_parsed(mcp_client, fake, kb, uid):
    c = mcp_client
    vault = c.beta.vaults.create(display_name=f"kb {uid}")
    c.beta.vaults.credentials.create(vault.id, auth={"type": "static_bearer", "mcp_server_url": kb.url, "token": TOKEN})
    agent = c.beta.agents.create(
        name=f"mcp {uid}",
        model=MODEL,
        mcp_servers=[{"type": "url", "name": "kb", "url": kb.url}, {"type": "url", "name": "gone", "url": _down_url()}],
        tools=[{"type": "mcp_toolset", "mcp_server_name": "kb"}, {"type": "mcp_toolset", "mcp_server_name": "gone"}],
    )
    session = c.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit, vault_ids=[vault.id])
    fake.script([tool_use_reply("mcp__kb__lookup", {"q": "otter"}), text_reply("an otter is a mammal")])
    tap = EventTap(c.beta.sessions.events.stream(session.id, timeout=httpx2.Timeout(SDK_TIMEOUT_S, read=RUN_TIMEOUT_S)))
    try:
        c.beta.sessions.events.send(session.id, events=[user_message("what is an otter?")])
        err = tap.wait_type("session.error")
        assert err.error.type == "mcp_connection_failed_error" and err.error.mcp_server_name == "gone"
        use = tap.wait_type("agent.mcp_tool_use")
        assert (use.name, use.mcp_server_name, use.input) == ("lookup", "kb", {"q": "otter"})
        assert use.evaluated_permission == "ask"  # the MCP toolset default
        idle = tap.wait_idle("requires_action")
        assert idle.stop_reason.event_ids == [use.id]
        c.beta.sessions.events.send(session.id, events=[{"type": "user.tool_confirmation", "tool_use_id": use.id, "result": "allow"}])
        result = tap.wait_type("agent.mcp_tool_result")
        assert result.mcp_tool_use_id == use.id and result.is_error is False
        assert [b.text for b in result.content] == ["definition of otter"]
        tap.wait_idle("end_turn")
    finally:
        tap.close()
    listed = {e.type: e for e in c.beta.sessions.events.list(session.id, types=["agent.mcp_tool_use", "agent.mcp_tool_result"])}
    assert listed["agent.mcp_tool_use"].id == use.id
    assert listed["agent.mcp_tool_result"].mcp_tool_use_id == use.id
    assert kb.calls.count("tools/call") == 1
    # the token is nowhere in what the API shows
    everything = json.dumps([e.model_dump(mode="json") for e in c.beta.sessions.events.list(session.id)])
    assert TOKEN not in everything
