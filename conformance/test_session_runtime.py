"""The session runtime through the SDK: `client.beta.sessions.events.send/list/stream`
driving the agent loop against the scripted fake model (see `fake` in conftest.py).

Every stream is read through `EventTap` (a background reader with deadlines), opened
BEFORE the send: a stream without `Last-Event-ID` carries only events after it opens.
"""

from __future__ import annotations

import time

import anthropic
import pytest
from anthropic.lib.sessions import accumulate_managed_agents_event

from conftest import (
    MODEL,
    RUN_TIMEOUT_S,
    assert_error_envelope,
    dump,
    is_idle,
    parse_ts,
    text_reply,
    tool_use_reply,
    user_message,
)

WEATHER_TOOL = {
    "type": "custom",
    "name": "get_weather",
    "description": "Current weather of a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ALWAYS_ASK_TOOLSET = {
    "type": "agent_toolset_20260401",
    "default_config": {"permission_policy": {"type": "always_ask"}},
}
ONE_TURN = [
    "user.message",
    "session.status_running",
    "span.model_request_start",
    "agent.message",
    "span.model_request_end",
    "session.usage",
    "session.status_idle",
]


@pytest.fixture
def session(client, make_agent):
    """A fresh session of a plain agent (no tools) on the default environment."""
    agent = make_agent(system="be helpful")
    return client.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)


@pytest.fixture
def tool_session(client, make_agent):
    """A fresh session of an agent with the custom tool `get_weather`."""
    agent = make_agent(tools=[WEATHER_TOOL])
    return client.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)


@pytest.fixture
def ask_session(client, make_agent):
    """A fresh session of an agent whose built-in tools are all `always_ask`."""
    agent = make_agent(tools=[ALWAYS_ASK_TOOLSET])
    return client.beta.sessions.create(agent=agent.id, environment_id=anthropic.omit)


def send(client, session_id, *events):
    return client.beta.sessions.events.send(session_id, events=list(events))


def texts(event) -> str:
    return "".join(b.text for b in event.content if b.type == "text")


def model_messages(fake) -> list[list[dict]]:
    """The `messages` of every model request the fake received, in order."""
    return [r["body"]["messages"] for r in fake.requests() if r["path"] == "/v1/messages"]


def tool_results_in(messages: list[dict]) -> list[dict]:
    return [
        block
        for m in messages
        if m["role"] == "user" and isinstance(m["content"], list)
        for block in m["content"]
        if block.get("type") == "tool_result"
    ]


def result_text(block: dict) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    return "".join(c.get("text", "") for c in content or [])


# --------------------------------------------------------------------------- one turn


def test_user_message_runs_one_turn_with_documented_event_sequence(client, fake, tap, session):
    fake.script([text_reply("Hello from the fake model.")])
    stream = tap(session.id)

    sent = send(client, session.id, user_message("hi"))
    idle = stream.wait_idle()

    assert stream.types() == ONE_TURN
    user_msg, running, start, message, end, usage, _ = stream.events
    assert idle.stop_reason.type == "end_turn"
    assert len(sent.data) == 1 and sent.data[0].type == "user.message"
    assert sent.data[0].id == user_msg.id
    assert [b.text for b in user_msg.content] == ["hi"]
    assert message.content[0].type == "text"
    assert texts(message) == "Hello from the fake model."
    assert end.model_request_start_id == start.id
    assert end.is_error in (None, False)
    assert end.model_usage.input_tokens == 10 and end.model_usage.output_tokens == 5
    assert usage.usage.input_tokens == 10 and usage.usage.output_tokens == 5
    for ev in stream.events:
        assert ev.id.startswith("sevt_"), ev.id
        parse_ts(ev.processed_at)
    assert len({ev.id for ev in stream.events}) == len(stream.events), "event ids are not unique"


def test_stream_and_list_carry_identical_event_ids(client, fake, tap, session):
    stream = tap(session.id)
    send(client, session.id, user_message("hi"))
    stream.wait_idle("end_turn")

    listed = list(client.beta.sessions.events.list(session.id))

    assert [e.id for e in listed] == [e.id for e in stream.events]
    assert [e.type for e in listed] == [e.type for e in stream.events]
    assert [dump(e) for e in listed] == [dump(e) for e in stream.events]


def test_user_message_reaches_the_model_with_agent_model_and_system(client, fake, tap, session):
    stream = tap(session.id)
    send(client, session.id, user_message("what is 2+2?"))
    stream.wait_idle("end_turn")

    reqs = fake.requests()
    assert len(reqs) == 1, reqs
    body = reqs[0]["body"]
    assert body["model"] == MODEL
    assert body.get("stream") is True
    system = body.get("system")
    system_text = system if isinstance(system, str) else "".join(b.get("text", "") for b in system or [])
    assert "be helpful" in system_text
    [msg] = body["messages"]
    assert msg["role"] == "user"
    assert [b["text"] for b in msg["content"] if b["type"] == "text"] == ["what is 2+2?"]


def test_session_is_idle_with_usage_after_the_turn(client, fake, tap, session):
    stream = tap(session.id)
    send(client, session.id, user_message("hi"))
    stream.wait_idle("end_turn")

    got = client.beta.sessions.retrieve(session.id)

    assert got.status == "idle"
    assert got.usage.input_tokens == 10
    assert got.usage.output_tokens == 5


def test_second_user_message_continues_the_conversation(client, fake, tap, session):
    fake.script([text_reply("first answer"), text_reply("second answer")])
    stream = tap(session.id)
    send(client, session.id, user_message("one"))
    stream.wait_idle("end_turn")
    send(client, session.id, user_message("two"))
    stream.wait_idle("end_turn")

    second = model_messages(fake)[1]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert [b["text"] for b in second[1]["content"] if b["type"] == "text"] == ["first answer"]
    assert [b["text"] for b in second[2]["content"] if b["type"] == "text"] == ["two"]


def test_user_message_sent_while_running_is_answered_before_idle(client, fake, tap, session):
    """A message that arrives mid-turn must not be left unanswered by an `end_turn` idle."""
    fake.script([text_reply("a slow first answer", chunk_delay_ms=60, split=2), text_reply("answer to two")])
    stream = tap(session.id)
    send(client, session.id, user_message("one"))
    stream.wait_type("span.model_request_start")
    send(client, session.id, user_message("two"))

    stream.wait_idle("end_turn")
    time.sleep(0.2)  # let a (wrong) idle-then-nothing settle before looking at the log

    messages = [texts(e) for e in stream.events if e.type == "agent.message"]
    assert "answer to two" in messages, (
        f"`two` was sent while the session ran but the session went idle (end_turn) without "
        f"answering it; model requests made: {len(fake.requests())}; stream: {stream.types()}"
    )


def test_last_event_id_replays_events_after_that_event(client, fake, tap, session):
    first = tap(session.id)
    send(client, session.id, user_message("hi"))
    first.wait_idle("end_turn")
    history = first.events

    resumed = tap(session.id, extra_headers={"Last-Event-ID": history[2].id})
    for _ in history[3:]:
        resumed.wait_for(lambda e: True)

    assert [e.id for e in resumed.events[: len(history) - 3]] == [e.id for e in history[3:]]


def test_unknown_last_event_id_is_bad_request(client, session):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.stream(session.id, extra_headers={"Last-Event-ID": "sevt_not_in_this_session"})
    assert_error_envelope(ei.value, 400, "invalid_request_error")


# --------------------------------------------------------------------------- custom tools


def test_custom_tool_use_pauses_session_until_result_then_loop_continues(client, fake, tap, tool_session):
    fake.script(
        [
            tool_use_reply("get_weather", {"city": "Paris"}, text="Let me check."),
            text_reply("It is 20C in Paris."),
        ]
    )
    stream = tap(tool_session.id)
    send(client, tool_session.id, user_message("Weather in Paris?"))

    tool_use = stream.wait_type("agent.custom_tool_use")
    paused = stream.wait_idle()
    assert tool_use.name == "get_weather"
    assert tool_use.input == {"city": "Paris"}
    assert paused.stop_reason.type == "requires_action"
    assert paused.stop_reason.event_ids == [tool_use.id]
    assert client.beta.sessions.retrieve(tool_session.id).status == "idle"
    assert len(fake.requests()) == 1, "the loop must wait for the custom tool result"

    mark = len(stream.events)
    sent = send(
        client,
        tool_session.id,
        {
            "type": "user.custom_tool_result",
            "custom_tool_use_id": tool_use.id,
            "content": [{"type": "text", "text": "20C and sunny"}],
        },
    )
    done = stream.wait_idle()

    assert done.stop_reason.type == "end_turn"
    assert sent.data[0].type == "user.custom_tool_result"
    assert sent.data[0].custom_tool_use_id == tool_use.id
    after = stream.since(mark)
    assert after[0].type == "user.custom_tool_result" and after[0].id == sent.data[0].id
    assert "session.status_running" in [e.type for e in after]
    assert [texts(e) for e in after if e.type == "agent.message"] == ["It is 20C in Paris."]

    second = model_messages(fake)[1]
    [result] = tool_results_in(second)
    assert result["tool_use_id"] == tool_use.id
    assert result_text(result) == "20C and sunny"
    assert not result.get("is_error")
    assistant_tool_uses = [b for b in second[-2]["content"] if b["type"] == "tool_use"]
    assert [b["id"] for b in assistant_tool_uses] == [tool_use.id]


def test_custom_tool_result_is_error_reaches_model_as_error(client, fake, tap, tool_session):
    fake.script([tool_use_reply("get_weather", {"city": "Atlantis"}), text_reply("Sorry.")])
    stream = tap(tool_session.id)
    send(client, tool_session.id, user_message("Weather in Atlantis?"))
    tool_use = stream.wait_type("agent.custom_tool_use")
    stream.wait_idle("requires_action")

    send(
        client,
        tool_session.id,
        {
            "type": "user.custom_tool_result",
            "custom_tool_use_id": tool_use.id,
            "is_error": True,
            "content": [{"type": "text", "text": "no such city"}],
        },
    )
    stream.wait_idle("end_turn")

    [result] = tool_results_in(model_messages(fake)[1])
    assert result["tool_use_id"] == tool_use.id
    assert result.get("is_error") is True
    assert result_text(result) == "no such city"


def test_resolving_one_of_two_custom_tool_uses_reemits_idle_with_the_remainder(client, fake, tap, tool_session):
    fake.script(
        [
            {
                "kind": "message",
                "blocks": [
                    {"type": "tool_use", "name": "get_weather", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "name": "get_weather", "input": {"city": "Rome"}},
                ],
            },
            text_reply("Oslo cold, Rome warm."),
        ]
    )
    stream = tap(tool_session.id)
    send(client, tool_session.id, user_message("Oslo and Rome?"))
    first = stream.wait_type("agent.custom_tool_use")
    second = stream.wait_type("agent.custom_tool_use")
    paused = stream.wait_idle()
    assert paused.stop_reason.type == "requires_action"
    assert sorted(paused.stop_reason.event_ids) == sorted([first.id, second.id])

    send(client, tool_session.id, {"type": "user.custom_tool_result", "custom_tool_use_id": first.id, "content": [{"type": "text", "text": "-3C"}]})
    still = stream.wait_idle()
    assert still.stop_reason.type == "requires_action"
    assert still.stop_reason.event_ids == [second.id]
    assert len(fake.requests()) == 1

    send(client, tool_session.id, {"type": "user.custom_tool_result", "custom_tool_use_id": second.id, "content": [{"type": "text", "text": "24C"}]})
    stream.wait_idle("end_turn")

    results = tool_results_in(model_messages(fake)[1])
    assert {r["tool_use_id"]: result_text(r) for r in results} == {first.id: "-3C", second.id: "24C"}


# --------------------------------------------------------------------------- always_ask confirmations


def _ask_for_bash(client, fake, tap, ask_session, command="ls"):
    stream = tap(ask_session.id)
    send(client, ask_session.id, user_message(f"run {command}"))
    tool_use = stream.wait_type("agent.tool_use")
    paused = stream.wait_idle()
    return stream, tool_use, paused


def test_always_ask_tool_use_waits_for_confirmation(client, fake, tap, ask_session):
    fake.script([tool_use_reply("bash", {"command": "ls"})])

    stream, tool_use, paused = _ask_for_bash(client, fake, tap, ask_session)

    assert tool_use.name == "bash"
    assert tool_use.input == {"command": "ls"}
    assert tool_use.evaluated_permission == "ask"
    assert paused.stop_reason.type == "requires_action"
    assert paused.stop_reason.event_ids == [tool_use.id]
    assert "agent.tool_result" not in stream.types(), "an ask-gated tool must not run before confirmation"
    assert len(fake.requests()) == 1


def test_denied_confirmation_gives_error_result_with_deny_message_and_loop_continues(client, fake, tap, ask_session):
    fake.script([tool_use_reply("bash", {"command": "rm -rf /"}), text_reply("Understood, I will not.")])
    stream, tool_use, _ = _ask_for_bash(client, fake, tap, ask_session)

    mark = len(stream.events)
    sent = send(
        client,
        ask_session.id,
        {"type": "user.tool_confirmation", "tool_use_id": tool_use.id, "result": "deny", "deny_message": "not on my machine"},
    )
    done = stream.wait_idle()

    assert sent.data[0].type == "user.tool_confirmation"
    assert sent.data[0].result == "deny"
    assert sent.data[0].deny_message == "not on my machine"
    assert done.stop_reason.type == "end_turn"
    after = stream.since(mark)
    [result] = [e for e in after if e.type == "agent.tool_result"]
    assert result.tool_use_id == tool_use.id
    assert result.is_error is True
    assert "not on my machine" in "".join(b.text for b in result.content if b.type == "text")
    assert [texts(e) for e in after if e.type == "agent.message"] == ["Understood, I will not."]

    [model_result] = tool_results_in(model_messages(fake)[1])
    assert model_result["tool_use_id"] == tool_use.id
    assert model_result.get("is_error") is True
    assert "not on my machine" in result_text(model_result)


def test_allowed_confirmation_runs_tool_and_loop_continues(client, fake, tap, ask_session):
    fake.script([tool_use_reply("bash", {"command": "pwd"}), text_reply("Done.")])
    stream, tool_use, _ = _ask_for_bash(client, fake, tap, ask_session, "pwd")

    mark = len(stream.events)
    send(client, ask_session.id, {"type": "user.tool_confirmation", "tool_use_id": tool_use.id, "result": "allow"})
    done = stream.wait_idle()

    assert done.stop_reason.type == "end_turn"
    after = stream.since(mark)
    assert after[0].type == "user.tool_confirmation" and after[0].result == "allow"
    # No sandbox in this build: the result is an error, but a result must arrive.
    [result] = [e for e in after if e.type == "agent.tool_result"]
    assert result.tool_use_id == tool_use.id
    assert [texts(e) for e in after if e.type == "agent.message"] == ["Done."]
    [model_result] = tool_results_in(model_messages(fake)[1])
    assert model_result["tool_use_id"] == tool_use.id


# --------------------------------------------------------------------------- interrupt


def test_interrupt_mid_stream_idles_within_1s_and_keeps_partial_message(client, fake, tap, session):
    full = "".join(f"word{i} " for i in range(60))
    fake.script([text_reply(full, split=6, chunk_delay_ms=100), text_reply("fresh start")])
    stream = tap(session.id, event_deltas=["agent.message"])
    send(client, session.id, user_message("tell me a long story"))
    stream.wait_type("event_delta")

    t0 = time.monotonic()
    sent = send(client, session.id, {"type": "user.interrupt"})
    idle = stream.wait_idle(timeout=5)
    elapsed = time.monotonic() - t0

    assert elapsed < 1.0, f"interrupt took {elapsed:.2f}s to idle the session"
    assert idle.stop_reason.type == "end_turn"
    assert sent.data[0].type == "user.interrupt"
    assert sent.data[0].id in {e.id for e in stream.events if e.type == "user.interrupt"}
    partial = [e for e in stream.events if e.type == "agent.message"]
    assert len(partial) == 1, stream.types()
    kept = texts(partial[0])
    assert kept and full.startswith(kept) and len(kept) < len(full), kept
    listed = [e for e in client.beta.sessions.events.list(session.id, types=["agent.message"])]
    assert [(e.id, texts(e)) for e in listed] == [(partial[0].id, kept)]
    assert client.beta.sessions.retrieve(session.id).status == "idle"

    # the session stays usable and the model sees the partial answer
    send(client, session.id, user_message("again"))
    stream.wait_idle("end_turn")
    assert texts([e for e in stream.events if e.type == "agent.message"][-1]) == "fresh start"
    second = model_messages(fake)[1]
    assert second[1]["role"] == "assistant"
    assert "".join(b.get("text", "") for b in second[1]["content"]) == kept


def test_session_interrupted_while_awaiting_custom_tool_result_is_not_stuck(client, fake, tap, tool_session):
    """Whatever an idle interrupt does to the waiting call, the next message must run a
    turn, and the model must never see a `tool_use` without its `tool_result`."""
    fake.script([tool_use_reply("get_weather", {"city": "Lima"}), text_reply("moving on")])
    stream = tap(tool_session.id)
    send(client, tool_session.id, user_message("Weather in Lima?"))
    tool_use = stream.wait_type("agent.custom_tool_use")
    stream.wait_idle("requires_action")

    sent = send(client, tool_session.id, {"type": "user.interrupt"})
    assert sent.data[0].type == "user.interrupt"
    send(client, tool_session.id, user_message("never mind, something else"))
    stream.wait_idle("end_turn")

    assert [texts(e) for e in stream.events if e.type == "agent.message"] == ["moving on"]
    [result] = tool_results_in(model_messages(fake)[1])
    assert result["tool_use_id"] == tool_use.id
    assert result.get("is_error") is True


def test_new_message_while_awaiting_custom_tool_result_answers_it_with_error(client, fake, tap, tool_session):
    fake.script([tool_use_reply("get_weather", {"city": "Bern"}), text_reply("ok, other topic")])
    stream = tap(tool_session.id)
    send(client, tool_session.id, user_message("Weather in Bern?"))
    tool_use = stream.wait_type("agent.custom_tool_use")
    stream.wait_idle("requires_action")

    mark = len(stream.events)
    send(client, tool_session.id, user_message("forget it"))
    stream.wait_idle("end_turn")

    after = stream.since(mark)
    assert [texts(e) for e in after if e.type == "agent.message"] == ["ok, other topic"]
    second = model_messages(fake)[1]
    [result] = tool_results_in(second)
    assert result["tool_use_id"] == tool_use.id
    assert result.get("is_error") is True
    user_texts = [b["text"] for b in second[-1]["content"] if b.get("type") == "text"]
    assert user_texts == ["forget it"]


# --------------------------------------------------------------------------- previews


def test_event_deltas_preview_agent_message_and_accumulate_to_final(client, fake, tap, session):
    fake.script(
        [
            {
                "kind": "message",
                "blocks": [
                    {"type": "thinking", "thinking": "let me think"},
                    {"type": "text", "text": "Hello there, this answer arrives in small pieces."},
                ],
                "split": 5,
            }
        ]
    )
    stream = tap(session.id, event_deltas=["agent.message", "agent.thinking"])
    send(client, session.id, user_message("hi"))
    stream.wait_idle("end_turn")

    starts = [e for e in stream.events if e.type == "event_start"]
    deltas = [e for e in stream.events if e.type == "event_delta"]
    [final] = [e for e in stream.events if e.type == "agent.message"]
    [thinking] = [e for e in stream.events if e.type == "agent.thinking"]
    assert {(s.event.type, s.event.id) for s in starts} == {("agent.message", final.id), ("agent.thinking", thinking.id)}
    assert len(deltas) >= 2
    assert all(d.event_id == final.id for d in deltas), "agent.thinking previews are start-only"

    acc = None
    snapshots = []
    for ev in stream.events:
        if ev.type == "event_start" and ev.event.type != "agent.message":
            continue
        if ev.type == "agent.message":
            break
        acc = accumulate_managed_agents_event(acc, ev)
        if ev.type in ("event_start", "event_delta"):
            snapshots.append(acc)
    assert acc is not None and acc.id == final.id
    assert [c.text for c in acc.content] == [c.text for c in final.content]
    assert texts(acc) == "Hello there, this answer arrives in small pieces."
    # previews grow monotonically and precede the final event
    lengths = [len(texts(s)) for s in snapshots]
    assert lengths == sorted(lengths)
    order = stream.types()
    assert order.index("event_start") < order.index("event_delta") < order.index("agent.message")
    assert accumulate_managed_agents_event(acc, final).processed_at == final.processed_at


def test_previews_are_stream_only_and_opt_in(client, fake, tap, session):
    fake.script([text_reply("previewed text", split=3)])
    plain = tap(session.id)
    previewed = tap(session.id, event_deltas=["agent.message"])
    send(client, session.id, user_message("hi"))
    plain.wait_idle("end_turn")
    previewed.wait_idle("end_turn")

    assert "event_delta" in previewed.types()
    assert not {"event_start", "event_delta"} & set(plain.types())
    listed_types = {e.type for e in client.beta.sessions.events.list(session.id)}
    assert not {"event_start", "event_delta"} & listed_types
    # apart from previews, both connections carry the same events
    assert [e.id for e in previewed.events if e.type not in ("event_start", "event_delta")] == [
        e.id for e in plain.events
    ]


def test_thinking_only_preview_is_start_only(client, fake, tap, session):
    fake.script(
        [{"kind": "message", "blocks": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "answer"}]}]
    )
    stream = tap(session.id, event_deltas=["agent.thinking"])
    send(client, session.id, user_message("hi"))
    stream.wait_idle("end_turn")

    starts = [e for e in stream.events if e.type == "event_start"]
    [thinking] = [e for e in stream.events if e.type == "agent.thinking"]
    assert [(s.event.type, s.event.id) for s in starts] == [("agent.thinking", thinking.id)]
    assert "event_delta" not in stream.types()


def test_invalid_event_deltas_value_is_bad_request(client, session):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.stream(session.id, event_deltas=["agent.tool_use"])  # type: ignore[list-item]
    assert_error_envelope(ei.value, 400, "invalid_request_error")


# --------------------------------------------------------------------------- model retries


def test_three_rate_limits_exhaust_retries(client, fake, tap, session):
    fake.script([{"kind": "error", "status": 429}] * 3 + [text_reply("never reached")])
    stream = tap(session.id)
    send(client, session.id, user_message("hi"))
    idle = stream.wait_idle()

    assert idle.stop_reason.type == "retries_exhausted"
    errors = [e for e in stream.events if e.type == "session.error"]
    assert [e.error.retry_status.type for e in errors] == ["retrying", "retrying", "exhausted"]
    assert all(e.error.type == "model_rate_limited_error" for e in errors), [dump(e.error) for e in errors]
    assert all(e.error.message for e in errors)
    types = stream.types()
    assert types.count("session.status_rescheduled") == 2, types
    assert types.index("session.status_rescheduled") > types.index("session.error")
    assert "agent.message" not in types
    ends = [e for e in stream.events if e.type == "span.model_request_end"]
    assert len(ends) == 3 and all(e.is_error for e in ends)
    assert len(fake.requests()) == 3, "OPENMA_MODEL_MAX_RETRIES=2 means 3 attempts"
    assert client.beta.sessions.retrieve(session.id).status == "idle"


def test_single_server_error_is_retried_and_session_recovers(client, fake, tap, session):
    fake.script([{"kind": "error", "status": 500}, text_reply("recovered")])
    stream = tap(session.id)
    send(client, session.id, user_message("hi"))
    idle = stream.wait_idle()

    assert idle.stop_reason.type == "end_turn"
    [error] = [e for e in stream.events if e.type == "session.error"]
    assert error.error.retry_status.type == "retrying"
    assert error.error.type == "model_request_failed_error"
    assert [texts(e) for e in stream.events if e.type == "agent.message"] == ["recovered"]
    assert len(fake.requests()) == 2
    types = stream.types()
    resched = types.index("session.status_rescheduled")
    message = types.index("agent.message")
    assert resched > types.index("session.error")
    assert "session.status_running" in types[resched + 1 : message], (
        f"after `session.status_rescheduled` the session must report `session.status_running` "
        f"before the retried request's output; got {types}"
    )


def test_retry_after_an_overloaded_stream_error_recovers(client, fake, tap, session):
    fake.script([{"kind": "stream_error", "type": "overloaded_error"}, text_reply("back")])
    stream = tap(session.id)
    send(client, session.id, user_message("hi"))
    idle = stream.wait_idle()

    assert idle.stop_reason.type == "end_turn"
    [error] = [e for e in stream.events if e.type == "session.error"]
    assert error.error.retry_status.type == "retrying"
    assert error.error.type == "model_overloaded_error"
    assert [texts(e) for e in stream.events if e.type == "agent.message"] == ["back"]


# --------------------------------------------------------------------------- initial_events


def test_initial_events_start_the_session_running_and_are_processed(client, fake, make_agent):
    agent = make_agent()
    fake.script([text_reply("answer to both")])

    session = client.beta.sessions.create(
        agent=agent.id,
        environment_id=anthropic.omit,
        initial_events=[user_message("first"), user_message("second")],
    )

    assert session.status == "running"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        events = list(client.beta.sessions.events.list(session.id))
        if any(is_idle(e) for e in events) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    types = [e.type for e in events]
    assert types[:2] == ["user.message", "user.message"], types
    assert [texts(e) for e in events[:2]] == ["first", "second"]
    assert all(e.processed_at is not None for e in events[:2])
    idle = [e for e in events if is_idle(e)]
    assert idle and idle[-1].stop_reason.type == "end_turn", types
    assert [texts(e) for e in events if e.type == "agent.message"] == ["answer to both"]
    [request] = model_messages(fake)
    sent_texts = [b["text"] for m in request if m["role"] == "user" for b in m["content"] if b["type"] == "text"]
    assert sent_texts == ["first", "second"]
    assert client.beta.sessions.retrieve(session.id).status == "idle"


def test_more_than_50_initial_events_is_bad_request(client, fake, make_agent):
    agent = make_agent()
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.create(
            agent=agent.id, environment_id=anthropic.omit, initial_events=[user_message("x")] * 51
        )
    assert_error_envelope(ei.value, 400, "invalid_request_error")
    assert fake.requests() == []


def test_initial_interrupt_event_is_bad_request(client, fake, make_agent):
    agent = make_agent()
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.create(
            agent=agent.id, environment_id=anthropic.omit, initial_events=[{"type": "user.interrupt"}]
        )
    assert_error_envelope(ei.value, 400, "invalid_request_error")


# --------------------------------------------------------------------------- invalid sends


def test_confirmation_naming_no_pending_tool_use_is_bad_request(client, session):
    with pytest.raises(anthropic.BadRequestError) as ei:
        send(client, session.id, {"type": "user.tool_confirmation", "tool_use_id": "sevt_nothing_pending", "result": "allow"})
    assert_error_envelope(ei.value, 400, "invalid_request_error")


def test_confirmation_of_a_custom_tool_use_is_bad_request(client, fake, tap, tool_session):
    fake.script([tool_use_reply("get_weather", {"city": "Quito"})])
    stream = tap(tool_session.id)
    send(client, tool_session.id, user_message("Weather in Quito?"))
    tool_use = stream.wait_type("agent.custom_tool_use")
    stream.wait_idle("requires_action")

    with pytest.raises(anthropic.BadRequestError) as ei:
        send(client, tool_session.id, {"type": "user.tool_confirmation", "tool_use_id": tool_use.id, "result": "allow"})
    assert_error_envelope(ei.value, 400, "invalid_request_error")


def test_deny_message_with_allow_is_bad_request(client, fake, tap, ask_session):
    fake.script([tool_use_reply("bash", {"command": "ls"})])
    stream, tool_use, _ = _ask_for_bash(client, fake, tap, ask_session)

    with pytest.raises(anthropic.BadRequestError) as ei:
        send(
            client,
            ask_session.id,
            {"type": "user.tool_confirmation", "tool_use_id": tool_use.id, "result": "allow", "deny_message": "x"},
        )
    assert_error_envelope(ei.value, 400, "invalid_request_error")
    # the tool use is still pending
    assert client.beta.sessions.retrieve(ask_session.id).status == "idle"
    assert "user.tool_confirmation" not in [e.type for e in client.beta.sessions.events.list(ask_session.id)]


def test_custom_tool_result_naming_no_pending_tool_use_is_bad_request(client, session):
    with pytest.raises(anthropic.BadRequestError) as ei:
        send(client, session.id, {"type": "user.custom_tool_result", "custom_tool_use_id": "sevt_nothing_pending"})
    assert_error_envelope(ei.value, 400, "invalid_request_error")


def test_define_outcome_is_bad_request_until_supported(client, session):
    with pytest.raises(anthropic.BadRequestError) as ei:
        send(
            client,
            session.id,
            {"type": "user.define_outcome", "description": "a poem", "rubric": {"type": "text", "content": "rhymes"}},
        )
    assert_error_envelope(ei.value, 400, "invalid_request_error")


def test_empty_events_list_is_bad_request(client, session):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(session.id, events=[])
    assert_error_envelope(ei.value, 400, "invalid_request_error")


def test_send_to_archived_session_is_conflict(client, fake, session):
    client.beta.sessions.archive(session.id)

    with pytest.raises(anthropic.ConflictError) as ei:
        send(client, session.id, user_message("hello?"))
    assert_error_envelope(ei.value, 409)
    assert fake.requests() == []


def test_send_and_stream_on_unknown_session_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as ei:
        send(client, "sesn_does_not_exist", user_message("hi"))
    assert_error_envelope(ei.value, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.sessions.events.stream("sesn_does_not_exist")
    assert_error_envelope(ei.value, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.sessions.events.list("sesn_does_not_exist")
    assert_error_envelope(ei.value, 404, "not_found_error")


def test_session_events_are_invisible_to_another_tenant(client, client_b, fake, tap, session):
    stream = tap(session.id)
    send(client, session.id, user_message("secret"))
    stream.wait_idle("end_turn")

    for call in (
        lambda: client_b.beta.sessions.events.list(session.id),
        lambda: client_b.beta.sessions.events.stream(session.id),
        lambda: send(client_b, session.id, user_message("intruder")),
    ):
        with pytest.raises(anthropic.NotFoundError) as ei:
            call()
        assert_error_envelope(ei.value, 404, "not_found_error")


# --------------------------------------------------------------------------- stream ends


def test_archiving_ends_open_stream_with_status_terminated(client, tap, session):
    stream = tap(session.id)

    client.beta.sessions.archive(session.id)

    stream.wait_type("session.status_terminated")
    stream.wait_end()
    assert stream.error is None, stream.error


def test_deleting_ends_open_stream_with_session_deleted(client, tap, session):
    stream = tap(session.id)

    client.beta.sessions.delete(session.id)

    stream.wait_type("session.deleted")
    stream.wait_end()
    assert stream.error is None, stream.error


# --------------------------------------------------------------------------- events.list


@pytest.fixture
def two_turn_session(client, fake, tap, session):
    """A session with two completed turns (two `agent.message` events)."""
    fake.script([text_reply("one"), text_reply("two")])
    stream = tap(session.id)
    send(client, session.id, user_message("a"))
    stream.wait_idle("end_turn")
    send(client, session.id, user_message("b"))
    stream.wait_idle("end_turn")
    return session, stream.events


def test_list_events_filters_by_types(client, two_turn_session):
    session, history = two_turn_session

    messages = list(client.beta.sessions.events.list(session.id, types=["agent.message"]))
    assert [e.id for e in messages] == [e.id for e in history if e.type == "agent.message"]
    assert [texts(e) for e in messages] == ["one", "two"]

    mixed = list(client.beta.sessions.events.list(session.id, types=["user.message", "session.status_idle"]))
    assert [e.id for e in mixed] == [e.id for e in history if e.type in ("user.message", "session.status_idle")]


def test_list_events_desc_reverses_asc(client, two_turn_session):
    session, history = two_turn_session

    asc = [e.id for e in client.beta.sessions.events.list(session.id, order="asc")]
    desc = [e.id for e in client.beta.sessions.events.list(session.id, order="desc")]

    assert asc == [e.id for e in history]
    assert desc == list(reversed(asc))


def test_list_events_paginates_with_limit(client, counted, two_turn_session):
    session, history = two_turn_session
    assert len(history) == 2 * len(ONE_TURN)

    first = client.beta.sessions.events.list(session.id, limit=3)
    assert len(first.data) == 3
    assert first.next_page

    paged = [e.id for e in counted.client.beta.sessions.events.list(session.id, limit=3)]
    assert paged == [e.id for e in history]
    pages = counted.calls("GET", f"/v1/sessions/{session.id}/events")
    assert len(pages) >= 5, "14 events with limit=3 need at least 5 pages"

    desc_paged = [e.id for e in client.beta.sessions.events.list(session.id, limit=4, order="desc")]
    assert desc_paged == [e.id for e in reversed(history)]
    typed_paged = [e.id for e in client.beta.sessions.events.list(session.id, limit=1, types=["agent.message"])]
    assert typed_paged == [e.id for e in history if e.type == "agent.message"]


def test_list_events_with_unknown_type_is_bad_request(client, session):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.list(session.id, types=["agent.nonsense"])  # type: ignore[list-item]
    assert_error_envelope(ei.value, 400, "invalid_request_error")
