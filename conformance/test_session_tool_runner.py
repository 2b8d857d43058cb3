"""The SDK's session tool runner (`AsyncAnthropic().beta.sessions.events.tool_runner`)
driving a session with custom tools to completion against the fake model."""

from __future__ import annotations

import asyncio
import time

import anthropic
from anthropic import beta_async_tool

from conftest import text_reply, tool_use_reply, user_message

RUNNER_DEADLINE_S = 20.0

WEATHER_TOOL = {
    "type": "custom",
    "name": "get_weather",
    "description": "Current weather of a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def run_with_async_client(server, scenario):
    """`scenario(async_client)` on a fresh event loop, with a deadline; the client lives
    and dies on that loop."""

    async def main():
        async with anthropic.AsyncAnthropic(api_key=server.api_key, base_url=server.base_url, timeout=10.0) as ac:
            return await asyncio.wait_for(scenario(ac), RUNNER_DEADLINE_S)

    return asyncio.run(main())


def test_async_tool_runner_answers_custom_tool_calls_until_end_turn(client, server, fake, make_agent):
    agent = make_agent(tools=[WEATHER_TOOL])
    session = client.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)
    fake.script(
        [
            tool_use_reply("get_weather", {"city": "Oslo"}),
            tool_use_reply("get_weather", {"city": "Rome"}),
            text_reply("Oslo is cold, Rome is warm."),
        ]
    )
    ran: list[str] = []

    @beta_async_tool
    async def get_weather(city: str) -> str:
        """Current weather of a city.

        Args:
            city: the city
        """
        ran.append(city)
        return f"{city}: 21C"

    async def scenario(async_client):
        calls = []
        runner = async_client.beta.sessions.events.tool_runner(session.id, tools=[get_weather], max_idle=0.5)

        async def drive():
            async for call in runner:
                calls.append(call)

        async def kick_off():
            await asyncio.sleep(0.3)  # the runner attaches to the stream and reads history first
            await async_client.beta.sessions.events.send(session.id, events=[user_message("Oslo and Rome?")])

        t0 = time.monotonic()
        await asyncio.gather(drive(), kick_off())
        return calls, time.monotonic() - t0

    calls, elapsed = run_with_async_client(server, scenario)

    assert ran == ["Oslo", "Rome"]
    assert [c.name for c in calls] == ["get_weather", "get_weather"]
    assert all(c.posted and not c.is_error for c in calls), calls
    assert elapsed < 10, f"the runner took {elapsed:.1f}s to stop after end_turn (max_idle=0.5)"

    events = list(client.beta.sessions.events.list(session.id))
    uses = [e for e in events if e.type == "agent.custom_tool_use"]
    results = [e for e in events if e.type == "user.custom_tool_result"]
    assert [c.tool_use_id for c in calls] == [e.id for e in uses]
    assert [r.custom_tool_use_id for r in results] == [e.id for e in uses]
    assert ["".join(b.text for b in r.content) for r in results] == ["Oslo: 21C", "Rome: 21C"]
    idles = [e for e in events if e.type == "session.status_idle"]
    assert [i.stop_reason.type for i in idles] == ["requires_action", "requires_action", "end_turn"]
    assert [
        "".join(b.text for b in e.content) for e in events if e.type == "agent.message"
    ] == ["Oslo is cold, Rome is warm."]
    assert client.beta.sessions.retrieve(session.id).status == "idle"

    last_request = fake.requests()[-1]["body"]["messages"]
    results_seen = [
        b for m in last_request if m["role"] == "user" for b in m["content"] if b.get("type") == "tool_result"
    ]
    assert [b["tool_use_id"] for b in results_seen] == [e.id for e in uses]


def test_async_tool_runner_reports_tool_exception_as_error_result(client, server, fake, make_agent):
    agent = make_agent(tools=[WEATHER_TOOL])
    session = client.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)
    fake.script([tool_use_reply("get_weather", {"city": "Nowhere"}), text_reply("That failed.")])

    @beta_async_tool
    async def get_weather(city: str) -> str:
        """Current weather of a city.

        Args:
            city: the city
        """
        raise RuntimeError(f"no station in {city}")

    async def scenario(async_client):
        calls = []
        runner = async_client.beta.sessions.events.tool_runner(session.id, tools=[get_weather], max_idle=0.5)

        async def drive():
            async for call in runner:
                calls.append(call)

        async def kick_off():
            await asyncio.sleep(0.3)
            await async_client.beta.sessions.events.send(session.id, events=[user_message("Nowhere?")])

        await asyncio.gather(drive(), kick_off())
        return calls

    calls = run_with_async_client(server, scenario)

    [call] = calls
    assert call.is_error and call.posted
    [result] = [e for e in client.beta.sessions.events.list(session.id) if e.type == "user.custom_tool_result"]
    assert result.is_error is True
    assert result.custom_tool_use_id == call.tool_use_id
    idles = [e for e in client.beta.sessions.events.list(session.id, types=["session.status_idle"])]
    assert idles[-1].stop_reason.type == "end_turn"
