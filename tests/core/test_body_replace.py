"""Verdict.body: a scanner's replacement body, applied like a stage's edits."""

from __future__ import annotations

from mxscan import Body, Envelope, HeaderEdit, Message, Pipeline, PolicyRouter, Step
from tests.support.scanners import FakeScanner

MSG = b"From: a@example.com\r\nSubject: hi\r\n\r\nold body\r\n"


def message() -> Message:
    return Message.from_bytes(MSG)


async def test_pipeline_applies_a_replacement_body_after_header_edits() -> None:
    new = Body(b"new body\r\n")
    scanner = FakeScanner("r", edits=(HeaderEdit.add("X-A", "1"),), body=new)
    result = await Pipeline([[scanner]]).run(message())
    assert result.body_replaced
    assert result.message.body is new
    assert result.message.as_bytes() == (
        b"From: a@example.com\r\nSubject: hi\r\nX-A: 1\r\n\r\nnew body\r\n"
    )


async def test_no_replacement_leaves_the_body_and_the_flag_alone() -> None:
    msg = message()
    result = await Pipeline([[FakeScanner("a")]]).run(msg)
    assert not result.body_replaced
    assert result.message.body is msg.body


async def test_shadow_replacement_is_not_applied() -> None:
    scanner = FakeScanner("r", body=Body(b"new\r\n"))
    msg = message()
    result = await Pipeline([[Step(scanner, shadow=True)]]).run(msg)
    assert not result.body_replaced
    assert result.message.body is msg.body


async def test_later_stage_sees_the_new_body() -> None:
    first = FakeScanner("r", body=Body(b"new body\r\n"))
    second = FakeScanner("s")
    await Pipeline([[first], [second]]).run(message())
    assert second.seen[0].body.as_bytes() == b"new body\r\n"


async def test_last_in_stage_order_wins() -> None:
    a = FakeScanner("a", body=Body(b"A\r\n"), delay=0.05)
    b = FakeScanner("b", body=Body(b"B\r\n"))
    result = await Pipeline([[a, b]]).run(message())
    assert result.message.body.as_bytes() == b"B\r\n"


class _Changer(FakeScanner):
    changes_body = True


def test_engine_changes_body_looks_at_every_pipeline() -> None:
    plain = Pipeline([[FakeScanner("a")]])
    assert not PolicyRouter(plain).changes_body
    assert not PolicyRouter(plain, {"example.net": Pipeline([[FakeScanner("b")]])}).changes_body
    changer = Pipeline([[FakeScanner("c")], [_Changer("d")]])
    assert PolicyRouter(changer).changes_body
    assert PolicyRouter(plain, {"example.net": changer}).changes_body


async def test_split_result_carries_the_flag() -> None:
    changer = Pipeline([[_Changer("d", body=Body(b"x\r\n"))]])
    engine = PolicyRouter(Pipeline([[FakeScanner("a")]]), {"example.net": changer})

    msg = Message.from_bytes(MSG, envelope=Envelope(recipients=("u@example.net", "v@example.org")))
    result = await engine.scan(msg)
    assert result.policy == "split"
    assert [g.body_replaced for g in result.splits] == [True, False]
