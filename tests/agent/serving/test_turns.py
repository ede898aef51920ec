"""The turn machinery on its own (lumenrec.agent.serving.turns): the admission queue is bounded and
FIFO, sheds at once when full and after a wait timeout, passes a slot on when a granted waiter gives
up; the cancel/commit handshake has exactly one outcome; the store guard follows the running turn."""

from __future__ import annotations

import asyncio

import pytest

from lumenrec.agent.serving.store import MemorySessionStore
from lumenrec.agent.serving.turns import Admission, ClientGone, GuardedStore, SessionGone, Shed, Turn, TurnCancelled
from lumenrec.agent.session import Session


def test_admission_is_bounded_fifo_and_sheds():
    async def main():
        adm = Admission(slots=1, max_queue=2, timeout_s=5)
        order: list[str] = []
        await adm.acquire()  # A runs

        async def waiter(name: str):
            await adm.acquire()
            order.append(name)

        b = asyncio.create_task(waiter("B"))
        await asyncio.sleep(0.01)
        c = asyncio.create_task(waiter("C"))
        await asyncio.sleep(0.01)
        assert adm.waiting == 2 and adm.running == 1
        with pytest.raises(Shed, match="capacity"):
            await adm.acquire()  # D: the queue is full, refused at once
        adm.release()  # A done -> B
        await asyncio.wait_for(b, 2)
        adm.release()  # B done -> C
        await asyncio.wait_for(c, 2)
        assert order == ["B", "C"] and adm.shed == 1
        adm.release()
        assert adm.running == 0 and adm.waiting == 0

    asyncio.run(main())


def test_admission_wait_timeout_and_client_gone():
    async def main():
        adm = Admission(slots=1, max_queue=5, timeout_s=0.3)
        await adm.acquire()
        with pytest.raises(Shed, match="within 0.3 s"):
            await adm.acquire()
        gone_after = [2]

        async def gone() -> bool:
            gone_after[0] -= 1
            return gone_after[0] <= 0

        adm.timeout_s = 5
        with pytest.raises(ClientGone):
            await adm.acquire(gone)
        assert adm.waiting == 0  # the leaver left the queue
        adm.release()
        assert adm.running == 0
        await adm.acquire()  # the slot was not lost
        adm.release()

    asyncio.run(main())


def test_a_slot_granted_to_a_waiter_that_gives_up_is_passed_on():
    async def main():
        adm = Admission(slots=1, max_queue=5, timeout_s=5)
        await adm.acquire()
        b = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0.01)
        c = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0.01)
        adm.release()  # granted to B ...
        b.cancel()  # ... which is cancelled in the same instant
        with pytest.raises(asyncio.CancelledError):
            await b
        await asyncio.wait_for(c, 2)  # C gets the slot B could not use
        assert adm.running == 1
        adm.release()
        assert adm.running == 0

    asyncio.run(main())


def test_turn_handshake_has_one_outcome():
    t = Turn()
    assert t.cancel() and t.cancelled
    with pytest.raises(TurnCancelled):
        t.begin_commit()
    t2 = Turn()
    t2.begin_commit()
    assert t2.cancel() is False and not t2.cancelled  # it is writing: the request waits for its result


def test_guard_writes_conditionally_only_for_the_running_turn():
    inner = MemorySessionStore()
    running: dict[str, Turn] = {}
    store = GuardedStore(inner, running)
    store.put(Session(session_id="free"))  # no turn: a plain write (creates)
    assert inner.get("free") is not None
    s = inner.get("free")
    running["free"] = Turn()
    inner.delete("free")
    with pytest.raises(SessionGone):
        store.put(s)  # the turn's write after a DELETE: refused
    assert inner.get("free") is None
    running["other"] = t = Turn()
    inner.create(Session(session_id="other"))
    t.cancel()
    with pytest.raises(TurnCancelled):
        store.put(inner.get("other"))
