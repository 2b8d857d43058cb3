"""The built-in tools through the official SDK with a remote sandbox: `openma serve` runs the
sessions' tools on an `openma-sandbox-server` process (the program a Cloudflare SessionDO
drives in its container) reached over loopback, instead of in bubblewrap on its own host.

Binaries: $OPENMA_SANDBOX_SERVER_BIN, else `openma-sandbox-server` beside the openma binary.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path

import anthropic
import httpx2
import pytest

from conftest import (
    MODEL,
    RUN_TIMEOUT_S,
    SDK_TIMEOUT_S,
    EventTap,
    _child_env,
    _launch,
    _stop,
    make_client,
    openma_bin,
    start_server,
    text_reply,
    tool_use_reply,
    user_message,
)

SANDBOX_READY_RE = re.compile(r"^openma-sandbox-server listening on (http://127\.0\.0\.1:(\d+))$")

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def sandbox_server_bin() -> Path:
    import os

    return Path(os.environ.get("OPENMA_SANDBOX_SERVER_BIN", str(openma_bin().parent / "openma-sandbox-server")))


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """A sandbox server, and the root where it keeps the sessions."""
    root = tmp_path_factory.mktemp("sandbox-server")
    for d in [root, *root.parents]:
        if d == Path("/"):
            break
        d.chmod(d.stat().st_mode | 0o001)
    token = "sbx-" + secrets.token_hex(16)
    sessions = root / "sessions"
    proc, base_url, _, _, _ = _launch(
        "openma-sandbox-server",
        [str(sandbox_server_bin()), "--listen", "127.0.0.1:0", "--root", str(sessions)],
        _child_env({"OPENMA_SANDBOX_TOKEN": token}),
        SANDBOX_READY_RE,
        root / "stderr.log",
        "build it with `cargo build -p openma-sandbox-server` or set OPENMA_SANDBOX_SERVER_BIN",
    )
    yield {"url": base_url, "token": token, "sessions": sessions}
    _stop(proc)


@pytest.fixture(scope="module")
def remote_client(tmp_path_factory, fake_model, remote):
    root = tmp_path_factory.mktemp("openma-remote")
    srv = start_server(
        root / "data",
        model_base_url=fake_model.base_url,
        env={"OPENMA_SANDBOX_URL": remote["url"], "OPENMA_SANDBOX_TOKEN": remote["token"]},
    )
    c = make_client(srv)
    yield c, srv
    c.close()
    srv.stop()


def run_turn(client, session_id: str, text: str) -> list:
    tap = EventTap(
        client.beta.sessions.events.stream(session_id, timeout=httpx2.Timeout(SDK_TIMEOUT_S, read=RUN_TIMEOUT_S)),
        label=f"stream {session_id}",
    )
    try:
        client.beta.sessions.events.send(session_id, events=[user_message(text)])
        tap.wait_idle("end_turn")
        return tap.events
    finally:
        tap.close()


def result_text(ev) -> str:
    return "".join(b.text for b in ev.content if b.type == "text")


def test_builtin_tools_run_on_the_sandbox_server(remote_client, remote, fake):
    client, srv = remote_client
    health = httpx2.get(f"{srv.base_url}/health").json()
    assert health["backends"]["sandbox"].startswith(f"remote {remote['url']}"), health
    agent = client.beta.agents.create(name="remote-coder", model=MODEL, tools=[{"type": "agent_toolset_20260401"}])
    session = client.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)
    fake.script(
        [
            tool_use_reply("write", {"file_path": "/workspace/hi.py", "content": "print('hi from', __name__)\n"}),
            tool_use_reply("bash", {"command": "cd /workspace && export MOOD=fine && python3 hi.py"}),
            tool_use_reply("edit", {"file_path": "/workspace/hi.py", "old_string": "hi from", "new_string": "bye from"}),
            tool_use_reply("grep", {"pattern": "bye", "path": "/workspace"}),
            text_reply("done"),
        ]
    )
    events = run_turn(client, session.id, "write and run a program")
    results = [e for e in events if e.type == "agent.tool_result"]
    uses = [e for e in events if e.type == "agent.tool_use"]
    assert [u.name for u in uses] == ["write", "bash", "edit", "grep"]
    assert [r.tool_use_id for r in results] == [u.id for u in uses]
    assert all(r.is_error is False for r in results), [result_text(r) for r in results]
    assert "hi from __main__" in result_text(results[1])
    assert "hi.py" in result_text(results[3])
    # the tools ran on the sandbox server, and the shell stays there between turns
    assert (remote["sessions"] / session.id / "workspace" / "hi.py").read_text() == "print('bye from', __name__)\n"
    fake.script([tool_use_reply("bash", {"command": "pwd; echo mood=$MOOD; python3 hi.py"}), text_reply("again")])
    events = run_turn(client, session.id, "again")
    [result] = [e for e in events if e.type == "agent.tool_result"]
    out = result_text(result)
    assert "/workspace" in out and "mood=fine" in out and "bye from __main__" in out, out
    # the listed log and the stream agree on the tool results
    listed = [e for e in client.beta.sessions.events.list(session.id) if e.type == "agent.tool_result"]
    assert result.id in [e.id for e in listed]
    client.beta.sessions.delete(session.id)
    assert not (remote["sessions"] / session.id).exists()


def test_a_package_environment_is_built_on_the_sandbox_server(remote_client, remote, fake):
    """The environment's packages are built into a layer on the sandbox server, which the
    session's shell there mounts; its limits reach it too."""
    client, _ = remote_client
    agent = client.beta.agents.create(name="remote-pkgs", model=MODEL, tools=[{"type": "agent_toolset_20260401"}])
    env = client.beta.environments.create(
        name="remote-pkgs-env", config={"type": "cloud", "packages": {"pip": ["six"]}, "limits": {"open_files": 300}}
    )
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    fake.script([tool_use_reply("bash", {"command": "python3 -c 'import six; print(\"six\", six.__version__)'; ulimit -n"}), text_reply("done")])
    [result] = [e for e in run_turn(client, session.id, "use six") if e.type == "agent.tool_result"]
    out = result_text(result)
    assert result.is_error is False and "six 1." in out, out
    assert "300" in [line.strip() for line in out.splitlines()], out
    assert any((d / "root").is_dir() for d in (remote["sessions"].parent / "layers").iterdir()), "the layer is on the sandbox server"


# The stdio MCP server program the Rust tests use too: `note` writes its text to /workspace/from-mcp.txt.
STDIO_SERVER = (Path(__file__).resolve().parents[1] / "crates/openma-fake-model/src/stdio_mcp_server.py").read_text()


def test_a_stdio_mcp_server_of_the_environment_runs_on_the_sandbox_server(remote_client, remote, fake):
    """The environment's stdio MCP server runs in the session's sandbox on the sandbox server,
    which speaks MCP's streamable HTTP for it; its tool is offered and called like any other."""
    client, _ = remote_client
    agent = client.beta.agents.create(name="remote-stdio", model=MODEL, tools=[{"type": "agent_toolset_20260401"}])
    server = {"type": "stdio", "name": "local", "command": ["python3", "-u", "-c", STDIO_SERVER], "default_config": {"permission_policy": {"type": "always_allow"}}}
    env = client.beta.environments.create(name="remote-stdio-env", config={"type": "cloud", "mcp_servers": [server]})
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    fake.script([tool_use_reply("mcp__local__note", {"text": "remote hello"}), tool_use_reply("bash", {"command": "cat /workspace/from-mcp.txt"}), text_reply("done")])
    results = [e for e in run_turn(client, session.id, "note it") if e.type in ("agent.mcp_tool_result", "agent.tool_result")]
    assert [(r.type, r.is_error) for r in results] == [("agent.mcp_tool_result", False), ("agent.tool_result", False)], [result_text(r) for r in results]
    assert result_text(results[0]).startswith("noted by uid ") and "remote hello" in result_text(results[1])
    assert (remote["sessions"] / session.id / "workspace" / "from-mcp.txt").read_text() == "remote hello"
