"""Environments (`/v1/environments`), driven through the official SDK."""

from __future__ import annotations

import anthropic
import pytest

from conftest import assert_error_envelope, dump, parse_ts

PACKAGE_MANAGERS = ("apt", "cargo", "gem", "go", "npm", "pip")
UNRESTRICTED = {"type": "cloud", "networking": {"type": "unrestricted"}}


def _assert_full_packages(packages: dict) -> None:
    for pm in PACKAGE_MANAGERS:
        assert isinstance(packages.get(pm), list), f"packages.{pm} missing: {packages!r}"


def test_create_unrestricted_cloud_environment_returns_full_config(make_env, uid):
    env = make_env(name=f"unres-{uid}", description="desc", metadata={"k": "v"}, config=UNRESTRICTED)

    assert env.type == "environment"
    assert isinstance(env.id, str) and env.id
    assert env.name == f"unres-{uid}"
    assert env.description == "desc"
    assert env.metadata == {"k": "v"}
    assert env.archived_at is None
    parse_ts(env.created_at)
    parse_ts(env.updated_at)
    config = dump(env.config)
    assert config["type"] == "cloud"
    assert config["networking"] == {"type": "unrestricted"}
    _assert_full_packages(config["packages"])
    assert all(config["packages"][pm] == [] for pm in PACKAGE_MANAGERS)


def test_create_limited_environment_returns_all_networking_and_package_keys(client, make_env):
    env = make_env(
        config={
            "type": "cloud",
            "networking": {
                "type": "limited",
                "allowed_hosts": ["api.example.com"],
                "allow_package_managers": True,
            },
            "packages": {"pip": ["requests==2.32.3"], "npm": ["left-pad"]},
        }
    )

    for got in (env, client.beta.environments.retrieve(env.id)):
        config = dump(got.config)
        assert config["type"] == "cloud"
        assert config["networking"] == {
            "type": "limited",
            "allowed_hosts": ["api.example.com"],
            "allow_mcp_servers": False,
            "allow_package_managers": True,
        }
        _assert_full_packages(config["packages"])
        assert config["packages"]["pip"] == ["requests==2.32.3"]
        assert config["packages"]["npm"] == ["left-pad"]
        assert config["packages"]["apt"] == []


def test_retrieve_environment_returns_same_object(client, make_env):
    env = make_env(metadata={"a": "b"})

    assert dump(client.beta.environments.retrieve(env.id)) == dump(env)


def test_update_environment_changes_fields_and_keeps_omitted_config(client, make_env, uid):
    env = make_env(
        config={
            "type": "cloud",
            "networking": {"type": "limited", "allowed_hosts": ["a.example.com"]},
        },
        metadata={"a": "1", "b": "2"},
    )

    updated = client.beta.environments.update(
        env.id,
        name=f"renamed-{uid}",
        description="new desc",
        metadata={"a": None, "c": "3"},
    )

    assert updated.id == env.id
    assert updated.name == f"renamed-{uid}"
    assert updated.description == "new desc"
    assert updated.metadata == {"b": "2", "c": "3"}
    assert dump(updated.config)["networking"]["allowed_hosts"] == ["a.example.com"]
    assert dump(client.beta.environments.retrieve(env.id)) == dump(updated)


def test_changing_config_type_to_self_hosted_is_rejected(client, make_env):
    env = make_env()

    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.environments.update(env.id, config={"type": "self_hosted"})

    assert_error_envelope(ei.value, 400, "invalid_request_error")
    assert dump(client.beta.environments.retrieve(env.id).config)["type"] == "cloud"


def test_self_hosted_environment_is_rejected_as_unsupported(client, uid):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.environments.create(name=f"sh-{uid}", config={"type": "self_hosted"})

    assert_error_envelope(ei.value, 400, "invalid_request_error")


def test_packages_with_limited_networking_require_allow_package_managers(client, uid):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.environments.create(
            name=f"pk-{uid}",
            config={
                "type": "cloud",
                "networking": {"type": "limited", "allowed_hosts": ["pypi.org"]},
                "packages": {"pip": ["requests"]},
            },
        )

    assert_error_envelope(ei.value, 400, "invalid_request_error")


def test_list_environments_hides_archived_unless_requested(client, make_env):
    keep = make_env()
    gone = make_env()

    archived = client.beta.environments.archive(gone.id)

    assert archived.archived_at is not None
    parse_ts(archived.archived_at)
    default_ids = {e.id for e in client.beta.environments.list(limit=100)}
    assert keep.id in default_ids
    assert gone.id not in default_ids
    all_ids = {e.id for e in client.beta.environments.list(limit=100, include_archived=True)}
    assert {keep.id, gone.id} <= all_ids


def test_list_environments_auto_paginates_with_limit_2(client, make_env):
    created = {make_env().id for _ in range(3)}

    first = client.beta.environments.list(limit=2)
    assert len(first.data) == 2
    assert first.next_page

    seen = [e.id for e in first]
    assert created <= set(seen)
    assert len(seen) == len(set(seen))


def test_delete_environment_returns_environment_deleted_then_not_found(client, make_env):
    env = make_env()

    deleted = client.beta.environments.delete(env.id)

    assert dump(deleted) == {"id": env.id, "type": "environment_deleted"}
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.environments.retrieve(env.id)
    assert_error_envelope(ei.value, 404, "not_found_error")


def test_delete_environment_in_use_by_live_session_conflicts(client, make_env, make_agent):
    env = make_env()
    agent = make_agent()
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)

    with pytest.raises(anthropic.ConflictError) as ei:
        client.with_options(max_retries=0).beta.environments.delete(env.id)
    assert_error_envelope(ei.value, 409)
    client.beta.environments.retrieve(env.id)  # still there

    # Once the session is terminated (archive terminates it) the environment can go.
    client.beta.sessions.archive(session.id)
    deleted = client.beta.environments.delete(env.id)
    assert deleted.type == "environment_deleted"


def test_archived_environment_cannot_be_used_for_new_sessions(client, make_env, make_agent):
    env = make_env()
    agent = make_agent()
    client.beta.environments.archive(env.id)

    # The spec says archived environments cannot be used for new sessions but
    # names no status; 400 and 409 are both reasonable.
    with pytest.raises((anthropic.BadRequestError, anthropic.ConflictError)) as ei:
        client.with_options(max_retries=0).beta.sessions.create(agent=agent.id, environment_id=env.id)
    assert_error_envelope(ei.value, ei.value.status_code)


def test_config_type_change_carries_invalid_config_type_change_error_code(client, make_env):
    """Spec §2.2/§1.7: 400 with `error.details.error_code = invalid_config_type_change`."""
    env = make_env()

    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.environments.update(env.id, config={"type": "self_hosted"})

    assert ei.value.error_code == "invalid_config_type_change", ei.value.body
    assert type(ei.value).__name__ == "BetaInvalidConfigTypeChangeError"


def test_update_archived_environment_is_rejected_with_environment_archived(client, make_env):
    """Spec §2.2: updating an archived environment → 400 `environment_archived`."""
    env = make_env()
    client.beta.environments.archive(env.id)

    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.environments.update(env.id, name="too late")

    assert_error_envelope(ei.value, 400, "invalid_request_error")
    assert ei.value.error_code == "environment_archived", ei.value.body


def test_environment_limits_extension_round_trips_through_the_sdk(client, make_env):
    """openma's `config.limits` extension: the SDK's models keep the extra key, and the
    environment still parses; it is absent when unset."""
    env = make_env(config={"type": "cloud", "networking": {"type": "unrestricted"}, "limits": {"open_files": 512}})

    for got in (env, client.beta.environments.retrieve(env.id)):
        config = dump(got.config)
        assert config["limits"] == {"open_files": 512}
        _assert_full_packages(config["packages"])
    cleared = client.beta.environments.update(env.id, config={"type": "cloud", "limits": None})
    assert "limits" not in dump(cleared.config) or dump(cleared.config)["limits"] is None

    with pytest.raises(anthropic.BadRequestError) as exc:
        make_env(config={"type": "cloud", "limits": {"open_files": 10**9}})
    assert_error_envelope(exc.value, 400)


def test_environment_stdio_mcp_servers_extension_round_trips_through_the_sdk(client, make_env):
    """openma's `config.mcp_servers` extension (MCP servers run inside each session's
    sandbox): the SDK keeps the extra key with its resolved tool configuration, an update
    with `null` removes it, and an unknown key in an entry is a 400."""
    server = {"type": "stdio", "name": "fs", "command": ["python3", "-m", "fs_server"], "env": {"ROOT": "/workspace"}}
    env = make_env(config={"type": "cloud", "mcp_servers": [server]})

    for got in (env, client.beta.environments.retrieve(env.id)):
        config = dump(got.config)
        assert config["mcp_servers"] == [{
            **server,
            "configs": [],
            "default_config": {"enabled": True, "permission_policy": {"type": "always_ask"}},
        }], config
        _assert_full_packages(config["packages"])
    kept = client.beta.environments.update(env.id, name="renamed")
    assert dump(kept.config)["mcp_servers"][0]["name"] == "fs"
    cleared = client.beta.environments.update(env.id, config={"type": "cloud", "mcp_servers": None})
    assert "mcp_servers" not in dump(cleared.config) or not dump(cleared.config)["mcp_servers"]

    with pytest.raises(anthropic.BadRequestError) as exc:
        make_env(config={"type": "cloud", "mcp_servers": [{**server, "shell": True}]})
    assert_error_envelope(exc.value, 400, "invalid_request_error")
    assert "shell" in exc.value.message
