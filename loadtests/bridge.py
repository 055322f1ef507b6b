"""Locust runs on gevent, aiortc on asyncio: one real OS thread per Locust process runs a plain
asyncio loop that owns every peer connection (../shared/testing-notes.md, "Locust with WebRTC
users"). Users hand it coroutines with `loop.call_soon_threadsafe` and wait for the result on a
`gevent.event.AsyncResult`, set from the loop thread through the gevent hub's
`run_callback_threadsafe`, so a waiting user blocks only its own greenlet.

The loop is created inside the thread after Locust's monkey-patching, so it uses gevent's
selector: aiortc's helper threads (greenlets after patching) are driven while it waits. A thread
with the original epoll selector hung intermittently for that reason (the notes: don't).

Import this module only from Locust processes: it imports gevent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.monkey

T = TypeVar("T")
log = logging.getLogger(__name__)


class Pending:
    """A coroutine running on the bridge's loop; `get()` blocks the calling greenlet only."""

    def __init__(self, bridge: AsyncioBridge, result: gevent.event.AsyncResult) -> None:
        self._bridge = bridge
        self._result = result
        self.task: asyncio.Task[Any] | None = None

    def get(self, timeout: float | None = None) -> Any:
        return self._result.get(timeout=timeout)

    def cancel(self) -> None:
        task = self.task
        if task is not None:
            self._bridge.loop.call_soon_threadsafe(task.cancel)


class AsyncioBridge:
    """The process's asyncio thread. `submit(coro)` starts a coroutine there; `close()` cancels
    the coroutines it started (only those) and stops the loop cleanly."""

    def __init__(self) -> None:
        self._hub = gevent.get_hub()  # the Locust users' hub: results are delivered into it
        self._tasks: set[asyncio.Task[Any]] = set()
        ready = gevent.event.AsyncResult()
        self.loop: asyncio.AbstractEventLoop
        self._stopped = gevent.event.AsyncResult()
        start_new_thread = gevent.monkey.get_original("_thread", "start_new_thread")
        start_new_thread(self._run, (ready,))
        self.loop = ready.get(timeout=30)

    def _run(self, ready: gevent.event.AsyncResult) -> None:
        loop = asyncio.new_event_loop()  # after patching: gevent's selector (see the module docstring)
        asyncio.set_event_loop(loop)
        self._hub.loop.run_callback_threadsafe(ready.set, loop)
        try:
            loop.run_forever()
        finally:
            loop.close()
            self._hub.loop.run_callback_threadsafe(self._stopped.set, True)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Pending:
        result = gevent.event.AsyncResult()
        pending = Pending(self, result)

        def deliver(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            if task.cancelled():
                outcome: tuple[bool, Any] = (False, asyncio.CancelledError())
            elif (exc := task.exception()) is not None:
                outcome = (False, exc)
            else:
                outcome = (True, task.result())
            ok, value = outcome
            self._hub.loop.run_callback_threadsafe(result.set if ok else result.set_exception, value)

        def start() -> None:
            task = self.loop.create_task(coro)
            pending.task = task
            self._tasks.add(task)
            task.add_done_callback(deliver)

        self.loop.call_soon_threadsafe(start)
        return pending

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and wait for it (this greenlet only); cancelled if this greenlet is
        killed or the timeout passes."""
        pending = self.submit(coro)
        try:
            value: T = pending.get(timeout=timeout)
            return value
        except BaseException:
            pending.cancel()
            raise

    def close(self, timeout: float = 10.0) -> None:
        """Cancel our own tasks, let the default executor finish (Locust would otherwise hang on
        its atexit join), then stop the loop."""

        async def shutdown() -> None:
            tasks = [t for t in self._tasks if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=timeout / 2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.loop.shutdown_default_executor(), timeout / 2)

        def start() -> None:
            task = self.loop.create_task(shutdown())
            task.add_done_callback(lambda _t: self.loop.stop())

        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(start)
        try:
            self._stopped.get(timeout=timeout)
        except gevent.Timeout:
            log.warning("the asyncio bridge did not stop within %.0f s", timeout)


_bridge: AsyncioBridge | None = None


def bridge() -> AsyncioBridge:
    """This process's bridge, started on first use (after any fork: `--processes` forks workers)."""
    global _bridge
    if _bridge is None:
        _bridge = AsyncioBridge()
    return _bridge


def close_bridge() -> None:
    global _bridge
    if _bridge is not None:
        _bridge.close()
        _bridge = None
