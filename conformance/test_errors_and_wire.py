"""Error envelope, authentication and HTTP-level details the SDK (and the seed's curl) rely on."""

from __future__ import annotations

import anthropic
import pytest

from conftest import BETA, MODEL, assert_error_envelope, make_client

JSON = {"Content-Type": "application/json", "anthropic-version": "2026-10-21", "anthropic-beta": BETA}


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.beta.agents.retrieve("agent_nope"),
        lambda c: c.beta.agents.update("agent_nope", name="x"),
        lambda c: c.beta.agents.archive("agent_nope"),
        lambda c: c.beta.agents.versions.list("agent_nope"),
        lambda c: c.beta.environments.retrieve("env_nope"),
        lambda c: c.beta.environments.update("env_nope", name="x"),
        lambda c: c.beta.environments.archive("env_nope"),
        lambda c: c.beta.environments.delete("env_nope"),
        lambda c: c.beta.sessions.retrieve("sesn_nope"),
        lambda c: c.beta.sessions.update("sesn_nope", title="x"),
        lambda c: c.beta.sessions.archive("sesn_nope"),
        lambda c: c.beta.sessions.delete("sesn_nope"),
    ],
    ids=[
        "agents.retrieve",
        "agents.update",
        "agents.archive",
        "agents.versions.list",
        "environments.retrieve",
        "environments.update",
        "environments.archive",
        "environments.delete",
        "sessions.retrieve",
        "sessions.update",
        "sessions.archive",
        "sessions.delete",
    ],
)
def test_unknown_id_raises_not_found_with_error_envelope(client, call):
    with pytest.raises(anthropic.NotFoundError) as ei:
        call(client)
    assert_error_envelope(ei.value, 404, "not_found_error")


def test_wrong_api_key_raises_authentication_error(server):
    bad = make_client(server, api_key="sk-oma-" + "0" * 48)
    try:
        with pytest.raises(anthropic.AuthenticationError) as ei:
            bad.beta.agents.list()
    finally:
        bad.close()
    assert_error_envelope(ei.value, 401, "authentication_error")


def test_missing_api_key_is_rejected_with_401(raw):
    r = raw.get("/v1/agents", headers={"anthropic-version": "2026-10-21", "anthropic-beta": BETA})

    assert r.status_code == 401
    body = r.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["message"]
    assert body["request_id"]
    assert r.headers.get("request-id") == body["request_id"]


def test_malformed_authorization_header_is_rejected_with_401(raw, server):
    r = raw.get("/v1/agents", headers={"Authorization": server.api_key})  # no "Bearer "

    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"


def test_sdk_sends_bearer_token(counted):
    counted.client.beta.agents.list(limit=1)

    req = counted.requests[-1]
    assert req.headers["authorization"].startswith("Bearer ")
    assert "x-api-key" not in req.headers


def test_x_api_key_header_authenticates(raw, server):
    r = raw.post(
        "/v1/agents",
        headers={"x-api-key": server.api_key, **JSON},
        json={"name": "seed-style", "model": MODEL, "tools": [{"type": "bash"}]},
    )

    assert r.status_code == 200, r.text
    agent_id = r.json()["id"]
    got = raw.get(f"/v1/agents/{agent_id}", headers={"x-api-key": server.api_key})
    assert got.status_code == 200, got.text
    assert got.json()["tools"][0]["type"] == "agent_toolset_20260401"


def test_archive_post_with_empty_json_body_is_accepted(raw, server, make_agent):
    agent = make_agent()

    r = raw.post(
        f"/v1/agents/{agent.id}/archive",
        headers={"Authorization": f"Bearer {server.api_key}", **JSON, "Content-Length": "0"},
        content=b"",
    )

    assert r.status_code == 200, r.text
    assert r.json()["archived_at"]


def test_delete_with_json_content_type_and_no_body_is_accepted(raw, server, client, make_agent, make_env):
    session = client.beta.sessions.create(agent=make_agent().id, environment_id=make_env().id)

    r = raw.delete(
        f"/v1/sessions/{session.id}",
        headers={"Authorization": f"Bearer {server.api_key}", **JSON},
    )

    assert r.status_code == 200, r.text
    assert r.json() == {"id": session.id, "type": "session_deleted"}


def test_successful_responses_carry_request_id_header(client, make_agent):
    agent = make_agent()

    resp = client.beta.agents.with_raw_response.retrieve(agent.id)

    assert resp.headers.get("request-id")
    assert resp.parse().id == agent.id


def test_request_ids_are_unique_per_request(client):
    ids = {client.beta.agents.with_raw_response.list(limit=1).headers.get("request-id") for _ in range(3)}

    assert None not in ids
    assert len(ids) == 3


def test_malformed_json_body_is_bad_request(raw, server):
    r = raw.post(
        "/v1/agents",
        headers={"Authorization": f"Bearer {server.api_key}", **JSON},
        content=b'{"name": "x", "model": ',
    )

    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"


def test_missing_required_field_is_bad_request(client):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.post(
            "/v1/agents",
            body={"name": "no model"},
            cast_to=object,
            options={"headers": {"anthropic-beta": BETA}},
        )
    assert_error_envelope(ei.value, 400, "invalid_request_error")


def test_extra_beta_tokens_before_managed_agents_token_are_accepted(client):
    page = client.beta.agents.list(limit=1, betas=["foo-2025-01-01"])

    assert isinstance(page.data, list)
