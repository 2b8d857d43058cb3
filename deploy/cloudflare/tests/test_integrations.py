"""openma-integrations under `wrangler dev`, with openma-main (which passes the providers'
deliveries on over its INTEGRATIONS binding) and openma-agent: Slack and Linear threads
drive sessions end to end against fake Slack and Linear APIs over loopback — signatures
checked, each delivery processed once, the answer posted back to the thread by the
session's SessionDO, a tool call waiting for a confirmation answered with Slack's buttons
— and the integrations' secrets never leave D1 sealed."""

from __future__ import annotations

import json
import time
import urllib.parse

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
    return deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A},
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


def test_github_integrations_are_refused_not_accepted_and_ignored(workers):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=workers.base_url, timeout=30.0)
    agent = a.beta.agents.create(name="gh-agent", model="claude-sonnet-4-5")
    refused = httpx2.post(f"{workers.base_url}/v1/integrations", headers={"x-api-key": KEY_A}, timeout=30.0, json={
        "provider": "github", "agent_id": agent.id, "signing_secret": "whsec-0123456789", "app_id": "123", "app_slug": "helper",
        "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"})
    assert refused.status_code == 400 and refused.json()["error"]["details"]["error_code"] == "unsupported_feature", refused.text
