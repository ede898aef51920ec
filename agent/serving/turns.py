"""The turn machinery of `lumenrec serve`: per-session locks, the bounded admission queue, the
cancel/commit handshake of a running turn, and the store guard that makes a turn's write conditional
(DELETE wins, a cancelled turn writes nothing, replicas never lose each other's work).

Framework-free (threads and asyncio only) so that it can be tested and reused without FastAPI.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable

__all__ = ["SessionLocks", "Shed", "ClientGone", "TurnCancelled", "Deadline", "SessionGone", "Admission", "Turn",
           "GuardedStore"]


class SessionLocks:
    """One lock per session key, dropped when nobody holds a reference (turns of a session run in order)."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()

    def get(self, key: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = threading.Lock()
                self._locks[key] = lock
            return lock


class Shed(Exception):
    """The server is full: 503 + Retry-After."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ClientGone(Exception):
    """The client closed the connection: nothing to answer, nothing applied."""


class TurnCancelled(Exception):
    """The turn was cancelled (client gone, deadline) before it wrote anything."""


class Deadline(Exception):
    """The turn missed its deadline and was cancelled before it wrote anything: 504."""


class SessionGone(Exception):
    """The session was deleted (or expired) while the turn ran: the DELETE wins, 404."""


class Admission:
    """A bounded, fair (FIFO) queue in front of the turn workers.

    ``slots`` turns run at once; up to ``max_queue`` wait; the rest are refused at once. Waiters are
    futures of whatever event loop they run on, granted from any thread, so it works the same under
    uvicorn and under a test client. A waiter that gives up (timeout, client gone) leaves the queue;
    a slot granted to it in that instant is passed on, never lost.
    """

    class _Waiter:
        __slots__ = ("loop", "fut", "granted")

        def __init__(self, loop, fut) -> None:
            self.loop, self.fut, self.granted = loop, fut, False

    def __init__(self, slots: int, max_queue: int, timeout_s: float) -> None:
        self.slots, self.max_queue, self.timeout_s = int(slots), int(max_queue), float(timeout_s)
        self._free = int(slots)
        self._waiters: deque = deque()
        self._lock = threading.Lock()
        self.shed = 0  # refused so far (full queue or waited too long)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def running(self) -> int:
        return self.slots - self._free

    async def acquire(self, gone: Callable[[], Any] | None = None) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            if len(self._waiters) >= self.max_queue:
                self.shed += 1
                raise Shed(f"the server is at capacity ({self.slots} turns running, {len(self._waiters)} waiting); "
                            "retry shortly", max(1.0, self.timeout_s / 4))
            w = self._Waiter(loop, loop.create_future())
            self._waiters.append(w)
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    with self._lock:
                        self.shed += 1
                    raise Shed(f"no turn slot became free within {self.timeout_s:g} s; retry shortly",
                                max(1.0, self.timeout_s / 4))
                await asyncio.wait({w.fut}, timeout=min(0.25, left))
                if w.fut.done():
                    return
                if gone is not None and await gone():
                    raise ClientGone()
        except BaseException:
            with self._lock:
                if w.granted:
                    self._release_locked()  # granted in the same instant: pass the slot on
                else:
                    try:
                        self._waiters.remove(w)
                    except ValueError:
                        pass
            if not w.fut.done():
                w.fut.cancel()
            raise

    def release(self) -> None:
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            try:
                w.loop.call_soon_threadsafe(_grant, w.fut)
            except RuntimeError:  # its event loop is gone (the request went with it): next waiter
                continue
            w.granted = True
            return
        self._free += 1


def _grant(fut) -> None:
    if not fut.done():
        fut.set_result(None)


class Turn:
    """The cancel/commit handshake between a request and the worker running its turn: exactly one
    of "cancelled before anything was written" and "committing (the request waits for the result)"."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cancelled = False
        self.committing = False

    def cancel(self) -> bool:
        """Cancel unless the turn already started writing; True when it is cancelled."""
        with self._lock:
            if self.committing:
                return False
            self.cancelled = True
            return True

    def begin_commit(self) -> None:
        with self._lock:
            if self.cancelled:
                raise TurnCancelled()
            self.committing = True


class GuardedStore:
    """The recommender's store as the server sees it: while a turn of a session runs (``running``:
    session key -> its Turn, whatever thread writes, e.g. the LLM router's), the session is written
    with ``replace`` (only if it still exists at the version read: DELETE wins, concurrent replicas
    conflict) and only if the turn's request was not cancelled. Everything else passes through."""

    def __init__(self, inner, running: dict[str, "Turn"] | None = None) -> None:
        self.inner = inner
        self.running = running if running is not None else {}

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def __len__(self) -> int:
        return len(self.inner)

    def __contains__(self, key: object) -> bool:
        return key in self.inner

    def put(self, session) -> None:
        turn = self.running.get(session.session_id)
        if turn is None:
            return self.inner.put(session)
        turn.begin_commit()
        if not self.inner.replace(session):
            raise SessionGone(session.session_id)
