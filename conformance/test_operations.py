"""Operator contract: start-up line, /health, /v1/openapi.json."""

from __future__ import annotations

import re

from conftest import READY_RE


def test_serve_prints_exactly_one_ready_line_on_stdout(server):
    """The ready line is the only thing `openma serve` prints to stdout at start-up."""
    assert len(server.startup_stdout) == 1, server.startup_stdout
    assert READY_RE.match(server.startup_stdout[0])


def test_health_is_public_and_reports_backends(raw):
    r = raw.get("/health")

    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "ok"
    assert isinstance(body["version"], str) and body["version"]
    backends = body["backends"]
    for name in ("db", "blobs", "sandbox"):
        assert isinstance(backends.get(name), str) and backends[name], body


def test_openapi_document_is_valid_openapi_3(raw):
    import schemathesis

    r = raw.get("/v1/openapi.json")

    assert r.status_code == 200, r.text
    doc = r.json()
    assert re.fullmatch(r"3\.\d+\.\d+", str(doc.get("openapi", ""))), doc.get("openapi")
    assert doc["info"]["title"]
    assert doc["info"]["version"]
    paths = doc["paths"]
    for path, methods in {
        "/v1/agents": {"get", "post"},
        "/v1/agents/{agent_id}": {"get", "post"},
        "/v1/agents/{agent_id}/archive": {"post"},
        "/v1/agents/{agent_id}/versions": {"get"},
        "/v1/environments": {"get", "post"},
        "/v1/environments/{environment_id}": {"get", "post", "delete"},
        "/v1/environments/{environment_id}/archive": {"post"},
        "/v1/sessions": {"get", "post"},
        "/v1/sessions/{session_id}": {"get", "post", "delete"},
        "/v1/sessions/{session_id}/archive": {"post"},
    }.items():
        assert path in paths, f"{path} missing from the OpenAPI document"
        assert methods <= set(paths[path]), (path, sorted(paths[path]))

    # Every local $ref must resolve.
    dangling = sorted({ref for ref in _refs(doc) if ref.startswith("#/") and not _resolves(doc, ref)})
    assert not dangling, f"unresolvable $ref(s): {dangling}"

    # Validate against the OpenAPI 3 meta-schema, then resolve every operation
    # ($refs, parameters); unresolvable operations come back as errors.
    schema = schemathesis.openapi.from_dict(doc)
    schema.validate()
    errors = [str(res.err()) for res in schema.get_all_operations() if hasattr(res, "err")]
    assert not errors, "\n".join(errors[:10])


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _resolves(doc, ref: str) -> bool:
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
