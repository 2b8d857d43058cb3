"""Sessions (`/v1/sessions`): create/pin/retrieve/update/list/archive/delete via the SDK."""

from __future__ import annotations

import time

import anthropic
import pytest
from anthropic.types.beta import BetaManagedAgentsSession

from conftest import BETA, MODEL, assert_error_envelope, dump, parse_ts


@pytest.fixture
def agent(make_agent):
    return make_agent(system="agent prompt")


@pytest.fixture
def env(make_env):
    return make_env()


def test_create_session_returns_idle_session_with_agent_snapshot(client, agent, env):
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)

    assert session.type == "session"
    assert isinstance(session.id, str) and session.id
    assert session.status == "idle"
    assert session.environment_id == env.id
    assert session.archived_at is None
    assert session.metadata == {}
    assert session.resources == []
    assert session.vault_ids == []
    assert session.outcome_evaluations == []
    assert session.stats is not None
    assert session.usage is not None
    parse_ts(session.created_at)
    parse_ts(session.updated_at)
    snap = session.agent
    assert snap.type == "agent"
    assert snap.id == agent.id
    assert snap.version == 1
    assert snap.name == agent.name
    assert snap.system == "agent prompt"
    assert snap.model.id == MODEL
    assert snap.tools == []
    assert snap.execution_identity.type == "service_account"


def test_session_with_agent_id_string_pins_latest_version(client, agent, env):
    client.beta.agents.update(agent.id, system="v2 prompt")

    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)

    assert session.agent.version == 2
    assert session.agent.system == "v2 prompt"


def test_session_pinned_to_version_1_keeps_old_snapshot_after_agent_update(client, agent, env):
    pinned = client.beta.sessions.create(
        agent={"type": "agent", "id": agent.id, "version": 1}, environment_id=env.id
    )
    client.beta.agents.update(agent.id, system="v2 prompt")
    latest = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    explicit_v1 = client.beta.sessions.create(
        agent={"type": "agent", "id": agent.id, "version": 1}, environment_id=env.id
    )

    for s in (pinned, client.beta.sessions.retrieve(pinned.id), explicit_v1):
        assert s.agent.version == 1
        assert s.agent.system == "agent prompt"
    assert latest.agent.version == 2
    assert latest.agent.system == "v2 prompt"

    v1_ids = {s.id for s in client.beta.sessions.list(agent_id=agent.id, agent_version=1)}
    assert v1_ids == {pinned.id, explicit_v1.id}


def test_session_with_unknown_agent_version_is_not_found(client, agent, env):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.sessions.create(agent={"type": "agent", "id": agent.id, "version": 9}, environment_id=env.id)
    assert_error_envelope(ei.value, 404, "not_found_error")


def test_session_without_environment_id_uses_tenant_default_environment(client, agent):
    session = client.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)

    assert isinstance(session.environment_id, str) and session.environment_id
    env = client.beta.environments.retrieve(session.environment_id)
    assert env.id == session.environment_id
    assert env.type == "environment"

    # the default environment is stable: a second session gets the same one
    again = client.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)
    assert again.environment_id == session.environment_id


def test_seed_agent_id_alias_creates_session(client, agent, env):
    seed_style = client.post(
        "/v1/sessions",
        body={"agent_id": agent.id},
        cast_to=BetaManagedAgentsSession,
        options={"headers": {"anthropic-beta": BETA}},
    )
    with_env = client.post(
        "/v1/sessions",
        body={"agent_id": agent.id, "environment_id": env.id},
        cast_to=BetaManagedAgentsSession,
        options={"headers": {"anthropic-beta": BETA}},
    )

    for s in (seed_style, with_env):
        assert s.type == "session"
        assert s.status == "idle"
        assert s.agent.id == agent.id
        assert s.agent.version == 1
    assert seed_style.environment_id
    client.beta.environments.retrieve(seed_style.environment_id)
    assert with_env.environment_id == env.id


def test_retrieve_session_returns_same_object(client, agent, env):
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id, title="t", metadata={"k": "v"})

    got = client.beta.sessions.retrieve(session.id)

    assert got.id == session.id
    assert got.title == "t"
    assert got.metadata == {"k": "v"}
    assert got.agent.id == agent.id
    assert got.environment_id == env.id
    assert got.status == "idle"


def test_update_session_title_and_metadata_patch(client, agent, env):
    session = client.beta.sessions.create(
        agent=agent.id, environment_id=env.id, title="before", metadata={"a": "1", "b": "2"}
    )

    updated = client.beta.sessions.update(session.id, title="after", metadata={"a": None, "c": "3"})

    assert updated.title == "after"
    assert updated.metadata == {"b": "2", "c": "3"}
    got = client.beta.sessions.retrieve(session.id)
    assert got.title == "after"
    assert got.metadata == {"b": "2", "c": "3"}


def test_update_session_title_none_clears_title_and_keeps_metadata(client, agent, env):
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id, title="x", metadata={"k": "v"})

    updated = client.beta.sessions.update(session.id, title=None)

    assert updated.title is None
    assert updated.metadata == {"k": "v"}
    assert client.beta.sessions.retrieve(session.id).title is None


def test_list_sessions_filters_by_agent_status_and_order(client, make_agent, env):
    agent = make_agent()
    ids = []
    for _ in range(3):
        ids.append(client.beta.sessions.create(agent=agent.id, environment_id=env.id).id)
        time.sleep(0.02)  # distinct created_at values make the order well-defined
    s1, s2, s3 = ids
    client.beta.sessions.archive(s3)

    def listed(**kw):
        return [s.id for s in client.beta.sessions.list(agent_id=agent.id, **kw)]

    assert listed() == [s2, s1], "default order is created_at desc; archived hidden"
    assert listed(order="asc") == [s1, s2]
    assert listed(order="desc") == [s2, s1]
    assert listed(statuses=["idle"]) == [s2, s1]
    assert listed(statuses=["terminated"]) == []
    assert listed(statuses=["terminated"], include_archived=True) == [s3]
    assert listed(statuses=["idle", "terminated"], include_archived=True, order="asc") == [s1, s2, s3]
    assert all(s.status == "idle" for s in client.beta.sessions.list(statuses=["idle"], limit=100))


def test_list_sessions_auto_paginates_with_limit_2(client, counted, make_agent, env):
    agent = make_agent()
    created = [client.beta.sessions.create(agent=agent.id, environment_id=env.id).id for _ in range(5)]

    filtered = [s.id for s in counted.client.beta.sessions.list(agent_id=agent.id, limit=2)]
    assert sorted(filtered) == sorted(created)
    assert len(counted.calls("GET", "/v1/sessions")) >= 3, "5 results with limit=2 need at least 3 pages"

    everything = [s.id for s in client.beta.sessions.list(limit=2)]
    assert set(created) <= set(everything)
    assert len(everything) == len(set(everything)), "pagination returned duplicates"


def test_list_sessions_first_page_envelope(client, make_agent, env):
    agent = make_agent()
    for _ in range(3):
        client.beta.sessions.create(agent=agent.id, environment_id=env.id)

    page = client.beta.sessions.list(agent_id=agent.id, limit=2)

    assert len(page.data) == 2
    assert page.next_page
    assert page.prev_page is None


def test_archive_session_sets_archived_at_and_terminates(client, agent, env):
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)

    archived = client.beta.sessions.archive(session.id)

    assert archived.id == session.id
    assert archived.archived_at is not None
    parse_ts(archived.archived_at)
    assert archived.status == "terminated"
    got = client.beta.sessions.retrieve(session.id)
    assert got.archived_at is not None
    assert got.status == "terminated"


def test_delete_session_returns_session_deleted_then_not_found(client, agent, env):
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)

    deleted = client.beta.sessions.delete(session.id)

    assert dump(deleted) == {"id": session.id, "type": "session_deleted"}
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.sessions.retrieve(session.id)
    assert_error_envelope(ei.value, 404, "not_found_error")
    assert session.id not in {s.id for s in client.beta.sessions.list(limit=100, include_archived=True)}


def test_session_with_unknown_agent_is_not_found(client, env):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.sessions.create(agent="agent_nope", environment_id=env.id)
    assert_error_envelope(ei.value, 404, "not_found_error")


def test_session_with_unknown_environment_is_not_found(client, agent):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.sessions.create(agent=agent.id, environment_id="env_nope")
    assert_error_envelope(ei.value, 404, "not_found_error")


UNSUPPORTED_CREATE_FIELDS = {
    "resources": [{"type": "github_repository", "url": "https://github.com/octocat/Hello-World"}],
}


@pytest.mark.parametrize("field", sorted(UNSUPPORTED_CREATE_FIELDS))
def test_unsupported_session_create_field_is_rejected(client, agent, env, field):
    """Not implemented yet: must be refused loudly rather than silently ignored."""
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.create(
            agent=agent.id, environment_id=env.id, **{field: UNSUPPORTED_CREATE_FIELDS[field]}
        )
    assert_error_envelope(ei.value, 400, "invalid_request_error")
