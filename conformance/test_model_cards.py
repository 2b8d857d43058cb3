"""Model cards (`/v1/model_cards`, BYOK): an openma extension the SDK has no resource for,
so requests go through a plain HTTP client; session runs go through the SDK.

Cards belong to a tenant of this module's own (created with the admin CLI), so they never
reroute the model calls of other tests. Every test checks the raw bytes of each response
for the write-only `api_key`.
"""

from __future__ import annotations

import hashlib
import time
import uuid

import anthropic
import httpx2
import pytest

from conftest import RUN_TIMEOUT_S, SDK_TIMEOUT_S, make_client, text_reply, user_message


def _key() -> str:
    return f"sk-card-{uuid.uuid4().hex}{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def card_tenant(server) -> str:
    return server.create_tenant_key("cards-" + uuid.uuid4().hex[:8])


@pytest.fixture(scope="module")
def cards(server, card_tenant) -> httpx2.Client:
    c = httpx2.Client(base_url=server.base_url, timeout=SDK_TIMEOUT_S, headers={"x-api-key": card_tenant})
    yield c
    c.close()


def _ok(resp: httpx2.Response, *secrets: str) -> dict:
    assert resp.status_code == 200, f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    for s in secrets:
        assert s not in resp.text, f"a model card key leaked: {resp.text}"
    return resp.json()


def _error(resp: httpx2.Response, status: int, kind: str) -> dict:
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text}"
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == kind, body
    assert body["request_id"] == resp.headers["request-id"], body
    return body


def test_model_card_crud_never_returns_the_key(cards):
    key = _key()
    card = _ok(
        cards.post(
            "/v1/model_cards",
            json={"name": "gw", "provider": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", "api_key": key,
                  "headers": {"X-Team": "blue"}, "models": [f"m-{uuid.uuid4().hex[:6]}"]},
        ),
        key,
    )
    cid = card["id"]
    assert cid.startswith("mdlc_") and card["type"] == "model_card"
    assert card["api_key_hint"] == key[-4:]
    assert "api_key" not in card
    assert card["headers"] == {"x-team": "blue"}
    assert _ok(cards.get(f"/v1/model_cards/{cid}"), key) == card
    assert cid in [c["id"] for c in _ok(cards.get("/v1/model_cards", params={"limit": 100}), key)["data"]]
    new_key = _key()
    updated = _ok(cards.post(f"/v1/model_cards/{cid}", json={"api_key": new_key, "name": "gw2"}), key, new_key)
    assert updated["name"] == "gw2" and updated["api_key_hint"] == new_key[-4:]
    archived = _ok(cards.post(f"/v1/model_cards/{cid}/archive"), key, new_key)
    assert archived["archived_at"] and archived["api_key_hint"] is None
    assert _ok(cards.delete(f"/v1/model_cards/{cid}")) == {"id": cid, "type": "model_card_deleted"}
    _error(cards.get(f"/v1/model_cards/{cid}"), 404, "not_found_error")


def test_model_card_validation_and_isolation(cards, server):
    key = _key()
    for bad in [
        {"name": "x", "provider": "gemini", "api_key": key, "models": ["m"]},
        {"name": "x", "provider": "openai_compatible", "api_key": key, "models": ["m"]},
        {"name": "x", "provider": "anthropic", "api_key": key, "models": ["m"], "headers": {"Authorization": "Bearer x"}},
        {"name": "x", "provider": "anthropic", "api_key": key, "models": []},
    ]:
        body = _error(cards.post("/v1/model_cards", json=bad), 400, "invalid_request_error")
        assert key not in str(body)
    card = _ok(cards.post("/v1/model_cards", json={"name": "iso", "provider": "anthropic", "api_key": key, "models": [f"iso-{uuid.uuid4().hex[:6]}"]}), key)
    other = httpx2.Client(base_url=server.base_url, timeout=SDK_TIMEOUT_S, headers={"x-api-key": server.api_key})
    try:
        _error(other.get(f"/v1/model_cards/{card['id']}"), 404, "not_found_error")
        _error(other.post(f"/v1/model_cards/{card['id']}", json={"name": "x"}), 404, "not_found_error")
        _error(other.delete(f"/v1/model_cards/{card['id']}"), 404, "not_found_error")
    finally:
        other.close()


def test_a_session_turn_uses_the_cards_key_and_headers(cards, server, card_tenant, fake):
    key = _key()
    model = f"claude-card-{uuid.uuid4().hex[:6]}"
    _ok(
        cards.post(
            "/v1/model_cards",
            json={"name": "fake", "provider": "anthropic_compatible", "base_url": fake.base_url, "api_key": key,
                  "headers": {"X-Card-Test": "yes"}, "models": [model]},
        ),
        key,
    )
    fake.script([text_reply("answered through the card")])
    client = make_client(server, api_key=card_tenant)
    try:
        agent = client.beta.agents.create(name="carded", model=model)
        session = client.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)
        client.beta.sessions.events.send(session.id, events=[user_message("hi")])
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while client.beta.sessions.retrieve(session.id).status != "idle":
            assert time.monotonic() < deadline, "the turn did not end"
            time.sleep(0.05)
        events = cards.get(f"/v1/sessions/{session.id}/events", params={"limit": 1000}, headers={"anthropic-beta": "managed-agents-2026-04-01"})
        listed = _ok(events, key)
        assert any(e["type"] == "agent.message" for e in listed["data"]), listed
    finally:
        client.close()
    reqs = [r for r in fake.requests() if r["path"] == "/v1/messages"]
    assert len(reqs) == 1, reqs
    assert reqs[0]["credentials"]["x-api-key"] == hashlib.sha256(key.encode()).hexdigest()
    assert reqs[0]["headers"].get("x-card-test") == "yes"
    assert reqs[0]["body"]["model"] == model


def test_a_cards_prices_price_its_turns_and_cannot_apply_retroactively(cards, server, card_tenant, fake):
    """`prices` (openma extension, optional): validated like every field (unknown keys and
    past starts are 400s in the error envelope), echoed with `effective_from` filled in, and
    used for the ledger rows of the requests the card serves."""
    key = _key()
    model = f"claude-priced-{uuid.uuid4().hex[:6]}"
    base = {"name": "priced", "provider": "anthropic_compatible", "base_url": fake.base_url, "api_key": key, "models": [model]}
    for bad in (
        [{"input_per_mtok_micros": 1, "output_per_mtok_micros": 1, "extra": 1}],
        [{"input_per_mtok_micros": 1, "output_per_mtok_micros": 1, "effective_from": "2020-01-01T00:00:00Z"}],
        [{"output_per_mtok_micros": 1}],
    ):
        _error(cards.post("/v1/model_cards", json={**base, "prices": bad}), 400, "invalid_request_error")
    card = _ok(cards.post("/v1/model_cards", json={**base, "prices": [{"input_per_mtok_micros": 20_000_000, "output_per_mtok_micros": 0}]}), key)
    [price] = card["prices"]
    assert price["effective_from"] and price["input_per_mtok_micros"] == 20_000_000, card
    assert _ok(cards.get(f"/v1/model_cards/{card['id']}"), key)["prices"] == card["prices"]

    fake.script([text_reply("priced", usage={"input_tokens": 500, "output_tokens": 0})])
    client = make_client(server, api_key=card_tenant)
    try:
        agent = client.beta.agents.create(name="priced", model=model)
        session = client.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)
        client.beta.sessions.events.send(session.id, events=[user_message("hi")])
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while client.beta.sessions.retrieve(session.id).status != "idle":
            assert time.monotonic() < deadline, "the turn did not end"
            time.sleep(0.05)
    finally:
        client.close()
    report = _ok(cards.get("/v1/usage", params=[("group_by[]", "session"), ("group_by[]", "kind")]))
    [line] = [l for l in report["data"] if l.get("session_id") == session.id and l.get("kind") == "input_tokens"]
    assert line["quantity"] == 500 and line["amount_micros"] == 10_000, line  # 500 tokens at $20/MTok

    # the price in effect must come back unchanged; a later one may be added
    _error(cards.post(f"/v1/model_cards/{card['id']}", json={"prices": []}), 400, "invalid_request_error")
    later = {"input_per_mtok_micros": 1, "output_per_mtok_micros": 1, "effective_from": "2100-01-01T00:00:00Z"}
    updated = _ok(cards.post(f"/v1/model_cards/{card['id']}", json={"prices": [price, later]}), key)
    assert len(updated["prices"]) == 2, updated
