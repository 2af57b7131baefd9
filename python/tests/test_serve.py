"""`Team.connect(url, token)`: the same API over `agent-team serve` (NexAU's POST /team/stream
for runs, the REST API for the board), against the real binary and the mock model."""

from __future__ import annotations

import asyncio
import json
import re
from typing import List

import pytest
from conftest import World, model_defaults
from mockmodel import MockModel, call, said, until
from scenarios import (
    STORY_EVENTS,
    TODO_ANSWER,
    script_story,
    script_todo,
    story_team,
    summarize,
    todo_team,
)

from agent_team import ContextValue, Team, TeamError, TeamEvent, TeamStreamEnvelope
from agent_team import schema as s


def test_run_over_serve_returns_the_result_and_names_the_session_team(world: World, mock: MockModel, serve) -> None:
    world.write("agent-team.toml", todo_team(model_defaults(mock)))
    script_todo(mock)
    server = serve()
    team = Team.connect(server.url, server.token, session_id="s1")

    result = team.run_sync("Build a TODO app")

    assert (result.final_answer, result.success, str(result)) == (TODO_ANSWER, True, TODO_ANSWER)
    assert result.worker_outputs == {"builder-1": "API written (#1)"}
    assert result.rounds >= 2 and result.usage is not None and result.usage.total.requests >= 3
    assert [(t.title, t.status) for t in result.tasks] == [("Write the API (#1)", "completed")]
    # The session's team: `<served team>-s<hash>`, from the x-agent-team-team header.
    assert team.team is not None and re.fullmatch(r"todo-s[0-9a-f]+", team.team), team.team
    assert result.team == team.team
    # The board over REST.
    assert [(t.id, t.owner, t.result) for t in team.tasks_sync()] == [(1, "builder-1", "API written (#1)")]
    assert [t.title for t in team.tasks_sync(status="pending")] == []
    assert "Build a TODO app" in said(mock.requests("leader")[0])


def test_run_streaming_over_serve_yields_typed_envelopes_and_calls_on_envelope(
    world: World, mock: MockModel, serve
) -> None:
    world.write("agent-team.toml", todo_team(model_defaults(mock)) + '\n[variables]\nthing = "file"\n')
    script_todo(mock)
    server = serve()
    team = Team.connect(server.url, server.token)
    seen: List[TeamStreamEnvelope] = []
    got: List[TeamStreamEnvelope] = []

    async def main() -> None:
        async for env in team.run_streaming(
            message="Build a {{thing}}", variables={"thing": "TODO app"}, on_envelope=seen.append
        ):
            got.append(env)

    asyncio.run(main())
    assert got == seen and len(got) > 10
    assert [e.seq for e in got] == list(range(1, len(got) + 1))
    assert {e.team_id for e in got} == {team.team}
    assert isinstance(got[0].event, s.RunStartedEvent) and got[0].event.goal == "Build a TODO app"
    assert isinstance(got[-1].event, s.RunFinishedEvent) and got[-1].event.answer == TODO_ANSWER
    roles = {(e.agent_id, e.role_name) for e in got}
    assert ("leader", "leader") in roles and ("builder-1", "worker") in roles
    assert team.last_result is not None and team.last_result.final_answer == TODO_ANSWER


def test_a_coordinator_over_serve_streams_lauren_events(world: World, mock: MockModel, serve) -> None:
    world.write("agent-team.toml", story_team(model_defaults(mock)))
    script_story(mock)
    server = serve()
    team = Team.connect(server.url, server.token)
    events: List[TeamEvent] = []

    async def main() -> None:
        async for ev in team.run_stream("Write a one-line story"):
            events.append(ev)

    asyncio.run(main())
    assert summarize(events) == STORY_EVENTS
    r = team.last_result
    assert r is not None and (r.strategy, r.rounds, r.success) == ("coordinator", 3, True)
    assert r.worker_outputs == {"b1": "Once upon a time.", "b2": "Looks good."}


def test_board_helpers_over_rest_permissions_approve_send_deny(world: World, mock: MockModel, serve) -> None:
    world.write(
        "agent-team.toml",
        'name = "board"\n'
        + model_defaults(mock)
        + '\n[roles.leader]\ntools = ["bash"]\npermissions = { bash = "ask" }\n',
    )
    mock.script(
        "leader",
        [
            call("bash", {"command": "echo one > one.txt"}),
            call("bash", {"command": "echo two > two.txt"}),
            until(["hello over rest"], call("finish_team", {"answer": "decided", "force": True}), "Waiting."),
        ],
    )
    server = serve()
    team = Team.connect(server.url, server.token)
    decided = []

    async def main() -> None:
        async for env in team.run_streaming("decide"):
            if isinstance(env.event, s.PermissionRequestedEvent):
                req = env.event.request
                assert [p.id for p in await team.permissions()] == [req.id]
                if "one" in req.input:
                    decided.append(await team.approve(req.id))
                else:
                    decided.append(await team.deny(req.id, reason="not two"))
                    sent = await team.send("leader", "hello over rest")
                    assert sent.recipients == ["leader"]

    asyncio.run(main())
    assert team.last_result is not None and team.last_result.final_answer == "decided"
    assert [(p.input, p.status) for p in decided] == [
        ("echo one > one.txt", "allowed"),
        ("echo two > two.txt", "denied"),
    ]
    assert [p.status for p in asyncio.run(team.permissions(all=True))] == ["allowed", "denied"]
    assert "not two" in json.dumps(mock.requests("leader"))


def test_what_serve_cannot_take_is_refused_clearly(world: World, mock: MockModel, serve) -> None:
    world.write("agent-team.toml", todo_team(model_defaults(mock)))
    server = serve()
    team = Team.connect(server.url, server.token)
    with pytest.raises(ValueError, match="message"):
        team.run_sync()
    # The board needs a team: none before a run.
    with pytest.raises(ValueError, match="which team"):
        team.tasks_sync()
    # A wrong token: 401 with the protocol's code.
    bad = Team.connect(server.url, "wrong-token-0123456789", team="todo")
    with pytest.raises(TeamError) as info:
        bad.tasks_sync()
    assert (info.value.status, info.value.code) == (401, "unauthorized")
    # An unknown placeholder: the server's 400 before anything streams.
    with pytest.raises(TeamError) as info:
        team.run_sync("do {{nope}}")
    assert (info.value.status, info.value.code) == (400, "bad_request")
    # A team that does not exist.
    with pytest.raises(TeamError) as info:
        Team.connect(server.url, server.token, team="nobody").tasks_sync()
    assert (info.value.status, info.value.code) == (404, "not_found")


def test_secrets_over_serve_reach_the_runs_commands_only(world: World, mock: MockModel, serve) -> None:
    """NexAU's runtime_vars and sandbox_env over `serve`: in the POST /team/stream body, to the
    commands of that run; the model and the stream never see the value."""
    secret = "sekrit-serve-7c2e"
    world.write(
        "agent-team.toml",
        'name = "vars"\n'
        + model_defaults(mock)
        + '\n[roles.leader]\ntools = ["bash"]\npermissions = { bash = "allow" }\n',
    )
    mock.script(
        "leader",
        [
            call("bash", {"command": 'printf %s "$API" > m.txt && printf %s "$ENVV" > e.txt && echo api=$API'}),
            call("finish_team", {"answer": "checked", "force": True}),
        ],
    )
    server = serve()
    team = Team.connect(server.url, server.token)
    streamed = [
        json.dumps(e.to_dict())
        for e in team.run_streaming_sync(
            "check it", variables=ContextValue(runtime_vars={"API": secret}, sandbox_env={"ENVV": "box"})
        )
    ]
    result = team.last_result
    assert result is not None and result.success and result.final_answer == "checked"
    assert (world.dir / "m.txt").read_text() == secret
    assert (world.dir / "e.txt").read_text() == "box"
    everything = json.dumps(mock.requests("leader"))
    assert "api=[secret API]" in everything
    assert secret not in everything and secret not in "".join(streamed)
