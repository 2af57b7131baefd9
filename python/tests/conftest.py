"""Fixtures: the real binary, the mock model server, a private world per test (temp
`AGENT_TEAM_HOME` and `AGENT_TEAM_RUNTIME_DIR`) and `agent-team serve` on a free loopback port.
Whatever a test starts is stopped when it ends, pass or fail."""

from __future__ import annotations

import os
import queue
import re
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent
WORKSPACE = PYTHON_DIR.parent
sys.path.insert(0, str(HERE))

try:  # the installed package (the CI venv); else the source tree
    import agent_team  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(PYTHON_DIR))

import mockmodel  # noqa: E402

#: How long any one wait of a test may take.
DEADLINE = 90.0


def wait_for(what: str, cond: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Polls `cond` until it holds, or fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


@pytest.fixture(scope="session")
def binary() -> str:
    """The agent-team binary: `$AGENT_TEAM_BIN`, else the workspace's debug build."""
    path = os.environ.get("AGENT_TEAM_BIN") or str(WORKSPACE / "target" / "debug" / "agent-team")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `cargo build --bins` first (or `cargo xtask ci`)")
    return path


@pytest.fixture(scope="session")
def mock_binary() -> Path:
    return mockmodel.build(WORKSPACE)


@pytest.fixture
def mock(mock_binary: Path) -> Iterator[mockmodel.MockModel]:
    m = mockmodel.MockModel(mock_binary)
    try:
        yield m
    finally:
        m.close()


@dataclass
class World:
    """One test's private directories and environment."""

    dir: Path
    binary: str
    env: Dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.dir / "home"

    def write(self, name: str, text: str) -> Path:
        p = self.dir / name
        p.write_text(text, encoding="utf-8")
        return p

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**clean_environ(), **self.env}
        p = subprocess.run(
            [self.binary, *args],
            cwd=str(self.dir),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
        if check and p.returncode != 0:
            raise AssertionError(f"agent-team {args} failed ({p.returncode}): {p.stderr}")
        return p

    def teams(self) -> List[str]:
        d = self.home / "teams"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def clean_environ() -> Dict[str, str]:
    """This process's environment without any agent-team setting or tmux of the caller."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENT_TEAM_") and k not in ("TMUX", "TMUX_PANE")}


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of the caller's agent-team settings (a team, a home, a token) leaks in."""
    for k in list(os.environ):
        if k.startswith("AGENT_TEAM_") or k in ("TMUX", "TMUX_PANE"):
            monkeypatch.delenv(k, raising=False)


@pytest.fixture
def world(tmp_path: Path, binary: str) -> Iterator[World]:
    w = World(tmp_path, binary)
    (tmp_path / "home").mkdir()
    (tmp_path / "run").mkdir(mode=0o700)
    w.env = {
        "AGENT_TEAM_HOME": str(tmp_path / "home"),
        "AGENT_TEAM_RUNTIME_DIR": str(tmp_path / "run"),
        "MOCK_API_KEY": "test-key",
    }
    try:
        yield w
    finally:
        # Stop every team this test made, whatever it left running (a daemon started by a
        # board command after its run, a session team of `serve`).
        for team in w.teams():
            w.cli("--team", team, "down", check=False)


def model_defaults(mock: mockmodel.MockModel) -> str:
    """The `[defaults]` of a team whose agents all talk to the mock."""
    return (
        "[defaults]\n"
        'provider = "openai"\n'
        'model = "mock-1"\n'
        f'base_url = "{mock.base_url}"\n'
        'api_key_env = "MOCK_API_KEY"\n'
    )


@dataclass
class Server:
    """A running `agent-team serve`."""

    url: str
    token: str
    proc: subprocess.Popen
    output: "queue.Queue[str]"
    pump: threading.Thread


@pytest.fixture
def serve(world: World) -> Iterator[Callable[..., Server]]:
    """Starts `agent-team serve -f FILE --listen 127.0.0.1:0` in the world with a random token;
    stops it after the test (its teams are stopped by `world`)."""
    started: List[Server] = []

    def start(file: Optional[str] = "agent-team.toml", *args: str) -> Server:
        token = secrets.token_hex(16)
        env = {**clean_environ(), **world.env, "AGENT_TEAM_API_TOKEN": token}
        cmd = [world.binary, "serve", "--listen", "127.0.0.1:0", *args]
        if file is not None:
            cmd[2:2] = ["-f", file]
        proc = subprocess.Popen(
            cmd,
            cwd=str(world.dir),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: "queue.Queue[str]" = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put("")

        pumping = threading.Thread(target=pump, daemon=True)
        pumping.start()
        seen: List[str] = []
        deadline = time.monotonic() + DEADLINE
        url = None
        while url is None:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                pytest.fail(f"agent-team serve did not start: {''.join(seen)}")
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line == "":
                pytest.fail(f"agent-team serve exited: {''.join(seen)}")
            seen.append(line)
            m = re.search(r"serving (http://\S+)", line)
            if m:
                url = m.group(1)
        server = Server(url, token, proc, lines, pumping)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for s in started:
            if s.proc.poll() is None:
                s.proc.terminate()
                try:
                    s.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    s.proc.kill()
                    s.proc.wait()
            s.pump.join(timeout=10)
            if s.proc.stdout and not s.pump.is_alive():
                s.proc.stdout.close()
