"""The ingress's request grouping (plain asyncio, no Ray)."""

import asyncio

import pytest
from llmrec.serving.grouping import Coalescer


class Recorder:
    """A group function that records each group and takes ``delay`` seconds."""

    def __init__(self, delay: float = 0.05, fail_on: int | None = None) -> None:
        self.groups: list[list[int]] = []
        self.delay = delay
        self.fail_on = fail_on

    async def __call__(self, items: list[int]) -> list[int]:
        self.groups.append(list(items))
        await asyncio.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [10 * i for i in items]


async def _arrive(c: Coalescer[int, int], items: list[int], gap: float) -> list[object]:
    """Call ``c`` once per item, ``gap`` seconds apart, all in flight together."""

    async def one(i: int, item: int) -> int:
        await asyncio.sleep(i * gap)
        return await c(item)

    return await asyncio.gather(*(one(i, x) for i, x in enumerate(items)), return_exceptions=True)


def test_calls_that_arrive_while_a_group_is_served_go_together() -> None:
    fn = Recorder(delay=0.05)
    # one call every 5 ms for 20 calls while each group takes 50 ms: the first goes alone
    # (nothing else was waiting), the rest arrive during a group and share the next one
    results = asyncio.run(_arrive(Coalescer(fn, max_size=16), list(range(20)), gap=0.005))
    assert results == [10 * i for i in range(20)]
    assert fn.groups[0] == [0]
    assert len(fn.groups) <= 4
    assert max(len(g) for g in fn.groups) >= 8
    assert [i for g in fn.groups for i in g] == list(range(20))  # arrival order kept


def test_groups_never_exceed_max_size_and_in_flight_is_bounded() -> None:
    active = 0
    most = 0
    sizes: list[int] = []

    async def fn(items: list[int]) -> list[int]:
        nonlocal active, most
        sizes.append(len(items))
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.02)
        active -= 1
        return items

    c: Coalescer[int, int] = Coalescer(fn, max_size=3, max_in_flight=2)
    results = asyncio.run(_arrive(c, list(range(25)), gap=0.0))
    assert results == list(range(25))
    assert max(sizes) == 3
    assert sum(sizes) == 25
    assert most == 2


def test_an_idle_coalescer_serves_a_lone_call_at_once() -> None:
    fn = Recorder(delay=0.0)

    async def run() -> tuple[list[list[int]], int]:
        c: Coalescer[int, int] = Coalescer(fn, max_size=8)
        call = asyncio.create_task(c(7))
        for _ in range(3):  # a few turns of the event loop, no timer: no batching wait
            await asyncio.sleep(0)
        started = list(fn.groups)
        return started, await call

    started, result = asyncio.run(run())
    assert started == [[7]]
    assert result == 70


def test_a_failing_group_fails_its_callers_only() -> None:
    fn = Recorder(delay=0.02, fail_on=3)
    results = asyncio.run(_arrive(Coalescer(fn, max_size=4), list(range(9)), gap=0.001))
    group_of_3 = next(g for g in fn.groups if 3 in g)
    for item, result in zip(range(9), results, strict=True):
        if item in group_of_3:
            assert isinstance(result, ValueError) and "bad item 3" in str(result)
        else:
            assert result == 10 * item


def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    fn = Recorder(delay=0.05)

    async def run() -> tuple[list[int], list[list[int]]]:
        c: Coalescer[int, int] = Coalescer(fn, max_size=8)
        first = asyncio.create_task(c(0))  # occupies the slot
        await asyncio.sleep(0.01)
        waiting = [asyncio.create_task(c(i)) for i in (1, 2, 3)]
        await asyncio.sleep(0.01)
        waiting[1].cancel()  # its client went away before its group started
        done = await asyncio.gather(first, waiting[0], waiting[2])
        return list(done), fn.groups

    done, groups = asyncio.run(run())
    assert done == [0, 10, 30]
    assert groups == [[0], [1, 3]]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="max_size and max_in_flight must be >= 1, got 0"):
        Coalescer(Recorder(), max_size=0)
