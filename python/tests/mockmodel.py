"""The scripted mock model server of crates/mockmodel, as a process for the tests.

`agent-team-mockmodel` (crates/mockmodel/src/bin) is the same library the Rust end-to-end tests
use (the real OpenAI wire format, streamed) as a process; `cargo build --bins` builds it beside
`agent-team`. This module drives it over its stdin/stdout: one JSON command a line, one JSON
answer a line.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent


def build(workspace: Path) -> Path:
    """The mock server's binary beside the workspace's others, built when it is missing."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or workspace / "target")
    if not target.is_absolute():
        target = workspace / target
    binary = target / "debug" / "agent-team-mockmodel"
    if not binary.exists():
        cargo = os.environ.get("CARGO", "cargo")
        subprocess.run(
            [cargo, "build", "--quiet", "-p", "agent-team-mockmodel", "--bins"],
            check=True,
            cwd=str(workspace),
        )
    return binary


# Steps, as the server reads them (see crates/mockmodel/src/bin/agent-team-mockmodel.rs).
def text(s: str) -> Dict[str, Any]:
    return {"text": s}


def tools(*calls: Any) -> Dict[str, Any]:
    """`tools(("create_task", {"title": "x"}), ...)`: one turn calling these tools."""
    return {"tools": [[name, args] for name, args in calls]}


def text_and_tools(s: str, *calls: Any) -> Dict[str, Any]:
    """One turn with text, then these tool calls."""
    return {"text_and_tools": [s, [[name, args] for name, args in calls]]}


def call(name: str, args: Dict[str, Any]) -> Dict[str, Any]:
    return tools((name, args))


def until(needles: List[str], then: Dict[str, Any], meanwhile: str = "Waiting.") -> Dict[str, Any]:
    """Answers `then` once a request contains every needle, `meanwhile` before."""
    return {"until": list(needles), "then": then, "meanwhile": text(meanwhile)}


class MockModel:
    """A running mock server; `close()` (or the end of its `with`) stops it."""

    def __init__(self, binary: Path) -> None:
        self._proc = subprocess.Popen(
            [str(binary)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()
        first = self._proc.stdout.readline() if self._proc.stdout else ""
        if not first:
            self.close()
            raise RuntimeError("the mock model server did not start")
        self.base_url: str = json.loads(first)["base_url"]

    def _ask(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        assert self._proc.stdin and self._proc.stdout
        with self._lock:
            self._proc.stdin.write(json.dumps(cmd) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the mock model server is gone")
        answer = json.loads(line)
        if "error" in answer:
            raise ValueError(answer["error"])
        return answer

    def script(self, agent: str, steps: List[Dict[str, Any]]) -> None:
        """Appends these answers to the script of the agent named `agent`."""
        self._ask({"op": "script", "agent": agent, "steps": steps})

    def requests(self, agent: str) -> List[Dict[str, Any]]:
        """Every request body the agent's model calls sent, in order."""
        return self._ask({"op": "requests", "agent": agent})["requests"]

    def unmatched(self) -> List[Dict[str, Any]]:
        return self._ask({"op": "unmatched"})["unmatched"]

    def close(self) -> None:
        if self._proc.poll() is None:
            if self._proc.stdin:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout:
            self._proc.stdout.close()

    def __enter__(self) -> "MockModel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def said(request: Dict[str, Any]) -> str:
    """The text of every message of a request (OpenAI wire), joined."""
    parts: List[str] = []
    for m in request.get("messages", []):
        c: Optional[Any] = m.get("content")
        if isinstance(c, str):
            parts.append(c)
    return "\n".join(parts)
