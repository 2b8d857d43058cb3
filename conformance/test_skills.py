"""Skills (`/v1/skills`) via the SDK: uploads as `files[]` parts whose filenames carry their
directory (`client.beta.skills.create`, also through `anthropic.lib.files_from_dir`), the
SKILL.md front matter, `skill_name_taken`, versions and `latest`, the content zip,
listing with `source`, deletion and tenant isolation.
"""

from __future__ import annotations

import io
import uuid
import zipfile

import anthropic
import pytest
from anthropic.lib import files_from_dir

from conftest import assert_error_envelope, parse_ts


def _name(prefix: str = "skill") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _md(name: str, description: str = "Does one thing well.") -> bytes:
    return f"---\nname: {name}\ndescription: {description}\n---\n# {name}\n\nSteps.\n".encode()


def _files(name: str, description: str = "Does one thing well.", extra: dict[str, bytes] | None = None):
    files = [(f"{name}/SKILL.md", _md(name, description), "text/markdown")]
    for path, data in (extra or {}).items():
        files.append((f"{name}/{path}", data, "application/octet-stream"))
    return files


def _unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def test_create_retrieve_and_download_round_trip(client):
    name = _name()
    script = b"#!/usr/bin/env python3\nprint('hi')\n"
    skill = client.beta.skills.create(files=_files(name, extra={"scripts/run.py": script}), display_name="My helper")
    assert skill.type == "skill" and skill.id.startswith("skill_")
    assert skill.display_name == "My helper"
    assert skill.source.type == "custom"
    parse_ts(skill.created_at)
    assert client.beta.skills.retrieve(skill.id) == skill

    version = client.beta.skills.versions.retrieve(skill.latest_version_id, skill_id=skill.id)
    assert version.type == "skill_version"
    assert (version.skill_id, version.name, version.description) == (skill.id, name, "Does one thing well.")
    assert client.beta.skills.versions.retrieve("latest", skill_id=skill.id) == version

    content = client.beta.skills.versions.download(version.id, skill_id=skill.id)
    assert _unzip(content.read()) == {f"{name}/SKILL.md": _md(name), f"{name}/scripts/run.py": script}


def test_files_from_dir_uploads_a_directory(client, tmp_path):
    name = _name("dir")
    root = tmp_path / name
    (root / "ref").mkdir(parents=True)
    (root / "SKILL.md").write_bytes(_md(name, "From a directory."))
    (root / "ref" / "notes.md").write_bytes(b"# notes\n")
    skill = client.beta.skills.create(files=files_from_dir(root))
    assert skill.display_name == name, "display_name defaults to the front matter name"
    content = client.beta.skills.versions.download("latest", skill_id=skill.id).read()
    assert _unzip(content) == {f"{name}/SKILL.md": _md(name, "From a directory."), f"{name}/ref/notes.md": b"# notes\n"}


def test_a_taken_name_is_a_conflict_after_one_request(client, counted):
    name = _name()
    client.beta.skills.create(files=_files(name))
    with pytest.raises(anthropic.ConflictError) as e:
        counted.client.beta.skills.create(files=_files(name))
    body = assert_error_envelope(e.value, 409)
    assert body["error"]["details"]["error_code"] == "skill_name_taken"
    assert e.value.error_code == "skill_name_taken"
    assert len(counted.calls("POST", "/v1/skills")) == 1, "409 skill_name_taken is not retried"


def test_versions_move_latest_and_keep_the_name(client):
    name = _name()
    skill = client.beta.skills.create(files=_files(name))
    v1 = skill.latest_version_id
    v2 = client.beta.skills.versions.create(skill.id, files=_files(name, "Second take."))
    assert v2.description == "Second take." and v2.name == name
    after = client.beta.skills.retrieve(skill.id)
    assert after.latest_version_id == v2.id
    assert parse_ts(after.updated_at) > parse_ts(skill.updated_at)
    assert [v.id for v in client.beta.skills.versions.list(skill.id, limit=1)] == [v2.id, v1]

    other = _name()
    with pytest.raises(anthropic.BadRequestError) as e:
        client.beta.skills.versions.create(skill.id, files=_files(other))
    assert_error_envelope(e.value, 400, "invalid_request_error")

    deleted = client.beta.skills.versions.delete(v2.id, skill_id=skill.id)
    assert (deleted.id, deleted.type) == (v2.id, "skill_version_deleted")
    assert client.beta.skills.retrieve(skill.id).latest_version_id == v1
    with pytest.raises(anthropic.NotFoundError):
        client.beta.skills.versions.retrieve(v2.id, skill_id=skill.id)


def test_list_pages_and_filters_by_source(client):
    ids = [client.beta.skills.create(files=_files(_name("list"))).id for _ in range(3)]
    listed = [s.id for s in client.beta.skills.list(limit=1)]
    assert listed[:3] == ids[::-1], "newest first, paged by the SDK"
    assert set(ids) <= {s.id for s in client.beta.skills.list(source="custom")}
    assert client.beta.skills.list(source="anthropic").data == []


@pytest.mark.parametrize(
    "files",
    [
        [("a/README.md", b"no skill file", "text/markdown")],
        [("SKILL.md", _md("top"), "text/markdown")],
        [("x/SKILL.md", _md("x"), "text/markdown"), ("y/other.txt", b"y", "text/plain")],
        [("x/SKILL.md", _md("x"), "text/markdown"), ("x/../../etc/passwd", b"y", "text/plain")],
        [("x/SKILL.md", b"# no front matter", "text/markdown")],
        [("x/SKILL.md", b"---\nname: x\n---\n", "text/markdown")],
        [("x/SKILL.md", _md("Not_Kebab"), "text/markdown")],
    ],
    ids=["no-skill-md", "no-directory", "two-directories", "traversal", "no-front-matter", "no-description", "bad-name"],
)
def test_bad_uploads_are_400(client, files):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.beta.skills.create(files=files)
    assert_error_envelope(e.value, 400, "invalid_request_error")


def test_a_zip_upload_is_accepted(client):
    name = _name("zip")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{name}/SKILL.md", _md(name))
        z.writestr(f"{name}/data.csv", "a,b\n1,2\n")
    skill = client.beta.skills.create(files=[(f"{name}.zip", buf.getvalue(), "application/zip")])
    content = client.beta.skills.versions.download("latest", skill_id=skill.id).read()
    assert _unzip(content) == {f"{name}/SKILL.md": _md(name), f"{name}/data.csv": b"a,b\n1,2\n"}


def test_delete_removes_the_skill_and_other_tenants_see_nothing(client, client_b):
    name = _name()
    skill = client.beta.skills.create(files=_files(name))
    with pytest.raises(anthropic.NotFoundError) as e:
        client_b.beta.skills.retrieve(skill.id)
    assert_error_envelope(e.value, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError):
        client_b.beta.skills.versions.download("latest", skill_id=skill.id)
    assert skill.id not in {s.id for s in client_b.beta.skills.list()}

    with pytest.raises(anthropic.BadRequestError):
        client.beta.skills.versions.delete(skill.latest_version_id, skill_id=skill.id)
    deleted = client.beta.skills.delete(skill.id)
    assert (deleted.id, deleted.type) == (skill.id, "skill_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.skills.retrieve(skill.id)
    again = client.beta.skills.create(files=_files(name))
    assert again.id != skill.id, "the name is free once the skill is deleted"
