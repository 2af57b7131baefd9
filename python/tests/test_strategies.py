"""Strategy teams: lauren-style typed events (`run_stream`, `on_event`, `envelope.team_event`)
built from the binary's COORDINATOR_DECISION / WORKER_STARTED / WORKER_FINISHED /
FINAL_ANSWER events, through the subprocess."""

from __future__ import annotations

import asyncio
from typing import List

from conftest import World, model_defaults
from mockmodel import MockModel, text, until
from scenarios import STORY_EVENTS, emits, script_story, story_team, summarize

from agent_team import (
    CoordinatorDecision,
    FinalAnswer,
    Team,
    TeamCoordinatorDecision,
    TeamEvent,
    TeamFinalAnswer,
    TeamWorkerFinished,
    TeamWorkerStarted,
    WorkerFinished,
    WorkerStarted,
)
from agent_team import schema as s


def make_team(world: World, **kw) -> Team:
    return Team(file="agent-team.toml", cwd=world.dir, binary=world.binary, env=world.env, timeout=80, **kw)


def test_a_coordinator_run_streams_lauren_events_and_returns_rounds_and_worker_outputs(
    world: World, mock: MockModel
) -> None:
    world.write("agent-team.toml", story_team(model_defaults(mock)))
    script_story(mock)
    team = make_team(world)
    events: List[TeamEvent] = []

    async def main() -> None:
        async for ev in team.run_stream("Write a one-line story"):
            events.append(ev)

    asyncio.run(main())
    assert summarize(events) == STORY_EVENTS
    # Every event keeps the envelope it came in (the coordinator is the leader).
    assert all(ev.envelope is not None and ev.envelope.team_id == "story" for ev in events)
    assert isinstance(events[1].envelope.event, s.WorkerStartedEvent)
    # Fields a binary does not emit are None, never made up (STORY_EVENTS follows the schema).
    assert (events[1].task is None) == (not emits(s.WorkerStartedEvent, "task"))
    assert (events[0].text is None) == (not emits(s.CoordinatorDecisionEvent, "text"))
    assert (events[-1].rounds is None) == (not emits(s.FinalAnswerEvent, "rounds"))
    # lauren's class names are the same classes.
    assert (TeamWorkerStarted, TeamWorkerFinished, TeamCoordinatorDecision, TeamFinalAnswer) == (
        WorkerStarted,
        WorkerFinished,
        CoordinatorDecision,
        FinalAnswer,
    )
    r = team.last_result
    assert r is not None and r.success
    assert (r.final_answer, r.strategy, r.rounds) == ("Once upon a time (reviewed).", "coordinator", 3)
    assert r.worker_outputs == {"b1": "Once upon a time.", "b2": "Looks good."}
    assert [(t.title, t.owner, t.status) for t in r.tasks] == [
        ("Round 1: Write the opening line.", "b1", "completed"),
        ("Round 2: Review the opening line.", "b2", "completed"),
    ]


def test_run_streaming_gives_the_same_events_through_on_event_and_team_event(world: World, mock: MockModel) -> None:
    world.write("agent-team.toml", story_team(model_defaults(mock)))
    script_story(mock)
    team = make_team(world)
    via_callback: List[TeamEvent] = []
    via_envelope: List[TeamEvent] = []
    for env in team.run_streaming_sync("Write a one-line story", on_event=via_callback.append):
        if env.team_event is not None:
            via_envelope.append(env.team_event)
    assert summarize(via_callback) == STORY_EVENTS
    assert summarize(via_envelope) == STORY_EVENTS


def test_max_rounds_without_done_is_no_success_and_collaborate_works_too(world: World, mock: MockModel) -> None:
    world.write("agent-team.toml", story_team(model_defaults(mock), extra="max_rounds = 1"))
    mock.script("leader", [text("ROUTE: b1\nDraft it.")])
    mock.script("b1", [until(["Draft it."], text("a draft"), "Nothing for me yet.")])
    team = make_team(world)
    r = team.run_sync("Write something")
    assert (r.success, r.rounds) == (False, 1)
    # The outputs so far: the last one, or (lauren's way) every worker's, by the binary's version.
    assert r.final_answer in ("a draft", "b1: a draft"), r.final_answer
    assert r.worker_outputs == {"b1": "a draft"}

    # The same team, collaborating: every worker gets the goal, the leader synthesises.
    mock.script("b1", [until(["Name a colour"], text("red"), "Nothing for me yet.")])
    mock.script("b2", [until(["Name a colour"], text("blue"), "Nothing for me yet.")])
    mock.script("leader", [until(["red", "blue"], text("red and blue"), "Waiting.")])
    collab = make_team(world, strategy="collaborate")
    events = list(collab.run_stream_sync("Name a colour"))
    started = sorted((e.worker_name, e.round) for e in events if isinstance(e, WorkerStarted))
    finished = sorted((e.worker_name, e.result_content) for e in events if isinstance(e, WorkerFinished))
    assert started == [("b1", 1), ("b2", 1)]
    assert finished == [("b1", "red"), ("b2", "blue")]
    assert isinstance(events[-1], FinalAnswer) and events[-1].content == "red and blue"
    assert not any(isinstance(e, CoordinatorDecision) for e in events)
    r = collab.last_result
    assert r is not None and (r.strategy, r.success, r.final_answer) == ("collaborate", True, "red and blue")


def test_a_leader_team_gives_its_answer_as_the_final_answer_of_run_stream(world: World) -> None:
    world.write(
        "agent-team.toml",
        'name = "exec"\n[[teammates]]\nname = "b1"\nrole = "worker"\n\n[[tasks]]\ntitle = "One"\nrun = "echo one"\n',
    )
    events = list(make_team(world).run_stream_sync("do it"))
    assert len(events) == 1 and isinstance(events[0], FinalAnswer)
    assert isinstance(events[0].envelope.event, s.RunFinishedEvent)
    assert "1 completed" in events[0].content
