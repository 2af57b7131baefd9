"""`TeamMemory`: the team's shared memory from Python, as lauren-ai's ``TeamMemory`` is used."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Union

from ._sync import run_sync

if TYPE_CHECKING:  # pragma: no cover
    from .team import Team

__all__ = ["TeamMemory"]

#: What the binary says when a key (or the whole team) is not there: a read then gives the
#: default, as a fresh lauren memory would.
_ABSENT = ("no memory key", "there is no team")


class TeamMemory:
    """lauren-ai's ``TeamMemory`` over the team's shared memory (the ``memory_*`` tools of its
    agents; ``agent-team memory get|set|list|delete`` from the shell; the main README's "Team
    memory"):

    .. code-block:: python

        memory = TeamMemory()                        # the team of ./agent-team.toml
        await memory.set("context", {"user_id": 42})
        ctx = await memory.get("context")            # {"user_id": 42}
        all_data = await memory.get_all()            # {"context": {"user_id": 42}, ...}

    ``TeamMemory(team)`` takes a :class:`~agent_team.Team` (also ``team.memory``);
    ``TeamMemory(file=..., team=..., cwd=..., env=..., binary=...)`` names the team as ``Team``
    does. Values are JSON (dicts, lists, strings, numbers, booleans, None). Unlike lauren's, it
    is the team's: it lasts across runs (``memory = "run"`` in the team file makes it fresh for
    each run), its agents read it, and the leader and ``memory_set`` roles write it. Writing
    starts the team's daemon if it is not running, as ``agent-team memory set`` does; reading a
    stopped team reads its stored state. Each method has a ``_sync`` twin."""

    def __init__(
        self,
        team: Optional[Union["Team", str]] = None,
        *,
        file: Optional[Union[str, "os.PathLike[str]"]] = None,
        cwd: Optional[Union[str, "os.PathLike[str]"]] = None,
        env: Optional[Mapping[str, str]] = None,
        binary: Optional[str] = None,
    ) -> None:
        from .team import Team, TeamError

        if isinstance(team, Team):
            self._team = team
        else:
            self._team = Team(file=file, team=team, binary=binary, cwd=cwd, env=env)
        if self._team._remote is not None:
            raise TeamError(
                "TeamMemory reads and writes through the agent-team binary; `agent-team serve` has no memory API",
                code="bad_request",
            )

    def __repr__(self) -> str:
        return f"TeamMemory({self._team!r})"

    async def _read(self, *args: str) -> Any:
        from .team import TeamError

        try:
            return await self._team._cli("memory", *args, json_out=True)
        except TeamError as e:
            if any(a in e.stderr for a in _ABSENT):
                return None
            raise

    async def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` when there is none."""
        entry = await self._read("get", "--json", "--", key)
        if not isinstance(entry, dict) or "value" not in entry:
            return default
        return entry["value"]

    async def set(self, key: str, value: Any) -> None:
        """Stores ``value`` (anything JSON can hold) under ``key``, as the operator. Keys are
        1-256 printable bytes with ``/`` between parts; a value is at most 64 KiB as JSON."""
        text = json.dumps(value, ensure_ascii=False)
        await self._team._cli("memory", "set", "--", key, text)

    async def get_all(self, prefix: Optional[str] = None) -> Dict[str, Any]:
        """Every key with its value (only keys starting with ``prefix`` when given)."""
        args = ["list", "--values", "--json"] + (["--prefix", prefix] if prefix is not None else [])
        data = await self._read(*args)
        return dict(data) if isinstance(data, dict) else {}

    async def keys(self, prefix: Optional[str] = None) -> List[str]:
        """The keys, sorted (only those starting with ``prefix`` when given)."""
        return sorted(await self.get_all(prefix))

    async def delete(self, key: str) -> bool:
        """Deletes ``key``; False when there was none."""
        from .team import TeamError

        try:
            await self._team._cli("memory", "delete", "--", key)
        except TeamError as e:
            if any(a in e.stderr for a in _ABSENT):
                return False
            raise
        return True

    def get_sync(self, key: str, default: Any = None) -> Any:
        """:meth:`get` without an event loop."""
        return run_sync(lambda: self.get(key, default))

    def set_sync(self, key: str, value: Any) -> None:
        """:meth:`set` without an event loop."""
        return run_sync(lambda: self.set(key, value))

    def get_all_sync(self, prefix: Optional[str] = None) -> Dict[str, Any]:
        """:meth:`get_all` without an event loop."""
        return run_sync(lambda: self.get_all(prefix))

    def keys_sync(self, prefix: Optional[str] = None) -> List[str]:
        """:meth:`keys` without an event loop."""
        return run_sync(lambda: self.keys(prefix))

    def delete_sync(self, key: str) -> bool:
        """:meth:`delete` without an event loop."""
        return run_sync(lambda: self.delete(key))
