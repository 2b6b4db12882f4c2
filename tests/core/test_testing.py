"""mxscan.testing: the doubles answer what the test chose, through the real
pipeline, and record what they were given."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

import mxscan
from mxscan import (
    Action,
    HeaderEdit,
    Message,
    Pipeline,
    ScannerError,
    SmtpReply,
    Step,
    Verdict,
)
from mxscan.testing import FakeEngine, StaticScanner

DATA = b"Subject: hi\r\n\r\nbody\r\n"


async def test_static_scanner_answers_its_verdict_with_edits_and_records() -> None:
    reject = Verdict(Action.REJECT, reply=SmtpReply(550, "5.7.1", "no"), status="bad")
    scanner = StaticScanner(reject, name="judge", edits=(HeaderEdit.add("X-Judged", "yes"),))
    result = await mxscan.PolicyRouter(Pipeline([[scanner]])).scan(Message.from_bytes(DATA))
    assert result.action is Action.REJECT and result.verdict.scanner == "judge"
    assert result.verdicts[0].edits == (HeaderEdit.add("X-Judged", "yes"),)
    assert [m.as_bytes() for m in scanner.messages] == [DATA]


async def test_a_later_stage_sees_the_edits_of_an_earlier_one() -> None:
    tagger = StaticScanner(name="tagger", edits=(HeaderEdit.add("X-Tag", "1"),))
    after = StaticScanner(name="after")
    await mxscan.PolicyRouter(Pipeline([[tagger], [after]])).scan(Message.from_bytes(DATA))
    assert after.messages[0].get("X-Tag") == "1"


async def test_static_scanner_error_goes_through_on_error() -> None:
    down = StaticScanner(name="down", error=ScannerError("connect to unix:/nowhere failed"))
    result = await mxscan.PolicyRouter(Pipeline([[down]])).scan(Message.from_bytes(DATA))
    assert result.action is Action.TEMPFAIL  # the default on_error
    assert result.verdicts[0].status.startswith("error")


async def test_hold_keeps_a_scan_in_flight_until_set() -> None:
    hold = asyncio.Event()
    engine = FakeEngine(hold=hold)
    assert not engine.entered.is_set()
    running = asyncio.ensure_future(engine.scan(Message.from_bytes(DATA)))
    await asyncio.wait_for(engine.entered.wait(), 30)
    assert not running.done() and len(engine.messages) == 1
    hold.set()
    assert (await running).action is Action.ACCEPT
    assert not engine.cancelled.is_set()  # it finished: nothing was cancelled


async def test_cancelled_is_set_when_a_held_scan_is_cancelled() -> None:
    held = StaticScanner(name="held", hold=asyncio.Event())  # never set
    engine = mxscan.PolicyRouter(Pipeline([[Step(held, timeout=0.1)]]))
    result = await engine.scan(Message.from_bytes(DATA))
    assert held.entered.is_set() and held.cancelled.is_set()
    assert result.action is Action.TEMPFAIL  # the step's timeout, then the default on_error


def test_fake_engine_is_an_engine_for_scan_and_counts_closes() -> None:
    engine = FakeEngine(Verdict(Action.DISCARD, status="gone"))
    assert mxscan.scan(DATA, config=engine).action is Action.DISCARD
    asyncio.run(engine.aclose())
    assert engine.closed == 1 and engine.policy_for("a@example.net") == "default"


async def test_fake_engine_crash_is_raised_by_scan_itself() -> None:
    with pytest.raises(RuntimeError, match="engine exploded"):
        await FakeEngine(crash=RuntimeError("engine exploded")).scan(Message.from_bytes(DATA))


def test_import_mxscan_does_not_load_the_testing_module() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import sys, mxscan; print('mxscan.testing' in sys.modules)"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out == "False\n"
