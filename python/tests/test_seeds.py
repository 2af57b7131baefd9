"""The seeds' edges a new user met first (issue 61): NexAU's `run()` returning a string and
its `ContextValue` over `serve`, the default timeout of a run, lauren's `TeamMemory` beside a
team's agents. The quick starts themselves are in test_quickstarts.py."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import pickle
import stat
import sys
import time
from pathlib import Path

import pytest
from conftest import World, model_defaults
from mockmodel import MockModel, call, said, text
from scenarios import TODO_ANSWER, script_todo, todo_team

from agent_team import DEFAULT_TIMEOUT, ContextValue, Team, TeamError, TeamMemory, TeamResult


def make_team(world: World, **kw) -> Team:
    return Team(file="agent-team.toml", cwd=world.dir, binary=world.binary, env=world.env, **kw)


def test_run_returns_the_answer_as_a_str_with_the_rest_as_attributes(world: World, mock: MockModel) -> None:
    """NexAU: "run() ... returns the leader's final response as a string"."""
    world.write("agent-team.toml", todo_team(model_defaults(mock)))
    script_todo(mock)
    result = asyncio.run(make_team(world, timeout=80).run(message="Build a TODO app"))
    assert isinstance(result, str) and isinstance(result, TeamResult)
    assert result == TODO_ANSWER and result.upper() == TODO_ANSWER.upper()
    assert json.dumps({"answer": result}) == json.dumps({"answer": TODO_ANSWER})
    # lauren's and agent-team's fields, and the binary's name for the answer.
    assert result.final_answer == result.answer == TODO_ANSWER
    assert type(result.final_answer) is str
    assert result.success is True and result.strategy == "leader" and result.team == "todo"
    assert result.worker_outputs == {"builder-1": "API written (#1)"}
    assert result.rounds >= 2 and result.seconds > 0 and len(result.tasks) == 1
    assert result.usage is not None
    # Copies and pickles keep the attributes.
    for again in (copy.deepcopy(result), pickle.loads(pickle.dumps(result))):
        assert again == TODO_ANSWER and again.worker_outputs == result.worker_outputs
        assert again.success is True and again.rounds == result.rounds
    assert repr(result).startswith(f"TeamResult(final_answer={TODO_ANSWER!r}, success=True,")


def fake_binary(tmp: Path) -> Path:
    """A stand-in for agent-team that writes its arguments to `args.json` and exits 2 with
    nothing on stdout (so the run raises)."""
    p = tmp / "fake-agent-team"
    p.write_text(
        f"#!{sys.executable}\n"
        "import json, sys, pathlib\n"
        "pathlib.Path(__file__).with_name('args.json').write_text(json.dumps(sys.argv[1:]))\n"
        "sys.exit(2)\n"
    )
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def args_of_a_run(tmp_path: Path, team_kw: dict, run_kw: dict) -> list:
    team = Team(file="agent-team.toml", cwd=tmp_path, binary=str(fake_binary(tmp_path)), **team_kw)
    with pytest.raises(TeamError):
        team.run_sync("go", **run_kw)
    return json.loads((tmp_path / "args.json").read_text())


def test_a_run_has_a_default_timeout_of_30_minutes_unless_told_otherwise(tmp_path: Path) -> None:
    assert DEFAULT_TIMEOUT == 1800
    assert Team(file="x.toml").timeout == DEFAULT_TIMEOUT
    assert Team.connect("http://127.0.0.1:1", "t").timeout == DEFAULT_TIMEOUT
    assert Team(file="x.toml", timeout=None).timeout is None
    args = args_of_a_run(tmp_path, {}, {})
    assert args[args.index("--timeout") + 1] == "1800", args
    assert "--timeout" not in args_of_a_run(tmp_path, {"timeout": None}, {})
    assert "--timeout" not in args_of_a_run(tmp_path, {}, {"timeout": None})
    args = args_of_a_run(tmp_path, {"timeout": None}, {"timeout": 5})
    assert args[args.index("--timeout") + 1] == "5", args
    # sandbox_env goes as --env (shown, not masked), runtime_vars as --secret (value never on the line).
    args = args_of_a_run(
        tmp_path, {}, {"variables": ContextValue(runtime_vars={"K": "s3cr3t"}, sandbox_env={"WS": "/p"})}
    )
    assert args[args.index("--env") + 1] == "WS=/p" and args[args.index("--secret") + 1] == "K"
    assert "s3cr3t" not in " ".join(args)


def test_a_leader_that_is_never_woken_times_out_instead_of_waiting_forever(world: World, mock: MockModel) -> None:
    """The leader answers with text and waits for messages that never come: the run's limit
    stops the team and raises a `timeout` error."""
    world.write("agent-team.toml", 'name = "idle"\n' + model_defaults(mock))
    mock.script("leader", [text("I will wait for my teammates.")])
    team = make_team(world, timeout=3)
    started = time.monotonic()
    with pytest.raises(TeamError) as info:
        team.run_sync("Build a TODO app")
    assert info.value.code == "timeout", info.value
    assert time.monotonic() - started < 60


def test_nexau_context_value_over_serve_shows_sandbox_env_and_masks_runtime_vars(
    world: World, mock: MockModel, serve
) -> None:
    world.write(
        "agent-team.toml",
        'name = "vars"\n'
        + model_defaults(mock)
        + '\n[roles.leader]\ntools = ["bash"]\npermissions = { bash = "allow" }\n'
        'system_prompt = "Today is {{date}}; you work for {{username}}."\n',
    )
    mock.script(
        "leader",
        [
            call("bash", {"command": 'echo "ws=$WORKSPACE key=$api_key"'}),
            call("finish_team", {"answer": "done", "force": True}),
        ],
    )
    server = serve()
    team = Team.connect(server.url, server.token)
    variables = ContextValue(
        template={"date": "2026-03-04", "username": "alice"},
        runtime_vars={"api_key": "sk-..."},
        sandbox_env={"WORKSPACE": "/tmp/project"},
    )
    result = team.run_sync(message="Build a TODO app", variables=variables)
    assert result == "done" and isinstance(result, str)
    assert "Today is 2026-03-04; you work for alice." in said(mock.requests("leader")[0])
    everything = json.dumps(mock.requests("leader"))
    assert "ws=/tmp/project key=[secret api_key]" in everything, everything
    assert "sk-..." not in everything


def test_team_memory_is_the_memory_its_agents_share(world: World, mock: MockModel) -> None:
    """`TeamMemory` (lauren's API) writes what the team's agents read with `memory_get`, and
    reads what they wrote; a team that never ran has none."""
    world.write("agent-team.toml", 'name = "mem"\n' + model_defaults(mock))
    team = make_team(world, timeout=80)
    memory = team.memory
    assert memory.get_sync("context") is None and memory.get_sync("context", 7) == 7
    assert memory.get_all_sync() == {}
    memory.set_sync("context", {"user_id": 42})
    memory.set_sync("note", "ship it")
    mock.script(
        "leader",
        [
            call("memory_get", {"key": "context"}),
            call("memory_set", {"key": "outputs/leader", "value": {"seen": 42}}),
            call("finish_team", {"answer": "remembered", "force": True}),
        ],
    )
    assert team.run_sync("Use the memory") == "remembered"
    # The leader's memory_get gave it what Python stored.
    got = json.dumps(mock.requests("leader")[1])
    assert "user_id" in got and "42" in got, got

    async def read() -> tuple:
        m = TeamMemory(file="agent-team.toml", cwd=world.dir, env=world.env, binary=world.binary)
        return await m.get("outputs/leader"), await m.get_all(), await m.keys("outputs/")

    seen, everything, keys = asyncio.run(read())
    assert seen == {"seen": 42}
    assert everything == {"context": {"user_id": 42}, "note": "ship it", "outputs/leader": {"seen": 42}}
    assert keys == ["outputs/leader"]
    assert memory.delete_sync("note") is True and memory.delete_sync("note") is False
    assert memory.keys_sync() == ["context", "outputs/leader"]
    with pytest.raises(TeamError):
        TeamMemory(Team.connect("http://127.0.0.1:1", "t"))
    assert os.environ.get("AGENT_TEAM_HOME") is None
