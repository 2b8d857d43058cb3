"""Vaults (`/v1/vaults`) and their credentials (`/v1/vaults/{id}/credentials`), via the SDK.

Credential secrets (`token`, `access_token`, `refresh_token`, `client_secret`,
`secret_value`) are write-only: every test that sends one checks that no response -
neither the SDK's parsed model nor the raw HTTP body - carries it back.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import anthropic
import pytest

from conftest import assert_error_envelope, dump, make_client, parse_ts

SECRET_FIELDS = {"token", "access_token", "refresh_token", "client_secret", "secret_value"}
MAX_ACTIVE_CREDENTIALS = 20


# --------------------------------------------------------------------------- helpers


def _secret(tag: str) -> str:
    """A secret value that cannot appear in a response by accident."""
    return f"{tag}-{uuid.uuid4().hex}{uuid.uuid4().hex}"


def _future(hours: float = 1.0) -> datetime:
    return datetime.now(timezone.utc) + timedelta(hours=hours)


def _walk_keys(obj: Any) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in _walk_keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in _walk_keys(v)}
    return set()


def _assert_no_secrets(text: str, secrets: tuple[str, ...], where: str) -> None:
    for s in secrets:
        assert s not in text, f"{where} leaks a write-only secret ({s[:12]}...): {text}"


def _sealed(call: Callable[[], Any], *secrets: str, where: str) -> Any:
    """Run a `with_raw_response` call; check neither the raw body nor the parsed model (nor
    any write-only field name) carries a secret; return the parsed result."""
    resp = call()
    body = resp.text()
    _assert_no_secrets(body, secrets, f"{where} raw body")
    parsed = resp.parse()
    _assert_no_secrets(parsed.model_dump_json(), secrets, f"{where} parsed model")
    leaked_fields = _walk_keys(json.loads(body)) & SECRET_FIELDS
    assert not leaked_fields, f"{where} raw body has write-only fields {leaked_fields}: {body}"
    return parsed


def _not_found(call: Callable[[], Any]) -> None:
    with pytest.raises(anthropic.NotFoundError) as ei:
        call()
    assert_error_envelope(ei.value, 404, "not_found_error")


def _bad_request(call: Callable[[], Any]) -> dict:
    with pytest.raises(anthropic.BadRequestError) as ei:
        call()
    return assert_error_envelope(ei.value, 400, "invalid_request_error")


def _bearer(url: str, token: str | None = None) -> dict:
    return {"type": "static_bearer", "mcp_server_url": url, "token": _secret("tok") if token is None else token}


def _env_var(name: str, value: str | None = None, **kw: Any) -> dict:
    return {
        "type": "environment_variable",
        "secret_name": name,
        "secret_value": _secret("val") if value is None else value,
        "networking": kw.pop("networking", {"type": "unrestricted"}),
        **kw,
    }


def _oauth(url: str, **kw: Any) -> dict:
    return {"type": "mcp_oauth", "mcp_server_url": url, "access_token": kw.pop("access_token", _secret("at")), **kw}


@pytest.fixture
def make_vault(client, uid) -> Callable[..., Any]:
    counter = iter(range(10_000))

    def _make(c: anthropic.Anthropic | None = None, **kw: Any):
        kw.setdefault("display_name", f"vault-{uid}-{next(counter)}")
        return (c or client).beta.vaults.create(**kw)

    return _make


@pytest.fixture
def vault(make_vault):
    return make_vault()


@pytest.fixture
def creds(client, vault):
    """`creds(auth, **kw)` creates a credential in `vault` with the main client."""

    def _make(auth: dict, v: Any = None, **kw: Any):
        return client.beta.vaults.credentials.create((v or vault).id, auth=auth, **kw)

    return _make


# --------------------------------------------------------------------------- vaults


def test_create_vault_returns_full_vault_object(client, uid):
    v = client.beta.vaults.create(display_name=f"full-{uid}", metadata={"team": "qa"})

    assert v.type == "vault"
    assert v.id.startswith("vlt_")
    assert v.display_name == f"full-{uid}"
    assert v.metadata == {"team": "qa"}
    assert v.archived_at is None
    assert parse_ts(v.updated_at) >= parse_ts(v.created_at)
    assert dump(client.beta.vaults.retrieve(v.id)) == dump(v)


def test_create_vault_without_metadata_has_empty_metadata(make_vault):
    assert make_vault().metadata == {}


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({"display_name": ""}, id="empty-name"),
        pytest.param({"display_name": "x" * 256}, id="name-256-chars"),
        pytest.param({"display_name": "ok", "metadata": {f"k{i}": "v" for i in range(17)}}, id="17-metadata-keys"),
    ],
)
def test_create_vault_with_invalid_fields_is_bad_request(client, kw):
    _bad_request(lambda: client.beta.vaults.create(**kw))


def test_vault_display_name_of_255_chars_is_accepted(make_vault):
    assert make_vault(display_name="n" * 255).display_name == "n" * 255


def test_update_vault_renames_and_patches_metadata(client, make_vault, uid):
    v = make_vault(metadata={"drop": "1", "keep": "k", "change": "old"})

    updated = client.beta.vaults.update(
        v.id, display_name=f"renamed-{uid}", metadata={"drop": None, "change": "new", "add": "a"}
    )

    assert updated.id == v.id
    assert updated.display_name == f"renamed-{uid}"
    assert updated.metadata == {"keep": "k", "change": "new", "add": "a"}
    assert parse_ts(updated.updated_at) >= parse_ts(v.updated_at)
    assert parse_ts(updated.created_at) == parse_ts(v.created_at)
    assert dump(client.beta.vaults.retrieve(v.id)) == dump(updated)


def test_update_vault_with_only_metadata_keeps_name(client, vault):
    updated = client.beta.vaults.update(vault.id, metadata={"k": "v"})

    assert updated.display_name == vault.display_name
    assert updated.metadata == {"k": "v"}


def test_list_vaults_auto_paginates_with_limit_2(counted, make_vault):
    created = {make_vault().id for _ in range(5)}

    first = counted.client.beta.vaults.list(limit=2)
    assert len(first.data) == 2
    assert first.next_page, "a full page with more results must carry next_page"
    seen = [v.id for v in first]  # auto-pagination follows next_page

    assert created <= set(seen)
    assert len(seen) == len(set(seen)), "pagination returned duplicates"
    assert len(counted.calls("GET", "/v1/vaults")) >= 3


def test_archived_vaults_are_listed_only_with_include_archived(client, make_vault):
    keep, gone = make_vault(), make_vault()

    archived = client.beta.vaults.archive(gone.id)

    assert archived.id == gone.id
    assert archived.archived_at is not None
    assert parse_ts(archived.archived_at) >= parse_ts(gone.created_at)
    assert client.beta.vaults.retrieve(gone.id).archived_at is not None
    default_ids = {v.id for v in client.beta.vaults.list(limit=100)}
    assert keep.id in default_ids
    assert gone.id not in default_ids
    all_ids = {v.id for v in client.beta.vaults.list(limit=100, include_archived=True)}
    assert {keep.id, gone.id} <= all_ids


def test_archiving_vault_archives_every_credential_in_it(client, vault, creds, uid):
    c1 = creds(_bearer(f"https://a-{uid}.example.com/mcp"))
    c2 = creds(_env_var("CASCADE_TOKEN"))
    c3 = creds(_oauth(f"https://b-{uid}.example.com/mcp"))

    client.beta.vaults.archive(vault.id)

    for c in (c1, c2, c3):
        got = client.beta.vaults.credentials.retrieve(c.id, vault_id=vault.id)
        assert got.archived_at is not None, f"credential {c.id} ({c.auth.type}) not archived with its vault"
    assert list(client.beta.vaults.credentials.list(vault.id)) == []
    listed = list(client.beta.vaults.credentials.list(vault.id, include_archived=True))
    assert {c.id for c in listed} == {c1.id, c2.id, c3.id}
    assert all(c.archived_at is not None for c in listed)


def test_delete_vault_returns_tombstone_and_removes_it_and_its_credentials(client, vault, creds, uid):
    cred = creds(_bearer(f"https://del-{uid}.example.com/mcp"))

    deleted = client.beta.vaults.delete(vault.id)

    assert deleted.id == vault.id
    assert deleted.type == "vault_deleted"
    _not_found(lambda: client.beta.vaults.retrieve(vault.id))
    _not_found(lambda: client.beta.vaults.credentials.retrieve(cred.id, vault_id=vault.id))
    _not_found(lambda: client.beta.vaults.credentials.list(vault.id))
    _not_found(lambda: client.beta.vaults.delete(vault.id))
    assert vault.id not in {v.id for v in client.beta.vaults.list(limit=100, include_archived=True)}


def test_unknown_vault_is_not_found(client):
    missing = "vlt_" + uuid.uuid4().hex
    _not_found(lambda: client.beta.vaults.retrieve(missing))
    _not_found(lambda: client.beta.vaults.update(missing, display_name="x"))
    _not_found(lambda: client.beta.vaults.archive(missing))
    _not_found(lambda: client.beta.vaults.credentials.create(missing, auth=_env_var("X")))


# --------------------------------------------------------------------------- credential create / shapes


def test_static_bearer_credential_create_returns_url_but_never_the_token(client, vault, uid):
    token = _secret("bearer")
    url = f"https://mcp-{uid}.example.com/sse"

    cred = _sealed(
        lambda: client.beta.vaults.credentials.with_raw_response.create(
            vault.id, auth=_bearer(url, token), display_name="GitHub", metadata={"env": "prod"}
        ),
        token,
        where="create",
    )

    assert cred.type == "vault_credential"
    assert cred.id.startswith("vcrd_")
    assert cred.vault_id == vault.id
    assert cred.display_name == "GitHub"
    assert cred.metadata == {"env": "prod"}
    assert cred.archived_at is None
    assert cred.auth.type == "static_bearer"
    assert cred.auth.mcp_server_url == url
    assert parse_ts(cred.updated_at) >= parse_ts(cred.created_at)


@pytest.mark.parametrize("endpoint_auth", ["none", "client_secret_basic", "client_secret_post"])
def test_mcp_oauth_credential_create_returns_refresh_config_but_no_secrets(client, vault, uid, endpoint_auth):
    access, refresh_tok, client_secret = _secret("access"), _secret("refresh"), _secret("clsec")
    token_auth: dict = {"type": endpoint_auth}
    if endpoint_auth != "none":
        token_auth["client_secret"] = client_secret
    expires = _future(2).replace(microsecond=0)
    auth = _oauth(
        f"https://oauth-{uid}.example.com/mcp",
        access_token=access,
        expires_at=expires,
        refresh={
            "client_id": "client-123",
            "refresh_token": refresh_tok,
            "token_endpoint": "https://auth.example.com/oauth/token",
            "token_endpoint_auth": token_auth,
            "scope": "read write",
            "resource": "https://oauth.example.com/",
        },
    )

    cred = _sealed(
        lambda: client.beta.vaults.credentials.with_raw_response.create(vault.id, auth=auth),
        access,
        refresh_tok,
        client_secret,
        where="create",
    )

    assert cred.auth.type == "mcp_oauth"
    assert cred.auth.mcp_server_url == f"https://oauth-{uid}.example.com/mcp"
    assert parse_ts(cred.auth.expires_at) == expires
    r = cred.auth.refresh
    assert r is not None
    assert r.client_id == "client-123"
    assert r.token_endpoint == "https://auth.example.com/oauth/token"
    assert dump(r.token_endpoint_auth) == {"type": endpoint_auth}
    assert r.scope == "read write"
    assert r.resource == "https://oauth.example.com/"
    assert cred.display_name is None
    assert cred.metadata == {}


def test_mcp_oauth_credential_without_expiry_or_refresh(creds, uid):
    cred = creds(_oauth(f"https://bare-{uid}.example.com/mcp"))

    assert cred.auth.type == "mcp_oauth"
    assert cred.auth.expires_at is None
    assert cred.auth.refresh is None


def test_environment_variable_credential_defaults_injection_to_header_only(client, vault):
    value = _secret("envval")

    cred = _sealed(
        lambda: client.beta.vaults.credentials.with_raw_response.create(vault.id, auth=_env_var("API_KEY", value)),
        value,
        where="create",
    )

    assert cred.auth.type == "environment_variable"
    assert cred.auth.secret_name == "API_KEY"
    assert dump(cred.auth.networking) == {"type": "unrestricted"}
    assert dump(cred.auth.injection_location) == {"header": True, "body": False}


def test_environment_variable_credential_keeps_limited_hosts_and_injection(creds):
    cred = creds(
        _env_var(
            "_limited_1",
            networking={"type": "limited", "allowed_hosts": ["api.example.com", "*.example.org", "192.0.2.1"]},
            injection_location={"header": False, "body": True},
        )
    )

    assert cred.auth.secret_name == "_limited_1"
    assert cred.auth.networking.type == "limited"
    assert cred.auth.networking.allowed_hosts == ["api.example.com", "*.example.org", "192.0.2.1"]
    assert dump(cred.auth.injection_location) == {"header": False, "body": True}


def test_no_secret_in_retrieve_or_list_responses(client, vault, creds, uid):
    token, access, refresh_tok, client_secret, value = (
        _secret("tok"),
        _secret("acc"),
        _secret("ref"),
        _secret("cs"),
        _secret("val"),
    )
    all_secrets = (token, access, refresh_tok, client_secret, value)
    made = [
        creds(_bearer(f"https://s-{uid}.example.com/mcp", token)),
        creds(
            _oauth(
                f"https://o-{uid}.example.com/mcp",
                access_token=access,
                refresh={
                    "client_id": "cid",
                    "refresh_token": refresh_tok,
                    "token_endpoint": "https://auth.example.com/token",
                    "token_endpoint_auth": {"type": "client_secret_post", "client_secret": client_secret},
                },
            )
        ),
        creds(_env_var("LEAK_CHECK", value)),
    ]
    raw = client.beta.vaults.credentials.with_raw_response

    for c in made:
        _sealed(lambda: raw.retrieve(c.id, vault_id=vault.id), *all_secrets, where=f"retrieve {c.auth.type}")
    page = _sealed(lambda: raw.list(vault.id, limit=100), *all_secrets, where="list")
    assert {c.id for c in page.data} == {c.id for c in made}
    for c in page.data:
        _assert_no_secrets(c.model_dump_json(), all_secrets, "listed credential")
    # archived credentials (secrets purged or not) stay sealed too
    client.beta.vaults.credentials.archive(made[0].id, vault_id=vault.id)
    _sealed(lambda: raw.list(vault.id, include_archived=True), *all_secrets, where="list include_archived")
    _sealed(lambda: raw.retrieve(made[0].id, vault_id=vault.id), *all_secrets, where="retrieve archived")


def test_list_credentials_auto_paginates_with_limit_2(counted, vault, creds):
    created = {creds(_env_var(f"PAGE_{i}")).id for i in range(5)}

    first = counted.client.beta.vaults.credentials.list(vault.id, limit=2)
    assert len(first.data) == 2
    assert first.next_page
    seen = [c.id for c in first]

    assert set(seen) == created
    assert len(seen) == len(set(seen)), "pagination returned duplicates"
    assert len(counted.calls("GET", f"/v1/vaults/{vault.id}/credentials")) >= 3


def test_credential_is_only_reachable_through_its_own_vault(client, make_vault, creds):
    home, other = make_vault(), make_vault()
    cred = creds(_env_var("HOME_ONLY"), v=home)

    _not_found(lambda: client.beta.vaults.credentials.retrieve(cred.id, vault_id=other.id))
    _not_found(lambda: client.beta.vaults.credentials.update(cred.id, vault_id=other.id, display_name="x"))
    _not_found(lambda: client.beta.vaults.credentials.archive(cred.id, vault_id=other.id))
    _not_found(lambda: client.beta.vaults.credentials.delete(cred.id, vault_id=other.id))
    assert list(client.beta.vaults.credentials.list(other.id, include_archived=True)) == []
    assert client.beta.vaults.credentials.retrieve(cred.id, vault_id=home.id).archived_at is None


def test_creating_credential_in_archived_vault_is_bad_request(client, vault):
    client.beta.vaults.archive(vault.id)

    _bad_request(lambda: client.beta.vaults.credentials.create(vault.id, auth=_env_var("TOO_LATE")))


# --------------------------------------------------------------------------- validation


def _past_oauth(uid: str) -> dict:
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    return {"auth": _oauth(f"https://p-{uid}.example.com/mcp", expires_at=past)}


@pytest.mark.parametrize(
    "make_kw",
    [
        pytest.param(lambda uid: {"auth": _env_var("1BAD")}, id="secret-name-starts-with-digit"),
        pytest.param(lambda uid: {"auth": _env_var("BAD-NAME")}, id="secret-name-with-dash"),
        pytest.param(lambda uid: {"auth": _env_var("")}, id="secret-name-empty"),
        pytest.param(lambda uid: {"auth": _bearer("not a url")}, id="mcp-url-not-a-url"),
        pytest.param(lambda uid: {"auth": _bearer("ftp://files.example.com/mcp")}, id="mcp-url-not-http"),
        pytest.param(lambda uid: {"auth": _oauth("not-a-url")}, id="oauth-url-not-a-url"),
        pytest.param(_past_oauth, id="oauth-expires-at-in-past"),
        pytest.param(lambda uid: {"auth": _bearer(f"https://e-{uid}.example.com", "")}, id="empty-token"),
        pytest.param(
            lambda uid: {"auth": _oauth(f"https://e-{uid}.example.com", access_token="")}, id="empty-access-token"
        ),
        pytest.param(lambda uid: {"auth": _env_var("EMPTY_VALUE", "")}, id="empty-secret-value"),
        pytest.param(
            lambda uid: {"auth": {"type": "basic_auth", "mcp_server_url": "https://x.example.com", "token": "t"}},
            id="unknown-auth-type",
        ),
        pytest.param(
            lambda uid: {"auth": _env_var("LIMITED", networking={"type": "limited", "allowed_hosts": []})},
            id="limited-networking-without-hosts",
        ),
        pytest.param(
            lambda uid: {"auth": _env_var("META"), "metadata": {f"k{i}": "v" for i in range(17)}},
            id="17-metadata-keys",
        ),
    ],
)
def test_create_credential_with_invalid_auth_is_bad_request(client, vault, uid, make_kw):
    _bad_request(lambda: client.beta.vaults.credentials.create(vault.id, **make_kw(uid)))

    assert list(client.beta.vaults.credentials.list(vault.id, include_archived=True)) == []


def test_credential_with_16_metadata_keys_is_accepted(creds):
    meta = {f"k{i}": "v" for i in range(16)}
    assert creds(_env_var("META_OK"), metadata=meta).metadata == meta


# --------------------------------------------------------------------------- uniqueness and limits


def _assert_conflict_once(counted, vault_id: str, auth: dict) -> None:
    before = len(counted.calls("POST", f"/v1/vaults/{vault_id}/credentials"))
    with pytest.raises(anthropic.ConflictError) as ei:
        counted.client.beta.vaults.credentials.create(vault_id, auth=auth)
    assert_error_envelope(ei.value, 409)
    assert ei.value.response.headers.get("x-should-retry") == "false"
    posts = counted.calls("POST", f"/v1/vaults/{vault_id}/credentials")
    assert len(posts) - before == 1, f"SDK retried the 409 ({len(posts) - before} requests): x-should-retry must be false"


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param("https://mcp-{h}.example.com/sse", id="same-spelling"),
        pytest.param("HTTPS://MCP-{H}.Example.COM/sse", id="upper-case-scheme-and-host"),
        pytest.param("https://mcp-{h}.example.com:443/sse", id="explicit-default-port"),
        pytest.param("https://mcp-{h}.example.com/sse/", id="trailing-slash"),
    ],
)
def test_second_credential_for_same_mcp_server_conflicts_without_retry(client, counted, vault, creds, uid, spelling):
    h = uuid.uuid4().hex[:8]
    first = creds(_bearer(f"https://mcp-{h}.example.com/sse"))

    _assert_conflict_once(counted, vault.id, _bearer(spelling.format(h=h, H=h.upper())))

    active = list(client.beta.vaults.credentials.list(vault.id))
    assert [c.id for c in active] == [first.id], "the losing create must not store anything"


def test_mcp_oauth_and_static_bearer_share_one_credential_per_server(counted, creds, vault, uid):
    url = f"https://shared-{uid}.example.com/mcp"
    creds(_bearer(url))

    _assert_conflict_once(counted, vault.id, _oauth(url))


def test_second_credential_with_same_secret_name_conflicts_without_retry(client, counted, vault, creds):
    first = creds(_env_var("DUPLICATE_NAME"))

    _assert_conflict_once(counted, vault.id, _env_var("DUPLICATE_NAME"))
    assert [c.id for c in client.beta.vaults.credentials.list(vault.id)] == [first.id]


def test_distinct_servers_and_other_vaults_do_not_conflict(creds, make_vault, uid):
    v1, v2 = make_vault(), make_vault()
    url = f"https://distinct-{uid}.example.com/mcp"
    creds(_bearer(url), v=v1)

    creds(_bearer(url), v=v2)  # same server, other vault
    creds(_bearer(f"https://distinct-{uid}.example.com:8443/mcp"), v=v1)  # non-default port
    creds(_bearer(f"https://distinct-{uid}.example.com/other"), v=v1)  # other path
    creds(_env_var("DISTINCT"), v=v1)
    creds(_env_var("DISTINCT"), v=v2)


@pytest.mark.parametrize("kind", ["mcp_server_url", "secret_name"])
def test_archiving_credential_frees_its_uniqueness_key(client, vault, creds, uid, kind):
    auth = (lambda: _bearer(f"https://again-{uid}.example.com/mcp")) if kind == "mcp_server_url" else (
        lambda: _env_var("AGAIN")
    )
    first = creds(auth())
    with pytest.raises(anthropic.ConflictError):
        creds(auth())

    client.beta.vaults.credentials.archive(first.id, vault_id=vault.id)
    second = creds(auth())

    assert second.id != first.id
    assert second.archived_at is None


def test_vault_holds_at_most_20_active_credentials(client, vault, creds):
    made = [creds(_env_var(f"LIMIT_{i}")) for i in range(MAX_ACTIVE_CREDENTIALS)]

    body = _bad_request(lambda: creds(_env_var("LIMIT_20")))
    assert "20" in body["error"]["message"], body

    # archived credentials do not count
    client.beta.vaults.credentials.archive(made[0].id, vault_id=vault.id)
    assert creds(_env_var("LIMIT_20")).archived_at is None


# --------------------------------------------------------------------------- credential update


def test_update_static_bearer_token_keeps_url_and_never_echoes_token(client, vault, creds, uid):
    old, new = _secret("old"), _secret("new")
    url = f"https://rotate-{uid}.example.com/mcp"
    cred = creds(_bearer(url, old))

    updated = _sealed(
        lambda: client.beta.vaults.credentials.with_raw_response.update(
            cred.id, vault_id=vault.id, auth={"type": "static_bearer", "token": new}
        ),
        old,
        new,
        where="update",
    )

    assert updated.id == cred.id
    assert updated.auth.type == "static_bearer"
    assert updated.auth.mcp_server_url == url
    assert parse_ts(updated.updated_at) >= parse_ts(cred.updated_at)
    assert parse_ts(updated.created_at) == parse_ts(cred.created_at)
    _sealed(
        lambda: client.beta.vaults.credentials.with_raw_response.retrieve(cred.id, vault_id=vault.id),
        old,
        new,
        where="retrieve after update",
    )


def test_update_environment_variable_replaces_networking_and_merges_injection(client, vault, creds):
    old, new = _secret("old"), _secret("new")
    cred = creds(_env_var("MERGE_ME", old))
    assert dump(cred.auth.injection_location) == {"header": True, "body": False}

    updated = _sealed(
        lambda: client.beta.vaults.credentials.with_raw_response.update(
            cred.id,
            vault_id=vault.id,
            auth={
                "type": "environment_variable",
                "secret_value": new,
                "networking": {"type": "limited", "allowed_hosts": ["api.example.com"]},
                "injection_location": {"body": True},
            },
        ),
        old,
        new,
        where="update",
    )

    assert updated.auth.secret_name == "MERGE_ME"
    assert dump(updated.auth.networking) == {"type": "limited", "allowed_hosts": ["api.example.com"]}
    assert dump(updated.auth.injection_location) == {"header": True, "body": True}

    again = client.beta.vaults.credentials.update(
        cred.id,
        vault_id=vault.id,
        auth={"type": "environment_variable", "networking": {"type": "unrestricted"}, "injection_location": {"header": False}},
    )
    assert dump(again.auth.networking) == {"type": "unrestricted"}
    assert dump(again.auth.injection_location) == {"header": False, "body": True}


def test_update_environment_variable_without_networking_keeps_it(client, vault, creds):
    cred = creds(_env_var("KEEP_NET", networking={"type": "limited", "allowed_hosts": ["a.example.com"]}))

    updated = client.beta.vaults.credentials.update(
        cred.id, vault_id=vault.id, auth={"type": "environment_variable", "secret_value": _secret("v")}
    )

    assert dump(updated.auth.networking) == {"type": "limited", "allowed_hosts": ["a.example.com"]}
    assert dump(updated.auth.injection_location) == {"header": True, "body": False}


def test_update_mcp_oauth_rotates_secrets_and_clears_scope(client, vault, creds, uid):
    secrets_old = (_secret("at0"), _secret("rt0"), _secret("cs0"))
    secrets_new = (_secret("at1"), _secret("rt1"), _secret("cs1"))
    cred = creds(
        _oauth(
            f"https://rot-{uid}.example.com/mcp",
            access_token=secrets_old[0],
            expires_at=_future(1),
            refresh={
                "client_id": "cid",
                "refresh_token": secrets_old[1],
                "token_endpoint": "https://auth.example.com/token",
                "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": secrets_old[2]},
                "scope": "read",
            },
        )
    )
    new_expiry = _future(5).replace(microsecond=0)

    updated = _sealed(
        lambda: client.beta.vaults.credentials.with_raw_response.update(
            cred.id,
            vault_id=vault.id,
            auth={
                "type": "mcp_oauth",
                "access_token": secrets_new[0],
                "expires_at": new_expiry,
                "refresh": {
                    "refresh_token": secrets_new[1],
                    "scope": "",
                    "token_endpoint_auth": {"type": "client_secret_post", "client_secret": secrets_new[2]},
                },
            },
        ),
        *secrets_old,
        *secrets_new,
        where="update",
    )

    assert parse_ts(updated.auth.expires_at) == new_expiry
    assert updated.auth.refresh.client_id == "cid"
    assert updated.auth.refresh.scope in (None, ""), "an empty scope clears the stored one"
    assert dump(updated.auth.refresh.token_endpoint_auth) == {"type": "client_secret_post"}


def test_update_mcp_oauth_access_token_without_expires_at_keeps_stored_expiry(client, vault, creds, uid):
    # spec: "If you send a new `access_token`, send its `expires_at` too, or the new token
    # keeps the old expiry."
    expiry = _future(3).replace(microsecond=0)
    cred = creds(_oauth(f"https://keep-exp-{uid}.example.com/mcp", expires_at=expiry))

    updated = client.beta.vaults.credentials.update(
        cred.id, vault_id=vault.id, auth={"type": "mcp_oauth", "access_token": _secret("at")}
    )

    assert updated.auth.expires_at is not None, "the stored expiry was dropped"
    assert parse_ts(updated.auth.expires_at) == expiry


def test_update_mcp_oauth_with_past_expires_at_is_bad_request(client, vault, creds, uid):
    expiry = _future(3).replace(microsecond=0)
    cred = creds(_oauth(f"https://past-{uid}.example.com/mcp", expires_at=expiry))

    _bad_request(
        lambda: client.beta.vaults.credentials.update(
            cred.id,
            vault_id=vault.id,
            auth={"type": "mcp_oauth", "expires_at": datetime.now(timezone.utc) - timedelta(minutes=5)},
        )
    )
    assert parse_ts(client.beta.vaults.credentials.retrieve(cred.id, vault_id=vault.id).auth.expires_at) == expiry


def test_update_mcp_oauth_token_endpoint_auth_from_none_to_secret_is_bad_request(client, vault, creds, uid):
    cred = creds(
        _oauth(
            f"https://none-{uid}.example.com/mcp",
            refresh={
                "client_id": "cid",
                "refresh_token": _secret("rt"),
                "token_endpoint": "https://auth.example.com/token",
                "token_endpoint_auth": {"type": "none"},
            },
        )
    )

    _bad_request(
        lambda: client.beta.vaults.credentials.update(
            cred.id,
            vault_id=vault.id,
            auth={
                "type": "mcp_oauth",
                "refresh": {"token_endpoint_auth": {"type": "client_secret_basic", "client_secret": _secret("cs")}},
            },
        )
    )


def test_update_environment_variable_disabling_every_injection_location_is_bad_request(client, vault, creds):
    # spec (InjectionLocationUpdateParams): "After the change, at least one location must be enabled."
    cred = creds(_env_var("NOWHERE"))  # header=true, body=false

    _bad_request(
        lambda: client.beta.vaults.credentials.update(
            cred.id, vault_id=vault.id, auth={"type": "environment_variable", "injection_location": {"header": False}}
        )
    )
    got = client.beta.vaults.credentials.retrieve(cred.id, vault_id=vault.id)
    assert dump(got.auth.injection_location) == {"header": True, "body": False}


@pytest.mark.parametrize(
    "new_auth",
    [
        pytest.param({"type": "environment_variable", "secret_value": "x"}, id="to-environment-variable"),
        pytest.param({"type": "mcp_oauth", "access_token": "x"}, id="to-mcp-oauth"),
    ],
)
def test_update_changing_auth_type_is_bad_request(client, vault, creds, uid, new_auth):
    url = f"https://type-{uid}.example.com/mcp"
    cred = creds(_bearer(url))

    _bad_request(lambda: client.beta.vaults.credentials.update(cred.id, vault_id=vault.id, auth=new_auth))

    got = client.beta.vaults.credentials.retrieve(cred.id, vault_id=vault.id)
    assert got.auth.type == "static_bearer"
    assert got.auth.mcp_server_url == url


def test_update_credential_display_name_none_clears_it_and_metadata_patches(client, vault, creds):
    cred = creds(_env_var("NAMED"), display_name="shown", metadata={"a": "1", "b": "2"})

    updated = client.beta.vaults.credentials.update(
        cred.id, vault_id=vault.id, display_name=None, metadata={"a": None, "c": "3"}
    )

    assert updated.display_name is None
    assert updated.metadata == {"b": "2", "c": "3"}
    assert updated.auth.secret_name == "NAMED"
    got = client.beta.vaults.credentials.retrieve(cred.id, vault_id=vault.id)
    assert got.display_name is None
    assert got.metadata == {"b": "2", "c": "3"}


def test_update_credential_display_name_renames(client, vault, creds):
    cred = creds(_env_var("RENAME"), display_name="before")

    updated = client.beta.vaults.credentials.update(cred.id, vault_id=vault.id, display_name="after")

    assert updated.display_name == "after"
    assert dump(updated.auth) == dump(cred.auth)


# --------------------------------------------------------------------------- archive / delete credentials


def test_archive_credential_sets_archived_at_and_hides_it_from_default_list(client, vault, creds):
    keep, gone = creds(_env_var("KEEP")), creds(_env_var("GONE"))

    archived = client.beta.vaults.credentials.archive(gone.id, vault_id=vault.id)

    assert archived.id == gone.id
    assert archived.archived_at is not None
    assert parse_ts(archived.archived_at) >= parse_ts(gone.created_at)
    assert client.beta.vaults.credentials.retrieve(gone.id, vault_id=vault.id).archived_at is not None
    assert [c.id for c in client.beta.vaults.credentials.list(vault.id)] == [keep.id]
    all_ids = {c.id for c in client.beta.vaults.credentials.list(vault.id, include_archived=True)}
    assert all_ids == {keep.id, gone.id}
    assert client.beta.vaults.retrieve(vault.id).archived_at is None, "archiving a credential leaves its vault"


def test_delete_credential_returns_tombstone_and_removes_it(client, vault, creds):
    cred = creds(_env_var("DELETE_ME"))

    deleted = client.beta.vaults.credentials.delete(cred.id, vault_id=vault.id)

    assert deleted.id == cred.id
    assert deleted.type == "vault_credential_deleted"
    _not_found(lambda: client.beta.vaults.credentials.retrieve(cred.id, vault_id=vault.id))
    _not_found(lambda: client.beta.vaults.credentials.delete(cred.id, vault_id=vault.id))
    assert list(client.beta.vaults.credentials.list(vault.id, include_archived=True)) == []
    # its name is free again
    assert creds(_env_var("DELETE_ME")).id != cred.id


# --------------------------------------------------------------------------- tenancy


@pytest.fixture(scope="module")
def client_fresh(server):
    """A tenant of its own (nothing else in the suite creates vaults in it)."""
    c = make_client(server, api_key=server.create_tenant_key("vault-tenant-" + uuid.uuid4().hex[:8]))
    yield c
    c.close()


def test_other_tenant_cannot_see_or_touch_vaults_or_credentials(client, client_fresh, vault, creds, uid):
    token = _secret("tok")
    cred = creds(_bearer(f"https://tenant-{uid}.example.com/mcp", token))
    b = client_fresh

    _not_found(lambda: b.beta.vaults.retrieve(vault.id))
    _not_found(lambda: b.beta.vaults.update(vault.id, display_name="hijacked"))
    _not_found(lambda: b.beta.vaults.archive(vault.id))
    _not_found(lambda: b.beta.vaults.delete(vault.id))
    _not_found(lambda: b.beta.vaults.credentials.list(vault.id))
    _not_found(lambda: b.beta.vaults.credentials.create(vault.id, auth=_env_var("INTRUDER")))
    _not_found(lambda: b.beta.vaults.credentials.retrieve(cred.id, vault_id=vault.id))
    _not_found(
        lambda: b.beta.vaults.credentials.update(cred.id, vault_id=vault.id, auth={"type": "static_bearer", "token": "x"})
    )
    _not_found(lambda: b.beta.vaults.credentials.archive(cred.id, vault_id=vault.id))
    _not_found(lambda: b.beta.vaults.credentials.delete(cred.id, vault_id=vault.id))
    assert list(b.beta.vaults.list(limit=100, include_archived=True)) == []

    still = client.beta.vaults.retrieve(vault.id)
    assert still.display_name == vault.display_name
    assert still.archived_at is None
    got = client.beta.vaults.credentials.retrieve(cred.id, vault_id=vault.id)
    assert got.archived_at is None
    assert [c.id for c in client.beta.vaults.credentials.list(vault.id)] == [cred.id]


def test_same_mcp_server_in_two_tenants_does_not_conflict(client_b, creds, make_vault, uid):
    url = f"https://both-{uid}.example.com/mcp"
    creds(_bearer(url))
    vb = make_vault(client_b)

    cb = client_b.beta.vaults.credentials.create(vb.id, auth=_bearer(url))

    assert cb.vault_id == vb.id


# --------------------------------------------------------------------------- sessions


@pytest.fixture
def agent(make_agent):
    return make_agent()


@pytest.fixture
def env(make_env):
    return make_env()


def test_session_created_with_vault_ids_reports_them(client, agent, env, vault):
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[vault.id])

    assert session.vault_ids == [vault.id]
    assert client.beta.sessions.retrieve(session.id).vault_ids == [vault.id]


def test_session_with_archived_vault_is_bad_request(client, agent, env, vault):
    client.beta.vaults.archive(vault.id)

    _bad_request(lambda: client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[vault.id]))


def test_session_with_unknown_vault_is_not_found(client, agent, env, make_vault):
    gone = make_vault()
    client.beta.vaults.delete(gone.id)

    _not_found(lambda: client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[gone.id]))
    _not_found(
        lambda: client.beta.sessions.create(
            agent=agent.id, environment_id=env.id, vault_ids=["vlt_" + uuid.uuid4().hex]
        )
    )


def test_session_with_other_tenants_vault_is_not_found(client_b, make_agent, make_env, vault):
    agent_b, env_b = make_agent(client_b), make_env(client_b)

    _not_found(lambda: client_b.beta.sessions.create(agent=agent_b.id, environment_id=env_b.id, vault_ids=[vault.id]))
