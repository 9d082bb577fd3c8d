"""The line of SQLite writers in one process: in order, urgent ones first but never twice in
a row while others wait, across event loops, and never a deadlock (a writer that waited the
timeout goes ahead) nor a lost turn (a writer cancelled as it was handed the turn)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from app.core.database import Database, WriteTurns


async def _take(turns: WriteTurns, name: str, order: list[str], *, urgent: bool = False) -> None:
    async with turns.turn(urgent=urgent):
        order.append(name)
        await asyncio.sleep(0)


async def _line_up(turns: WriteTurns, writers: list[tuple[str, bool]]) -> list[str]:
    """Writers queued behind a holder, in this order; the order they got their turns in."""
    order: list[str] = []
    async with turns.turn():
        tasks = []
        for name, urgent in writers:
            tasks.append(asyncio.create_task(_take(turns, name, order, urgent=urgent)))
            await asyncio.sleep(0)  # queued in this order
        order.append("holder")
    await asyncio.gather(*tasks)
    return order


async def test_writers_take_turns_in_the_order_they_came() -> None:
    order = await _line_up(WriteTurns(timeout=5), [("a", False), ("b", False), ("c", False)])
    assert order == ["holder", "a", "b", "c"]


async def test_urgent_writers_go_first_but_never_twice_in_a_row_while_others_wait() -> None:
    writers = [("a", False), ("b", False), ("urgent 1", True), ("urgent 2", True)]
    order = await _line_up(WriteTurns(timeout=5), writers)
    assert order == ["holder", "urgent 1", "a", "urgent 2", "b"]


async def test_a_writer_that_waited_the_timeout_goes_ahead_without_its_turn() -> None:
    turns = WriteTurns(timeout=0.05)
    loop = asyncio.get_running_loop()
    async with turns.turn():
        started = loop.time()
        async with turns.turn():  # opened inside the other, on purpose
            waited = loop.time() - started
    assert 0.05 <= waited < 1  # it waited out the timeout, then went ahead: no deadlock
    order = await _line_up(turns, [("after", False)])
    assert order == ["holder", "after"]  # the line still works


async def test_a_writer_cancelled_as_it_is_handed_the_turn_hands_it_on() -> None:
    turns = WriteTurns(timeout=5)
    order: list[str] = []
    async with turns.turn():
        cancelled = asyncio.create_task(_take(turns, "cancelled", order))
        waiting = asyncio.create_task(_take(turns, "next", order))
        await asyncio.sleep(0)
    cancelled.cancel()  # handed the turn by the exit above, not yet running
    await asyncio.wait_for(waiting, timeout=1)
    assert order == ["next"]
    async with asyncio.timeout(1):
        async with turns.turn():  # and the turn is free again
            pass


async def test_writers_on_another_loop_wait_in_the_same_line() -> None:
    turns = WriteTurns(timeout=5)
    order: list[str] = []
    other_loop_waiting = threading.Event()

    def other_loop() -> None:
        async def write() -> None:
            other_loop_waiting.set()
            await _take(turns, "other loop", order)

        asyncio.run(write())

    async with turns.turn():
        thread = threading.Thread(target=other_loop)
        thread.start()
        await asyncio.to_thread(other_loop_waiting.wait)
        await asyncio.sleep(0.05)  # the other loop is in line by now
        order.append("holder")
    await asyncio.to_thread(thread.join, 5)
    assert order == ["holder", "other loop"]


async def test_every_engine_on_one_sqlite_file_shares_its_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first, second = Database(create_async_engine(url)), Database(create_async_engine(url))
    other = Database(create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"))
    try:
        assert first.write_turns is not None
        assert first.write_turns is second.write_turns
        assert other.write_turns is not first.write_turns
    finally:
        for database in (first, second, other):
            await database.dispose()


def test_postgresql_has_no_line() -> None:
    engine = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    assert Database(engine).write_turns is None
