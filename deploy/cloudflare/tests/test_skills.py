"""Skills on the Workers, judged by the official SDK (the native conformance suite's
test_skills.py runs against them too, from test_conformance.py): an agent's custom skills
are checked when it is saved, laid by its SessionDO into the sandbox's read-only
`/mnt/skills/<name>/` with the session's mounted files, and listed in the system prompt,
as the native server installs and announces them."""

from __future__ import annotations

import anthropic
import httpx2
import pytest
from conftest import script
from test_conformance import KEY_A, SECRET, agent_vars, fake_model, main, result_text, sandbox_server, tool_use, turn  # noqa: F401  (fixtures)

MD = b"---\nname: csv-report\ndescription: Turns CSV files into a short report.\n---\n# CSV report\nRun scripts/report.py.\n"
TOOLSET = [{"type": "agent_toolset_20260401"}]


def test_skills_are_laid_read_only_into_the_sandbox_and_announced(deployment, main, fake_model, sandbox_server):
    a = anthropic.Anthropic(api_key=KEY_A, base_url=main.base_url, timeout=30.0)
    skill = a.beta.skills.create(files=[("csv-report/SKILL.md", MD, "text/markdown"), ("csv-report/scripts/report.py", b"print('report')\n", "text/x-python")])

    # references that cannot work are refused when the agent is saved, as natively
    with pytest.raises(anthropic.NotFoundError):
        a.beta.agents.create(name="skilled", model="claude-sonnet-4-5", tools=TOOLSET, skills=[{"type": "custom", "skill_id": "skill_missing"}])
    with pytest.raises(anthropic.BadRequestError):
        a.beta.agents.create(name="skilled", model="claude-sonnet-4-5", tools=TOOLSET, skills=[{"type": "anthropic", "skill_id": "xlsx"}])
    no_read = [{"type": "agent_toolset_20260401", "configs": [{"name": "read", "enabled": False}]}]
    with pytest.raises(anthropic.BadRequestError):
        a.beta.agents.create(name="skilled", model="claude-sonnet-4-5", tools=no_read, skills=[{"type": "custom", "skill_id": skill.id}])

    agent = a.beta.agents.create(name="skilled", model="claude-sonnet-4-5", tools=TOOLSET, skills=[{"type": "custom", "skill_id": skill.id}])
    assert [(s.skill_id, s.version) for s in agent.skills] == [(skill.id, "latest")]
    session = a.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)
    script(fake_model, [
        tool_use("bash", {"command": "cat /mnt/skills/csv-report/SKILL.md && python3 /mnt/skills/csv-report/scripts/report.py && echo x > /mnt/skills/csv-report/SKILL.md"}),
        tool_use("read", {"file_path": "/mnt/skills/csv-report/SKILL.md"}),
        tool_use("write", {"file_path": "/mnt/skills/csv-report/SKILL.md", "content": "x"}),
        {"kind": "message", "blocks": [{"type": "text", "text": "reported"}]},
    ])
    results = [e for e in turn(a, session.id, "make a report") if e.type == "agent.tool_result"]
    assert len(results) == 3, [result_text(r) for r in results]
    bash = result_text(results[0])
    assert "# CSV report" in bash and "report\n" in bash and ("Read-only" in bash or "Permission denied" in bash), bash
    assert "Run scripts/report.py" in result_text(results[1]), result_text(results[1])
    assert results[2].is_error is True, result_text(results[2])
    held = sandbox_server["sessions"] / session.id / "skills" / "csv-report" / "SKILL.md"
    assert held.read_bytes() == MD, "the skill is untouched"

    requests = httpx2.get(f"{fake_model}/_fake/requests").json()
    system = str([r for r in requests if r["path"].endswith("/messages")][-1]["body"].get("system"))
    assert "/mnt/skills/csv-report/SKILL.md" in system and "Turns CSV files into a short report." in system, system

    # a skill deleted after a session was created with it: no new session can start with
    # the agent, and that session's sandbox cannot be prepared, which its tool's error
    # result says (nothing is silently missing)
    other = a.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)
    a.beta.skills.delete(skill.id)
    with pytest.raises(anthropic.NotFoundError):
        a.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)
    script(fake_model, [tool_use("bash", {"command": "ls /mnt/skills"}), {"kind": "message", "blocks": [{"type": "text", "text": "gone"}]}])
    [result] = [e for e in turn(a, other.id, "list skills") if e.type == "agent.tool_result"]
    assert result.is_error is True and "is gone" in result_text(result), result_text(result)
