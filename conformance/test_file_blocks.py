"""`image` and `document` blocks whose source is a Files API `file_id`, via the SDK: upload with
`client.beta.files.upload`, send `{"type": "file", "file_id": …}` sources with
`client.beta.sessions.events.send` (and in `initial_events`), then check what the fake model
received (base64 images and PDFs, text documents with their `title`/`context`), that the event
log keeps the reference, and that unusable files are refused before anything is appended.
"""

from __future__ import annotations

import base64
import io
import time

import anthropic
import pytest

from conftest import RUN_TIMEOUT_S, assert_error_envelope, text_reply

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
NOTES = "# Notes\nthe launch moves to Tuesday\n"


def _upload(client, name: str, data: bytes, mime: str):
    return client.beta.files.upload(file=(name, io.BytesIO(data), mime))


def _file(kind: str, file_id: str, **extra) -> dict:
    return {"type": kind, "source": {"type": "file", "file_id": file_id}, **extra}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def session(client, make_agent):
    return client.beta.sessions.create(agent=make_agent().id, environment_id=anthropic.omit)


def _first_user_blocks(request: dict) -> list[dict]:
    blocks = request["body"]["messages"][0]["content"]
    return [{k: v for k, v in b.items() if k != "cache_control"} for b in blocks]


def _turn(client, tap, session_id: str, content: list[dict]):
    stream = tap(session_id)
    sent = client.beta.sessions.events.send(session_id, events=[{"type": "user.message", "content": content}])
    stream.wait_idle("end_turn")
    return sent


def test_a_document_file_reaches_the_model_and_the_log_keeps_the_reference(client, fake, tap, session):
    notes = _upload(client, "notes.md", NOTES.encode(), "text/markdown")
    pdf = _upload(client, "report.pdf", PDF, "application/pdf")
    content = [
        {"type": "text", "text": "summarise"},
        _file("document", notes.id, title="notes.md", context="from the planning meeting"),
        _file("document", pdf.id),
    ]
    fake.script([text_reply("done")])
    sent = _turn(client, tap, session.id, content)

    (echo,) = sent.data
    assert echo.type == "user.message"
    assert echo.content[1].type == "document" and echo.content[1].source.type == "file"
    assert echo.content[1].source.file_id == notes.id and echo.content[1].title == "notes.md"

    (request,) = fake.requests()
    assert _first_user_blocks(request) == [
        {"type": "text", "text": "summarise"},
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": NOTES},
            "title": "notes.md",
            "context": "from the planning meeting",
        },
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": _b64(PDF)}},
    ]

    logged = [e for e in client.beta.sessions.events.list(session.id) if e.type == "user.message"]
    assert len(logged) == 1
    assert [b.model_dump(mode="json", exclude_none=True) for b in logged[0].content] == content


def test_an_image_file_reaches_the_model_as_base64(client, fake, tap, session):
    png = _upload(client, "pixel.png", PNG, "image/png")
    fake.script([text_reply("a pixel")])
    _turn(client, tap, session.id, [_file("image", png.id), {"type": "text", "text": "what is it?"}])
    (request,) = fake.requests()
    assert _first_user_blocks(request)[0] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": _b64(PNG)},
    }


def test_initial_events_may_name_files(client, fake, make_agent):
    notes = _upload(client, "notes.txt", NOTES.encode(), "text/plain")
    session = client.beta.sessions.create(
        agent=make_agent().id,
        environment_id=anthropic.omit,
        initial_events=[{"type": "user.message", "content": [_file("document", notes.id)]}],
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while client.beta.sessions.retrieve(session.id).status != "idle":
        assert time.monotonic() < deadline, "the session did not go idle"
        time.sleep(0.05)
    (request,) = fake.requests()
    assert _first_user_blocks(request) == [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": NOTES}}
    ]


def test_unusable_files_are_refused_and_nothing_is_appended(client, client_b, fake, session):
    csv = _upload(client, "data.csv", b"a,b\n", "text/csv")
    theirs = _upload(client_b, "theirs.txt", b"private", "text/plain")
    for block, error in [
        (_file("document", theirs.id), anthropic.NotFoundError),
        (_file("document", "file_011CNha8iCJcU1wXNR6q4V8w"), anthropic.NotFoundError),
        (_file("image", csv.id), anthropic.BadRequestError),
        ([_file("document", csv.id)] * 101, anthropic.BadRequestError),
    ]:
        content = block if isinstance(block, list) else [block]
        with pytest.raises(error) as e:
            client.beta.sessions.events.send(session.id, events=[{"type": "user.message", "content": content}])
        assert_error_envelope(e.value, e.value.status_code)
    assert list(client.beta.sessions.events.list(session.id)) == []
    assert client.beta.sessions.retrieve(session.id).status == "idle"
    assert fake.requests() == []


def test_a_deleted_file_becomes_a_note_for_the_model(client, fake, tap, session):
    notes = _upload(client, "notes.txt", NOTES.encode(), "text/plain")
    fake.script([text_reply("read it"), text_reply("still here")])
    _turn(client, tap, session.id, [_file("document", notes.id), {"type": "text", "text": "read"}])
    client.beta.files.delete(notes.id)
    _turn(client, tap, session.id, [{"type": "text", "text": "again"}])
    first, second = fake.requests()
    assert _first_user_blocks(first)[0]["source"]["data"] == NOTES
    assert _first_user_blocks(second)[0] == {"type": "text", "text": f"(file {notes.id} is no longer available)"}
