"""NexAU's and lauren-ai's quick starts, as python/README.md rewrites them for this package,
run word for word against the real binary: only the team file's `[defaults]` (the model) is
pointed at the mock model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEADLINE, PYTHON_DIR, World, clean_environ, model_defaults
from mockmodel import MockModel, call, said, text, until
from scenarios import TODO_ANSWER, script_todo

README = (PYTHON_DIR / "README.md").read_text(encoding="utf-8")


def block(name: str) -> str:
    """The fenced code block right after `<!-- test: NAME -->` in python/README.md."""
    m = re.search(r"<!-- test: " + re.escape(name) + r" -->\n```[a-z]*\n(.*?)\n```", README, re.S)
    assert m, f"no block {name} in python/README.md"
    return m.group(1) + "\n"


def on_the_mock(team_file: str, mock: MockModel) -> str:
    """The README's team file with its `[defaults]` table replaced by the mock's."""
    out, n = re.subn(r"\[defaults\]\n(?:[a-z_]+ = .*\n)+", model_defaults(mock), team_file)
    assert n == 1, team_file
    return out


def run_snippet(world: World, code: str) -> str:
    """Runs the snippet as a script in the world's directory with this interpreter and the
    package under test; returns its stdout."""
    world.write("quickstart.py", code)
    env = {**clean_environ(), **world.env, "AGENT_TEAM_BIN": world.binary}
    import agent_team

    # The package under test: the installed one, or the source tree.
    env["PYTHONPATH"] = str(Path(agent_team.__file__).resolve().parent.parent)
    p = subprocess.run(
        [sys.executable, "quickstart.py"],
        cwd=str(world.dir),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=2 * DEADLINE,
    )
    assert p.returncode == 0, f"the quick start failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p.stdout


def test_nexau_quickstart(world: World, mock: MockModel) -> None:
    world.write("agent-team.toml", on_the_mock(block("nexau-team-file"), mock))
    # Two runs of the team: `run()`, then `run_streaming()`.
    script_todo(mock, task_id=1)
    script_todo(mock, task_id=2, answer="Built again.")
    out = run_snippet(world, block("nexau-quickstart")).splitlines()
    assert out[0] == TODO_ANSWER, out
    assert out[1].startswith("[operator:operator] RunStartedEvent(goal='Build a TODO app'"), out[1]
    assert any(line.startswith("[builder:builder-1] ToolCallStartEvent(") for line in out), out
    assert any(line.startswith("[leader:leader] TextMessageContentEvent(delta=") for line in out)
    assert out[-1].startswith("[leader:leader] RunFinishedEvent(answer='Built again.', success=True"), out[-1]


@pytest.mark.skipif(sys.version_info < (3, 10), reason="lauren's quick start uses `match`")
def test_lauren_quickstart(world: World, mock: MockModel) -> None:
    world.write("content_team.toml", on_the_mock(block("lauren-team-file"), mock))
    # run(): the researcher, then the writer, then DONE.
    mock.script(
        "leader",
        [
            text("ROUTE: researcher\nFind out what asyncio is."),
            text("ROUTE: writer\nWrite the guide from the research."),
            text("DONE: asyncio runs coroutines on one event loop: start with asyncio.run(main())."),
            # run_stream(): the researcher once, then DONE.
            text("ROUTE: researcher\nLook at the data."),
            text("DONE: The data is consistent."),
        ],
    )
    mock.script(
        "researcher",
        [
            until(
                ["Find out what asyncio is."], text("asyncio is Python's event loop library."), "Nothing for me yet."
            ),
            until(["Look at the data."], text("Every row checks out."), "Nothing for me yet."),
        ],
    )
    mock.script(
        "writer",
        [until(["Write the guide from the research."], text("Use asyncio.run(main())."), "Nothing for me yet.")],
    )
    out = run_snippet(world, block("lauren-quickstart")).splitlines()
    assert out == [
        "asyncio runs coroutines on one event loop: start with asyncio.run(main()).",
        "{'researcher': \"asyncio is Python's event loop library.\", 'writer': 'Use asyncio.run(main()).'}",
        "3",
        "Coordinator: route",
        "Starting researcher (round 1)",
        "Done: Every row checks out.",
        "Coordinator: done",
        "Final: The data is consistent.",
    ]
    # The workers' system prompts are the roles' own.
    assert "You are a web researcher." in str(mock.requests("researcher")[0])
    assert "You are a concise writer." in str(mock.requests("writer")[0])


#: NexAU's runtime-variables team: the leader's prompt uses the template's values, and its
#: `bash` shows what the commands' environment holds.
NEXAU_VARS_TEAM = (
    'name = "todo"\n'
    "{defaults}\n"
    "[roles.leader]\n"
    'tools = ["bash"]\n'
    'permissions = {{ bash = "allow" }}\n'
    'system_prompt = "Today is {{{{date}}}}; you work for {{{{username}}}}."\n'
)


def test_nexau_context_value_as_written(world: World, mock: MockModel) -> None:
    """NexAU's `ContextValue(template={"date": ...}, runtime_vars=..., sandbox_env=...)` runs:
    `date` was refused as a built-in, `sandbox_env` was masked as a secret, and `run()` gave no
    string."""
    world.write("agent-team.toml", NEXAU_VARS_TEAM.format(defaults=model_defaults(mock)))
    mock.script(
        "leader",
        [
            call("bash", {"command": 'echo "ws=$WORKSPACE key=$api_key"'}),
            call("finish_team", {"answer": "Built for alice on 2026-03-04."}),
        ],
    )
    out = run_snippet(world, block("nexau-variables")).splitlines()
    assert out == ["Built for alice on 2026-03-04."], out
    first = said(mock.requests("leader")[0])
    assert "Today is 2026-03-04; you work for alice." in first, first
    everything = json.dumps(mock.requests("leader"))
    # sandbox_env is environment, shown as it is; runtime_vars stay secret.
    assert "ws=/tmp/project key=[secret api_key]" in everything, everything
    assert "[secret WORKSPACE]" not in everything
    assert "sk-..." not in everything


@pytest.mark.skipif(sys.version_info < (3, 10), reason="lauren's quick start uses `match`")
def test_lauren_content_team_name_and_team_memory_as_written(world: World, mock: MockModel) -> None:
    """lauren's `name="content_team"` is a team name as written, and its `TeamMemory` example
    reads and writes that team's memory, the one its agents share."""
    world.write("agent-team.toml", on_the_mock(block("lauren-team-file"), mock))
    out = run_snippet(world, block("lauren-memory")).splitlines()
    assert out == ["{'user_id': 42}", "{'context': {'user_id': 42}}"], out
    assert world.teams() == ["content_team"]
    # The team's own memory, as its agents and the CLI see it.
    got = world.cli("memory", "get", "context", "--json").stdout
    assert json.loads(got)["value"] == {"user_id": 42}
