"""Organization webhooks on the Workers, judged by the official SDK: endpoint CRUD through
`client.beta.organization.webhooks`, and deliveries — of `openma-main`'s changes and of the
SessionDO's status changes — that `client.beta.webhooks.unwrap(...)` verifies (Standard
Webhooks signature) and parses; a receiver that fails is retried soon by the worker that
sent the first attempt, later by the cron, then marked failed; signing secrets are sealed in D1 and never logged; private destinations are refused
without the local-development switch."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import httpx2
import pytest
from conftest import script
from test_conformance import KEY_A, SECRET, agent_vars, fake_model, sandbox_server, turn  # noqa: F401  (fixtures)

DEADLINE_S = 60


class Receiver:
    """An HTTP server on loopback recording every POST; answers 500 to the first `failures`."""

    def __init__(self, failures: int = 0) -> None:
        self.got: list[tuple[dict[str, str], str]] = []
        self.failures = failures
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
                with outer.lock:
                    outer.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    failing = len(outer.got) <= outer.failures
                self.send_response(500 if failing else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, what, label: str) -> list[tuple[dict[str, str], str]]:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            with self.lock:
                got = list(self.got)
            if what(got):
                return got
            assert time.monotonic() < deadline, f"no {label} within {DEADLINE_S} s: {[json.loads(b)['data']['type'] for _, b in got]}"
            time.sleep(0.1)


def kinds(got: list[tuple[dict[str, str], str]]) -> list[str]:
    return [json.loads(body)["data"]["type"] for _, body in got]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def hook_main(deployment, fake_model, sandbox_server):
    """openma-main (its cron on /__scheduled) and openma-agent, allowed to deliver to the
    receiver on loopback, retrying after 300 ms (inside a worker's stay), then after 20 s
    (past it)."""
    deployment.apply_migrations()
    local = {"OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES": "1", "OPENMA_WEBHOOK_RETRY_DELAYS_MS": "300,20000"}
    return deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A, **local},
                            bound={"agent": agent_vars(fake_model, sandbox_server, **local)}, scheduled=True)


def deliveries(main, endpoint_id: str) -> list[dict]:
    r = httpx2.get(f"{main.base_url}/v1/organizations/webhooks/{endpoint_id}/deliveries", headers={"x-api-key": KEY_A}, timeout=30.0)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def wait_log(main, endpoint_id: str, what) -> dict:
    """The endpoint's one delivery, once `what` holds of it."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        log = deliveries(main, endpoint_id)
        if len(log) == 1 and what(log[0]):
            return log[0]
        assert time.monotonic() < deadline, f"the delivery log never got there: {log}"
        time.sleep(0.1)


def test_endpoints_and_deliveries_of_main_and_the_session_object_verify_with_the_sdk(deployment, hook_main, fake_model, receiver):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=hook_main.base_url, timeout=30.0)
    api = a.beta.organization.webhooks
    # CRUD, as the native conformance suite checks it
    created = api.create(url="https://hooks.example.com/a", enabled_events=["external_key.failed"], name="ops", description="d")
    assert created.id.startswith("whep_") and created.signing_secret.startswith("whsec_")
    assert (created.state, created.name, created.description, created.disabled_reason) == ("enabled", "ops", "d", "")
    got = api.retrieve(created.id)
    assert got.url == "https://hooks.example.com/a" and "signing_secret" not in got.model_dump()
    updated = api.update(created.id, state="disabled", enabled_events=["external_key.failed", "external_key.recovered"])
    assert updated.state == "disabled" and updated.enabled_events == ["external_key.failed", "external_key.recovered"]
    fresh = api.regenerate_signing_secret(created.id)
    assert fresh.signing_secret.startswith("whsec_") and fresh.signing_secret != created.signing_secret
    others = [api.create(url=f"https://hooks.example.com/{n}", enabled_events=["user_profile.program_status_updated"]) for n in range(3)]
    page = api.list(limit=2)
    assert len(page.data) == 2 and page.has_more and page.first_id == others[2].id and page.last_id == others[1].id
    assert [e.id for e in api.list(limit=2)][:4] == [others[2].id, others[1].id, others[0].id, created.id]
    deleted = api.delete(created.id)
    assert (deleted.id, deleted.type) == (created.id, "webhook_endpoint_deleted")
    with pytest.raises(anthropic.NotFoundError):
        api.retrieve(created.id)
    with pytest.raises(anthropic.BadRequestError):
        api.create(url="https://hooks.example.com/a", enabled_events=["no.such_event"])  # type: ignore[list-item]
    for e in others:
        api.delete(e.id)

    # deliveries: main's changes, and the SessionDO's status changes (each queues two
    # events, read and written once for both)
    wanted = ["agent.created", "agent.archived", "environment.created", "session.created", "session.status_run_started", "session.running",
              "session.status_idled", "session.idled"]
    endpoint = api.create(url=receiver.url, enabled_events=wanted)  # type: ignore[arg-type]
    agent = a.beta.agents.create(name="hooked", model="claude-sonnet-4-5")
    env = a.beta.environments.create(name="hooked-env", config={"type": "cloud"})
    session = a.beta.sessions.create(agent=agent.id, environment_id=env.id)
    script(fake_model, [{"kind": "message", "blocks": [{"type": "text", "text": "hi"}]}])
    turn(a, session.id, "hello")
    a.beta.agents.archive(agent.id)
    got = receiver.wait_for(lambda g: len(g) >= len(wanted), "delivery of every subscribed change")
    time.sleep(1)  # nothing more (unsubscribed types, duplicates) arrives
    got = list(receiver.got)
    assert sorted(kinds(got)) == sorted(wanted), kinds(got)
    for headers, body in got:
        event = a.beta.webhooks.unwrap(body, headers=headers, key=endpoint.signing_secret)
        assert event.type == "event" and event.id == headers["webhook-id"]
        assert event.data.organization_id == event.data.workspace_id
        assert event.data.id == {"agent": agent.id, "environment": env.id, "session": session.id}[event.data.type.split(".")[0]]
    # a tampered body does not verify
    headers, body = got[0]
    with pytest.raises(Exception):
        a.beta.webhooks.unwrap(body.replace("event", "evnt", 1), headers=headers, key=endpoint.signing_secret)
    log = deliveries(hook_main, endpoint.id)
    assert len(log) == len(wanted) and {d["status"] for d in log} == {"delivered"} and {d["attempts"] for d in log} == {1}, log

    # the signing secrets are sealed in D1, and in no log
    rows = deployment.d1("SELECT sealed_secret FROM webhook_endpoints")
    assert endpoint.signing_secret not in rows and endpoint.signing_secret.removeprefix("whsec_") not in rows
    assert endpoint.signing_secret.removeprefix("whsec_") not in hook_main.output()


def test_a_failing_receiver_is_retried_soon_by_the_worker_later_by_the_cron_until_it_answers_or_attempts_run_out(hook_main):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=hook_main.base_url, timeout=30.0)
    flaky, down = Receiver(failures=2), Receiver(failures=100)
    try:
        ok_later = a.beta.organization.webhooks.create(url=flaky.url, enabled_events=["agent.created"])  # type: ignore[list-item]
        never = a.beta.organization.webhooks.create(url=down.url, enabled_events=["agent.created"])  # type: ignore[list-item]
        agent = a.beta.agents.create(name="retried", model="claude-sonnet-4-5")
        # the first retry is due 300 ms after the first attempt: the worker that sent it stays
        # for it (no cron runs by itself under wrangler dev)
        flaky.wait_for(lambda g: len(g) == 2, "the worker's own retry")
        down.wait_for(lambda g: len(g) == 2, "the worker's own retry")
        # the next is due 20 s later, past the worker's stay: the minute's cron sends it, run
        # here every second until it is due
        for e in (ok_later, never):
            wait_log(hook_main, e.id, lambda d: d["attempts"] == 2 and d["status"] == "pending" and d.get("next_attempt_at"))
        assert (len(flaky.got), len(down.got)) == (2, 2)
        deadline = time.monotonic() + DEADLINE_S
        while len(flaky.got) < 3 or len(down.got) < 3:
            assert time.monotonic() < deadline, "the cron never sent the last attempts"
            assert httpx2.get(f"{hook_main.base_url}/__scheduled?cron=*+*+*+*+*", timeout=60.0).status_code == 200
            time.sleep(1)
        # every attempt carries the event's id, so the receiver can dedupe
        assert len({h["webhook-id"] for h, _ in flaky.got}) == 1
        delivered = wait_log(hook_main, ok_later.id, lambda d: d["status"] != "pending")
        assert (delivered["status"], delivered["attempts"], delivered["last_response_status"]) == ("delivered", 3, 200), delivered
        failed = wait_log(hook_main, never.id, lambda d: d["status"] != "pending")
        assert (failed["status"], failed["attempts"], failed["last_response_status"]) == ("failed", 3, 500), failed
        assert failed["last_error"] and failed.get("next_attempt_at") is None, failed
        # a further cron run sends nothing more
        assert httpx2.get(f"{hook_main.base_url}/__scheduled?cron=*+*+*+*+*", timeout=60.0).status_code == 200
        time.sleep(1)
        assert (len(flaky.got), len(down.got)) == (3, 3)
        assert json.loads(flaky.got[0][1])["data"]["id"] == agent.id
    finally:
        flaky.server.shutdown()
        down.server.shutdown()


def test_private_destinations_are_refused_without_the_local_switch(deployment, fake_model, sandbox_server):
    deployment.apply_migrations()
    main = deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A}, bound={"agent": agent_vars(fake_model, sandbox_server)})
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0, max_retries=0)
    for url in ["http://127.0.0.1:9/h", "http://localhost/h", "https://10.0.0.1/", "http://[::1]/", "http://169.254.169.254/"]:
        with pytest.raises(anthropic.BadRequestError):
            a.beta.organization.webhooks.create(url=url, enabled_events=["agent.created"])  # type: ignore[list-item]
    ok = a.beta.organization.webhooks.create(url="https://hooks.example.com/x", enabled_events=["agent.created"])  # type: ignore[list-item]
    with pytest.raises(anthropic.BadRequestError):
        a.beta.organization.webhooks.update(ok.id, url="http://127.0.0.1:9/h")
