"""`web_fetch` and `web_search` run by the SessionDO over `fetch`, with the native rules:
redirects followed hop by hop and each hop checked, the tool's domain lists applied, HTML
turned into text, searches against a SearXNG-compatible endpoint (only offered, and only
accepted in an agent, when OPENMA_SEARCH_URL is set) and metered in the ledger; and, without
the local-development switch, addresses a URL plainly names as private refused — by
`web_fetch`, and as an integration's `api_base_url`."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import pytest
from conftest import script
from test_conformance import KEY_A, SECRET, agent_vars, fake_model, main, result_text, sandbox_server, tool_use, turn  # noqa: F401  (fixtures)


class FakeWeb:
    """A web site (`/page`, `/moved` → `/page`, `/loop` → itself, `/image`) and a search
    backend (`/search?q=…&format=json`) on loopback; every request path recorded."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        web = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                web.paths.append(self.path)
                url = urllib.parse.urlparse(self.path)
                if url.path == "/page":
                    self.reply(200, "text/html; charset=utf-8", b"<html><body><h1>Release notes</h1><p>Version <b>42</b> is out.</p></body></html>")
                elif url.path in ("/moved", "/loop"):
                    self.send_response(302)
                    self.send_header("location", "/page" if url.path == "/moved" else "/loop")
                    self.send_header("content-length", "0")
                    self.end_headers()
                elif url.path == "/image":
                    self.reply(200, "image/png", b"\x89PNG\r\n\x1a\n" + bytes(100))
                elif url.path == "/search":
                    q = urllib.parse.parse_qs(url.query)
                    assert q["format"] == ["json"]
                    results = [{"url": f"https://docs.example.com/{i}", "title": f"{q['q'][0]} #{i}", "content": f"snippet {i}"} for i in range(12)]
                    results.insert(1, {"url": "https://blocked.example.org/x", "title": "blocked", "content": "never shown"})
                    self.reply(200, "application/json", json.dumps({"results": results}).encode())
                else:
                    self.reply(404, "text/plain", b"no")

            def reply(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def site():
    s = FakeWeb()
    yield s
    s.server.shutdown()


@pytest.fixture
def web_main(deployment, fake_model, sandbox_server, site):
    """openma-main and openma-agent with a search backend, and private fetches allowed (the
    fake site is on loopback)."""
    deployment.apply_migrations()
    search = {"OPENMA_SEARCH_URL": f"{site.url}/search"}
    return deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A, **search},
                            bound={"agent": agent_vars(fake_model, sandbox_server, OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES="1", **search)})


def test_web_fetch_and_web_search_run_in_the_session_object_with_the_native_rules(deployment, web_main, fake_model, site):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=web_main.base_url, timeout=30.0)
    agent = a.beta.agents.create(name="researcher", model="claude-sonnet-4-5", tools=[{"type": "agent_toolset_20260401", "configs": [
        {"name": "web_fetch", "blocked_domains": ["blocked.example.org"], "max_content_tokens": 1000},
        {"name": "web_search", "blocked_domains": ["blocked.example.org"]}]}])
    env = a.beta.environments.create(name="web-env", config={"type": "cloud", "networking": {"type": "unrestricted"}})
    session = a.beta.sessions.create(agent=agent.id, environment_id=env.id)
    script(fake_model, [
        tool_use("web_fetch", {"url": f"{site.url}/moved"}),
        tool_use("web_fetch", {"url": f"{site.url}/image"}),
        tool_use("web_fetch", {"url": f"{site.url}/loop"}),
        tool_use("web_fetch", {"url": "https://blocked.example.org/secret"}),
        tool_use("web_fetch", {"url": "file:///etc/passwd"}),
        tool_use("web_search", {"query": "openma release"}),
        {"kind": "message", "blocks": [{"type": "text", "text": "done"}]},
    ])
    events = turn(a, session.id, "research")
    results = [e for e in events if e.type == "agent.tool_result"]
    texts = [result_text(r) for r in results]
    assert len(results) == 6, [e.type for e in events]
    moved, image, loop, blocked, file_url, search = texts
    assert results[0].is_error is False and moved.startswith(f"Fetched {site.url}/page") and "Release notes" in moved and "42" in moved, moved
    assert "<p>" not in moved
    assert results[1].is_error is False and "binary content of type `image/png`, 108 bytes" in image, image
    assert results[2].is_error and "more than 5 redirects" in loop, loop
    assert results[3].is_error and "blocked_domains" in blocked, blocked
    assert results[4].is_error and "only http and https" in file_url, file_url
    assert results[5].is_error is False and search.startswith("1. openma release #0\n   https://docs.example.com/0\n   snippet 0"), search
    assert "blocked" not in search and search.count("\n") == 29, search
    # the redirect was followed by hand, one request per hop
    assert site.paths.count("/moved") == 1 and site.paths.count("/loop") == 6
    # the search is metered as natively: one row, sourced by its tool use
    search_use = [e for e in events if e.type == "agent.tool_use" and e.name == "web_search"][0]
    rows = json.loads(deployment.d1(f"SELECT kind, source, quantity FROM ledger_entries WHERE session_id = '{session.id}' AND kind = 'web_searches'"))[0]["results"]
    assert rows == [{"kind": "web_searches", "source": search_use.id, "quantity": 1}], rows


def test_private_addresses_are_refused_and_web_search_needs_a_backend(main, fake_model):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    with pytest.raises(anthropic.BadRequestError) as e:
        a.beta.agents.create(name="searcher", model="claude-sonnet-4-5", tools=[{"type": "agent_toolset_20260401", "configs": [{"name": "web_search", "enabled": True}]}])
    assert e.value.body["error"]["details"]["error_code"] == "tool_unavailable", e.value.body
    agent = a.beta.agents.create(name="fetcher", model="claude-sonnet-4-5", tools=[{"type": "agent_toolset_20260401"}])
    env = a.beta.environments.create(name="fetch-env", config={"type": "cloud", "networking": {"type": "unrestricted"}})
    session = a.beta.sessions.create(agent=agent.id, environment_id=env.id)
    urls = ["http://127.0.0.1:9/", "http://169.254.169.254/latest/meta-data/", "http://[::1]:8080/", "http://localhost:8787/v1/agents", "http://10.0.0.7/"]
    script(fake_model, [*(tool_use("web_fetch", {"url": u}) for u in urls), tool_use("web_search", {"query": "x"}),
                        {"kind": "message", "blocks": [{"type": "text", "text": "done"}]}])
    events = turn(a, session.id, "fetch")
    results = [e for e in events if e.type == "agent.tool_result"]
    assert len(results) == len(urls) + 1
    for url, r in zip(urls, results):
        assert r.is_error and "is not a public address" in result_text(r), (url, result_text(r))
    # a tool the model was never offered is an error result, not a search
    assert results[-1].is_error and "web_search" in result_text(results[-1]), result_text(results[-1])
    # nor does an integration's API base name a private place (as natively)
    import httpx2
    for base in ["http://127.0.0.1:9/api", "http://169.254.169.254", "http://localhost:8787"]:
        refused = httpx2.post(f"{main.base_url}/v1/integrations", headers={"x-api-key": KEY_A}, timeout=30.0, json={
            "provider": "linear", "agent_id": agent.id, "signing_secret": "lin-secret-0123456789", "bot_token": "lin_api_0123456789", "api_base_url": base})
        assert refused.status_code == 400 and "api_base_url" in refused.json()["error"]["message"], refused.text
