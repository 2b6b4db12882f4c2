"""Fault outcomes that need no daemon: the sans-I/O milter session when the body
cannot be spooled, and the header-rules engine against a catastrophic pattern."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mxscan import Action, Message
from mxscan.adapters.milter.session import Session
from tests.support.faults import figure
from tests.support.mta import connect, helo, mail, message_packets, optneg, parse_replies, rcpt

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


# What Postfix delivers for one sent message without a Date: or Message-Id:, and for
# the same message a second later through the milter listener (the shape of a real
# delivery: Postfix's Received: first, its Message-Id: and Date: appended; the day
# space-padded as Postfix writes it on the 1st to the 9th).
SENT = b"From: a@example.org\nTo: b@example.com\nSubject: hi\n\nbody\n"
PLAIN = (
    b"Received: from load.mxscan.test (localhost [127.0.0.1])\r\n\tby mx.mxscan.test"
    b" (Postfix) with ESMTP id 4B2C3D\r\n\tfor <rcpt@example.com>; Wed,  2 Dec 2026 17:45:00 +0000 (UTC)\r\n"
    b"X-Corpus-Id: c00001p\r\nFrom: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n"
    b"Message-Id: <20261202174500.4B2C3D@mx.mxscan.test>\r\n"
    b"Date: Wed,  2 Dec 2026 17:45:00 +0000 (UTC)\r\n\r\nbody\r\n"
)


def _milter_copy(*, subject: bytes = b"hi", extra: bytes = b"") -> bytes:
    copy = PLAIN.replace(b"4B2C3D", b"5E6F70").replace(b"17:45:00", b"17:45:01")
    copy = copy.replace(b"c00001p", b"c00001m").replace(b"Subject: hi", b"Subject: " + subject)
    return copy.replace(
        b"Message-Id:", b"X-Spam-Status: No, score=0.1\r\n" + extra + b"Message-Id:"
    )


def test_corpus_comparison_learns_what_postfix_added_from_its_own_copy() -> None:
    from tests.support.corpus import normalise, postfix_added

    added = postfix_added(PLAIN, SENT)
    assert dict(added.counts) == {b"message-id": 1, b"date": 1}
    assert normalise(_milter_copy(), added) == normalise(PLAIN, added)
    # What mxscan changes still shows: an edited field, or a field it adds under a
    # name Postfix also added (one Date: more than Postfix's own).
    assert normalise(_milter_copy(subject=b"HI"), added) != normalise(PLAIN, added)
    extra = b"Date: Thu, 3 Dec 2026 00:00:00 +0000\r\n"
    assert normalise(_milter_copy(extra=extra), added) != normalise(PLAIN, added)


def test_corpus_comparison_keeps_the_senders_own_date() -> None:
    """A Date: the sender wrote is the sender's: compared, never dropped."""
    from tests.support.corpus import normalise, postfix_added

    sent = SENT.replace(b"Subject: hi\n", b"Subject: hi\nDate: Tue, 1 Dec 2026 09:00:00 +0100\n")
    plain = PLAIN.replace(
        b"Subject: hi\r\n", b"Subject: hi\r\nDate: Tue, 1 Dec 2026 09:00:00 +0100\r\n"
    )
    plain = plain.replace(b"Date: Wed,  2 Dec 2026 17:45:00 +0000 (UTC)\r\n\r\n", b"\r\n")
    added = postfix_added(plain, sent)
    assert dict(added.counts) == {b"message-id": 1}
    edited = plain.replace(b"+0100", b"+0000")
    assert normalise(edited, added) != normalise(plain, added)
