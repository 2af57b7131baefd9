"""The Python side of the `python` section of `cargo xtask bench` (bench/src/python_bench.rs).

Runs the team of ``--file`` once through ``Team.run_streaming`` and prints one JSON object on
stdout: for each envelope, its ``seq`` and when it reached ``on_envelope`` (``time.time()``,
the wall clock the bench also stamps ``agent-team events --follow`` lines with); whether the
run succeeded; this process's CPU seconds for the run (after the imports; ``agent-team run``,
its subprocess, not counted). The package is imported from this source tree (the code being
measured), not from whatever a venv has installed.

    python bench_streaming.py --binary BIN --file agent-team.toml --cwd DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent_team import Team  # noqa: E402


async def main(binary: str, file: str, cwd: str, timeout: float) -> int:
    cpu0 = time.process_time()
    arrivals: List[Tuple[int, float]] = []
    now = time.time

    def on_envelope(env) -> None:  # type: ignore[no-untyped-def]
        arrivals.append((env.seq, now()))

    team = Team(file=file, binary=binary, cwd=cwd, backend="process", timeout=timeout)
    async for _ in team.run_streaming(on_envelope=on_envelope):
        pass
    result = team.last_result
    json.dump(
        {
            "python": sys.version.split()[0],
            "success": bool(result and result.success),
            "cpu": time.process_time() - cpu0,
            "arrivals": arrivals,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--binary", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--cwd", required=True)
    p.add_argument("--timeout", type=float, default=300.0)
    a = p.parse_args()
    sys.exit(asyncio.run(main(a.binary, a.file, a.cwd, a.timeout)))
