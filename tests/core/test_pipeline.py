"""Pipeline: stages, concurrency, edits between stages, early end, on_error."""

from __future__ import annotations

import asyncio

import pytest

from mxscan import Action, HeaderEdit, Message, Pipeline, SmtpReply, Step, Verdict
from mxscan.pipeline import combine
from tests.support.scanners import FakeScanner, Gate, down, raising

MSG = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"


def message() -> Message:
    return Message.from_bytes(MSG)


async def test_empty_pipeline_accepts_unchanged() -> None:
    result = await Pipeline([]).run(message())
    assert result.action is Action.ACCEPT
    assert result.verdicts == ()
    assert result.message.as_bytes() == MSG


class _Rendezvous:
    """A scanner that finishes only once its partner has started too: run one
    after the other, the first would wait for ever (and time out)."""

    def __init__(self, name: str, started: asyncio.Event, partner: asyncio.Event) -> None:
        self.name = name
        self.started = started
        self.partner = partner

    async def scan(self, message: Message) -> Verdict:
        self.started.set()
        await self.partner.wait()
        return Verdict(status="met")

    async def aclose(self) -> None:
        return None


async def test_scanners_in_one_stage_run_concurrently() -> None:
    a_started, b_started = asyncio.Event(), asyncio.Event()
    a = _Rendezvous("a", a_started, b_started)
    b = _Rendezvous("b", b_started, a_started)
    result = await Pipeline([[Step(a, timeout=5), Step(b, timeout=5)]]).run(message())
    assert [v.token for v in result.verdicts] == ["met", "met"]
    # The same two in separate stages cannot meet: the check can fail.
    a_started.clear()
    b_started.clear()
    result = await Pipeline([[Step(a, timeout=0.2)], [Step(b, timeout=0.2)]]).run(message())
    assert result.verdicts[0].token == "error(timeout)"


async def test_later_stage_sees_headers_added_by_earlier_stage() -> None:
    adder = FakeScanner("spam", edits=(HeaderEdit.add("X-Spam-Flag", "YES"),))

    def rule(msg: Message) -> Verdict:
        if msg.get("X-Spam-Flag") == "YES":
            return Verdict(Action.DISCARD, reason="X-Spam-Flag: YES")
        return Verdict()

    rules = FakeScanner("rules", fn=rule)
    result = await Pipeline([[adder], [rules]]).run(message())
    assert result.action is Action.DISCARD
    assert result.verdict.scanner == "rules"
    assert rules.seen[0].get("X-Spam-Flag") == "YES"


async def test_scanners_in_the_same_stage_see_the_same_input() -> None:
    adder = FakeScanner("a", edits=(HeaderEdit.add("X-A", "1"),))
    other = FakeScanner("b")
    await Pipeline([[adder, other]]).run(message())
    assert other.seen[0].get("X-A") is None


async def test_reject_and_discard_end_the_pipeline_early() -> None:
    for action in (Action.REJECT, Action.DISCARD):
        later = FakeScanner("later")
        result = await Pipeline([[FakeScanner("first", action=action)], [later]]).run(message())
        assert result.action is action
        assert later.seen == []
        assert [v.scanner for v in result.verdicts] == ["first"]


async def test_quarantine_and_tempfail_do_not_end_early() -> None:
    later = FakeScanner("later")
    pipeline = Pipeline([[FakeScanner("q", action=Action.QUARANTINE)], [later]])
    result = await pipeline.run(message())
    assert result.action is Action.QUARANTINE
    assert len(later.seen) == 1


async def test_edits_are_collected_in_order_and_applied() -> None:
    one = FakeScanner("one", edits=(HeaderEdit.add("X-1", "a"),))
    two = FakeScanner("two", edits=(HeaderEdit.add("X-2", "b"), HeaderEdit.delete("X-1", 1)))
    result = await Pipeline([[one], [two]]).run(message())
    assert [str(e) for e in result.edits] == ["add X-1: a", "add X-2: b", "delete X-1[1]"]
    assert result.message.get("X-1") is None
    assert result.message.get("X-2") == "b"
    assert message().apply(result.edits).as_bytes() == result.message.as_bytes()


@pytest.mark.parametrize(
    ("actions", "winner"),
    [
        ([Action.ACCEPT, Action.TEMPFAIL], Action.TEMPFAIL),
        ([Action.TEMPFAIL, Action.QUARANTINE], Action.QUARANTINE),
        ([Action.QUARANTINE, Action.DISCARD], Action.DISCARD),
        ([Action.DISCARD, Action.REJECT], Action.REJECT),
        ([Action.REJECT, Action.ACCEPT], Action.REJECT),
    ],
)
def test_combine_order(actions: list[Action], winner: Action) -> None:
    verdicts = [Verdict(a, scanner=f"s{i}") for i, a in enumerate(actions)]
    assert combine(verdicts).action is winner


async def test_every_verdict_is_kept_and_named_after_the_step() -> None:
    s1 = FakeScanner("clamav", status="clean")
    s2 = FakeScanner("spamassassin", action=Action.QUARANTINE, status="spam(7.0)")
    result = await Pipeline([[s1, s2]]).run(message())
    assert [(v.scanner, v.token) for v in result.verdicts] == [
        ("clamav", "clean"),
        ("spamassassin", "spam(7.0)"),
    ]


@pytest.mark.parametrize("on_error", [Action.ACCEPT, Action.TEMPFAIL, Action.REJECT])
async def test_scanner_error_gets_on_error(on_error: Action) -> None:
    result = await Pipeline([[Step(down("clamav"), on_error=on_error)]]).run(message())
    assert result.action is on_error
    verdict = result.verdicts[0]
    assert verdict.token == "error(failed)"
    assert "unix:/nowhere" in verdict.reason
    if on_error is Action.REJECT:
        assert verdict.smtp_reply is not None and verdict.smtp_reply.code == 554
    if on_error is Action.TEMPFAIL:
        assert verdict.smtp_reply is not None and verdict.smtp_reply.code == 451


async def test_default_on_error_is_tempfail() -> None:
    result = await Pipeline([[down()]]).run(message())
    assert result.action is Action.TEMPFAIL


async def test_scanner_hanging_past_timeout_gets_on_error() -> None:
    slow = Gate("slow")  # never released: it answers only if the pipeline waits for ever
    async with asyncio.timeout(60):  # only turns a pipeline that waits for ever into a failure
        result = await Pipeline([[Step(slow, timeout=0.2)]]).run(message())
    assert slow.cancelled.is_set()  # cancelled, rather than left running
    assert result.action is Action.TEMPFAIL
    assert result.verdicts[0].token == "error(timeout)"
    assert "0.2s" in result.verdicts[0].reason


async def test_unexpected_exception_gets_on_error() -> None:
    result = await Pipeline([[raising("buggy", ZeroDivisionError("oops"))]]).run(message())
    assert result.action is Action.TEMPFAIL
    assert result.verdicts[0].token == "error(crashed)"
    assert "ZeroDivisionError" in result.verdicts[0].reason


@pytest.mark.parametrize("garbage", [None, "ACCEPT", 0, {"action": "accept"}])
async def test_garbage_return_gets_on_error_and_never_accept(garbage: object) -> None:
    scanner = FakeScanner("weird", fn=lambda msg: garbage)
    result = await Pipeline([[scanner]]).run(message())
    assert result.action is Action.TEMPFAIL
    assert result.verdicts[0].token == "error(garbage)"


async def test_one_failing_scanner_does_not_stop_its_neighbour() -> None:
    ok = FakeScanner("ok", edits=(HeaderEdit.add("X-Ok", "1"),))
    result = await Pipeline([[down("bad"), ok]]).run(message())
    assert result.message.get("X-Ok") == "1"
    assert [v.token for v in result.verdicts] == ["error(failed)", "clean"]


def test_step_validates_on_error_and_timeout() -> None:
    with pytest.raises(ValueError, match="on_error"):
        Step(FakeScanner(), on_error=Action.DISCARD)
    with pytest.raises(ValueError, match="timeout"):
        Step(FakeScanner(), timeout=0)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Pipeline([[FakeScanner("x")], [FakeScanner("x")]])


def test_non_scanner_is_refused() -> None:
    with pytest.raises(TypeError):
        Pipeline([[object()]])  # type: ignore[list-item]


async def test_aclose_closes_each_scanner_once_even_if_one_fails() -> None:
    a = FakeScanner("a")
    b = FakeScanner("b")

    async def broken() -> None:
        raise RuntimeError("close failed")

    a.aclose = broken  # type: ignore[method-assign]
    await Pipeline([[a], [b]]).aclose()
    assert b.closed == 1


def test_smtp_reply_validation() -> None:
    assert str(SmtpReply(550, "5.7.1", "no")) == "550 5.7.1 no"
    with pytest.raises(ValueError):
        SmtpReply(250, "2.0.0", "ok")
    with pytest.raises(ValueError):
        SmtpReply(450, "5.7.1", "mismatch")
    with pytest.raises(ValueError):
        SmtpReply(550, "5.7.1", "a\r\nb")


async def test_a_big_edit_batch_is_applied_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Above THREAD_EDITS the stage's edits go to a worker thread; they must still
    # all be applied and all reported (the milter replays result.edits).
    import threading

    from mxscan import pipeline

    threads: list[str] = []
    original = Message.apply

    def spy(self: Message, edits):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return original(self, edits)

    monkeypatch.setattr(Message, "apply", spy)
    n = pipeline.THREAD_EDITS
    head = b"X-Spam-Level: *\r\n" * n
    msg = Message.from_bytes(head + MSG)
    edits = (HeaderEdit.delete("X-Spam-Level", 1),) * n
    adder = FakeScanner("small", edits=(HeaderEdit.add("X-A", "1"),))
    result = await Pipeline([[FakeScanner("strip", edits=edits)], [adder]]).run(msg)
    assert result.edits == (*edits, HeaderEdit.add("X-A", "1"))
    assert result.message.as_bytes() == MSG.replace(b"\r\n\r\n", b"\r\nX-A: 1\r\n\r\n")
    main = threading.current_thread().name
    assert threads[0] != main  # the big batch
    assert threads[1] == main  # a small one: not worth a thread
