"""The mock's event store, pure: ids kept unique, resumption positions, bounded, followers."""

from __future__ import annotations

import asyncio

from replay import event_log
from replay.event_log import EventStore


async def test_followers_get_what_is_written_and_end_with_the_log() -> None:
    store = EventStore()
    number, log = store.open()
    store.add(number, store.event_id("1"), b"a")

    async def read(start: int) -> list[bytes]:
        return [frame async for frame in log.follow(start)]

    reader = asyncio.create_task(read(0))
    await asyncio.sleep(0)
    store.add(number, store.event_id("2"), b"b")
    log.append(None, b": ping")  # comments have no id
    store.add(number, store.event_id("3"), b"c")
    log.close()
    assert await reader == [b"a", b"b", b": ping", b"c"]
    found = store.after("2")
    assert found is not None and found[0] is log
    assert [frame async for frame in log.follow(found[1])] == [b": ping", b"c"]
    assert store.after("nope") is None


def test_recorded_ids_are_kept_while_unique() -> None:
    store = EventStore()
    first, _ = store.open()
    second, _ = store.open()
    ids = []
    for number in (first, second):  # the same recorded script played twice
        for recorded in ("1", "2", None):
            event_id = store.event_id(recorded)
            store.add(number, event_id, b"x")
            ids.append(event_id)
    assert ids[:2] == ["1", "2"]
    assert len(set(ids)) == 6


def test_old_answers_are_forgotten() -> None:
    store = EventStore()
    limit = event_log.MAX_LOGS
    for _ in range(limit + 1):
        number, _log = store.open()
        store.add(number, store.event_id(None), b"x")
    assert len(store.logs) == limit
    assert store.after("ssetap-1") is None and store.after(f"ssetap-{limit + 1}") is not None
