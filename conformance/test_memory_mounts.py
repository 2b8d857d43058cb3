"""Memory stores attached to sessions (`resources=[{"type": "memory_store", …}]`), via the
SDK: the session resource, an agent (scripted model) writing through the mount with bash,
the write visible as a version by the session, an API update seen by the next tool call."""

from __future__ import annotations

import re

import anthropic
import pytest

from conftest import text_reply, tool_use_reply, user_message

TOOLSET = {"type": "agent_toolset_20260401"}


@pytest.fixture
def store(client, uid):
    s = client.beta.memory_stores.create(name=f"Notes {uid}", description="team notes")
    yield s
    try:
        client.beta.memory_stores.delete(s.id)
    except anthropic.APIStatusError:
        pass


def _turn(client, fake, tap, session_id: str, command: str) -> str:
    fake.script([tool_use_reply("bash", {"command": command}), text_reply("done")])
    stream = tap(session_id)
    client.beta.sessions.events.send(session_id, events=[user_message("go")])
    stream.wait_idle("end_turn")
    (result,) = [e for e in stream.events if e.type == "agent.tool_result"]
    return "".join(getattr(b, "text", "") for b in result.content or [])


def test_agent_writes_through_the_mount_and_sees_api_writes(client, fake, tap, make_agent, store, uid):
    client.beta.memory_stores.memories.create(store.id, path="/prefs.md", content="tabs")
    agent = make_agent(tools=[TOOLSET])
    session = client.beta.sessions.create(
        agent=agent.id,
        environment_id=anthropic.omit,
        resources=[{"type": "memory_store", "memory_store_id": store.id, "instructions": "remember preferences"}],
    )
    (res,) = session.resources
    assert res.type == "memory_store" and res.memory_store_id == store.id
    assert res.access == "read_write" and res.name == store.name and res.description == "team notes"
    mount = res.mount_path
    # slug: lower case, runs of anything but ASCII letters and digits become one `-`
    assert mount == "/mnt/memory/" + re.sub(r"[^a-z0-9]+", "-", store.name.lower()).strip("-")[:64]

    out = _turn(client, fake, tap, session.id, f"cat {mount}/prefs.md; echo; echo spaces > {mount}/prefs.md")
    assert out.startswith("tabs")
    (mem,) = [m for m in client.beta.memory_stores.memories.list(store.id, view="full") if m.type == "memory"]
    assert mem.path == "/prefs.md" and mem.content == "spaces\n"
    latest = next(iter(client.beta.memory_stores.memory_versions.list(store.id, memory_id=mem.id)))
    assert latest.operation == "modified"
    assert latest.created_by.type == "session_actor" and latest.created_by.session_id == session.id

    client.beta.memory_stores.memories.update(mem.id, memory_store_id=store.id, content="both")
    assert _turn(client, fake, tap, session.id, f"cat {mount}/prefs.md") == "both"


def test_read_only_mounts_refuse_writes(client, fake, tap, make_agent, store):
    client.beta.memory_stores.memories.create(store.id, path="/fixed.md", content="keep")
    agent = make_agent(tools=[TOOLSET])
    session = client.beta.sessions.create(
        agent=agent.id, environment_id=anthropic.omit, resources=[{"type": "memory_store", "memory_store_id": store.id, "access": "read_only"}]
    )
    mount = session.resources[0].mount_path
    out = _turn(client, fake, tap, session.id, f"echo changed > {mount}/fixed.md; cat {mount}/fixed.md")
    assert "Read-only file system" in out and out.endswith("keep")
    (mem,) = [m for m in client.beta.memory_stores.memories.list(store.id, view="full") if m.type == "memory"]
    assert mem.content == "keep"


def test_attaching_a_missing_or_foreign_store_is_404(client, client_b, make_agent, uid):
    foreign = client_b.beta.memory_stores.create(name=f"theirs {uid}")
    agent = make_agent(tools=[TOOLSET])
    for store_id in ("memstore_doesnotexist", foreign.id):
        with pytest.raises(anthropic.NotFoundError):
            client.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit, resources=[{"type": "memory_store", "memory_store_id": store_id}])
