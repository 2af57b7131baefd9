"""The teams and mock-model scripts the tests run: a NexAU-style leader team (the leader plans
with tools, a teammate does the work) and a lauren-style coordinator team."""

from __future__ import annotations

from mockmodel import MockModel, call, text, text_and_tools, tools, until

from agent_team import schema as s

#: The answer of the leader team's run.
TODO_ANSWER = "The TODO app is built: API and UI."


def todo_team(defaults: str, name: str = "todo") -> str:
    """A leader and one worker, `builder-1`, all on the mock."""
    return f'name = "{name}"\n{defaults}\n[[teammates]]\nname = "builder-1"\nrole = "worker"\n'


def script_todo(mock: MockModel, task_id: int = 1, answer: str = TODO_ANSWER) -> None:
    """One run of the leader team: the leader puts task `task_id` on the board for builder-1,
    which does it and reports; then the leader finishes with `answer`. Call it once per run
    (the team's task ids go on across runs)."""
    mock.script(
        "leader",
        [
            text_and_tools(
                "Let me plan this...",
                ("create_task", {"title": f"Write the API (#{task_id})"}),
                ("assign_task", {"id": task_id, "to": "builder-1"}),
            ),
            until(
                [f"builder-1 finished task {task_id}"],
                call("finish_team", {"answer": answer}),
                "Waiting for builder-1.",
            ),
        ],
    )
    mock.script(
        "builder-1",
        [
            until([f"Write the API (#{task_id})"], call("claim_task", {"id": task_id}), "Nothing for me yet."),
            tools(
                ("update_task_status", {"id": task_id, "status": "completed", "result": f"API written (#{task_id})"}),
                ("send_message", {"to": "leader", "text": f"builder-1 finished task {task_id}"}),
            ),
            text("Done."),
        ],
    )


def story_team(defaults: str, extra: str = "") -> str:
    """A coordinator (the leader) and two workers, b1 and b2."""
    return (
        f'name = "story"\nstrategy = "coordinator"\n{extra}\n{defaults}\n'
        '[[teammates]]\nname = "b1"\nrole = "worker"\n\n'
        '[[teammates]]\nname = "b2"\nrole = "reviewer"\n'
    )


def script_story(mock: MockModel) -> None:
    """One coordinator run: ROUTE b1, ROUTE b2, DONE."""
    mock.script(
        "leader",
        [
            text("ROUTE: b1\nWrite the opening line."),
            text("ROUTE: b2\nReview the opening line."),
            text("DONE: Once upon a time (reviewed)."),
        ],
    )
    mock.script("b1", [until(["Write the opening line."], text("Once upon a time."), "Nothing for me yet.")])
    mock.script("b2", [until(["Review the opening line."], text("Looks good."), "Nothing for me yet.")])


def emits(event_cls: type, field: str) -> bool:
    """Whether the binary's schema (the generated event class) has this field: fields an older
    binary does not emit must come out None, never made up."""
    return any(f[1] == field for f in event_cls._FIELDS)


def story_events() -> list:
    """What `script_story` gives as lauren-style events, as (class name, fields) pairs; a
    worker's `task` is compared by its first line (the instructions the coordinator wrote)."""
    text_ = emits(s.CoordinatorDecisionEvent, "text")
    task_ = emits(s.WorkerStartedEvent, "task")
    rounds_ = emits(s.FinalAnswerEvent, "rounds")
    return [
        (
            "CoordinatorDecision",
            {
                "decision": "route",
                "round": 1,
                "worker_name": "b1",
                "text": "ROUTE: b1\nWrite the opening line." if text_ else None,
            },
        ),
        ("WorkerStarted", {"worker_name": "b1", "round": 1, "task": "Write the opening line." if task_ else None}),
        ("WorkerFinished", {"worker_name": "b1", "round": 1, "result_content": "Once upon a time."}),
        (
            "CoordinatorDecision",
            {
                "decision": "route",
                "round": 2,
                "worker_name": "b2",
                "text": "ROUTE: b2\nReview the opening line." if text_ else None,
            },
        ),
        ("WorkerStarted", {"worker_name": "b2", "round": 2, "task": "Review the opening line." if task_ else None}),
        ("WorkerFinished", {"worker_name": "b2", "round": 2, "result_content": "Looks good."}),
        (
            "CoordinatorDecision",
            {
                "decision": "done",
                "round": 3,
                "worker_name": None,
                "text": "DONE: Once upon a time (reviewed)." if text_ else None,
            },
        ),
        ("FinalAnswer", {"content": "Once upon a time (reviewed).", "rounds": 3 if rounds_ else None}),
    ]


STORY_EVENTS = story_events()


def summarize(events: list) -> list:
    """lauren-style events as (class name, fields) pairs, comparable with `STORY_EVENTS`."""
    out = []
    for ev in events:
        name = type(ev).__name__
        want = dict(next(f for n, f in STORY_EVENTS if n == name))
        got = {k: getattr(ev, k) for k in want}
        if got.get("task"):
            got["task"] = got["task"].split("\n")[0]
        out.append((name, got))
    return out
