"""Outbound webhooks with the official SDK: endpoint CRUD through
`client.beta.organization.webhooks`, and deliveries to a local receiver that
`client.beta.webhooks.unwrap(...)` verifies (Standard Webhooks signature) and parses.

The server of this module runs with the test-only `OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES=1`
so that it may deliver to the receiver on 127.0.0.1; other servers refuse such URLs.
"""

from __future__ import annotations

import http.server
import threading
import time

import anthropic
import pytest

from conftest import MODEL, make_client, start_server

DEADLINE_S = 30


class _Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers 200."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], str]] = []
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
                with lock:
                    outer.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, n: int) -> list[tuple[dict[str, str], str]]:
        deadline = time.monotonic() + DEADLINE_S
        while len(self.got) < n:
            assert time.monotonic() < deadline, f"{len(self.got)} of {n} deliveries arrived"
            time.sleep(0.05)
        return list(self.got)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def hook_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("openma-webhooks") / "data", env={"OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES": "1"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def hooks(hook_server) -> anthropic.Anthropic:
    c = make_client(hook_server)
    yield c
    c.close()


@pytest.fixture
def receiver():
    r = _Receiver()
    yield r
    r.stop()


def test_endpoint_crud_through_the_sdk(hooks):
    api = hooks.beta.organization.webhooks
    created = api.create(url="https://hooks.example.com/a", enabled_events=["external_key.failed"], name="ops", description="d")
    assert created.id.startswith("whep_")
    assert created.signing_secret.startswith("whsec_")
    assert (created.state, created.name, created.description, created.disabled_reason) == ("enabled", "ops", "d", "")
    assert created.enabled_events == ["external_key.failed"]

    got = api.retrieve(created.id)
    assert got.id == created.id and got.url == "https://hooks.example.com/a"
    assert "signing_secret" not in got.model_dump()

    updated = api.update(created.id, state="disabled", enabled_events=["external_key.failed", "external_key.recovered"])
    assert updated.state == "disabled"
    assert updated.enabled_events == ["external_key.failed", "external_key.recovered"]
    assert updated.updated_at >= got.updated_at

    fresh = api.regenerate_signing_secret(created.id)
    assert fresh.signing_secret.startswith("whsec_") and fresh.signing_secret != created.signing_secret

    others = [api.create(url=f"https://hooks.example.com/{n}", enabled_events=["user_profile.program_status_updated"]) for n in range(3)]
    page = api.list(limit=2)
    assert len(page.data) == 2 and page.has_more and page.first_id == others[2].id and page.last_id == others[1].id
    listed = [e.id for e in api.list(limit=2)]  # auto-pagination follows after_id
    assert listed[:4] == [others[2].id, others[1].id, others[0].id, created.id]

    deleted = api.delete(created.id)
    assert (deleted.id, deleted.type) == (created.id, "webhook_endpoint_deleted")
    with pytest.raises(anthropic.NotFoundError):
        api.retrieve(created.id)
    with pytest.raises(anthropic.BadRequestError):
        api.create(url="https://hooks.example.com/a", enabled_events=["no.such_event"])  # type: ignore[list-item]
    for e in others:
        api.delete(e.id)


def test_deliveries_verify_and_parse_with_unwrap(hooks, receiver):
    api = hooks.beta.organization.webhooks
    # managed-agents event types are accepted beyond the SDK's five literals
    endpoint = api.create(url=receiver.url, enabled_events=["agent.created", "agent.archived", "environment.created"])  # type: ignore[list-item]
    agent = hooks.beta.agents.create(name="hooked", model=MODEL)
    hooks.beta.agents.archive(agent.id)
    env = hooks.beta.environments.create(name="hooked-env", config={"type": "cloud"})

    got = receiver.wait_for(3)
    events = []
    for headers, body in got:
        event = hooks.beta.webhooks.unwrap(body, headers=headers, key=endpoint.signing_secret)
        assert event.type == "event" and event.id == headers["webhook-id"]
        events.append(event)
    by_kind = {e.data.type: e for e in events}
    assert set(by_kind) == {"agent.created", "agent.archived", "environment.created"}
    assert by_kind["agent.created"].data.id == agent.id
    assert by_kind["agent.archived"].data.id == agent.id
    assert by_kind["environment.created"].data.id == env.id
    assert by_kind["agent.created"].data.organization_id == by_kind["agent.created"].data.workspace_id

    # a wrong key or a tampered body does not verify
    headers, body = got[0]
    with pytest.raises(Exception):
        hooks.beta.webhooks.unwrap(body, headers=headers, key=api.regenerate_signing_secret(endpoint.id).signing_secret)
    with pytest.raises(Exception):
        hooks.beta.webhooks.unwrap(body.replace("event", "evnt", 1), headers=headers, key=endpoint.signing_secret)
    api.delete(endpoint.id)
