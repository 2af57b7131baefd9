"""NexAU's and lauren-ai's quick starts, as python/README.md rewrites them for this package,
run word for word against the real binary: only the team file's `[defaults]` (the model) is
pointed at the mock model. Each quick start runs twice: with this interpreter and the package
under test, and from a fresh venv where only the wheel is installed (`$AGENT_TEAM_WHEEL_PYTHON`,
set by `cargo xtask ci`), with no `agent-team` on `PATH`: the binaries are the wheel's."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

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


#: Where the quick starts run: "here" (this interpreter, the package under test, the binary
#: under test as `$AGENT_TEAM_BIN`) or "wheel" (the fresh venv of `$AGENT_TEAM_WHEEL_PYTHON`).
WHERE = ["here", "wheel"]
#: Read now: every test runs without the caller's `AGENT_TEAM_*` settings (conftest).
WHEEL_PYTHON = os.environ.get("AGENT_TEAM_WHEEL_PYTHON")


def without_agent_team(path: str) -> str:
    """`path` without any directory that holds an `agent-team` (target/debug, ~/.cargo/bin, a
    venv's bin/)."""
    keep = [d for d in path.split(os.pathsep) if d and shutil.which("agent-team", path=d) is None]
    return os.pathsep.join(keep)


def wheel_python(where: str) -> Optional[str]:
    """The fresh venv's interpreter for "wheel" (the test is skipped without one), else None."""
    if where == "here":
        return None
    if not WHEEL_PYTHON:
        pytest.skip("no wheel venv: $AGENT_TEAM_WHEEL_PYTHON is unset (`cargo xtask ci` sets it)")
    return WHEEL_PYTHON


def wheel_env(world: World) -> Dict[str, str]:
    """The environment of a run from the wheel's venv: no `$AGENT_TEAM_BIN`, no `PYTHONPATH`,
    no `agent-team` on `PATH`."""
    env = {**clean_environ(), **world.env}
    env.pop("PYTHONPATH", None)
    env["PATH"] = without_agent_team(env.get("PATH", ""))
    assert shutil.which("agent-team", path=env["PATH"]) is None, env["PATH"]
    return env


def check_the_wheels_binaries(world: World, python: str) -> None:
    """`Team()` in the wheel's venv finds the venv's `agent-team`, with the worker and the
    bridge beside it, and nothing else."""
    bin_dir = Path(python).parent
    probe = "from agent_team import Team\nprint(Team(file='agent-team.toml').binary)\n"
    p = subprocess.run(
        [python, "-c", probe],
        cwd=str(world.dir),
        env=wheel_env(world),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(bin_dir / "agent-team"), p.stdout
    for name in ["agent-team", "agent-team-worker", "agent-team-bridge"]:
        assert os.access(bin_dir / name, os.X_OK), f"{name} is not in {bin_dir}"


def run_snippet(world: World, code: str, python: Optional[str] = None) -> str:
    """Runs the snippet as a script in the world's directory, with this interpreter and the
    package under test, or with `python` (a venv with the wheel installed) and nothing else;
    returns its stdout."""
    world.write("quickstart.py", code)
    if python is None:
        env = {**clean_environ(), **world.env, "AGENT_TEAM_BIN": world.binary}
        import agent_team

        # The package under test: the installed one, or the source tree.
        env["PYTHONPATH"] = str(Path(agent_team.__file__).resolve().parent.parent)
        python = sys.executable
    else:
        check_the_wheels_binaries(world, python)
        env = wheel_env(world)
    p = subprocess.run(
        [python, "quickstart.py"],
        cwd=str(world.dir),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=2 * DEADLINE,
    )
    assert p.returncode == 0, f"the quick start failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p.stdout


@pytest.mark.parametrize("where", WHERE)
def test_nexau_quickstart(world: World, mock: MockModel, where: str) -> None:
    python = wheel_python(where)
    world.write("agent-team.toml", on_the_mock(block("nexau-team-file"), mock))
    # Two runs of the team: `run()`, then `run_streaming()`.
    script_todo(mock, task_id=1)
    script_todo(mock, task_id=2, answer="Built again.")
    out = run_snippet(world, block("nexau-quickstart"), python).splitlines()
    assert out[0] == TODO_ANSWER, out
    assert out[1].startswith("[operator:operator] RunStartedEvent(goal='Build a TODO app'"), out[1]
    assert any(line.startswith("[builder:builder-1] ToolCallStartEvent(") for line in out), out
    assert any(line.startswith("[leader:leader] TextMessageContentEvent(delta=") for line in out)
    assert out[-1].startswith("[leader:leader] RunFinishedEvent(answer='Built again.', success=True"), out[-1]


@pytest.mark.skipif(sys.version_info < (3, 10), reason="lauren's quick start uses `match`")
@pytest.mark.parametrize("where", WHERE)
def test_lauren_quickstart(world: World, mock: MockModel, where: str) -> None:
    python = wheel_python(where)
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
    out = run_snippet(world, block("lauren-quickstart"), python).splitlines()
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
