"""Fault outcomes that need no daemon: the sans-I/O milter session when the body
cannot be spooled, and the header-rules engine against a catastrophic pattern."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from faults_support import figure
from milter_mta import connect, helo, mail, message_packets, optneg, parse_replies, rcpt

from mxscan import Action, Message
from mxscan.adapters.milter.session import Session

pytestmark = pytest.mark.faults

MAIL = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n"


def _feed(session: Session, *packets: bytes | list[bytes]) -> list[tuple[bytes, bytes]]:
    data = b"".join(p if isinstance(p, bytes) else b"".join(p) for p in packets)
    step = session.receive(data)
    return parse_replies(step.send), step.message  # type: ignore[return-value]


def test_session_tempfails_a_body_it_cannot_spool_and_goes_on(tmp_path: Path) -> None:
    session = Session(spool_threshold=1024, spool_dir=str(tmp_path / "missing"))
    _feed(session, optneg(), connect(), helo(), mail("a@example.org"), rcpt("b@example.com"))
    replies, message = _feed(session, message_packets(MAIL + b"x" * 5000))
    assert message is None  # nothing to scan: the body is incomplete
    assert replies[-1][0] == b"y" and replies[-1][1].startswith(b"451 4.3.0 "), replies
    # The next message of the same connection, small enough for memory, is scanned.
    _feed(session, mail("a@example.org"), rcpt("b@example.com"))
    _, message = _feed(session, message_packets(MAIL + b"small\r\n"))
    assert message is not None and message.body.as_bytes() == b"small\r\n"


def test_catastrophic_pattern_ends_at_the_match_limit() -> None:
    """/^Subject: (a+)+$/ against 'a' * 50 + '!' needs ~2**50 steps unbounded; PCRE2's
    match limit (the library default, as in Postfix) stops it: the rule counts as
    not matching, the reason says why, the other rules still apply."""
    from mxscan_header_rules.scanner import HeaderRules

    rules = HeaderRules(rules="/^Subject: (a+)+$/ REJECT hostile\n/^From:/ PREPEND X-Seen: 1\n")
    message = Message.from_bytes(
        b"Subject: " + b"a" * 50 + b"!\r\nFrom: x@example.org\r\n\r\nbody\r\n"
    )
    start = time.monotonic()
    verdict = rules.check(message)
    took = time.monotonic() - start
    assert verdict.action is Action.ACCEPT
    assert "match limit exceeded" in verdict.reason
    assert [str(e) for e in verdict.edits]  # the From: rule still applied
    figure(f"\n(a+)+$ on 50 a's: {took * 1000:.0f} ms to the match limit")
