"""Tenant isolation: another tenant's objects are invisible (404, never 403) and untouched."""

from __future__ import annotations

import anthropic
import pytest

from conftest import assert_error_envelope


def _not_found(call) -> None:
    with pytest.raises(anthropic.NotFoundError) as ei:
        call()
    assert_error_envelope(ei.value, 404, "not_found_error")


@pytest.fixture
def a_objects(client, make_agent, make_env):
    agent = make_agent(system="tenant A secret prompt")
    env = make_env()
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id, title="A's session")
    return agent, env, session


def test_other_tenant_cannot_see_or_touch_agents(client, client_b, a_objects):
    agent, _, _ = a_objects

    _not_found(lambda: client_b.beta.agents.retrieve(agent.id))
    _not_found(lambda: client_b.beta.agents.retrieve(agent.id, version=1))
    _not_found(lambda: client_b.beta.agents.update(agent.id, name="hijacked"))
    _not_found(lambda: client_b.beta.agents.archive(agent.id))
    _not_found(lambda: client_b.beta.agents.versions.list(agent.id))
    ids_b = {a.id for a in client_b.beta.agents.list(limit=100, include_archived=True)}
    assert agent.id not in ids_b

    still = client.beta.agents.retrieve(agent.id)
    assert still.name == agent.name
    assert still.version == 1
    assert still.archived_at is None


def test_other_tenant_cannot_see_or_touch_environments(client, client_b, a_objects):
    _, env, _ = a_objects

    _not_found(lambda: client_b.beta.environments.retrieve(env.id))
    _not_found(lambda: client_b.beta.environments.update(env.id, name="hijacked"))
    _not_found(lambda: client_b.beta.environments.archive(env.id))
    _not_found(lambda: client_b.beta.environments.delete(env.id))
    ids_b = {e.id for e in client_b.beta.environments.list(limit=100, include_archived=True)}
    assert env.id not in ids_b

    still = client.beta.environments.retrieve(env.id)
    assert still.name == env.name
    assert still.archived_at is None


def test_other_tenant_cannot_see_or_touch_sessions(client, client_b, a_objects):
    _, _, session = a_objects

    _not_found(lambda: client_b.beta.sessions.retrieve(session.id))
    _not_found(lambda: client_b.beta.sessions.update(session.id, title="hijacked"))
    _not_found(lambda: client_b.beta.sessions.archive(session.id))
    _not_found(lambda: client_b.beta.sessions.delete(session.id))
    ids_b = {s.id for s in client_b.beta.sessions.list(limit=100, include_archived=True)}
    assert session.id not in ids_b
    assert list(client_b.beta.sessions.list(agent_id=session.agent.id, include_archived=True)) == []

    still = client.beta.sessions.retrieve(session.id)
    assert still.title == "A's session"
    assert still.archived_at is None
    assert still.status == "idle"


def test_session_in_other_tenant_with_foreign_agent_is_not_found(client_b, make_env, a_objects):
    agent, _, _ = a_objects
    env_b = make_env(client_b)

    _not_found(lambda: client_b.beta.sessions.create(agent=agent.id, environment_id=env_b.id))
    _not_found(
        lambda: client_b.beta.sessions.create(
            agent={"type": "agent", "id": agent.id, "version": 1}, environment_id=env_b.id
        )
    )


def test_session_in_other_tenant_with_foreign_environment_is_not_found(client_b, make_agent, a_objects):
    _, env, _ = a_objects
    agent_b = make_agent(client_b)

    _not_found(lambda: client_b.beta.sessions.create(agent=agent_b.id, environment_id=env.id))


def test_other_tenant_gets_its_own_default_environment(client, client_b, make_agent):
    s_a = client.beta.sessions.create(agent=make_agent().id, environment_id=anthropic.omit)
    s_b = client_b.beta.sessions.create(agent=make_agent(client_b).id, environment_id=anthropic.omit)

    assert s_a.environment_id != s_b.environment_id
    _not_found(lambda: client_b.beta.environments.retrieve(s_a.environment_id))


def test_second_tenant_works_normally(client_b, make_agent, make_env):
    agent = make_agent(client_b)
    env = make_env(client_b)
    session = client_b.beta.sessions.create(agent=agent.id, environment_id=env.id)

    assert session.status == "idle"
    assert client_b.beta.agents.retrieve(agent.id).id == agent.id
    assert session.id in {s.id for s in client_b.beta.sessions.list(limit=100)}
