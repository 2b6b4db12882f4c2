"""Real Postfix: a header-rules edit of a MIME-part header replaces the body
through SMFIR_REPLBODY, and nothing but that header changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mxscan.adapters.milter.server import MilterServer
from mxscan.addresses import UnixAddress
from tests.support import scanners
from tests.support.messages import split_first_header
from tests.support.postfix import PostfixInstance
from tests.support.sink import SMTPSink
from tests.support.snippets import milter_main_cf
from tests.support.threaded import ThreadedMilter

pytestmark = [pytest.mark.postfix, pytest.mark.e2e]

PART_HEADER = b"Content-Description: the first\r\n part, folded\r\n"
MULTIPART = (
    b"Date: Thu, 01 Feb 2024 10:00:00 +0000\r\n"
    b"From: Sender <sender@example.org>\r\n"
    b"To: rcpt@example.com\r\n"
    b"Message-ID: <e2e-body@example.org>\r\n"
    b"Subject:  body-part edit\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel;\r\n"
    b"    h=from:to:subject; bh=abc; b=def\r\n"
    b"\r\n"
    b"preamble\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n" + PART_HEADER + b"X-Part:\tkept\r\n"
    b"\r\n"
    b"Content-Description: body text, not a header\r\n"
    b"  indented, trailing spaces   \r\n"
    b".leading dot\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + b"QUFBQQ==\r\n" * 20000 + b"--b1--\r\n"
    b"epilogue\r\n"
)


@pytest.fixture
def milter(milter_sock: Path) -> Iterator[ThreadedMilter]:
    from mxscan_header_rules import HeaderRules

    rules = HeaderRules(
        "header-rules",
        rules="/^nothing$/ DUNNO\n",
        mime_rules="/^Content-Description:/ IGNORE\n",
    )
    assert rules.changes_body
    running = ThreadedMilter(
        lambda: MilterServer(scanners.engine(rules), socket_mode=0o660, socket_group="postfix"),
        UnixAddress(str(milter_sock)),
    ).start()
    yield running
    running.stop()


@pytest.fixture
def postfix(
    make_postfix: Callable[..., PostfixInstance], milter_sock: Path, milter: ThreadedMilter
) -> PostfixInstance:
    return make_postfix(main_overrides=milter_main_cf(f"unix:{milter_sock}"))


def test_mime_part_header_ignored_every_other_byte_kept(
    postfix: PostfixInstance, smtp_sink: SMTPSink
) -> None:
    result = postfix.send(MULTIPART)
    assert result.code == 250, result.text
    (delivery,) = smtp_sink.wait_for(1, timeout=30)
    received, rest = split_first_header(delivery.data)
    assert received.startswith(b"Received: from ")
    assert rest == MULTIPART.replace(PART_HEADER, b"")
