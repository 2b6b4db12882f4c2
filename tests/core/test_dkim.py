"""Bytes that mxscan does not edit stay exactly as signed: DKIM still verifies."""

from __future__ import annotations

import dkim
import pytest

from mxscan import HeaderEdit, Message, Pipeline, scan
from tests.support.daemons import corpus_dir
from tests.support.scanners import FakeScanner

pytestmark = pytest.mark.corpus


def _key() -> tuple[bytes, bytes]:
    base = corpus_dir("dkimpy-tests")
    return (base / "test.private").read_bytes(), (base / "test.txt").read_bytes()


def _dns(name: bytes, timeout: int = 5) -> bytes:
    return _key()[1] if name == b"test._domainkey.example.com." else b""


def _signed(message: bytes) -> bytes:
    private, _ = _key()
    signature = dkim.sign(
        message, b"test", b"example.com", private,
        include_headers=[b"from", b"to", b"subject", b"date"],
    )  # fmt: skip
    return signature + message


RAW = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: signed  and\r\n\t folded\r\n"
    b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
    b"X-Unsigned: forged\r\n"
    b"\r\n"
    b"Body with  odd   spacing \r\n\r\n\r\n"
)


def test_signature_survives_added_and_deleted_unsigned_headers() -> None:
    signed = _signed(RAW)
    assert dkim.verify(signed, dnsfunc=_dns)
    edits = (
        HeaderEdit.add("X-Virus-Status", "Clean"),
        HeaderEdit.insert(1, "X-Spam-Level", "**"),
        HeaderEdit.delete("X-Unsigned", 1),
    )
    result = scan(signed, config=Pipeline([[FakeScanner("tagger", edits=edits)]]))
    out = result.message.as_bytes()
    assert out != signed
    assert dkim.verify(out, dnsfunc=_dns)


def test_changing_a_signed_header_breaks_it_as_expected() -> None:
    # The check above is only meaningful if a real change is detected.
    signed = _signed(RAW)
    edited = Message.from_bytes(signed).apply([HeaderEdit.change("Subject", 1, "other")])
    assert not dkim.verify(edited.as_bytes(), dnsfunc=_dns)
