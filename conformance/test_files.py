"""Files (`/v1/files`) and session file resources (`/v1/sessions/{id}/resources`), via
the SDK: uploads (`client.beta.files.upload`), metadata, downloads, paging, `ids`,
`scope_id`, deletion, errors; files mounted into sessions, added and removed while they
live; outputs the agent leaves in `/mnt/session/outputs/` listed under the session's scope.
"""

from __future__ import annotations

import io
from datetime import timedelta

import anthropic
import pytest

from conftest import BETA, assert_error_envelope, parse_ts, text_reply, tool_use_reply, user_message

CSV = b"city,temp\nOslo,-3\nLima,24\n"
TOOLSET = {"type": "agent_toolset_20260401"}


def _upload(client, name: str = "weather.csv", data: bytes = CSV, mime: str = "text/csv", **kw):
    return client.beta.files.upload(file=(name, io.BytesIO(data), mime), **kw)


def test_upload_returns_metadata_and_download_returns_the_bytes(client):
    f = _upload(client)
    assert f.type == "file" and f.id.startswith("file_")
    assert (f.filename, f.mime_type, f.size_bytes) == ("weather.csv", "text/csv", len(CSV))
    assert f.downloadable is True and f.expires_at is None and f.scope is None
    parse_ts(f.created_at)
    assert client.beta.files.retrieve_metadata(f.id) == f
    content = client.beta.files.download(f.id)
    assert content.read() == CSV


def test_binary_upload_round_trips_exactly(client):
    data = bytes(range(256)) * 8192  # 2 MiB, every byte value
    f = _upload(client, "blob.bin", data, "application/octet-stream")
    assert f.size_bytes == len(data)
    assert client.beta.files.download(f.id).read() == data


def test_expires_in_seconds_sets_expires_at(client):
    f = _upload(client, "short.txt", b"x", "text/plain", expires_in_seconds=3600)
    assert parse_ts(f.expires_at) - parse_ts(f.created_at) == timedelta(seconds=3600)


@pytest.mark.parametrize("secs", [59, 3599, 7776001])
def test_expires_in_seconds_out_of_range_is_400(client, secs):
    with pytest.raises(anthropic.BadRequestError) as e:
        _upload(client, "x.txt", b"x", "text/plain", expires_in_seconds=secs)
    assert_error_envelope(e.value, 400, "invalid_request_error")


def test_only_the_last_path_component_of_the_filename_is_kept(client):
    f = _upload(client, "../../etc/notes.txt", b"hi", "text/plain")
    assert f.filename == "notes.txt"


def test_list_is_newest_first_and_pages_with_the_sdk(client):
    made = [_upload(client, f"page-{i}.txt", b"%d" % i, "text/plain").id for i in range(5)]
    first = client.beta.files.list(limit=2)
    assert len(first.data) == 2 and first.next_page
    seen = [f.id for f in client.beta.files.list(limit=2)]  # auto-pagination
    newest_first = [i for i in seen if i in made]
    assert newest_first == list(reversed(made))


def test_list_by_ids_is_one_page(client):
    a, b = _upload(client, "a.txt", b"a", "text/plain"), _upload(client, "b.txt", b"b", "text/plain")
    page = client.beta.files.list(ids=[a.id, b.id, a.id])
    assert sorted(f.id for f in page.data) == sorted([a.id, b.id])
    assert page.next_page is None


def test_list_limit_bounds(client):
    assert client.beta.files.list(limit=1000).data is not None
    with pytest.raises(anthropic.BadRequestError):
        client.beta.files.list(limit=1001)
    with pytest.raises(anthropic.BadRequestError):
        client.beta.files.list(limit=0)


def test_delete_then_everything_is_404(client):
    f = _upload(client, "gone.txt", b"bye", "text/plain")
    deleted = client.beta.files.delete(f.id)
    assert deleted.id == f.id and deleted.type == "file_deleted"
    for call in (client.beta.files.retrieve_metadata, client.beta.files.download, client.beta.files.delete):
        with pytest.raises(anthropic.NotFoundError) as e:
            call(f.id)
        assert_error_envelope(e.value, 404, "not_found_error")


def test_files_are_invisible_to_other_tenants(client, client_b):
    f = _upload(client, "private.txt", b"mine", "text/plain")
    for call in (client_b.beta.files.retrieve_metadata, client_b.beta.files.download, client_b.beta.files.delete):
        with pytest.raises(anthropic.NotFoundError):
            call(f.id)
    assert f.id not in [x.id for x in client_b.beta.files.list(limit=1000).data]
    assert client.beta.files.retrieve_metadata(f.id).id == f.id


def test_scope_id_must_be_a_session_id(client):
    with pytest.raises(anthropic.BadRequestError):
        client.beta.files.list(scope_id="agent_01ABC")


# --------------------------------------------------------------------------- sessions


@pytest.fixture
def tool_agent(make_agent):
    return make_agent(tools=[TOOLSET])


def _run_turn(client, fake, tap, session_id: str, *replies):
    fake.script([*replies, text_reply("done")])
    stream = tap(session_id)
    client.beta.sessions.events.send(session_id, events=[user_message("go")])
    stream.wait_idle("end_turn")
    return [e for e in stream.events if e.type == "agent.tool_result"]


def _text(result) -> str:
    return "".join(getattr(b, "text", "") for b in result.content or [])


def test_session_mounts_files_read_only_and_lists_outputs(client, fake, tap, tool_agent):
    data = _upload(client)
    session = client.beta.sessions.create(
        agent=tool_agent.id,
        environment_id=anthropic.omit,
        resources=[{"type": "file", "file_id": data.id, "mount_path": "/data.csv"}],
    )
    (res,) = session.resources
    assert res.type == "file" and res.id.startswith("sesrsc_")
    assert res.mount_path == "/mnt/session/uploads/data.csv"
    assert res.file_id != data.id
    copy = client.beta.files.retrieve_metadata(res.file_id)
    assert copy.scope is not None and copy.scope.id == session.id and copy.scope.type == "session"

    results = _run_turn(
        client, fake, tap, session.id,
        tool_use_reply("bash", {"command": "cat /mnt/session/uploads/data.csv; echo x >> /mnt/session/uploads/data.csv"}),
        tool_use_reply("bash", {"command": "mkdir -p /mnt/session/outputs && sort /mnt/session/uploads/data.csv > /mnt/session/outputs/sorted.csv"}),
    )
    out = _text(results[0])
    assert "Oslo,-3" in out and ("Read-only file system" in out or "Permission denied" in out), out
    assert results[1].is_error in (None, False), _text(results[1])

    scoped = client.beta.files.list(scope_id=session.id, extra_headers={"anthropic-beta": BETA})
    by_name = {f.filename: f for f in scoped.data}
    assert set(by_name) == {"weather.csv", "sorted.csv"}, by_name  # the copy keeps its name
    assert client.beta.files.download(by_name["sorted.csv"].id).read() == b"".join(sorted(CSV.splitlines(keepends=True)))
    assert client.beta.files.download(res.file_id).read() == CSV, "the mounted copy is unchanged"


def test_resources_are_added_listed_retrieved_and_deleted(client, fake, tap, tool_agent):
    session = client.beta.sessions.create(agent=tool_agent.id, environment_id=anthropic.omit)
    assert session.resources == []
    f = _upload(client, "extra.txt", b"more", "text/plain")
    added = client.beta.sessions.resources.add(session.id, type="file", file_id=f.id)
    assert added.type == "file" and added.mount_path == f"/mnt/session/uploads/{f.id}"
    listed = client.beta.sessions.resources.list(session.id)
    assert [r.id for r in listed.data] == [added.id]
    got = client.beta.sessions.resources.retrieve(added.id, session_id=session.id)
    assert got.id == added.id and got.type == "file"
    assert client.beta.sessions.retrieve(session.id).resources[0].id == added.id

    (out,) = _run_turn(client, fake, tap, session.id, tool_use_reply("bash", {"command": f"cat {added.mount_path}"}))
    assert _text(out).strip() == "more"

    with pytest.raises(anthropic.BadRequestError):
        client.beta.sessions.resources.update(added.id, session_id=session.id, authorization_token="ghp_rotated")
    deleted = client.beta.sessions.resources.delete(added.id, session_id=session.id)
    assert deleted.id == added.id and deleted.type == "session_resource_deleted"
    assert client.beta.sessions.resources.list(session.id).data == []
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.resources.retrieve(added.id, session_id=session.id)
    (out,) = _run_turn(client, fake, tap, session.id, tool_use_reply("bash", {"command": f"cat {added.mount_path}"}))
    assert "No such file" in _text(out)


def test_mounting_a_missing_or_foreign_file_is_404(client, client_b, tool_agent):
    session = client.beta.sessions.create(agent=tool_agent.id, environment_id=anthropic.omit)
    foreign = _upload(client_b, "theirs.txt", b"t", "text/plain")
    for file_id in ("file_doesnotexist", foreign.id):
        with pytest.raises(anthropic.NotFoundError):
            client.beta.sessions.resources.add(session.id, type="file", file_id=file_id)


def test_mount_path_escapes_are_refused(client, tool_agent):
    f = _upload(client, "x.txt", b"x", "text/plain")
    for path in ("/../../etc/passwd", "/a/./b", "/a//b"):
        with pytest.raises(anthropic.BadRequestError):
            client.beta.sessions.create(agent=tool_agent.id, environment_id=anthropic.omit, resources=[{"type": "file", "file_id": f.id, "mount_path": path}])


def test_deleting_a_session_deletes_its_files_but_not_the_upload(client, fake, tap, tool_agent):
    f = _upload(client, "keep.txt", b"keep", "text/plain")
    session = client.beta.sessions.create(agent=tool_agent.id, environment_id=anthropic.omit, resources=[{"type": "file", "file_id": f.id}])
    copy_id = session.resources[0].file_id
    client.beta.sessions.delete(session.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.retrieve_metadata(copy_id)
    assert client.beta.files.download(f.id).read() == b"keep"
