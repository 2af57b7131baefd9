"""Envelopes and lauren-style team events.

Every event of a run comes as a :class:`TeamStreamEnvelope` (NexAU's name): the agent it
concerns (`team_id`, `agent_id`, `role_name`), its place in the team's log (`seq`, `ts`) and
the typed event (`event`, one of the generated `…Event` classes of :mod:`agent_team._schema`).

For a `coordinator` or `collaborate` team the strategy's events are also given as lauren-ai's
stream events, built from what the binary emits:

===========================  =======================  ==========================================
this package                 lauren-ai                built from
===========================  =======================  ==========================================
:class:`WorkerStarted`       ``TeamWorkerStarted``    ``WORKER_STARTED`` (worker, round)
:class:`WorkerFinished`      ``TeamWorkerFinished``   ``WORKER_FINISHED`` (worker, round, output)
:class:`CoordinatorDecision` ``TeamCoordinatorDecision``  ``COORDINATOR_DECISION``
:class:`FinalAnswer`         ``TeamFinalAnswer``      ``FINAL_ANSWER`` (a ``leader`` team: its
                                                      ``RUN_FINISHED``)
===========================  =======================  ==========================================

``WorkerStarted.task``, ``CoordinatorDecision.text`` (the coordinator's own words) and
``FinalAnswer.rounds`` are read from the event; a binary that does not send them (before issue
31's item 2, whose schema has no such field) leaves them None, never made up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ._schema import (
    CoordinatorDecisionEvent,
    Envelope,
    FinalAnswerEvent,
    RunFinishedEvent,
    WorkerFinishedEvent,
    WorkerStartedEvent,
)

__all__ = [
    "TeamStreamEnvelope",
    "WorkerStarted",
    "WorkerFinished",
    "CoordinatorDecision",
    "FinalAnswer",
    "TeamEvent",
    "TeamWorkerStarted",
    "TeamWorkerFinished",
    "TeamCoordinatorDecision",
    "TeamFinalAnswer",
    "team_event",
]


@dataclass
class WorkerStarted:
    """A worker was given its part of the run (lauren's ``TeamWorkerStarted``)."""

    #: The worker (a teammate's name).
    worker_name: str
    #: The round, from 1 (``collaborate``: 1 in parallel, the worker's place in sequence).
    round: int
    #: The worker's instructions (its task's description); None from a binary that does not
    #: send them.
    task: Optional[str] = None
    #: The envelope it came in.
    envelope: Optional[Envelope] = field(default=None, repr=False, compare=False)

    @property
    def worker(self) -> str:
        """agent-team's name for :attr:`worker_name`."""
        return self.worker_name


@dataclass
class WorkerFinished:
    """A worker's part ended (lauren's ``TeamWorkerFinished``)."""

    #: The worker.
    worker_name: str
    #: The round, as in :class:`WorkerStarted`.
    round: int
    #: What the worker produced (or why its task failed).
    result_content: str
    #: The envelope it came in.
    envelope: Optional[Envelope] = field(default=None, repr=False, compare=False)

    @property
    def worker(self) -> str:
        return self.worker_name

    @property
    def output(self) -> str:
        """agent-team's name for :attr:`result_content`."""
        return self.result_content


@dataclass
class CoordinatorDecision:
    """The coordinator's answer in a round (lauren's ``TeamCoordinatorDecision``).

    ``decision`` is ``"route"``, ``"done"`` or ``"invalid"`` (lauren gives the coordinator's
    raw ``ROUTE: …`` / ``DONE: …`` text there; that text is :attr:`text`)."""

    #: ``route``, ``done`` or ``invalid``.
    decision: str
    #: The round, from 1.
    round: int
    #: The worker routed to (``route`` only).
    worker_name: Optional[str] = None
    #: The coordinator's own answer (lauren's ``decision`` text); None from a binary that does
    #: not send it.
    text: Optional[str] = None
    #: The envelope it came in.
    envelope: Optional[Envelope] = field(default=None, repr=False, compare=False)


@dataclass
class FinalAnswer:
    """The team's final answer (lauren's ``TeamFinalAnswer``)."""

    #: The answer.
    content: str
    #: The number of rounds; None from a binary that does not send it (the run's
    #: :class:`~agent_team.TeamResult` has it either way), and for a leader team's answer.
    rounds: Optional[int] = None
    #: The envelope it came in.
    envelope: Optional[Envelope] = field(default=None, repr=False, compare=False)

    @property
    def answer(self) -> str:
        return self.content


TeamEvent = Union[WorkerStarted, WorkerFinished, CoordinatorDecision, FinalAnswer]

# lauren-ai's names.
TeamWorkerStarted = WorkerStarted
TeamWorkerFinished = WorkerFinished
TeamCoordinatorDecision = CoordinatorDecision
TeamFinalAnswer = FinalAnswer


def _opt(ev: Any, name: str) -> Any:
    return getattr(ev, name, None)


def team_event(env: Envelope) -> Optional[TeamEvent]:
    """The lauren-style event of a strategy envelope, else None (``RUN_FINISHED`` is not
    turned into a :class:`FinalAnswer` here; :meth:`agent_team.Team.run_stream` does that for
    teams whose strategy emits no ``FINAL_ANSWER``)."""
    ev = env.event
    if isinstance(ev, WorkerStartedEvent):
        return WorkerStarted(ev.worker, ev.round, task=_opt(ev, "task"), envelope=env)
    if isinstance(ev, WorkerFinishedEvent):
        return WorkerFinished(ev.worker, ev.round, ev.output, envelope=env)
    if isinstance(ev, CoordinatorDecisionEvent):
        return CoordinatorDecision(ev.decision, ev.round, worker_name=ev.worker, text=_opt(ev, "text"), envelope=env)
    if isinstance(ev, FinalAnswerEvent):
        return FinalAnswer(ev.answer, rounds=_opt(ev, "rounds"), envelope=env)
    return None


@dataclass
class TeamStreamEnvelope(Envelope):
    """One event of the run with the agent it came from (NexAU's ``TeamStreamEnvelope``):
    ``team_id``, ``agent_id``, ``role_name``, ``seq``, ``ts`` and the typed ``event``."""

    @property
    def team_event(self) -> Optional[TeamEvent]:
        """The lauren-style event this envelope carries (strategy teams), else None."""
        return team_event(self)

    @property
    def type(self) -> str:
        """The event's type, e.g. ``TEXT_MESSAGE_CONTENT``."""
        return str(getattr(self.event, "type", ""))

    def is_final(self) -> bool:
        """Whether this is the run's ``RUN_FINISHED``."""
        return isinstance(self.event, RunFinishedEvent)
