import asyncio
import math
import threading
import time

import pytest

from tasks.crawl.politeness import Politeness, Stopped


def _politeness(stop: threading.Event | None = None, budget: float = math.inf, **limits) -> Politeness:
    started = time.monotonic()
    settings = {"max_concurrency": 2, "max_per_host": 2, **limits}
    return Politeness(settings["max_concurrency"], settings["max_per_host"], stop or threading.Event(),
                      lambda: budget - (time.monotonic() - started))


def test_request_starts_to_a_host_keep_the_delay_and_the_global_limit_holds() -> None:
    starts: dict[str, list[float]] = {"a": [], "b": []}

    async def request(politeness: Politeness, host: str) -> None:
        async with politeness.turn(host, delay=0.05):
            starts[host].append(asyncio.get_running_loop().time())
            await asyncio.sleep(0.02)

    async def main() -> Politeness:
        politeness = _politeness(max_concurrency=2)
        await asyncio.gather(*(request(politeness, host) for host in "aaaabb"))
        return politeness

    politeness = asyncio.run(main())
    for host_starts in starts.values():
        gaps = [later - earlier for earlier, later in zip(host_starts, host_starts[1:], strict=False)]
        assert all(gap >= 0.05 for gap in gaps), gaps  # loop time, measured where the turn is granted
    assert politeness.max_in_flight == 2 and politeness.in_flight == 0


def test_a_stop_or_the_budget_cuts_a_wait_short() -> None:
    stop = threading.Event()

    async def wait_for_turn(politeness: Politeness) -> str:
        async with politeness.turn("a", delay=0.0):
            pass
        try:
            async with politeness.turn("a", delay=30.0):
                return "requested"
        except Stopped as exc:
            return exc.reason

    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert asyncio.run(wait_for_turn(_politeness(stop))) == "stopped"
    assert time.monotonic() - started < 10  # noticed long before the 30 s delay
    assert asyncio.run(wait_for_turn(_politeness(budget=5.0))) == "budget_exhausted"  # 30 s would outlast it


def test_host_slots() -> None:
    politeness = _politeness(max_per_host=1)
    politeness.occupy("a")
    assert not politeness.has_slot("a") and politeness.has_slot("b")
    politeness.release("a")
    assert politeness.has_slot("a")
    with pytest.raises(Stopped):
        asyncio.run(_politeness(budget=1.0).sleep(2.0))  # a wait longer than the budget left
