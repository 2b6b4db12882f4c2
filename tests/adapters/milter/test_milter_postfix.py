"""Real Postfix 3.7 end to end: smtpd_milters = unix:<mxscan>, relaying to an SMTP sink.

The scanners are small in-test ones (one adds a header, one acts on the Subject), so
these tests prove the milter adapter against the real MTA; the full seed stack with
clamd/spamd is exercised separately.
"""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mxscan import (
    Envelope,
    Header,
    HeaderEdit,
    Message,
    Pipeline,
    PolicyRouter,
    Verdict,
    received_header,
)
from mxscan.adapters.milter.server import MilterServer
from mxscan.addresses import UnixAddress
from tests.support import scanners
from tests.support.messages import split_first_header
from tests.support.postfix import PostfixInstance
from tests.support.sink import SMTPSink
from tests.support.snippets import milter_main_cf
from tests.support.threaded import ThreadedMilter

pytestmark = [pytest.mark.postfix, pytest.mark.e2e]

ORIGINAL = (
    b"Date: Thu, 01 Feb 2024 10:00:00 +0000\r\n"
    b"From: Sender <sender@example.org>\r\n"
    b"To: rcpt@example.com\r\n"
    b"Message-ID: <e2e-1@example.org>\r\n"
    b"Subject:   three spaces, then a fold\r\n"
    b"\tsecond line of the subject\r\n"
    b"X-Tab:\tvalue after a tab\r\n"
    b"X-Empty:\r\n"
    b"X-Eight-Bit: caf\xc3\xa9 \xff raw\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel;\r\n"
    b"    h=from:to:subject; bh=abc; b=def\r\n"
    b"\r\n"
    b"Body line one\r\n"
    b"  indented line, trailing spaces   \r\n"
    b"\r\n"
    b".leading dot\r\n" + b"x" * 998 + b"\r\n" + b"last line\r\n"
)


def new_milter(sock: Path) -> ThreadedMilter:
    return ThreadedMilter(
        lambda: MilterServer(
            scanners.engine(scanners.AddHeader(), scanners.SubjectRule()),
            socket_mode=0o660,
            socket_group="postfix",
        ),
        UnixAddress(str(sock)),
    ).start()


@pytest.fixture
def milter(milter_sock: Path) -> Iterator[ThreadedMilter]:
    running = new_milter(milter_sock)
    yield running
    running.stop()


@pytest.fixture
def postfix(
    make_postfix: Callable[..., PostfixInstance], milter_sock: Path, milter: ThreadedMilter
) -> PostfixInstance:
    return make_postfix(main_overrides=milter_main_cf(f"unix:{milter_sock}"))


def delivered_one(sink: SMTPSink) -> bytes:
    (delivery,) = sink.wait_for(1, timeout=30)
    return delivery.data


def test_delivered_bytes_identical_apart_from_added_header(
    postfix: PostfixInstance, smtp_sink: SMTPSink
) -> None:
    result = postfix.send(ORIGINAL)
    assert result.code == 250, result.text
    data = delivered_one(smtp_sink)
    received, rest = split_first_header(data)
    assert received.startswith(b"Received: from ")
    head, body = ORIGINAL.split(b"\r\n\r\n", 1)
    assert rest == head + b"\r\nX-Scanned: mxscan\r\n\r\n" + body


def test_first_instance_change_keeps_every_other_byte(
    postfix: PostfixInstance, smtp_sink: SMTPSink
) -> None:
    raw = ORIGINAL.replace(b"Subject:   three spaces", b"Subject:   change-me")
    assert postfix.send(raw).code == 250
    data = delivered_one(smtp_sink)
    _, rest = split_first_header(data)
    head, body = raw.split(b"\r\n\r\n", 1)
    old_subject = b"Subject:   change-me, then a fold\r\n\tsecond line of the subject\r\n"
    expected_head = head.replace(old_subject, b"Subject: changed\r\n")
    assert b"change-me" not in rest
    assert rest == expected_head + b"\r\nX-Scanned: mxscan\r\n\r\n" + body


def test_discard_and_reject(postfix: PostfixInstance, smtp_sink: SMTPSink) -> None:
    discarded = postfix.send(b"Subject: discard-me\r\nFrom: <a@example.org>\r\n\r\nbye\r\n")
    assert discarded.code == 250  # the client believes it was delivered
    rejected = postfix.send(b"Subject: reject-me\r\nFrom: <a@example.org>\r\n\r\nno\r\n")
    assert rejected.code == 554
    assert "5.7.1 Rejected: 100% bad" in rejected.text  # Postfix un-doubles the %
    assert postfix.send(b"Subject: fine\r\nFrom: <a@example.org>\r\n\r\nok\r\n").code == 250
    (delivery,) = smtp_sink.wait_for(1, timeout=30)
    assert b"Subject: fine" in delivery.data
    postfix.wait_for_log(r"milter-discard: END-OF-MESSAGE")
    time.sleep(1)
    assert len(smtp_sink) == 1  # the discarded message never arrived


def test_quarantine_puts_mail_on_hold(postfix: PostfixInstance, smtp_sink: SMTPSink) -> None:
    assert postfix.send(b"Subject: hold-me\r\nFrom: <a@example.org>\r\n\r\nheld\r\n").code == 250
    postfix.wait_for_log(r"milter-hold: END-OF-MESSAGE.*milter triggers HOLD action")
    queued = postfix.queue()
    assert [q.queue_name for q in queued] == ["hold"]
    assert len(smtp_sink) == 0


def test_tempfail_reply(postfix: PostfixInstance) -> None:
    result = postfix.send(b"Subject: later-me\r\nFrom: <a@example.org>\r\n\r\nx\r\n")
    assert result.code == 451 and "4.7.1" in result.text


def test_mxscan_down_defers_then_delivers(
    make_postfix: Callable[..., PostfixInstance], milter_sock: Path, smtp_sink: SMTPSink
) -> None:
    postfix = make_postfix(main_overrides=milter_main_cf(f"unix:{milter_sock}"))
    message = b"Subject: while down\r\nFrom: <a@example.org>\r\n\r\nkept\r\n"
    with pytest.raises(smtplib.SMTPResponseException) as refused:
        postfix.send(message)
    assert refused.value.smtp_code == 451  # milter_default_action = tempfail
    postfix.wait_for_log(r"connect to Milter service unix:.*mxscan\.sock")
    assert len(smtp_sink) == 0
    running = new_milter(milter_sock)
    try:
        assert postfix.send(message).code == 250  # the client's retry now succeeds
        data = delivered_one(smtp_sink)
        # (Postfix adds the Date/Message-ID it finds missing before the milter runs.)
        assert b"Subject: while down\r\nFrom: <a@example.org>\r\n" in data
        assert data.endswith(b"X-Scanned: mxscan\r\n\r\nkept\r\n")
    finally:
        running.stop()


def test_several_messages_one_smtp_session(
    postfix: PostfixInstance, smtp_sink: SMTPSink, milter: ThreadedMilter
) -> None:
    with smtplib.SMTP(
        "127.0.0.1", postfix.smtp_port, local_hostname="client.mxscan.test", timeout=60
    ) as client:
        client.ehlo("client.mxscan.test")
        for i in range(3):
            client.sendmail("s@example.org", ["rcpt@example.com"], f"Subject: m{i}\r\n\r\nb{i}\r\n")
        client.rset()
        client.sendmail("s@example.org", ["rcpt@example.com"], "Subject: m3\r\n\r\nb3\r\n")
    got = sorted(d.data for d in smtp_sink.wait_for(4, timeout=30))
    for i, data in enumerate(got):
        assert f"Subject: m{i}\r\n".encode() in data
        assert data.endswith(f"X-Scanned: mxscan\r\n\r\nb{i}\r\n".encode())
    assert milter.server is not None and milter.server.messages == 4


class _Recorder:
    """Keeps the envelope the milter built, and writes a folded report (SA's
    shape, ~1,700 bytes in all) and one long unfolded value."""

    name = "recorder"

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def scan(self, message: Message) -> Verdict:
        self.envelopes.append(message.envelope)
        return Verdict(edits=(HeaderEdit.add("X-Report", REPORT), HeaderEdit.add("X-Long", LONG)))

    async def aclose(self) -> None:
        pass


REPORT = "\r\n" + "\r\n".join(
    f"\t*  0.5 RULE_{i:02d} Lots of money in rule number {i} that hit" for i in range(30)
)
LONG = " ".join(f"Lots of money {i}" for i in range(120))  # one 2,000-byte line, unfolded


def test_received_line_and_folded_headers_through_postfix(
    make_postfix: Callable[..., PostfixInstance], milter_sock: Path, smtp_sink: SMTPSink
) -> None:
    """What spamd is given as this hop's Received: line has the form Postfix
    itself writes (checked against Postfix's own line, which a milter never
    sees), and headers with folds arrive as mxscan wrote them: Postfix breaks
    nothing mid-word."""
    recorder = _Recorder()
    running = ThreadedMilter(
        lambda: MilterServer(
            PolicyRouter(Pipeline([[recorder]])), socket_mode=0o660, socket_group="postfix"
        ),
        UnixAddress(str(milter_sock)),
    ).start()
    try:
        postfix = make_postfix(main_overrides=milter_main_cf(f"unix:{milter_sock}"))
        assert postfix.send(b"From: <a@example.org>\r\nSubject: hi\r\n\r\nbody\r\n").code == 250
        data = delivered_one(smtp_sink)
    finally:
        running.stop()
    (envelope,) = recorder.envelopes
    assert envelope.receiver == "mx.mxscan.test"  # the macro j (myhostname)
    # Not in Postfix's default milter_connect_macros: they came as asked for.
    assert {"{client_addr}", "{client_name}", "{client_ptr}", "_", "j"} <= set(envelope.macros)
    assert envelope.client_address == "127.0.0.1" and envelope.helo == "client.mxscan.test"
    real, rest = split_first_header(data)
    ours = received_header(envelope)
    assert ours is not None
    real_trace, _, real_date = real.rpartition(b"; ")
    our_trace, _, our_date = ours.raw.rpartition(b"; ")
    assert our_trace == real_trace  # from/by/with/id/for, folds and all
    assert real_date.endswith(b"\r\n") and our_date.endswith(b"\r\n")
    # The same date format (zone and second aside: the host's zone, a later second).
    stamp = re.compile(
        rb"[A-Z][a-z]{2}, [ \d]\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(.+\)"
    )
    assert stamp.fullmatch(real_date[:-2]) and stamp.fullmatch(our_date[:-2])
    delivered = Message.from_bytes(rest)
    (report,) = (h for h in delivered.headers if h.name == "X-Report")
    assert report.raw == Header.build("X-Report", REPORT).raw  # SA's lines, as they were
    (long,) = (h for h in delivered.headers if h.name == "X-Long")
    assert long.value == LONG  # folded at spaces only: unfolding restores it
    for header in delivered.headers:
        assert all(len(line) <= 998 for line in header.raw.split(b"\r\n")), header.name
