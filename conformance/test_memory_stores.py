"""Memory stores (`/v1/memory_stores`), their memories and memory versions, via the SDK
(`client.beta.memory_stores`, `.memories`, `.memory_versions`; beta `agent-memory-2026-07-22`)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import anthropic
import pytest

from conftest import Counted, assert_error_envelope, dump, parse_ts

MEMORY_BETA = "agent-memory-2026-07-22"


def _sha(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _raises(exc: type[anthropic.APIStatusError], status: int, error_type: str, call: Callable[[], Any]) -> dict:
    with pytest.raises(exc) as ei:
        call()
    return assert_error_envelope(ei.value, status, error_type)


def _bad_request(call: Callable[[], Any]) -> dict:
    return _raises(anthropic.BadRequestError, 400, "invalid_request_error", call)


def _not_found(call: Callable[[], Any]) -> dict:
    return _raises(anthropic.NotFoundError, 404, "not_found_error", call)


@pytest.fixture
def store(client: anthropic.Anthropic, uid: str):
    s = client.beta.memory_stores.create(name=f"store-{uid}", description="notes for the agent")
    yield s
    try:
        client.beta.memory_stores.delete(s.id)
    except anthropic.NotFoundError:
        pass


def _listing(client: anthropic.Anthropic, store_id: str, **kw: Any) -> list[str]:
    """Every item of a listing (the SDK follows `next_page`): paths, `dir ` before roll-ups."""
    out = []
    for item in client.beta.memory_stores.memories.list(store_id, **kw):
        out.append(f"dir {item.path}" if item.type == "memory_prefix" else item.path)
    return out


# --------------------------------------------------------------------------- stores


def test_store_create_retrieve_update_list_archive_delete(client: anthropic.Anthropic, uid: str) -> None:
    s = client.beta.memory_stores.create(name=f"prefs-{uid}", metadata={"user": "u1", "team": "a"})
    assert s.id.startswith("memstore_")
    assert s.type == "memory_store"
    assert s.description == "", "an unset description is an empty string"
    assert s.metadata == {"user": "u1", "team": "a"}
    assert s.archived_at is None
    assert parse_ts(s.created_at) == parse_ts(s.updated_at)
    assert dump(client.beta.memory_stores.retrieve(s.id)) == dump(s)

    u = client.beta.memory_stores.update(s.id, description="What the user prefers.", metadata={"user": None, "k": "v"})
    assert (u.name, u.description, u.metadata) == (f"prefs-{uid}", "What the user prefers.", {"team": "a", "k": "v"})
    assert parse_ts(u.updated_at) > parse_ts(s.updated_at)
    cleared = client.beta.memory_stores.update(s.id, description="")
    assert cleared.description == ""

    since = parse_ts(s.created_at)
    listed = [x.id for x in client.beta.memory_stores.list(created_at_gte=since, limit=1)]
    assert s.id in listed
    assert s.id not in [x.id for x in client.beta.memory_stores.list(created_at_gte=since + timedelta(seconds=1))]
    assert s.id not in [x.id for x in client.beta.memory_stores.list(created_at_lte=since - timedelta(seconds=1))]

    a = client.beta.memory_stores.archive(s.id)
    assert a.archived_at is not None
    assert dump(client.beta.memory_stores.archive(s.id)) == dump(a), "archiving twice returns it unchanged"
    assert s.id not in [x.id for x in client.beta.memory_stores.list(created_at_gte=since)]
    assert s.id in [x.id for x in client.beta.memory_stores.list(created_at_gte=since, include_archived=True)]
    _bad_request(lambda: client.beta.memory_stores.update(s.id, name="renamed"))
    _bad_request(lambda: client.beta.memory_stores.memories.create(s.id, path="/x.md", content="x"))

    d = client.beta.memory_stores.delete(s.id)
    assert (d.id, d.type) == (s.id, "memory_store_deleted")
    _not_found(lambda: client.beta.memory_stores.retrieve(s.id))
    _not_found(lambda: client.beta.memory_stores.delete(s.id))


def test_store_input_is_validated(client: anthropic.Anthropic) -> None:
    _bad_request(lambda: client.beta.memory_stores.create(name=""))
    _bad_request(lambda: client.beta.memory_stores.create(name="x" * 256))
    _bad_request(lambda: client.beta.memory_stores.create(name="tab\there"))
    _bad_request(lambda: client.beta.memory_stores.create(name="n", description="d" * 1025))
    body = _bad_request(lambda: client.beta.memory_stores.create(name="n", metadata={f"k{i}": "v" for i in range(17)}))
    assert body["error"]["details"]["error_code"] == "invalid_metadata"
    _bad_request(lambda: client.beta.memory_stores.list(limit=0))
    _not_found(lambda: client.beta.memory_stores.retrieve("memstore_doesnotexist"))


def test_the_sdk_sends_the_memory_beta_header_and_the_server_accepts_it(counted: Counted, uid: str) -> None:
    c = counted.client
    s = c.beta.memory_stores.create(name=f"hdr-{uid}")
    c.beta.memory_stores.memories.create(s.id, path="/h.md", content="h")
    c.beta.memory_stores.memory_versions.list(s.id)
    c.beta.memory_stores.retrieve(s.id, betas=["extra-token-2026-01-01"])
    sent = counted.calls(path_prefix="/v1/memory_stores")
    assert len(sent) == 4
    assert [r.headers["anthropic-beta"] for r in sent[:3]] == [MEMORY_BETA] * 3
    assert sent[3].headers["anthropic-beta"] == f"extra-token-2026-01-01,{MEMORY_BETA}"
    c.beta.memory_stores.delete(s.id)


# --------------------------------------------------------------------------- memories


def test_memories_by_path_views_renames_and_path_conflicts(client: anthropic.Anthropic, counted: Counted, store: Any) -> None:
    mems = client.beta.memory_stores.memories
    m = mems.create(store.id, path="/projects/foo/notes.md", content="héllo")
    assert m.id.startswith("mem_") and m.memory_version_id.startswith("memver_")
    assert (m.type, m.memory_store_id, m.path) == ("memory", store.id, "/projects/foo/notes.md")
    assert m.content is None, "create defaults to view=basic"
    assert (m.content_sha256, m.content_size_bytes) == (_sha("héllo"), len("héllo".encode()))
    assert mems.retrieve(m.id, memory_store_id=store.id).content == "héllo", "retrieve defaults to view=full"
    assert mems.retrieve(m.id, memory_store_id=store.id, view="basic").content is None
    empty = mems.create(store.id, path="/empty.md", content="", view="full")
    assert (empty.content, empty.content_size_bytes, empty.content_sha256) == ("", 0, _sha(""))

    # a taken path: 409 memory_path_conflict_error naming the holder, sent once (no SDK retry)
    with pytest.raises(anthropic.ConflictError) as ei:
        counted.client.beta.memory_stores.memories.create(store.id, path="/projects/foo/notes.md", content="again")
    body = assert_error_envelope(ei.value, 409, "memory_path_conflict_error")
    assert body["error"]["conflicting_memory_id"] == m.id
    assert len(counted.calls("POST", f"/v1/memory_stores/{store.id}/memories")) == 1

    renamed = mems.update(m.id, memory_store_id=store.id, path="/archive/notes.md")
    assert (renamed.id, renamed.path, renamed.content) == (m.id, "/archive/notes.md", None)
    assert renamed.content_sha256 == m.content_sha256 and renamed.memory_version_id != m.memory_version_id
    body = _raises(anthropic.ConflictError, 409, "memory_path_conflict_error",
                   lambda: mems.update(m.id, memory_store_id=store.id, path="/empty.md"))
    assert body["error"]["conflicting_memory_id"] == empty.id
    changed = mems.update(m.id, memory_store_id=store.id, content="bonjour", view="full")
    assert (changed.content, changed.content_sha256) == ("bonjour", _sha("bonjour"))
    assert parse_ts(changed.updated_at) > parse_ts(renamed.updated_at)

    d = mems.delete(m.id, memory_store_id=store.id)
    assert (d.id, d.type) == (m.id, "memory_deleted")
    _not_found(lambda: mems.retrieve(m.id, memory_store_id=store.id))
    assert mems.create(store.id, path="/archive/notes.md", content="reborn").id != m.id


def test_preconditions_guard_updates_and_deletes(client: anthropic.Anthropic, store: Any) -> None:
    mems = client.beta.memory_stores.memories
    m = mems.create(store.id, path="/p.md", content="one")
    pre = {"type": "content_sha256", "content_sha256": _sha("one")}
    two = mems.update(m.id, memory_store_id=store.id, content="two", precondition=pre)
    assert two.content_sha256 == _sha("two")
    _raises(anthropic.ConflictError, 409, "memory_precondition_failed_error",
            lambda: mems.update(m.id, memory_store_id=store.id, content="three", precondition=pre))
    assert mems.retrieve(m.id, memory_store_id=store.id).content == "two"
    # the stored state already is what was asked for: 200, no new version
    again = mems.update(m.id, memory_store_id=store.id, content="two", precondition=pre)
    assert again.memory_version_id == two.memory_version_id
    _bad_request(lambda: mems.update(m.id, memory_store_id=store.id, content="x",
                                     precondition={"type": "content_sha256", "content_sha256": "XYZ"}))
    _bad_request(lambda: mems.update(m.id, memory_store_id=store.id, content="x", precondition={"type": "not_exists"}))
    _raises(anthropic.ConflictError, 409, "memory_precondition_failed_error",
            lambda: mems.delete(m.id, memory_store_id=store.id, expected_content_sha256=_sha("one")))
    assert mems.retrieve(m.id, memory_store_id=store.id).id == m.id
    assert mems.delete(m.id, memory_store_id=store.id, expected_content_sha256=_sha("two")).type == "memory_deleted"


def test_memory_input_is_validated(client: anthropic.Anthropic, store: Any) -> None:
    mems = client.beta.memory_stores.memories
    for path in ["no-slash.md", "/", "/dir/", "/a//b", "/./x", "/a/../b", "/" + "a/" * 20 + "z", "/" + "x" * 1024, "/e\u0301.md"]:
        _bad_request(lambda: mems.create(store.id, path=path, content="x"))
    mems.create(store.id, path="/cap.md", content="x" * 102_400)
    _bad_request(lambda: mems.create(store.id, path="/over.md", content="x" * 102_401))
    _bad_request(lambda: mems.create(store.id, path="/over.md", content="é" * 51_201))
    _bad_request(lambda: mems.list(store.id, view="everything"))
    _bad_request(lambda: mems.list(store.id, depth=2))
    _bad_request(lambda: mems.list(store.id, path_prefix="/no-trailing-slash"))
    _bad_request(lambda: mems.list(store.id, limit=101))
    _not_found(lambda: mems.retrieve("mem_doesnotexist", memory_store_id=store.id))
    _not_found(lambda: mems.list("memstore_doesnotexist"))


def test_listings_page_in_path_order_and_roll_up_directories(client: anthropic.Anthropic, store: Any) -> None:
    mems = client.beta.memory_stores.memories
    paths = ["/z.md", "/a.md", "/d/x.md", "/d/y/z.md", "/d/y/w.md", "/d.md", "/notes/b.md", "/notes/a.md"]
    for p in paths:
        mems.create(store.id, path=p, content=p)
    assert _listing(client, store.id, limit=3) == sorted(paths)
    expected = ["/a.md", "/d.md", "dir /d/", "dir /notes/", "/z.md"]
    for limit in (1, 2, 20):
        assert _listing(client, store.id, depth=1, limit=limit) == expected
    assert _listing(client, store.id, path_prefix="/d/", depth=1) == ["/d/x.md", "dir /d/y/"]
    assert _listing(client, store.id, path_prefix="/d/y/") == ["/d/y/w.md", "/d/y/z.md"]
    page = mems.list(store.id, depth=1)
    prefixes = [i for i in page.data if i.type == "memory_prefix"]
    assert [p.path for p in prefixes] == ["/d/", "/notes/"]
    memories = [i for i in page.data if i.type == "memory"]
    assert all(i.content is None and i.content_sha256 == _sha(i.path) for i in memories), "lists default to view=basic"
    for i in range(15):
        mems.create(store.id, path=f"/bulk/{i:02}.md", content="x")
    full = mems.list(store.id, view="full", limit=100)
    assert len(full.data) == 20, "view=full pages hold at most 20 items"
    assert all(i.content is not None for i in full.data)
    assert full.next_page
    assert len(mems.list(store.id, limit=100).data) == 23


# --------------------------------------------------------------------------- versions


def test_versions_record_every_change_and_redaction_erases_content(client: anthropic.Anthropic, store: Any) -> None:
    mems, versions = client.beta.memory_stores.memories, client.beta.memory_stores.memory_versions
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    m = mems.create(store.id, path="/secret.md", content="password=hunter2")
    u = mems.update(m.id, memory_store_id=store.id, content="password=<redacted>", path="/safe.md")
    keep = mems.create(store.id, path="/keep.md", content="keep")
    mems.delete(m.id, memory_store_id=store.id)

    history = list(versions.list(store.id, memory_id=m.id, limit=1))
    assert [v.operation for v in history] == ["deleted", "modified", "created"], "newest first"
    assert [v.id for v in history][1:] == [u.memory_version_id, m.memory_version_id]
    assert all(v.type == "memory_version" and v.memory_id == m.id and v.memory_store_id == store.id for v in history)
    actor = history[0].created_by
    assert actor.type == "api_actor" and actor.api_key_id.startswith("apikey_")
    assert all(dump(v.created_by) == dump(actor) for v in history)
    assert [v.path for v in history] == ["/safe.md", "/safe.md", "/secret.md"]
    assert all(v.content is None for v in history), "lists default to view=basic"
    assert (history[0].content_sha256, history[0].content_size_bytes) == (None, None), "a deletion has no content"
    assert history[2].content_sha256 == _sha("password=hunter2")
    assert [v.operation for v in versions.list(store.id, operation="created")] == ["created", "created"]
    assert len(list(versions.list(store.id, api_key_id=actor.api_key_id))) == 4
    assert list(versions.list(store.id, api_key_id="apikey_someoneelse")) == []
    assert list(versions.list(store.id, session_id="sesn_none")) == []
    assert len(list(versions.list(store.id, created_at_gte=before))) == 4
    assert list(versions.list(store.id, created_at_lte=before)) == []
    full = versions.list(store.id, memory_id=m.id, view="full")
    assert full.data[2].content == "password=hunter2"
    _bad_request(lambda: versions.list(store.id, operation="renamed"))

    got = versions.retrieve(m.memory_version_id, memory_store_id=store.id)
    assert got.content == "password=hunter2", "retrieve defaults to view=full"
    r = versions.redact(m.memory_version_id, memory_store_id=store.id)
    assert (r.content, r.content_sha256, r.content_size_bytes, r.path) == (None, None, None, None)
    assert r.redacted_at is not None and dump(r.redacted_by) == dump(actor)
    assert (r.operation, dump(r.created_by), parse_ts(r.created_at)) == (got.operation, dump(got.created_by), parse_ts(got.created_at))
    assert dump(versions.retrieve(m.memory_version_id, memory_store_id=store.id)) == dump(r)
    assert dump(versions.redact(m.memory_version_id, memory_store_id=store.id)) == dump(r), "redacting twice is a no-op"

    # the version that holds a live memory's current content stays until the memory moves on
    _raises(anthropic.ConflictError, 409, "conflict_error", lambda: versions.redact(keep.memory_version_id, memory_store_id=store.id))
    moved = mems.update(keep.id, memory_store_id=store.id, content="kept, changed")
    assert versions.redact(keep.memory_version_id, memory_store_id=store.id).redacted_at is not None
    assert mems.retrieve(keep.id, memory_store_id=store.id).memory_version_id == moved.memory_version_id
    _not_found(lambda: versions.retrieve("memver_doesnotexist", memory_store_id=store.id))


# --------------------------------------------------------------------------- tenancy


def test_another_tenant_sees_none_of_it(client: anthropic.Anthropic, client_b: anthropic.Anthropic, store: Any) -> None:
    m = client.beta.memory_stores.memories.create(store.id, path="/mine.md", content="private")
    b = client_b.beta.memory_stores
    _not_found(lambda: b.retrieve(store.id))
    _not_found(lambda: b.update(store.id, name="stolen"))
    _not_found(lambda: b.archive(store.id))
    _not_found(lambda: b.delete(store.id))
    _not_found(lambda: b.memories.list(store.id))
    _not_found(lambda: b.memories.create(store.id, path="/x.md", content="x"))
    _not_found(lambda: b.memories.retrieve(m.id, memory_store_id=store.id))
    _not_found(lambda: b.memories.update(m.id, memory_store_id=store.id, content="owned"))
    _not_found(lambda: b.memories.delete(m.id, memory_store_id=store.id))
    _not_found(lambda: b.memory_versions.list(store.id))
    _not_found(lambda: b.memory_versions.retrieve(m.memory_version_id, memory_store_id=store.id))
    _not_found(lambda: b.memory_versions.redact(m.memory_version_id, memory_store_id=store.id))
    assert store.id not in [s.id for s in b.list(include_archived=True)]
    assert client.beta.memory_stores.memories.retrieve(m.id, memory_store_id=store.id).content == "private"
