"""The per-message log line, in the form admins grep next to Postfix's lines."""

from __future__ import annotations

import logging

import pytest

from mxscan import Action, Engine, Envelope, Message, Pipeline, Result, Verdict, format_result
from mxscan.logline import setup_logging

from .fakes import FakeScanner


def result(*verdicts: Verdict, final: Verdict) -> Result:
    msg = Message.from_bytes(b"S: x\n\n", envelope=Envelope(queue_id="4BQ2J1234"))
    return Result(verdict=final, verdicts=verdicts, message=msg)


def test_design_md_example_line() -> None:
    clam = Verdict(Action.DISCARD, "clamav", "virus", "infected(Eicar-Signature)")
    spam = Verdict(Action.ACCEPT, "spamassassin", "too big", "skipped(oversize)")
    line = format_result(result(clam, spam, final=clam))
    assert line == (
        "4BQ2J1234: clamav=infected(Eicar-Signature) spamassassin=skipped(oversize) "
        'action=discard reason="virus"'
    )


def test_accept_line_has_no_reason_and_noqueue_without_id() -> None:
    ok = Verdict(Action.ACCEPT, "clamav", status="clean")
    final = Verdict(Action.ACCEPT, "mxscan", "accepted by every scanner", "accept")
    res = Result(verdict=final, verdicts=(ok,), message=Message.from_bytes(b""))
    assert format_result(res) == "NOQUEUE: clamav=clean action=accept"


async def test_split_result_lists_each_policy_group() -> None:
    def fn(message: Message) -> Verdict:
        return Verdict(status="x")

    engine = Engine(
        Pipeline([[FakeScanner("s", fn=fn)]]),
        {"example.net": Pipeline([[FakeScanner("s", action=Action.DISCARD, status="spam")]])},
    )
    msg = Message.from_bytes(
        b"S: x\n\n", envelope=Envelope(recipients=("a@example.net", "b@x.org"), queue_id="Q1")
    )
    line = format_result(await engine.scan(msg))
    assert line.startswith("Q1: policy=example.net rcpts=1 s=spam action=discard")
    assert "; policy=default rcpts=1 s=x action=accept" in line


def test_setup_logging_stderr_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("stderr")
    logging.getLogger("mxscan").info("Q1: clamav=clean action=accept")
    err = capsys.readouterr().err
    assert err.startswith("mxscan[")
    assert err.rstrip().endswith("]: Q1: clamav=clean action=accept")


def test_no_prefix_under_journald(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    setup_logging("stderr")
    logging.getLogger("mxscan").info("Q2: action=accept")
    assert capsys.readouterr().err == "Q2: action=accept\n"
