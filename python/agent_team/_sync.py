"""Running the async API from synchronous code, with or without a running event loop."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    List,
    Optional,
    Tuple,
    TypeVar,
)

T = TypeVar("T")


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Runs the coroutine ``make()`` to its end: with ``asyncio.run`` when this thread has no
    event loop running, else on a thread of its own (a notebook's cell, say)."""

    async def main() -> T:
        return await make()

    if not _loop_running():
        return asyncio.run(main())
    box: List[Tuple[bool, Any]] = []

    def worker() -> None:
        try:
            box.append((True, asyncio.run(main())))
        except BaseException as e:  # handed to the caller
            box.append((False, e))

    t = threading.Thread(target=worker, name="agent-team-sync", daemon=True)
    t.start()
    t.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def iterate_sync(make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """The async iterator ``make()`` as a plain iterator. It runs on a thread with its own
    event loop; leaving the loop early (``break``, an exception, closing the iterator) cancels
    it there, so a run it drives is stopped, and waits for that."""
    items: "queue.Queue[Tuple[str, Any]]" = queue.Queue()
    state: dict = {}
    ready = threading.Event()

    async def main() -> None:
        state["loop"] = asyncio.get_running_loop()
        state["task"] = asyncio.current_task()
        ready.set()
        agen = make()
        try:
            async for item in agen:
                items.put(("item", item))
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                await aclose()

    def worker() -> None:
        try:
            asyncio.run(main())
            items.put(("end", None))
        except asyncio.CancelledError:
            items.put(("end", None))
        except BaseException as e:
            items.put(("error", e))
        finally:
            ready.set()

    def gen() -> Iterator[T]:
        t = threading.Thread(target=worker, name="agent-team-sync-iter", daemon=True)
        t.start()
        finished = False
        try:
            while True:
                kind, value = items.get()
                if kind == "item":
                    yield value
                elif kind == "end":
                    finished = True
                    return
                else:
                    finished = True
                    raise value
        finally:
            if not finished:
                ready.wait()
                loop: Optional[asyncio.AbstractEventLoop] = state.get("loop")
                task = state.get("task")
                if loop is not None and task is not None:
                    try:
                        loop.call_soon_threadsafe(task.cancel)
                    except RuntimeError:
                        pass  # its loop has already ended
            t.join()

    return gen()
