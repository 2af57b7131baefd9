"""`Team(file=...)`: the package driving `agent-team run --stream` as a subprocess, against
the real binary and the mock model."""

from __future__ import annotations

import asyncio
import json
from typing import List

import pytest
from conftest import World, model_defaults, wait_for
from mockmodel import MockModel, call, said, text, until
from scenarios import TODO_ANSWER, script_todo, todo_team

from agent_team import (
    ContextValue,
    Task,
    Team,
    TeamError,
    TeamResult,
    TeamStreamEnvelope,
)
from agent_team import schema as s


def make_team(world: World, **kw) -> Team:
    return Team(file="agent-team.toml", cwd=world.dir, binary=world.binary, env=world.env, timeout=80, **kw)


def test_run_returns_the_leaders_answer_with_outputs_rounds_tasks_and_usage(world: World, mock: MockModel) -> None:
    world.write("agent-team.toml", todo_team(model_defaults(mock)))
    script_todo(mock)
    team = make_team(world)

    result = asyncio.run(team.run("Build a TODO app"))

    assert isinstance(result, TeamResult)
    assert result.final_answer == TODO_ANSWER and str(result) == TODO_ANSWER
    assert result.success is True
    assert result.team == "todo" and result.strategy == "leader"
    assert result.worker_outputs == {"builder-1": "API written (#1)"}
    assert result.reports == {"builder-1": "builder-1 finished task 1"}
    assert result.rounds >= 2, "the leader's model turns"
    assert [(t.id, t.title, t.status, t.owner, t.result) for t in result.tasks] == [
        (1, "Write the API (#1)", "completed", "builder-1", "API written (#1)")
    ]
    assert all(isinstance(t, Task) for t in result.tasks)
    assert result.usage is not None and result.usage.total.requests >= 3
    assert {line.name for line in result.usage.agents} == {"leader", "builder-1"}
    assert team.last_result is result
    # The goal reached the leader's model.
    assert "Build a TODO app" in said(mock.requests("leader")[0])


def test_run_streaming_yields_every_envelope_in_order_and_calls_on_envelope(world: World, mock: MockModel) -> None:
    world.write("agent-team.toml", todo_team(model_defaults(mock)))
    script_todo(mock)
    team = make_team(world)
    seen: List[TeamStreamEnvelope] = []
    got: List[TeamStreamEnvelope] = []

    async def main() -> None:
        async for env in team.run_streaming(message="Build a TODO app", on_envelope=seen.append):
            # on_envelope has been called with this very envelope already.
            assert seen[-1] is env
            got.append(env)

    asyncio.run(main())

    assert got == seen and len(got) > 10
    assert [e.seq for e in got] == list(range(1, len(got) + 1)), "the whole log, without gaps"
    assert {e.team_id for e in got} == {"todo"}
    assert all(e.ts and e.role_name and e.agent_id for e in got)
    first, last = got[0], got[-1]
    assert isinstance(first.event, s.RunStartedEvent) and first.event.goal == "Build a TODO app"
    assert isinstance(last.event, s.RunFinishedEvent) and last.is_final()
    assert (last.event.answer, last.event.success) == (TODO_ANSWER, True)
    # Each agent's own events, typed, with its role.
    calls = [(e.agent_id, e.role_name, e.event.tool_name) for e in got if isinstance(e.event, s.ToolCallStartEvent)]
    assert ("leader", "leader", "create_task") in calls
    assert ("builder-1", "worker", "update_task_status") in calls
    texts = "".join(
        e.event.delta for e in got if isinstance(e.event, s.TextMessageContentEvent) and e.agent_id == "leader"
    )
    assert texts.startswith("Let me plan this..."), texts
    sent = [e.event for e in got if isinstance(e.event, s.MessageSentEvent) and e.event.kind == "text"]
    assert [(m.from_, m.to) for m in sent] == [("builder-1", "leader")], "`from` is `from_` in Python"
    done = [e.event.task for e in got if isinstance(e.event, s.TaskUpdatedEvent) and e.event.task.status == "completed"]
    assert [t.result for t in done] == ["API written (#1)"]
    # The envelope as NexAU prints it, and back to its JSON.
    assert f"[{first.role_name}:{first.agent_id}]" == "[operator:operator]"
    assert first.to_dict()["event"] == {"type": "RUN_STARTED", "goal": "Build a TODO app"}
    # A leader team has no strategy events.
    assert all(e.team_event is None for e in got)
    assert team.last_result is not None and team.last_result.final_answer == TODO_ANSWER


def test_variables_fill_placeholders_and_secrets_reach_commands_only(world: World, mock: MockModel) -> None:
    secret = "sekrit-py-4b1d"
    world.write(
        "agent-team.toml",
        'name = "vars"\n'
        + model_defaults(mock)
        + '\n[roles.leader]\ntools = ["bash"]\npermissions = { bash = "allow" }\n'
        'system_prompt = "I am {{agent}}; the fruit is {{fruit}}."\n',
    )
    mock.script(
        "leader",
        [
            call("bash", {"command": 'printf %s "$API" > m.txt && printf %s "$ENVV" > e.txt && echo api=$API'}),
            call("finish_team", {"answer": "checked", "force": True}),
        ],
    )
    team = make_team(world)
    streamed: List[str] = []

    async def main() -> TeamResult:
        async for _env in team.run_streaming(
            "judge the {{fruit}}",
            variables=ContextValue(
                template={"fruit": "pear"}, runtime_vars={"API": secret}, sandbox_env={"ENVV": "box"}
            ),
            on_envelope=lambda e: streamed.append(json.dumps(e.to_dict())),
        ):
            pass
        assert team.last_result is not None
        return team.last_result

    result = asyncio.run(main())
    assert result.success and result.final_answer == "checked"
    first = json.dumps(mock.requests("leader")[0])
    assert "I am leader; the fruit is pear." in first and "judge the pear" in first
    # The command got the secret; the model and the stream never saw it.
    assert (world.dir / "m.txt").read_text() == secret
    assert (world.dir / "e.txt").read_text() == "box"
    everything = json.dumps(mock.requests("leader"))
    assert "api=[secret API]" in everything
    assert secret not in everything and secret not in "".join(streamed)

    # A plain dict and secrets=... are the same.
    mock.script(
        "leader",
        [
            call("bash", {"command": 'printf %s "$API" > m2.txt'}),
            call("finish_team", {"answer": "again", "force": True}),
        ],
    )
    again = asyncio.run(team.run("judge the {{fruit}}", variables={"fruit": "fig"}, secrets={"API": "second"}))
    assert again.final_answer == "again"
    assert (world.dir / "m2.txt").read_text() == "second"
    assert "judge the fig" in json.dumps(mock.requests("leader")[2])


def test_board_helpers_during_a_run_tasks_permissions_approve_send(world: World, mock: MockModel) -> None:
    world.write(
        "agent-team.toml",
        'name = "board"\n'
        + model_defaults(mock)
        + '\n[roles.leader]\ntools = ["bash"]\npermissions = { bash = "ask" }\n',
    )
    mock.script(
        "leader",
        [
            call("create_task", {"title": "publish the report"}),
            call("bash", {"command": "echo approved > approved.txt"}),
            until(["hello from python"], call("finish_team", {"answer": "published", "force": True}), "Waiting."),
        ],
    )
    team = make_team(world)
    decided: List[object] = []

    async def main() -> TeamResult:
        async for env in team.run_streaming("publish"):
            if isinstance(env.event, s.PermissionRequestedEvent):
                req = env.event.request
                pending = await team.permissions()
                assert [(p.id, p.agent, p.tool, p.status) for p in pending] == [(req.id, "leader", "bash", "pending")]
                tasks = await team.tasks()
                assert [(t.title, t.status) for t in tasks] == [("publish the report", "pending")]
                assert [t.title for t in await team.tasks(status="completed")] == []
                decided.append(await team.approve(req.id))
                # The leader finishes once it reads this.
                sent = await team.send("leader", "hello from python", summary="hi")
                assert (sent.recipients, len(sent.ids)) == (["leader"], 1)
        assert team.last_result is not None
        return team.last_result

    result = asyncio.run(main())
    assert result.final_answer == "published"
    assert (world.dir / "approved.txt").read_text().strip() == "approved"
    [req] = decided
    assert isinstance(req, s.PermRequest) and req.status == "allowed" and req.decision is not None
    assert "hello from python" in json.dumps(mock.requests("leader")[-1])


def test_a_run_that_stops_without_an_answer_raises_team_error(world: World) -> None:
    world.write("agent-team.toml", 'name = "bad"\n[[teammates]]\nname = "b1"\nrole = "worker"\n')
    team = make_team(world)
    with pytest.raises(TeamError) as info:
        asyncio.run(team.run("do {{nope}}"))
    assert info.value.code == "bad_request"
    assert "unknown variable {{nope}}" in info.value.message
    assert info.value.exit_code == 1


def test_leaving_the_stream_early_stops_the_run_and_its_team(world: World, mock: MockModel) -> None:
    world.write("agent-team.toml", todo_team(model_defaults(mock)))
    # The leader never finishes: only leaving the loop ends the run.
    mock.script("leader", [text("Thinking.")] * 50)
    team = make_team(world)

    async def main() -> None:
        async for env in team.run_streaming("Build a TODO app"):
            if isinstance(env.event, s.AgentStatusEvent) and env.agent_id == "leader" and env.event.status == "idle":
                break

    asyncio.run(main())
    assert team.last_result is None

    def stopped() -> bool:
        [t] = json.loads(world.cli("teams", "list", "--json").stdout)
        return t["name"] == "todo" and t["running"] is False and t["run"] != "running"

    # `run` got SIGTERM, as from Ctrl-C, and stopped the team it started.
    wait_for("the team to stop after the stream was left", stopped)


def test_sync_wrappers_run_without_an_event_loop(world: World) -> None:
    # An exec team: no model at all; the leader hands out the file's tasks.
    world.write(
        "agent-team.toml",
        'name = "sync"\n[[teammates]]\nname = "b1"\nrole = "worker"\n\n'
        '[[tasks]]\nkey = "one"\ntitle = "One"\nrun = "echo one"\n\n'
        '[[tasks]]\ntitle = "Two"\nrun = "echo two"\nafter = ["one"]\n',
    )
    team = make_team(world)
    result = team.run_sync("count to two")
    assert result.success and [t.status for t in result.tasks] == ["completed", "completed"]
    assert result.worker_outputs == {"b1": "exit 0\ntwo"}
    envs = list(team.run_streaming_sync("count again"))
    assert isinstance(envs[0].event, s.RunStartedEvent) and envs[0].event.goal == "count again"
    assert isinstance(envs[-1].event, s.RunFinishedEvent)
    assert team.last_result is not None and team.last_result.success
    # Each run does the team file's tasks again (a second run that did nothing would be no
    # success): the board keeps both runs' tasks.
    assert [t.title for t in team.tasks_sync()] == ["One", "Two", "One", "Two"]
    assert all(t.status == "completed" for t in team.tasks_sync())
    assert team.permissions_sync(all=True) == []

    # Inside a running event loop (a notebook) the sync wrappers still work.
    async def inside() -> TeamResult:
        return team.run_sync("from inside a loop")

    assert asyncio.run(inside()).success
