"""A DKIM signature survives header rules: IGNORE of an unsigned header
changes only that header, every other byte stays, and dkimpy still verifies."""

from __future__ import annotations

from pathlib import Path

import dkim  # a declared test dependency (dkimpy): missing must fail, not skip
import pytest

from mxscan import Message, Pipeline
from mxscan_header_rules import HeaderRules

pytestmark = pytest.mark.corpus

SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]


def _sign(corpus: Path) -> tuple[bytes, bytes]:
    data = corpus / "dkimpy-tests"
    key = (data / "test.private").read_bytes()
    dns_txt = (data / "test.txt").read_bytes()
    message = (
        b"Received: from client.example.org (client [192.0.2.7])\r\n"
        b"\tby mx.example.com with ESMTP id 4ABC\r\n"
        b"From: Joe <joe@example.com>\r\n"
        b"To: Suzie <suzie@example.net>\r\n"
        b"Subject:  folded\r\n"
        b"   subject  line\r\n"
        b"Date: Mon, 1 Dec 2025 10:00:00 +0000\r\n"
        b"Message-ID: <dkim-test@example.com>\r\n"
        b"X-Spam-Status: No, score=-100 (forged by the sender)\r\n"
        b"\r\n"
        b"Hi.\r\n\r\nWe lost the game. Are you hungry yet?\r\n\r\nJoe.\r\n"
    )
    signature = dkim.sign(
        message,
        b"test",
        b"example.com",
        key,
        include_headers=SIGNED_HEADERS,
        canonicalize=(b"simple", b"simple"),
    )
    return signature + message, dns_txt


async def test_ignore_unsigned_header_keeps_signature_valid(corpus: Path) -> None:
    signed, dns_txt = _sign(corpus)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"test._domainkey.example.com."
        return dns_txt

    assert dkim.verify(signed, dnsfunc=dnsfunc)
    rules = HeaderRules("inbound", rules="/^X-Spam-/ IGNORE\n/^Received:/ WARN\n")
    result = await Pipeline([[rules]]).run(Message.from_bytes(signed))
    out = result.message.as_bytes()
    forged = b"X-Spam-Status: No, score=-100 (forged by the sender)\r\n"
    assert forged in signed
    assert out == signed.replace(forged, b"")  # every other byte identical
    assert dkim.verify(out, dnsfunc=dnsfunc)


async def test_editing_a_signed_header_is_detected(corpus: Path) -> None:
    """The check above can fail: a REPLACE of a signed header breaks DKIM."""
    signed, dns_txt = _sign(corpus)
    rules = HeaderRules("x", rules="/^Subject:/ REPLACE Subject: changed\n")
    result = await Pipeline([[rules]]).run(Message.from_bytes(signed))
    assert not dkim.verify(result.message.as_bytes(), dnsfunc=lambda name, timeout=5: dns_txt)
