"""Session threads (`client.beta.sessions.threads.*`): a single-agent session has exactly
one thread, the primary one, whose event log and stream are the session's."""

from __future__ import annotations

import anthropic
import httpx2
import pytest

from conftest import (
    RUN_TIMEOUT_S,
    SDK_TIMEOUT_S,
    EventTap,
    assert_error_envelope,
    parse_ts,
    text_reply,
    user_message,
)


@pytest.fixture
def agent(make_agent):
    return make_agent(system="threads agent")


@pytest.fixture
def session(client, agent):
    return client.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)


@pytest.fixture
def thread_tap(client):
    opened: list[EventTap] = []

    def _open(session_id: str, thread_id: str, **kw) -> EventTap:
        kw.setdefault("timeout", httpx2.Timeout(SDK_TIMEOUT_S, read=RUN_TIMEOUT_S))
        stream = client.beta.sessions.threads.events.stream(thread_id, session_id=session_id, **kw)
        t = EventTap(stream, label=f"thread stream {thread_id}")
        opened.append(t)
        return t

    yield _open
    for t in opened:
        t.close()


def primary(client, session_id):
    threads = list(client.beta.sessions.threads.list(session_id))
    assert len(threads) == 1, [t.id for t in threads]
    return threads[0]


def test_new_session_lists_exactly_one_primary_thread(client, agent, session):
    thread = primary(client, session.id)

    assert thread.type == "session_thread"
    assert isinstance(thread.id, str) and thread.id
    assert thread.session_id == session.id
    assert thread.parent_thread_id is None
    assert thread.archived_at is None
    assert thread.workflow_run_id is None
    assert thread.status == "idle"
    assert thread.agent.type == "agent"
    assert thread.agent.id == agent.id
    assert thread.agent.version == 1
    assert thread.agent.system == "threads agent"
    parse_ts(thread.created_at)
    parse_ts(thread.updated_at)


def test_retrieve_primary_thread_matches_list(client, session):
    listed = primary(client, session.id)

    got = client.beta.sessions.threads.retrieve(listed.id, session_id=session.id)

    assert got.id == listed.id
    assert got.session_id == session.id
    assert got.agent.id == listed.agent.id
    assert got.parent_thread_id is None


def test_thread_list_filters_by_status(client, session):
    thread = primary(client, session.id)

    assert [t.id for t in client.beta.sessions.threads.list(session.id, statuses=["idle"])] == [thread.id]
    assert list(client.beta.sessions.threads.list(session.id, statuses=["running", "terminated"])) == []


def test_primary_thread_events_and_stream_mirror_the_session(client, fake, tap, thread_tap, session):
    thread = primary(client, session.id)
    fake.script([text_reply("thread answer", split=4)])
    session_stream = tap(session.id)
    thread_stream = thread_tap(session.id, thread.id, event_deltas=["agent.message"])

    client.beta.sessions.events.send(session.id, events=[user_message("hi")])
    session_stream.wait_idle("end_turn")
    thread_stream.wait_idle("end_turn")

    persisted = [e for e in thread_stream.events if e.type not in ("event_start", "event_delta")]
    assert [e.id for e in persisted] == [e.id for e in session_stream.events]
    assert "event_delta" in thread_stream.types(), "the thread stream honours event_deltas[]"
    session_log = [e.id for e in client.beta.sessions.events.list(session.id)]
    thread_log = [e.id for e in client.beta.sessions.threads.events.list(thread.id, session_id=session.id)]
    assert thread_log == session_log
    paged = [e.id for e in client.beta.sessions.threads.events.list(thread.id, session_id=session.id, limit=2)]
    assert paged == session_log


def test_primary_thread_accumulates_usage_after_a_turn(client, fake, tap, session):
    thread = primary(client, session.id)
    stream = tap(session.id)
    client.beta.sessions.events.send(session.id, events=[user_message("hi")])
    stream.wait_idle("end_turn")

    got = client.beta.sessions.threads.retrieve(thread.id, session_id=session.id)

    assert got.status == "idle"
    assert got.usage is not None
    assert got.usage.input_tokens == 10
    assert got.usage.output_tokens == 5


def test_unknown_thread_is_not_found(client, session):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.sessions.threads.retrieve("sthr_does_not_exist", session_id=session.id)
    assert_error_envelope(ei.value, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.sessions.threads.events.list("sthr_does_not_exist", session_id=session.id)
    assert_error_envelope(ei.value, 404, "not_found_error")


def test_threads_of_another_tenants_session_are_not_found(client, client_b, session):
    thread = primary(client, session.id)

    with pytest.raises(anthropic.NotFoundError) as ei:
        client_b.beta.sessions.threads.list(session.id)
    assert_error_envelope(ei.value, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError) as ei:
        client_b.beta.sessions.threads.retrieve(thread.id, session_id=session.id)
    assert_error_envelope(ei.value, 404, "not_found_error")
