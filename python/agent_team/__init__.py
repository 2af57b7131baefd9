"""agent-team from Python: run a team of AI agents, stream its events, steer its board.

    import asyncio
    from agent_team import Team

    team = Team(file="agent-team.toml")             # drives the `agent-team` binary
    result = asyncio.run(team.run("Build a TODO app"))
    print(result)                     # the answer: a TeamResult is a str
    print(result.success, result.worker_outputs, result.rounds)

or over a server: ``Team.connect("http://127.0.0.1:8000", token)`` (``agent-team serve``).
See python/README.md.
"""

from . import _schema as schema
from ._schema import SCHEMA_VERSION, Envelope, PermRequest, Sent, Task, UsageReport
from .events import (
    CoordinatorDecision,
    FinalAnswer,
    TeamCoordinatorDecision,
    TeamEvent,
    TeamFinalAnswer,
    TeamStreamEnvelope,
    TeamWorkerFinished,
    TeamWorkerStarted,
    WorkerFinished,
    WorkerStarted,
    team_event,
)
from .memory import TeamMemory
from .team import DEFAULT_TIMEOUT, ContextValue, Team, TeamError, TeamResult

__version__ = "0.1.0"

__all__ = [
    "Team",
    "TeamResult",
    "TeamError",
    "ContextValue",
    "TeamMemory",
    "DEFAULT_TIMEOUT",
    "TeamStreamEnvelope",
    "Envelope",
    "Task",
    "PermRequest",
    "Sent",
    "UsageReport",
    "TeamEvent",
    "WorkerStarted",
    "WorkerFinished",
    "CoordinatorDecision",
    "FinalAnswer",
    "TeamWorkerStarted",
    "TeamWorkerFinished",
    "TeamCoordinatorDecision",
    "TeamFinalAnswer",
    "team_event",
    "schema",
    "SCHEMA_VERSION",
    "__version__",
]
