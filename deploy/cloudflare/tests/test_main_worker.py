"""openma-main under `wrangler dev`: the D1 schema comes from the native server's SQLite
migrations, and `/health` checks D1, KV, R2 and the root secret for real — the deployment
guide's step 5 check, and its "what to do when /health fails" cases."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx2

REPO = Path(__file__).resolve().parents[3]
MIGRATIONS = sorted(p.name for p in (REPO / "crates/openma-store-sql/migrations/sqlite").glob("*.sql"))
SECRET = "test-root-secret-0123456789abcdefghijklmnop"
OTHER_SECRET = "another-root-secret-0123456789abcdefghijklm"
BOOTSTRAP_KEY = "sk-oma-workers-bootstrap-key-0123456789"


def health(base_url: str) -> tuple[int, dict]:
    r = httpx2.get(f"{base_url}/health", timeout=30.0)
    return r.status_code, r.json()


def d1_rows(out: str) -> list[dict]:
    return json.loads(out)[0]["results"]


def test_health_names_the_missing_migrations_then_is_ok_once_they_are_applied(deployment):
    main = deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": BOOTSTRAP_KEY})

    status, body = health(main.base_url)
    assert status == 503, body
    r = httpx2.get(f"{main.base_url}/v1/agents", headers={"x-api-key": BOOTSTRAP_KEY}, timeout=30.0)
    assert r.status_code == 503 and "OPENMA_BOOTSTRAP_API_KEY" in r.json()["error"]["message"], r.text
    assert body["status"] == "degraded"
    assert "wrangler d1 migrations apply openma-control" in body["reason"]
    assert body["backends"]["blobs"] == "r2: reachable"
    assert body["backends"]["config"] == "kv: reachable"

    out = deployment.apply_migrations()
    assert MIGRATIONS[-1] in out

    status, body = health(main.base_url)
    assert status == 200, body
    assert body["status"] == "ok" and "reason" not in body
    assert body["backends"]["db"] == f"d1: schema at {MIGRATIONS[-1]} ({len(MIGRATIONS)} migrations)"
    assert body["backends"]["secrets"].endswith(", recorded")
    status, again = health(main.base_url)
    assert status == 200 and again["backends"]["secrets"].endswith(", verified"), again
    # The bootstrap key registers once the schema exists.
    r = httpx2.get(f"{main.base_url}/v1/agents", headers={"x-api-key": BOOTSTRAP_KEY}, timeout=30.0)
    assert r.status_code == 200 and r.json() == {"data": [], "next_page": None}, r.text

    tables = {r["name"] for r in d1_rows(deployment.d1("SELECT name FROM sqlite_master WHERE type = 'table'"))}
    for t in ["tenants", "api_keys", "agents", "agent_versions", "environments", "sessions", "vaults", "credentials",
              "model_cards", "ledger_entries", "memory_stores", "files", "skills", "webhook_endpoints", "integrations"]:
        assert t in tables, f"{t} missing from D1: {sorted(tables)}"

    meta = d1_rows(deployment.d1("SELECT key, value FROM platform_meta"))
    assert [m["key"] for m in meta] == ["root_secret_verifier"]
    assert SECRET not in meta[0]["value"]
    assert SECRET not in main.output()


def test_a_different_root_secret_is_refused_and_the_verifier_kept(deployment):
    deployment.apply_migrations()
    first = deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET})
    status, body = health(first.base_url)
    assert status == 200, body
    sealed = d1_rows(deployment.d1("SELECT value FROM platform_meta"))[0]["value"]
    first.stop()

    second = deployment.start("main", {"PLATFORM_ROOT_SECRET": OTHER_SECRET})
    status, body = health(second.base_url)
    assert status == 503, body
    assert "is not the secret this database was sealed with" in body["reason"]
    assert body["backends"]["db"].startswith("d1: schema at ")
    assert d1_rows(deployment.d1("SELECT value FROM platform_meta"))[0]["value"] == sealed
    second.stop()

    short = deployment.start("main", {"PLATFORM_ROOT_SECRET": "too-short"})
    status, body = health(short.base_url)
    assert status == 503 and "must be at least 32 characters" in body["reason"], body


def test_a_missing_root_secret_is_named_and_refusals_use_the_error_envelope(deployment):
    deployment.apply_migrations()
    main = deployment.start("main")
    status, body = health(main.base_url)
    assert status == 503, body
    assert "PLATFORM_ROOT_SECRET is not set" in body["reason"]
    assert "wrangler secret put PLATFORM_ROOT_SECRET" in body["backends"]["secrets"]

    r = httpx2.get(f"{main.base_url}/v1/no-such-thing", headers={"x-api-key": "sk-oma-x"}, timeout=30.0)
    assert r.status_code == 401
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "authentication_error"
    assert err["request_id"] == r.headers["request-id"] and err["request_id"].startswith("req_")


def test_api_keys_authenticate_against_d1_as_on_the_native_server(deployment):
    deployment.apply_migrations()
    main = deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": BOOTSTRAP_KEY})
    url = f"{main.base_url}/v1/agents"

    def get(headers: dict[str, str]) -> httpx2.Response:
        return httpx2.get(url, headers=headers, timeout=30.0)

    r = get({})
    assert r.status_code == 401, r.text
    err = r.json()["error"]
    assert err["type"] == "authentication_error"
    assert err["message"] == "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`"
    r = get({"x-api-key": "sk-oma-not-a-key-0123456789"})
    assert r.status_code == 401 and r.json()["error"]["message"] == "invalid API key", r.text
    r = get({"authorization": "Basic " + BOOTSTRAP_KEY})
    assert r.status_code == 401, r.text

    # Both transports authenticate; a route the Workers do not serve is a 404 in the envelope.
    for headers in ({"x-api-key": BOOTSTRAP_KEY}, {"authorization": f"Bearer {BOOTSTRAP_KEY}"}):
        r = get(headers)
        assert r.status_code == 200, r.text
        r = httpx2.get(f"{main.base_url}/v1/no-such-thing", headers=headers, timeout=30.0)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["message"] == "no route for GET /v1/no-such-thing"

    tenants = d1_rows(deployment.d1("SELECT id, name FROM tenants"))
    assert [t["name"] for t in tenants] == ["default"] and tenants[0]["id"].startswith("tenant_")
    keys = d1_rows(deployment.d1("SELECT * FROM api_keys"))
    assert len(keys) == 1
    k = keys[0]
    assert k["tenant_id"] == tenants[0]["id"] and k["name"] == "bootstrap" and k["id"].startswith("apikey_")
    assert k["hash"] == hashlib.sha256(BOOTSTRAP_KEY.encode()).hexdigest()
    assert k["prefix"] == BOOTSTRAP_KEY[:13] and k["last_used_at"] is not None and k["revoked_at"] is None
    assert BOOTSTRAP_KEY not in json.dumps(keys)
    assert BOOTSTRAP_KEY not in main.output()

    # A revoked key stops working at once, and a restart does not bring it back.
    deployment.d1("UPDATE api_keys SET revoked_at = 1")
    r = get({"x-api-key": BOOTSTRAP_KEY})
    assert r.status_code == 401 and r.json()["error"]["message"] == "invalid API key", r.text
    main.stop()
    again = deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": BOOTSTRAP_KEY})
    r = httpx2.get(f"{again.base_url}/v1/agents", headers={"x-api-key": BOOTSTRAP_KEY}, timeout=30.0)
    assert r.status_code == 401, r.text
    assert len(d1_rows(deployment.d1("SELECT id FROM api_keys"))) == 1
