"""`Team`: run an agent-team team from Python, through the binary or over `agent-team serve`."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import signal
import uuid
from dataclasses import dataclass, field
from typing import (
    Any,
    AsyncGenerator,
    Callable,
    Deque,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    TYPE_CHECKING,
    Sequence,
    Tuple,
    Union,
)

from . import _http
from ._schema import (
    CompleteStreamItem,
    ErrorBody,
    FinalAnswerEvent,
    PermRequest,
    RunFinishedEvent,
    Sent,
    Task,
    UsageReport,
    WorkResult,
    parse_stream_item,
)
from ._sync import iterate_sync, run_sync
from .events import FinalAnswer, TeamEvent, TeamStreamEnvelope

if TYPE_CHECKING:  # pragma: no cover
    from .memory import TeamMemory

__all__ = ["Team", "TeamResult", "TeamError", "ContextValue", "DEFAULT_TIMEOUT"]

#: How long a run waits for its answer unless told otherwise: 30 minutes. A run that reaches
#: it stops the team and raises :class:`TeamError` with ``code == "timeout"`` (over ``serve``:
#: ``TimeoutError``). Pass ``timeout=None`` explicitly to wait without a limit.
DEFAULT_TIMEOUT: float = 30 * 60.0


class _Unset:
    """The default of a ``timeout`` argument: "not given" (None means "no limit")."""

    def __repr__(self) -> str:
        return "DEFAULT"


_UNSET: Any = _Unset()


def installed_binary() -> Optional[str]:
    """The ``agent-team`` binary installed with this very package (the wheel's scripts, which
    pip puts in the environment's ``bin/`` beside ``agent-team-worker`` and
    ``agent-team-bridge``), or None: a source checkout, or an install without the binaries.

    Found through the distribution's RECORD, so a ``--user`` or ``--prefix`` install is found
    wherever its scripts went; only the distribution whose ``agent_team/__init__.py`` is this
    module's package counts, so another copy on ``sys.path`` never lends its binary."""
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    here = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "__init__.py"))
    try:
        dist = metadata.distribution("agent-team")
        files = list(dist.files or [])
    except (metadata.PackageNotFoundError, OSError):
        return None
    if not any(
        f.as_posix() == "agent_team/__init__.py" and os.path.realpath(str(dist.locate_file(f))) == here
        for f in files
    ):
        return None
    for f in files:
        if f.name == "agent-team" and f.as_posix() != "agent-team":
            path = os.path.abspath(str(dist.locate_file(f)))
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    return None

Variables = Union[Mapping[str, Any], "ContextValue", None]
OnEnvelope = Optional[Callable[[TeamStreamEnvelope], Any]]
OnEvent = Optional[Callable[[TeamEvent], Any]]


class TeamError(RuntimeError):
    """The run (or a board call) failed: the binary's or the server's error code and message.

    ``code`` is one of the protocol's codes (``bad_request``, ``not_found``,
    ``invalid_state``, …) when the binary gave one; ``status`` the HTTP status over `serve`;
    ``exit_code`` and ``stderr`` (its last lines) when the binary exited without a result."""

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        status: Optional[int] = None,
        details: Any = None,
        exit_code: Optional[int] = None,
        stderr: str = "",
    ) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details
        self.exit_code = exit_code
        self.stderr = stderr


@dataclass
class ContextValue:
    """NexAU's ``ContextValue``, for code written against it: ``template`` fills ``{{KEY}}``
    placeholders (agent-team's variables; ``date``, ``team`` and ``workspace`` given here win
    over the built-ins, as NexAU's own example passes ``date``); ``runtime_vars`` go to the
    environment of the agents' commands as secrets (``run --secret``: never a prompt, the
    store or a log, masked in what agents read back); ``sandbox_env`` goes to that
    environment as plain environment (``run --env``: never a prompt or the store, shown as it
    is, not masked). A plain dict given as ``variables`` is the same as ``template``."""

    template: Dict[str, Any] = field(default_factory=dict)
    runtime_vars: Dict[str, Any] = field(default_factory=dict)
    sandbox_env: Dict[str, Any] = field(default_factory=dict)


class TeamResult(str):
    """What a run ended with. It IS the final answer, a ``str`` (NexAU: "``run()`` returns the
    leader's final response as a string"): ``print(result)``, ``result == "..."``,
    ``result.upper()`` all see the answer. The rest are attributes: lauren-ai's
    ``final_answer``, ``worker_outputs`` and ``rounds``, and agent-team's ``success``,
    ``tasks``, ``usage``, ``team``, ``strategy``, ``seconds``, ``reports``,
    ``finished_work`` and ``raw``."""

    #: The leader's (or the coordinator's) final answer: the string itself, as a plain ``str``.
    final_answer: str
    #: Whether the team finished the run as a success (a ``coordinator`` run that reached
    #: ``max_rounds`` without ``DONE`` did not).
    success: bool
    #: Each worker's last output by name (a ``leader`` team: each teammate's last completed
    #: task result).
    worker_outputs: Dict[str, str]
    #: ``coordinator``: its rounds; ``collaborate``: 1 in parallel, the number of workers in
    #: sequence; ``leader``: the leader's model turns.
    rounds: int
    #: The task board at the end, in id order.
    tasks: List[Task]
    #: Model usage per agent, per role and in total (None when it could not be read).
    usage: Optional[UsageReport]
    #: The team that ran.
    team: str
    #: ``leader``, ``coordinator`` or ``collaborate``.
    strategy: str
    #: Seconds from the start of the run to the answer.
    seconds: float
    #: Each teammate's last message to the leader, by name.
    reports: Dict[str, str]
    #: What the run's end did with worktree teammates' work.
    finished_work: List[WorkResult]
    #: The result object as the binary gave it.
    raw: Optional[CompleteStreamItem]

    #: The attributes besides the answer, in the order ``repr`` shows them.
    FIELDS = (
        "success",
        "worker_outputs",
        "rounds",
        "tasks",
        "usage",
        "team",
        "strategy",
        "seconds",
        "reports",
        "finished_work",
    )

    def __new__(
        cls,
        final_answer: str = "",
        success: bool = False,
        worker_outputs: Optional[Dict[str, str]] = None,
        rounds: int = 0,
        tasks: Optional[List[Task]] = None,
        usage: Optional[UsageReport] = None,
        team: str = "",
        strategy: str = "leader",
        seconds: float = 0.0,
        reports: Optional[Dict[str, str]] = None,
        finished_work: Optional[List[WorkResult]] = None,
        raw: Optional[CompleteStreamItem] = None,
    ) -> "TeamResult":
        self = super().__new__(cls, final_answer)
        self.final_answer = str(final_answer)
        self.success = success
        self.worker_outputs = dict(worker_outputs or {})
        self.rounds = rounds
        self.tasks = list(tasks or [])
        self.usage = usage
        self.team = team
        self.strategy = strategy
        self.seconds = seconds
        self.reports = dict(reports or {})
        self.finished_work = list(finished_work or [])
        self.raw = raw
        return self

    @property
    def answer(self) -> str:
        """The final answer (the binary's ``answer`` field; the same as ``final_answer``)."""
        return self.final_answer

    def __str__(self) -> str:
        return self.final_answer

    def __repr__(self) -> str:
        rest = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.FIELDS)
        return f"TeamResult(final_answer={self.final_answer!r}, {rest})"

    def __getnewargs_ex__(self) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        # pickle/copy: rebuild with every attribute, not only the string.
        kw = {k: getattr(self, k) for k in self.FIELDS}
        kw["raw"] = self.raw
        return (self.final_answer,), kw

    @classmethod
    def from_complete(cls, c: CompleteStreamItem) -> "TeamResult":
        """The result of the binary's (or the server's) ``complete`` object."""
        return cls(
            final_answer=c.result,
            success=c.success,
            worker_outputs=dict(c.worker_outputs or {}),
            rounds=c.rounds,
            tasks=list(c.tasks or []),
            usage=c.usage,
            team=c.team,
            strategy=str(c.strategy),
            seconds=c.seconds,
            reports=dict(c.reports or {}),
            finished_work=list(c.finished_work or []),
            raw=c,
        )


def _split_variables(
    variables: Variables, secrets: Optional[Mapping[str, Any]]
) -> Tuple[Dict[str, str], Dict[str, str], Dict[str, str]]:
    """(variables, secrets, plain environment) as strings, a ContextValue taken apart."""
    out_vars: Dict[str, str] = {}
    out_secrets: Dict[str, str] = {}
    out_env: Dict[str, str] = {}
    if isinstance(variables, ContextValue):
        out_vars.update({str(k): str(v) for k, v in variables.template.items()})
        out_secrets.update({str(k): str(v) for k, v in variables.runtime_vars.items()})
        out_env.update({str(k): str(v) for k, v in variables.sandbox_env.items()})
    elif variables is not None:
        out_vars.update({str(k): str(v) for k, v in variables.items()})
    if secrets:
        out_secrets.update({str(k): str(v) for k, v in secrets.items()})
    # A name given as both is a secret (masked), never shown.
    for k in out_secrets:
        out_env.pop(k, None)
    return out_vars, out_secrets, out_env


async def _call(fn: Optional[Callable[[Any], Any]], arg: Any) -> None:
    if fn is None:
        return
    r = fn(arg)
    if asyncio.iscoroutine(r):
        await r


class Team:
    """A team to run from Python.

    ``Team(file="agent-team.toml")`` drives the ``agent-team`` binary (``run --stream``) as a
    subprocess: no server. ``Team.connect(url, token)`` talks to ``agent-team serve``
    (``POST /team/stream`` for runs, the REST API for the board).

    Subprocess options: ``team`` (``--team``), ``binary`` (default ``$AGENT_TEAM_BIN``, else
    the binary installed with this package (:func:`installed_binary`), else ``agent-team`` on
    ``PATH``), ``cwd`` (where the binary runs, as if ``agent-team run`` were typed
    there), ``env`` (added to this process's environment, e.g. the model's
    API key variable or ``AGENT_TEAM_HOME``), ``backend`` (``process`` by default: no tmux panes
    for a library; ``None`` takes the team file's), ``strategy``, ``workers``, ``approve_all``
    (allow every permission request without asking; without it requests wait for
    :meth:`approve`), ``timeout`` (seconds a run may take, ``run --timeout``: by default
    :data:`DEFAULT_TIMEOUT`, 30 minutes; ``timeout=None`` given explicitly waits without a
    limit) and ``extra_args``.
    """

    def __init__(
        self,
        file: Optional[Union[str, "os.PathLike[str]"]] = None,
        team: Optional[str] = None,
        binary: Optional[str] = None,
        *,
        cwd: Optional[Union[str, "os.PathLike[str]"]] = None,
        env: Optional[Mapping[str, str]] = None,
        backend: Optional[str] = "process",
        strategy: Optional[str] = None,
        workers: Optional[int] = None,
        approve_all: bool = False,
        timeout: Optional[float] = _UNSET,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._remote: Optional[_Remote] = None
        self.cwd = os.fspath(cwd) if cwd is not None else None
        base = self.cwd or os.getcwd()
        self.file = os.path.abspath(os.path.join(base, os.fspath(file))) if file is not None else None
        self.team = team
        self.binary = (
            binary
            or os.environ.get("AGENT_TEAM_BIN")
            or installed_binary()
            or shutil.which("agent-team")
            or "agent-team"
        )
        self.env = dict(env or {})
        self.backend = backend
        self.strategy = strategy
        self.workers = workers
        self.approve_all = approve_all
        #: Seconds a run may take unless the run says otherwise (None: no limit).
        self.timeout: Optional[float] = DEFAULT_TIMEOUT if timeout is _UNSET else timeout
        self.extra_args = list(extra_args)
        #: The result of the last run that ended (also after :meth:`run_streaming`).
        self.last_result: Optional[TeamResult] = None

    # Construction over serve ----------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        url: str,
        token: Optional[str] = None,
        *,
        team: Optional[str] = None,
        user_id: str = "agent-team-python",
        session_id: Optional[str] = None,
        timeout: Optional[float] = _UNSET,
    ) -> "Team":
        """A team served by ``agent-team serve`` at ``url`` (``http://127.0.0.1:8000``, or
        ``unix:/path``). ``token`` defaults to ``$AGENT_TEAM_API_TOKEN``.

        Runs go through NexAU's ``POST /team/stream``: ``user_id`` and ``session_id`` (a new
        random one per ``Team`` unless given) name one team made from the served file; a run
        started while that team's run goes on sends the message to its leader. The board
        helpers act on ``team`` when given, else on the session's team once a run started.
        ``timeout`` is how long a run may wait for its result (default
        :data:`DEFAULT_TIMEOUT`; ``None`` explicitly: no limit)."""
        token = token if token is not None else os.environ.get("AGENT_TEAM_API_TOKEN")
        self = cls.__new__(cls)
        self._remote = _Remote(
            _http.Address.parse(url),
            token,
            user_id=user_id,
            session_id=session_id or uuid.uuid4().hex,
        )
        self.cwd = None
        self.file = None
        self.team = team
        self.binary = ""
        self.env = {}
        self.backend = None
        self.strategy = None
        self.workers = None
        self.approve_all = False
        self.timeout = DEFAULT_TIMEOUT if timeout is _UNSET else timeout
        self.extra_args = []
        self.last_result = None
        return self

    @property
    def url(self) -> Optional[str]:
        """The server's address over ``serve``, else None."""
        if self._remote is None:
            return None
        a = self._remote.addr
        if a.unix is not None:
            return f"unix:{a.unix}"
        return f"{'https' if a.tls else 'http'}://{a.host_header()}{a.prefix}"

    @property
    def memory(self) -> "TeamMemory":
        """The team's shared memory (lauren-ai's ``TeamMemory``): ``await
        team.memory.get(key)``, ``set``, ``get_all``, ``delete``."""
        from .memory import TeamMemory

        return TeamMemory(self)

    @property
    def session_id(self) -> Optional[str]:
        return self._remote.session_id if self._remote else None

    def __repr__(self) -> str:
        if self._remote is not None:
            return f"Team.connect({self.url!r}, team={self.team!r}, session_id={self.session_id!r})"
        return f"Team(file={self.file!r}, team={self.team!r}, binary={self.binary!r})"

    # Runs -----------------------------------------------------------------------------------

    async def run(
        self,
        message: Optional[str] = None,
        *,
        variables: Variables = None,
        secrets: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = _UNSET,
    ) -> TeamResult:
        """Runs the team on ``message`` (the goal; default: the team file's ``goal``) until the
        leader finishes, and returns its final answer: a :class:`TeamResult`, which is a
        ``str`` (the answer, as NexAU's ``run()`` returns it) carrying ``success``,
        ``worker_outputs``, ``rounds``, ``tasks``, ``usage``, … as attributes. A run that ends
        without success still returns (``result.success`` is False); a run that stops without
        an answer raises :class:`TeamError` (``code`` ``timeout``, ``stopped``, …).

        ``variables`` fill ``{{KEY}}`` placeholders (``run --var``; a dict, or a
        :class:`ContextValue`); ``secrets`` reach the environment of the agents' commands only
        (``run --secret``, passed through the binary's environment, never its command line).

        ``timeout`` is how many seconds the run may take: by default the ``Team``'s (which is
        :data:`DEFAULT_TIMEOUT`, 30 minutes, unless given), so a leader that is never woken does
        not wait forever; ``timeout=None`` given explicitly waits without a limit. At the limit
        the team is stopped and :class:`TeamError` (``code == "timeout"``) is raised (over
        ``serve``, ``TimeoutError``; the session's team goes on there)."""
        async for _ in self.run_streaming(message, variables=variables, secrets=secrets, timeout=timeout):
            pass
        assert self.last_result is not None
        return self.last_result

    async def run_streaming(
        self,
        message: Optional[str] = None,
        *,
        variables: Variables = None,
        secrets: Optional[Mapping[str, Any]] = None,
        on_envelope: OnEnvelope = None,
        on_event: OnEvent = None,
        timeout: Optional[float] = _UNSET,
    ) -> AsyncGenerator[TeamStreamEnvelope, None]:
        """Runs the team and yields every event as it happens, as a
        :class:`~agent_team.TeamStreamEnvelope` (NexAU's ``run_streaming``). ``on_envelope`` is
        called with each envelope before it is yielded, ``on_event`` with each lauren-style
        event (:mod:`agent_team.events`); either may be a coroutine function. When the stream
        ends the result is in :attr:`last_result`. Leaving the loop early stops the run (the
        subprocess is stopped as Ctrl-C would; over ``serve`` the session's team goes on)."""
        self.last_result = None
        final_seen = False
        source = self._stream(message, variables, secrets, timeout)
        try:
            async for item in source:
                if isinstance(item, TeamResult):
                    self.last_result = item
                    continue
                env = item
                if self.team is None:
                    self.team = env.team_id
                await _call(on_envelope, env)
                if on_event is not None:
                    ev = env.team_event
                    if isinstance(env.event, FinalAnswerEvent):
                        final_seen = True
                    # A strategy emits FINAL_ANSWER; a leader team only RUN_FINISHED.
                    if ev is None and isinstance(env.event, RunFinishedEvent) and not final_seen:
                        ev = FinalAnswer(env.event.answer, envelope=env)
                    if ev is not None:
                        await _call(on_event, ev)
                yield env
        finally:
            await source.aclose()

    async def run_stream(
        self,
        message: Optional[str] = None,
        *,
        variables: Variables = None,
        secrets: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = _UNSET,
    ) -> AsyncGenerator[TeamEvent, None]:
        """lauren-ai's ``run_stream``: only the team events (:class:`WorkerStarted`,
        :class:`WorkerFinished`, :class:`CoordinatorDecision`, :class:`FinalAnswer`). A
        ``leader`` team, whose binary emits no ``FINAL_ANSWER``, gives its ``RUN_FINISHED``
        answer as the :class:`FinalAnswer`. The result is in :attr:`last_result` after."""
        queue: Deque[TeamEvent] = collections.deque()
        stream = self.run_streaming(
            message, variables=variables, secrets=secrets, on_event=queue.append, timeout=timeout
        )
        try:
            async for _ in stream:
                while queue:
                    yield queue.popleft()
            while queue:
                yield queue.popleft()
        finally:
            await stream.aclose()

    def _stream(
        self,
        message: Optional[str],
        variables: Variables,
        secrets: Optional[Mapping[str, Any]],
        timeout: Optional[float],
    ) -> AsyncGenerator[Union[TeamStreamEnvelope, TeamResult], None]:
        variables_, secrets_, env_ = _split_variables(variables, secrets)
        timeout = self.timeout if timeout is _UNSET else timeout
        if self._remote is not None:
            if message is None:
                raise ValueError("a run over `agent-team serve` needs a message (POST /team/stream)")
            return self._remote.stream(self, message, variables_, secrets_, env_, timeout)
        return self._subprocess_stream(message, variables_, secrets_, env_, timeout)

    # The subprocess -------------------------------------------------------------------------

    def _base_args(self) -> List[str]:
        args = [self.binary]
        if self.file is not None:
            args += ["--file", self.file]
        if self.team is not None:
            args += ["--team", self.team]
        return args

    def _env(self, secrets: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env.update(secrets or {})
        return env

    async def _subprocess_stream(
        self,
        message: Optional[str],
        variables: Dict[str, str],
        secrets: Dict[str, str],
        env: Dict[str, str],
        timeout: Optional[float],
    ) -> AsyncGenerator[Union[TeamStreamEnvelope, TeamResult], None]:
        args = self._base_args() + ["run", "--stream", "--quiet"]
        if self.backend is not None:
            args += ["--backend", self.backend]
        if self.strategy is not None:
            args += ["--strategy", self.strategy]
        if self.workers is not None:
            args += ["--workers", str(self.workers)]
        if self.approve_all:
            args.append("--approve-all")
        if timeout is not None:
            args += ["--timeout", str(max(1, int(-(-timeout // 1))))]
        for k, v in variables.items():
            args += ["--var", f"{k}={v}"]
        # `--secret KEY` takes the value from the binary's environment: never on a command line.
        for k in secrets:
            args += ["--secret", k]
        # Plain environment is no secret: on the command line, never masked.
        for k, v in env.items():
            args += ["--env", f"{k}={v}"]
        args += self.extra_args
        if message is not None:
            args += ["--", message]
        proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=self.cwd,
            env=self._env(secrets),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_http.LINE_LIMIT,
        )
        stderr_tail: Deque[str] = collections.deque(maxlen=40)

        async def drain_stderr() -> None:
            assert proc.stderr is not None
            async for raw in proc.stderr:
                stderr_tail.append(raw.decode("utf-8", "replace").rstrip("\n"))

        stderr_task = asyncio.ensure_future(drain_stderr())
        ended = False
        try:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    stderr_tail.append(line)
                    continue
                if isinstance(obj, dict) and "event" in obj and "seq" in obj:
                    yield TeamStreamEnvelope.from_dict(obj)
                    continue
                item = parse_stream_item(obj)
                if isinstance(item, CompleteStreamItem):
                    ended = True
                    yield TeamResult.from_complete(item)
                elif getattr(item, "type", None) == "error":
                    ended = True
                    err = getattr(item, "error", None)
                    await proc.wait()
                    await stderr_task
                    raise _error_from_body(err, exit_code=proc.returncode, stderr="\n".join(stderr_tail))
            code = await proc.wait()
            await stderr_task
            if not ended:
                raise TeamError(
                    f"agent-team run exited with {code} without a result: " + " / ".join(list(stderr_tail)[-5:]),
                    code="bad_request" if code == 2 else None,
                    exit_code=code,
                    stderr="\n".join(stderr_tail),
                )
        finally:
            if proc.returncode is None:
                await _stop(proc)
            if not stderr_task.done():
                stderr_task.cancel()
                try:
                    await stderr_task
                except (asyncio.CancelledError, Exception):
                    pass

    async def _cli(self, *args: str, json_out: bool = False) -> Any:
        proc = await asyncio.create_subprocess_exec(
            *self._base_args(),
            *args,
            cwd=self.cwd,
            env=self._env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_http.LINE_LIMIT,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            text = err.decode("utf-8", "replace").strip()
            raise TeamError(
                f"agent-team {' '.join(args)} failed ({proc.returncode}): {text}",
                exit_code=proc.returncode,
                stderr=text,
            )
        if json_out:
            return json.loads(out.decode("utf-8"))
        return out.decode("utf-8")

    # The board ------------------------------------------------------------------------------

    async def tasks(self, status: Optional[str] = None) -> List[Task]:
        """The task board (``task list --json`` / ``GET …/tasks``), optionally only tasks in
        ``status`` (pending, in_progress, completed, failed, cancelled)."""
        if self._remote is not None:
            q = f"?status={_http.path_part(status)}" if status else ""
            body = await self._remote.json("GET", self._team_path("/tasks") + q)
            return [Task.from_dict(t) for t in body["tasks"]]
        args = ["task", "list", "--json"] + (["--status", status] if status else [])
        return [Task.from_dict(t) for t in await self._cli(*args, json_out=True)]

    async def send(self, to: str, text: str, summary: Optional[str] = None) -> Sent:
        """Sends ``text`` to agent ``to`` (``*``: everyone) as the operator. Over the binary,
        like ``agent-team send``, it starts the team's daemon if it is not running."""
        if self._remote is not None:
            body: Dict[str, Any] = {"to": to, "text": text}
            if summary is not None:
                body["summary"] = summary
            return Sent.from_dict(await self._remote.json("POST", self._team_path("/messages"), body))
        args = ["send", "--json"] + (["--summary", summary] if summary is not None else []) + ["--", to, text]
        return Sent.from_dict(await self._cli(*args, json_out=True))

    async def permissions(self, all: bool = False) -> List[PermRequest]:
        """Permission requests waiting for a decision (``all``: decided ones too)."""
        if self._remote is not None:
            q = "?all=true" if all else ""
            body = await self._remote.json("GET", self._team_path("/permissions") + q)
            return [PermRequest.from_dict(p) for p in body["permissions"]]
        args = ["perms", "--json"] + (["--all"] if all else [])
        return [PermRequest.from_dict(p) for p in await self._cli(*args, json_out=True)]

    async def approve(self, id: int, always: bool = False, pattern: Optional[str] = None) -> PermRequest:
        """Allows pending permission request ``id`` (``always``: a team rule for this input, or
        with ``pattern`` for every input matching it). Returns the request as decided."""
        if pattern is not None and not always:
            raise ValueError("pattern needs always=True")
        if self._remote is not None:
            body: Dict[str, Any] = {"decision": "always" if always else "allow"}
            if pattern is not None:
                body["pattern"] = pattern
            return PermRequest.from_dict(
                await self._remote.json("POST", self._team_path(f"/permissions/{int(id)}"), body)
            )
        args = (
            ["approve", str(int(id))] + (["--always"] if always else []) + (["--pattern", pattern] if pattern else [])
        )
        await self._cli(*args)
        return await self._decided(int(id))

    async def deny(self, id: int, reason: Optional[str] = None) -> PermRequest:
        """Denies pending permission request ``id``; the agent sees ``reason``."""
        if self._remote is not None:
            body: Dict[str, Any] = {"decision": "deny"}
            if reason is not None:
                body["reason"] = reason
            return PermRequest.from_dict(
                await self._remote.json("POST", self._team_path(f"/permissions/{int(id)}"), body)
            )
        await self._cli("deny", str(int(id)), *(["--reason", reason] if reason is not None else []))
        return await self._decided(int(id))

    async def down(self) -> None:
        """Stops the team (agents, daemon); its state stays (``agent-team down``)."""
        if self._remote is not None:
            await self._remote.json("POST", self._team_path("/down"), {})
            return
        await self._cli("down")

    async def _decided(self, id: int) -> PermRequest:
        for p in await self.permissions(all=True):
            if p.id == id:
                return p
        raise TeamError(f"no permission request {id}", code="not_found")

    def _team_path(self, rest: str) -> str:
        if self.team is None:
            raise ValueError(
                "which team? pass team= to Team.connect(), or start a run first (its session's team is used then)"
            )
        return f"/v1/teams/{_http.path_part(self.team)}{rest}"

    # Synchronous wrappers -------------------------------------------------------------------

    def run_sync(self, message: Optional[str] = None, **kwargs: Any) -> TeamResult:
        """:meth:`run` for code without an event loop (also inside a running one, e.g. a
        notebook: it runs on a thread of its own then)."""
        return run_sync(lambda: self.run(message, **kwargs))

    def run_streaming_sync(self, message: Optional[str] = None, **kwargs: Any) -> Iterator[TeamStreamEnvelope]:
        """:meth:`run_streaming` as a plain iterator."""
        return iterate_sync(lambda: self.run_streaming(message, **kwargs))

    def run_stream_sync(self, message: Optional[str] = None, **kwargs: Any) -> Iterator[TeamEvent]:
        """:meth:`run_stream` as a plain iterator."""
        return iterate_sync(lambda: self.run_stream(message, **kwargs))

    def tasks_sync(self, status: Optional[str] = None) -> List[Task]:
        return run_sync(lambda: self.tasks(status))

    def send_sync(self, to: str, text: str, summary: Optional[str] = None) -> Sent:
        return run_sync(lambda: self.send(to, text, summary))

    def permissions_sync(self, all: bool = False) -> List[PermRequest]:
        return run_sync(lambda: self.permissions(all))

    def approve_sync(self, id: int, always: bool = False, pattern: Optional[str] = None) -> PermRequest:
        return run_sync(lambda: self.approve(id, always, pattern))

    def deny_sync(self, id: int, reason: Optional[str] = None) -> PermRequest:
        return run_sync(lambda: self.deny(id, reason))

    def down_sync(self) -> None:
        return run_sync(self.down)


async def _stop(proc: "asyncio.subprocess.Process") -> None:
    """Stops `agent-team run` as Ctrl-C would (it then stops the team it started), reading
    what it still prints so it never blocks on a full pipe, and kills it only if it does not
    exit in time."""

    async def discard() -> None:
        if proc.stdout is not None:
            while await proc.stdout.read(65536):
                pass

    draining = asyncio.ensure_future(discard())
    try:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except asyncio.TimeoutError:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
            await proc.wait()
    finally:
        draining.cancel()


def _error_from_body(
    err: Any, *, status: Optional[int] = None, exit_code: Optional[int] = None, stderr: str = ""
) -> TeamError:
    if isinstance(err, ErrorBody):
        return TeamError(
            err.message, code=str(err.code), status=status, details=err.details, exit_code=exit_code, stderr=stderr
        )
    if isinstance(err, dict):
        return TeamError(
            str(err.get("message", err)),
            code=err.get("code"),
            status=status,
            details=err.get("details"),
            exit_code=exit_code,
            stderr=stderr,
        )
    return TeamError(str(err), status=status, exit_code=exit_code, stderr=stderr)


class _Remote:
    """`agent-team serve` at one address."""

    def __init__(self, addr: _http.Address, token: Optional[str], *, user_id: str, session_id: str) -> None:
        self.addr = addr
        self.token = token
        self.user_id = user_id
        self.session_id = session_id

    async def json(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        async def go() -> Any:
            resp = await _http.request(self.addr, method, path, token=self.token, body=body)
            async with resp:
                data = await resp.json()
                if resp.status >= 400:
                    raise _error_from_body(
                        (data or {}).get("error", data) if isinstance(data, dict) else data, status=resp.status
                    )
                return data

        return await asyncio.wait_for(go(), timeout)

    async def stream(
        self,
        team: Team,
        message: str,
        variables: Dict[str, str],
        secrets: Dict[str, str],
        env: Dict[str, str],
        timeout: Optional[float],
    ) -> AsyncGenerator[Union[TeamStreamEnvelope, TeamResult], None]:
        body: Dict[str, Any] = {"user_id": self.user_id, "session_id": self.session_id, "message": message}
        if variables:
            body["variables"] = variables
        # NexAU's runtime_vars: the run's commands get them, masked; nothing stores them.
        if secrets:
            body["secrets"] = secrets
        # NexAU's sandbox_env: environment of the run's commands, shown as it is.
        if env:
            body["env"] = env
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        resp = await asyncio.wait_for(
            _http.request(
                self.addr, "POST", "/team/stream", token=self.token, body=body, headers={"Accept": "text/event-stream"}
            ),
            timeout,
        )
        try:
            if resp.status >= 400:
                data = await resp.json()
                raise _error_from_body(data.get("error", data) if isinstance(data, dict) else data, status=resp.status)
            name = resp.headers.get("x-agent-team-team")
            if name and team.team is None:
                team.team = name
            events = resp.events().__aiter__()
            while True:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    _event, data, _id = await asyncio.wait_for(events.__anext__(), left)
                except StopAsyncIteration:
                    raise TeamError("the stream ended without a result", code="internal") from None
                except asyncio.TimeoutError:
                    raise TimeoutError(
                        f"no result within {timeout} s (the session's team goes on on the server)"
                    ) from None
                obj = json.loads(data)
                kind = obj.get("type")
                if kind == "team_event":
                    yield TeamStreamEnvelope.from_dict(obj["envelope"])
                elif kind == "complete":
                    item = parse_stream_item(obj)
                    assert isinstance(item, CompleteStreamItem)
                    yield TeamResult.from_complete(item)
                    return
                elif kind == "error":
                    raise _error_from_body(obj.get("error"))
        finally:
            await resp.close()
