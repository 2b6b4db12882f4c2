"""The same header edits through a real Sendmail 8.17 and a real Postfix 3.7.

Sendmail numbers INSHEADER positions over its internal header list, which holds
entries the milter never sees; Postfix hides only its own Received:. One milter
serves both (the MTA told apart by its ``v`` macro) and each delivered message must
be what mxscan itself made of the message (``Message.apply``), byte for byte,
after each MTA's own Received: header.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mxscan import HeaderEdit, Message, Verdict
from mxscan.adapters.milter.server import MilterServer
from mxscan.addresses import UnixAddress
from tests.support import scanners
from tests.support.daemons import require_daemon
from tests.support.messages import split_first_header
from tests.support.postfix import PostfixInstance
from tests.support.sendmail import SendmailInstance
from tests.support.sink import SMTPSink
from tests.support.snippets import milter_main_cf
from tests.support.threaded import ThreadedMilter

pytestmark = [pytest.mark.postfix, pytest.mark.sendmail, pytest.mark.e2e]

HEAD = (
    b"From: Sender <sender@example.org>\r\n"
    b"To: rcpt@example.com\r\n"
    b"Date: Thu, 01 Feb 2024 10:00:00 +0000\r\n"
    b"Message-ID: <sendmail-{case}@example.org>\r\n"
    b"Subject: {case}\r\n"
    b"X-Fold:  two spaces\r\n\tand a fold\r\n"
    b"X-Dup: one\r\n"
    b"X-Dup: two\r\n"
    b"X-Dup: three\r\n"
    b"X-Eight-Bit: caf\xc3\xa9\r\n"
    b"X-Check-Id: 7\r\n"
)
BODY = b"\r\nbody line\r\n"

#: Subject -> the edits a scanner makes. Positions are those of HEAD: the second
#: X-Dup is field 7, X-Check-Id field 10.
CASES: dict[str, tuple[HeaderEdit, ...]] = {
    "add": (HeaderEdit.add("X-Added", "yes"),),
    "change-first": (HeaderEdit.change("Subject", 1, "changed"),),
    "change-second": (HeaderEdit.change("X-Dup", 2, "TWO"),),
    "delete": (HeaderEdit.delete("X-Dup", 1),),
    # header rules' REPLACE of the second X-Dup: delete it, insert the new one there
    "replace": (HeaderEdit.delete("X-Dup", 2), HeaderEdit.insert(7, "X-Dup", "TWO")),
    "insert-first": (HeaderEdit.insert(0, "X-First", "top"),),
    "insert-last": (HeaderEdit.insert(99, "X-Last", "bottom"),),
    # ClamAV's and SpamAssassin's way: delete the sender's copy, add ours at the end
    "delete-then-add": (HeaderEdit.delete("X-Dup", 1), HeaderEdit.add("X-Dup", "ours")),
    "mixed": (
        HeaderEdit.insert(0, "X-First", "top"),
        HeaderEdit.change("X-Dup", 3, "THREE"),
        HeaderEdit.delete("X-Fold", 1),
        HeaderEdit.change("X-Eight-Bit", 1, "plain"),
        HeaderEdit.add("X-Added", "yes"),
    ),
}
#: Before X-Check-Id: Postfix can be told; Sendmail cannot (hidden list entries).
MIDDLE = (HeaderEdit.insert(10, "X-Before-Check", "p"),)


def message(case: str) -> bytes:
    return HEAD.replace(b"{case}", case.encode()) + BODY


class BySubject:
    name = "by-subject"

    async def scan(self, msg: Message) -> Verdict:
        subject = msg.get("Subject") or ""
        return Verdict(edits=CASES.get(subject, MIDDLE if subject == "middle" else ()))

    async def aclose(self) -> None:
        pass


@pytest.fixture
def milter(milter_sock: Path) -> Iterator[ThreadedMilter]:
    running = ThreadedMilter(
        lambda: MilterServer(
            scanners.engine(BySubject(), scanners.SubjectRule()),
            socket_mode=0o660,
            socket_group="postfix",
        ),
        UnixAddress(str(milter_sock)),
    ).start()
    yield running
    running.stop()


@pytest.fixture
def sendmail(
    smtp_sink: SMTPSink, milter_sock: Path, milter: ThreadedMilter
) -> Iterator[SendmailInstance]:
    require_daemon("sendmail")
    instance = SendmailInstance(relay_port=smtp_sink.port, milter_socket=str(milter_sock))
    try:
        yield instance.start()
    finally:
        instance.stop()


@pytest.fixture
def postfix(
    make_postfix: Callable[..., PostfixInstance], milter_sock: Path, milter: ThreadedMilter
) -> PostfixInstance:
    return make_postfix(main_overrides=milter_main_cf(f"unix:{milter_sock}"))


def delivered(sink: SMTPSink, count: int) -> bytes:
    """The one new delivery's bytes after the relaying MTA's own Received: header."""
    deliveries = sink.wait_for(count, timeout=60)
    received, rest = split_first_header(deliveries[count - 1].data)
    assert received.startswith(b"Received: ")
    return rest


def test_each_edit_lands_where_mxscan_put_it_on_both_mtas(
    postfix: PostfixInstance, sendmail: SendmailInstance, smtp_sink: SMTPSink
) -> None:
    count = 0
    for case, edits in CASES.items():
        raw = message(case)
        expected = Message.from_bytes(raw).apply(edits).as_bytes()
        for mta in (postfix, sendmail):
            result = mta.send(raw)
            assert result.code == 250, (case, type(mta).__name__, result.text)
            count += 1
            got = delivered(smtp_sink, count)
            assert got == expected, (case, type(mta).__name__, got)


def test_an_insert_sendmail_cannot_place_is_tempfailed_not_misplaced(
    postfix: PostfixInstance, sendmail: SendmailInstance, smtp_sink: SMTPSink
) -> None:
    raw = message("middle")
    assert postfix.send(raw).code == 250
    assert delivered(smtp_sink, 1) == Message.from_bytes(raw).apply(MIDDLE).as_bytes()
    result = sendmail.send(raw)
    assert result.code == 451 and "4.7.1" in result.text  # --default-action tempfail
    assert len(smtp_sink) == 1


def test_reject_tempfail_and_discard_are_the_same_on_both_mtas(
    postfix: PostfixInstance, sendmail: SendmailInstance, smtp_sink: SMTPSink
) -> None:
    for case, code, text in (
        ("reject-me", 554, "5.7.1 Rejected: 100% bad"),  # the % un-doubled by both
        ("later-me", 451, "4.7.1"),
        ("discard-me", 250, ""),
    ):
        for mta in (postfix, sendmail):
            result = mta.send(message(case))
            assert result.code == code and text in result.text, (case, mta, result)
    for mta in (postfix, sendmail):  # a clean one after them, through each
        assert mta.send(message("add")).code == 250
    deliveries = smtp_sink.wait_for(2, timeout=60)
    time.sleep(1)
    assert len(smtp_sink) == 2  # the discarded ones never arrived
    assert all(b"Subject: add\r\n" in d.data for d in deliveries)
