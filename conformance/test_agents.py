"""Agents (`/v1/agents`) and agent versions, driven through the official SDK."""

from __future__ import annotations

import anthropic
import pytest

from conftest import MODEL, assert_error_envelope, dump, parse_ts

EFFORTS = {"low", "medium", "high", "xhigh", "max"}


def test_create_agent_returns_full_agent_object(client, make_agent, uid):
    agent = make_agent(name=f"full-{uid}", description="d", system="be brief", metadata={"team": "qa"})

    assert agent.type == "agent"
    assert isinstance(agent.id, str) and agent.id
    assert agent.name == f"full-{uid}"
    assert agent.description == "d"
    assert agent.system == "be brief"
    assert agent.version == 1
    assert agent.metadata == {"team": "qa"}
    assert agent.tools == []
    assert agent.mcp_servers == []
    assert agent.skills == []
    assert agent.archived_at is None
    assert agent.execution_identity.type == "service_account"
    created = parse_ts(agent.created_at)
    assert parse_ts(agent.updated_at) >= created


def test_model_string_is_returned_as_model_config_object(make_agent):
    agent = make_agent(model=MODEL)

    raw_model = dump(agent)["model"]
    assert isinstance(raw_model, dict), f"model must be an object, got {raw_model!r}"
    assert agent.model.id == MODEL
    assert agent.model.effort is not None, "effort is resolved to the model default at save time"
    assert isinstance(dump(agent.model.effort), dict)
    assert agent.model.effort.type in EFFORTS


def test_model_config_with_bare_effort_string_returns_effort_object(make_agent):
    agent = make_agent(model={"id": MODEL, "effort": "low"})

    assert agent.model.id == MODEL
    assert dump(agent.model.effort) == {"type": "low"}


def test_retrieve_agent_returns_same_snapshot(client, make_agent):
    agent = make_agent(system="hello", metadata={"k": "v"})

    got = client.beta.agents.retrieve(agent.id)

    assert dump(got) == dump(agent)


def test_update_agent_bumps_version_and_applies_changes(client, make_agent, uid):
    agent = make_agent(system="v1 prompt")

    updated = client.beta.agents.update(agent.id, version=1, name=f"renamed-{uid}", system="v2 prompt")

    assert updated.id == agent.id
    assert updated.version == 2
    assert updated.name == f"renamed-{uid}"
    assert updated.system == "v2 prompt"
    assert parse_ts(updated.updated_at) >= parse_ts(agent.updated_at)
    assert parse_ts(updated.created_at) == parse_ts(agent.created_at)
    assert client.beta.agents.retrieve(agent.id).version == 2


def test_version_conflict_raises_conflict_without_retry(client, counted, make_agent):
    agent = make_agent(system="one")
    client.beta.agents.update(agent.id, system="two")  # now at version 2

    with pytest.raises(anthropic.ConflictError) as ei:
        counted.client.beta.agents.update(agent.id, version=1, system="three")

    assert_error_envelope(ei.value, 409)
    assert ei.value.response.headers.get("x-should-retry") == "false"
    posts = counted.calls("POST", f"/v1/agents/{agent.id}")
    assert len(posts) == 1, f"SDK retried the 409 ({len(posts)} requests): x-should-retry must be false"
    # the losing write changed nothing
    current = client.beta.agents.retrieve(agent.id)
    assert current.version == 2
    assert current.system == "two"


def test_update_with_matching_current_version_succeeds(client, make_agent):
    agent = make_agent(system="one")
    v2 = client.beta.agents.update(agent.id, version=1, system="two")

    v3 = client.beta.agents.update(agent.id, version=v2.version, system="three")

    assert v3.version == 3
    assert v3.system == "three"


def test_noop_update_does_not_bump_version(client, make_agent):
    agent = make_agent(system="same", description="same desc", metadata={"a": "1"})

    same = client.beta.agents.update(
        agent.id, name=agent.name, system="same", description="same desc", metadata={"a": "1"}
    )
    empty = client.beta.agents.update(agent.id)

    assert same.version == 1
    assert empty.version == 1
    assert [v.version for v in client.beta.agents.versions.list(agent.id)] == [1]


def test_update_system_none_clears_system(client, make_agent):
    agent = make_agent(system="to be cleared")

    updated = client.beta.agents.update(agent.id, system=None)

    assert updated.system is None
    assert updated.version == 2
    assert client.beta.agents.retrieve(agent.id).system is None


def test_update_metadata_patch_upserts_and_deletes_keys(client, make_agent):
    agent = make_agent(metadata={"a": "1", "b": "2"})

    updated = client.beta.agents.update(agent.id, metadata={"a": None, "c": "3"})

    assert updated.metadata == {"b": "2", "c": "3"}
    assert client.beta.agents.retrieve(agent.id).metadata == {"b": "2", "c": "3"}


def test_update_omitted_fields_are_preserved(client, make_agent):
    agent = make_agent(system="keep me", description="keep desc", metadata={"k": "v"})

    updated = client.beta.agents.update(agent.id, name=agent.name + "-x")

    assert updated.system == "keep me"
    assert updated.description == "keep desc"
    assert updated.metadata == {"k": "v"}
    assert updated.model.id == MODEL


def test_seed_bash_shorthand_tool_is_normalised_to_agent_toolset(make_agent):
    agent = make_agent(tools=[{"type": "bash"}])

    assert len(agent.tools) == 1
    tool = dump(agent.tools[0])
    assert tool["type"] == "agent_toolset_20260401"
    assert isinstance(tool.get("configs"), list)
    assert isinstance(tool.get("default_config"), dict)
    assert "enabled" in tool["default_config"]
    assert isinstance(tool["default_config"].get("permission_policy"), dict)


def test_agent_toolset_response_is_resolved(make_agent):
    agent = make_agent(
        tools=[
            {
                "type": "agent_toolset_20260401",
                "configs": [{"name": "web_search", "enabled": False}],
            }
        ]
    )

    tool = dump(agent.tools[0])
    assert tool["type"] == "agent_toolset_20260401"
    assert tool["default_config"]["enabled"] is True
    assert tool["default_config"]["permission_policy"]["type"] in {"always_allow", "always_ask", "auto"}
    ws = [c for c in tool["configs"] if c["name"] == "web_search"]
    assert ws and ws[0]["enabled"] is False
    assert ws[0]["type"] == "web_search"


def test_versions_list_includes_every_version_including_current(client, make_agent):
    agent = make_agent(system="s1")
    client.beta.agents.update(agent.id, system="s2")
    client.beta.agents.update(agent.id, system="s3")

    versions = list(client.beta.agents.versions.list(agent.id))

    assert sorted(v.version for v in versions) == [1, 2, 3]
    by_version = {v.version: v for v in versions}
    assert by_version[1].system == "s1"
    assert by_version[3].system == "s3"
    assert all(v.id == agent.id and v.type == "agent" for v in versions)


def test_versions_list_auto_paginates(client, make_agent):
    agent = make_agent(system="p1")
    for i in range(2, 6):
        client.beta.agents.update(agent.id, system=f"p{i}")

    first = client.beta.agents.versions.list(agent.id, limit=2)
    assert len(first.data) == 2
    assert first.next_page

    assert sorted(v.version for v in first) == [1, 2, 3, 4, 5]


def test_retrieve_with_version_returns_historical_snapshot(client, make_agent):
    agent = make_agent(system="old prompt")
    client.beta.agents.update(agent.id, system="new prompt")

    v1 = client.beta.agents.retrieve(agent.id, version=1)
    latest = client.beta.agents.retrieve(agent.id)

    assert v1.version == 1
    assert v1.system == "old prompt"
    assert latest.version == 2
    assert latest.system == "new prompt"


def test_retrieve_nonexistent_version_is_not_found(client, make_agent):
    agent = make_agent()

    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.agents.retrieve(agent.id, version=7)
    assert_error_envelope(ei.value, 404, "not_found_error")


def test_archived_agent_has_archived_at_and_is_hidden_from_list(client, make_agent):
    keep = make_agent()
    gone = make_agent()

    archived = client.beta.agents.archive(gone.id)

    assert archived.id == gone.id
    assert archived.archived_at is not None
    parse_ts(archived.archived_at)
    assert client.beta.agents.retrieve(gone.id).archived_at is not None

    default_ids = {a.id for a in client.beta.agents.list(limit=100)}
    assert keep.id in default_ids
    assert gone.id not in default_ids

    all_ids = {a.id for a in client.beta.agents.list(limit=100, include_archived=True)}
    assert {keep.id, gone.id} <= all_ids


def test_list_agents_auto_paginates_with_limit_2(client, counted, make_agent):
    created = {make_agent().id for _ in range(5)}

    first = counted.client.beta.agents.list(limit=2)
    assert len(first.data) == 2
    assert first.next_page, "a full page with more results must carry next_page"

    seen = [a.id for a in first]  # auto-pagination follows next_page

    assert created <= set(seen)
    assert len(seen) == len(set(seen)), "pagination returned duplicates"
    assert len(counted.calls("GET", "/v1/agents")) >= 3


# --------------------------------------------------------------------------- validation

MCP_URL = "https://mcp.example.com/mcp"


def _mcp(n: int) -> dict:
    servers = [{"type": "url", "name": f"srv{i}", "url": f"{MCP_URL}/{i}"} for i in range(n)]
    toolsets = [{"type": "mcp_toolset", "mcp_server_name": f"srv{i}"} for i in range(n)]
    return {"mcp_servers": servers, "tools": toolsets}


INVALID_CREATE = {
    "17_metadata_keys": {"metadata": {f"k{i}": "v" for i in range(17)}},
    "metadata_key_over_64_chars": {"metadata": {"k" * 65: "v"}},
    "metadata_value_over_512_chars": {"metadata": {"k": "v" * 513}},
    "unknown_tool_type": {"tools": [{"type": "not_a_real_tool"}]},
    "empty_name": {"name": ""},
    "name_over_256_chars": {"name": "n" * 257},
    "system_over_100000_chars": {"system": "s" * 100_001},
    "custom_tool_schema_not_object": {
        "tools": [
            {
                "type": "custom",
                "name": "lookup",
                "description": "d",
                "input_schema": {"type": "string"},
            }
        ]
    },
    "21_mcp_servers": _mcp(21),
    "mcp_server_not_referenced_by_toolset": {
        "mcp_servers": [{"type": "url", "name": "lonely", "url": MCP_URL}]
    },
}


@pytest.mark.parametrize("case", sorted(INVALID_CREATE))
def test_invalid_agent_create_is_rejected_with_bad_request(client, uid, case):
    body = {"name": f"bad-{uid}", "model": MODEL, **INVALID_CREATE[case]}

    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(**body)

    assert_error_envelope(ei.value, 400, "invalid_request_error")


def test_agent_limits_accept_values_at_the_boundary(make_agent):
    """The validation above rejects one past the limit; the limit itself is fine."""
    agent = make_agent(
        name="n" * 256,
        system="s" * 100_000,
        metadata={**{f"k{i}": "v" for i in range(15)}, "k" * 64: "v" * 512},
        tools=_mcp(20)["tools"]
        + [
            {
                "type": "custom",
                "name": "lookup",
                "description": "d",
                "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
            }
        ],
        mcp_servers=_mcp(20)["mcp_servers"],
    )

    assert len(agent.name) == 256
    assert len(agent.system) == 100_000
    assert len(agent.metadata) == 16
    assert len(agent.mcp_servers) == 20
    assert len(agent.tools) == 21


def test_metadata_patch_exceeding_16_keys_is_rejected(client, make_agent):
    agent = make_agent(metadata={f"k{i}": "v" for i in range(16)})

    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.update(agent.id, metadata={"one_more": "v"})

    assert_error_envelope(ei.value, 400, "invalid_request_error")
    assert client.beta.agents.retrieve(agent.id).version == 1


def test_update_with_empty_name_is_rejected(client, make_agent):
    agent = make_agent()

    with pytest.raises(anthropic.BadRequestError):
        client.beta.agents.update(agent.id, name="")


def test_list_limit_over_maximum_is_rejected(client):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.list(limit=1000)

    assert_error_envelope(ei.value, 400, "invalid_request_error")


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": "v" for i in range(17)},
        {"k" * 65: "v"},
        {"k": "v" * 513},
    ],
    ids=["17_keys", "long_key", "long_value"],
)
def test_metadata_violation_carries_invalid_metadata_error_code(client, uid, metadata):
    """Spec §1.10: metadata violations are 400 with `error.details.error_code = invalid_metadata`
    (the SDK then raises its `BetaInvalidMetadataError` subclass)."""
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name=f"md-{uid}", model=MODEL, metadata=metadata)

    assert ei.value.error_code == "invalid_metadata", ei.value.body
    assert type(ei.value).__name__ == "BetaInvalidMetadataError"
