"""How a stage runs its steps: concurrently, each under its own timeout, and
all of them cancelled when the scan is (a milter client that goes away)."""

from __future__ import annotations

import asyncio

from mxscan import Action, Message, Pipeline, Step
from tests.support.scanners import FakeScanner, Gate


def message() -> Message:
    return Message.from_bytes(b"Subject: x\r\n\r\nbody\r\n")


async def test_cancelling_the_scan_cancels_every_step_of_the_stage() -> None:
    scanners = [Gate(f"w{i}", status="released") for i in range(3)]
    run = asyncio.create_task(Pipeline([scanners]).run(message()))
    for scanner in scanners:
        await scanner.entered.wait()
    run.cancel()
    try:
        await run
    except asyncio.CancelledError:
        pass
    # Let the cancelled steps run their handlers.
    for _ in range(3):
        await asyncio.sleep(0)
    assert [s.cancelled.is_set() for s in scanners] == [True, True, True]


async def test_verdicts_keep_stage_order_whoever_finishes_first() -> None:
    first, second = Gate("first", status="released"), Gate("second", status="released")
    run = asyncio.create_task(Pipeline([[first, second, FakeScanner("third")]]).run(message()))
    await first.entered.wait()
    await second.entered.wait()
    second.release.set()
    await asyncio.sleep(0)
    first.release.set()
    result = await run
    assert [v.scanner for v in result.verdicts] == ["first", "second", "third"]
    assert [v.token for v in result.verdicts] == ["released", "released", "clean"]


async def test_a_timeout_of_the_first_step_leaves_its_neighbours_alone() -> None:
    hangs, neighbour = Gate("hangs", status="released"), Gate("neighbour", status="released")
    pipeline = Pipeline([[Step(hangs, timeout=0.1), Step(neighbour, timeout=60)]])
    run = asyncio.create_task(pipeline.run(message()))
    await hangs.entered.wait()
    await neighbour.entered.wait()
    await hangs.cancelled.wait()  # the timeout fires, however slow the machine
    assert not neighbour.cancelled.is_set()
    neighbour.release.set()
    result = await run
    assert [v.token for v in result.verdicts] == ["error(timeout)", "released"]
    assert result.action is Action.TEMPFAIL


async def test_an_empty_stage_gives_no_verdicts() -> None:
    result = await Pipeline([[], [FakeScanner("only")]]).run(message())
    assert [v.scanner for v in result.verdicts] == ["only"]
    assert result.action is Action.ACCEPT
