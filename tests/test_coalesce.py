"""The Coalescer: calls of one event-loop turn become one batch call per key, and each
caller gets its own answer."""

from __future__ import annotations

import asyncio

import pytest

from taskq.coalesce import Coalescer


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.ones: list[tuple[str, int]] = []
        self.fail = fail

    async def many(self, key: str, items: list[int]) -> list[int]:
        self.batches.append((key, items))
        if self.fail:
            raise RuntimeError("the store is down")
        return [item * 10 for item in items]

    async def one(self, key: str, item: int) -> int:
        self.ones.append((key, item))
        return item * 10


async def test_calls_of_one_turn_go_as_one_batch_per_key_each_with_its_answer() -> None:
    calls = Recorder()
    coalesce: Coalescer[str, int, int] = Coalescer(calls.many)

    answers = await asyncio.gather(*(coalesce("a" if n % 2 else "b", n) for n in range(6)))

    assert answers == [0, 10, 20, 30, 40, 50]
    assert sorted(calls.batches) == [("a", [1, 3, 5]), ("b", [0, 2, 4])]


async def test_a_lone_call_runs_the_plain_call_and_later_turns_make_new_batches() -> None:
    calls = Recorder()
    coalesce: Coalescer[str, int, int] = Coalescer(calls.many, calls.one)

    assert await coalesce("a", 1) == 10
    assert await asyncio.gather(coalesce("a", 2), coalesce("a", 3)) == [20, 30]

    assert calls.ones == [("a", 1)]
    assert calls.batches == [("a", [2, 3])]


async def test_an_error_of_the_batch_reaches_every_caller_of_it() -> None:
    coalesce: Coalescer[str, int, int] = Coalescer(Recorder(fail=True).many)

    outcomes = await asyncio.gather(coalesce("a", 1), coalesce("a", 2), return_exceptions=True)

    assert [type(outcome) for outcome in outcomes] == [RuntimeError, RuntimeError]


async def test_a_cancelled_caller_leaves_the_others_their_answers() -> None:
    calls = Recorder()
    coalesce: Coalescer[str, int, int] = Coalescer(calls.many)
    first = asyncio.ensure_future(coalesce("a", 1))
    second = asyncio.ensure_future(coalesce("a", 2))
    await asyncio.sleep(0)

    first.cancel()

    assert await second == 20
    with pytest.raises(asyncio.CancelledError):
        await first
    assert calls.batches == [("a", [1, 2])]


def test_a_coalescer_outlives_its_event_loop() -> None:
    calls = Recorder()
    coalesce: Coalescer[str, int, int] = Coalescer(calls.many)

    async def one_turn(n: int) -> list[int]:
        return list(await asyncio.gather(coalesce("a", n), coalesce("a", n + 1)))

    assert asyncio.run(one_turn(1)) == [10, 20]
    assert asyncio.run(one_turn(3)) == [30, 40]


async def test_with_one_batch_in_flight_calls_asked_meanwhile_wait_and_go_together() -> None:
    release = asyncio.Event()
    batches: list[list[int]] = []

    async def many(_: str, items: list[int]) -> list[int]:
        batches.append(items)
        await release.wait()
        return items

    coalesce: Coalescer[str, int, int] = Coalescer(many, in_flight=1)
    first = asyncio.gather(coalesce("k", 1), coalesce("k", 2))
    await asyncio.sleep(0.01)  # the first batch is on its way, held
    later = [asyncio.ensure_future(coalesce("k", n)) for n in (3, 4, 5)]
    await asyncio.sleep(0.01)
    assert batches == [[1, 2]]  # the others wait for it
    release.set()
    assert await first == [1, 2]
    assert await asyncio.gather(*later) == [3, 4, 5]
    assert batches == [[1, 2], [3, 4, 5]]


async def test_an_eager_call_alone_runs_at_once_in_its_callers_task() -> None:
    calls = Recorder()
    coalesce: Coalescer[str, int, int] = Coalescer(calls.many, calls.one, eager=True)
    caller = asyncio.current_task()
    ran_in: list[asyncio.Task[object] | None] = []

    async def one(key: str, item: int) -> int:
        ran_in.append(asyncio.current_task())
        return await calls.one(key, item)

    coalesce._one = one
    assert await coalesce("a", 1) == 10
    assert await coalesce("a", 2) == 20  # one after the other: each at once, alone
    assert ran_in == [caller, caller]
    assert calls.ones == [("a", 1), ("a", 2)] and calls.batches == []


async def test_eager_calls_made_while_one_runs_go_together_in_the_next_batch() -> None:
    calls = Recorder()

    async def many(key: str, items: list[int]) -> list[int]:
        await asyncio.sleep(0)  # on its way, as a round trip is
        return await calls.many(key, items)

    coalesce: Coalescer[str, int, int] = Coalescer(many, eager=True)

    answers = await asyncio.gather(*(coalesce("a", n) for n in range(5)))

    assert answers == [0, 10, 20, 30, 40]
    # The first found nothing pending nor running and ran at once, as a batch of one
    # (no plain call given); the others, asked for while it ran, went as one batch.
    assert calls.batches == [("a", [0]), ("a", [1, 2, 3, 4])]


async def test_a_cancelled_eager_call_is_cancelled_and_the_next_runs_at_once() -> None:
    started = asyncio.Event()

    async def many(_: str, items: list[int]) -> list[int]:
        started.set()
        await asyncio.sleep(10)
        return items

    coalesce: Coalescer[str, int, int] = Coalescer(many, eager=True)
    first = asyncio.ensure_future(coalesce("a", 1))
    await started.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    fast: Coalescer[str, int, int] = coalesce
    fast._many = Recorder().many
    assert await fast("a", 2) == 20  # nothing left running: at once again
