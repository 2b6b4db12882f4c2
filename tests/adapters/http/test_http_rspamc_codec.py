"""rspamd's RSPAMC/1.3 line protocol (Exim's variant=rspamd), sans-I/O and served."""

from __future__ import annotations

import asyncio
import re

import pytest

from mxscan import Action, Pipeline, PolicyRouter
from mxscan.adapters.http.request import BadRequest
from mxscan.adapters.http.rspamc import legacy_reply, parse_legacy_head
from tests.support.http_rig import serving
from tests.support.scanners import FakeScanner

MAIL = b"From: a@example.org\r\nMessage-ID: <e1@example.org>\r\n\r\nhi\r\n"
# What Exim 4.96's spam.c sends (src/spam.c, the rspamd variant), field for field.
EXIM_HEAD = (
    b"CHECK RSPAMC/1.3\r\nContent-length: %d\r\nQueue-Id: 1tABCD-000001-AB\r\n"
    b"From: <a@example.org>\r\nRecipient-Number: 2\r\nRcpt: <b@example.net>\r\n"
    b"Rcpt: <c@example.net>\r\nHelo: mail.example.org\r\nIP: 192.0.2.9\r\n\r\n"
) % len(MAIL)


def test_exim_head_parses() -> None:
    parsed = parse_legacy_head(EXIM_HEAD + MAIL, max_headers=100)
    assert parsed is not None
    head, start = parsed
    assert (head.command, head.length, start) == (b"CHECK", len(MAIL), len(EXIM_HEAD))
    assert (b"ip", b"192.0.2.9") in head.headers
    assert parse_legacy_head(EXIM_HEAD[:40], max_headers=100) is None  # incomplete


@pytest.mark.parametrize(
    ("head", "error"),
    [
        (b"CHECK RSPAMC/1.3\r\nFrom: <a@b>\r\n\r\n", "Content-length is missing"),
        (b"CHECK RSPAMC/1.3\r\nContent-length: x\r\n\r\n", "not a number"),
        (b"CHECK RSPAMC/1.3\r\nno colon here\r\n\r\n", "not 'Name: value'"),
        (b"GET / HTTP/1.1\r\n\r\n", "not an RSPAMC request line"),
    ],
)
def test_bad_heads(head: bytes, error: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(error)):
        parse_legacy_head(head, max_headers=100)


def test_reply_is_what_exims_sscanf_reads() -> None:
    answer = {
        "action": "reject",
        "score": 1002.7,
        "required_score": 5.0,
        "symbols": {"CLAMAV": {"name": "CLAMAV", "score": 0.0, "options": ["Eicar"]}},
        "messages": {"smtp_message": "5.7.1 no"},
        "message-id": "e1@example.org",
    }
    reply = legacy_reply(answer).decode()
    # spam.c: "RSPAMD/%7s 0 EX_OK\r\nMetric: default; %7s %lf / %lf / %lf\r\n%n", then
    # "Action: " up to CR.
    match = re.match(
        r"RSPAMD/(\S{1,7}) 0 EX_OK\r\nMetric: default; (\S{1,7}) ([\d.]+) / ([\d.]+) / ([\d.]+)"
        r"\r\nAction: ([^\r]*)\r\n",
        reply,
    )
    assert match is not None, reply
    assert match.groups() == ("1.3", "True;", "1002.70", "5.00", "5.00", "reject")
    assert "Symbol: CLAMAV(0.00); Eicar\r\n" in reply
    assert reply.endswith("\r\n\r\n")


async def _legacy(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 10)  # the server closes, as Exim expects
    writer.close()
    return reply


async def test_served_with_the_envelope_and_closed() -> None:
    scanner = FakeScanner("x", action=Action.REJECT)
    async with serving(PolicyRouter(Pipeline([[scanner]]))) as (_, port):
        reply = await _legacy(port, EXIM_HEAD + MAIL)
    assert reply.startswith(b"RSPAMD/1.3 0 EX_OK\r\nMetric: default; True; ")
    assert b"\r\nAction: reject\r\n" in reply
    message = scanner.seen[0]
    assert message.as_bytes() == MAIL
    assert message.envelope.recipients == ("b@example.net", "c@example.net")
    assert message.envelope.client_address == "192.0.2.9"
    assert message.envelope.queue_id == "1tABCD-000001-AB"


async def test_served_body_in_pieces_and_errors() -> None:
    from mxscan.adapters.http.server import Limits

    scanner = FakeScanner("x")
    async with serving(PolicyRouter(Pipeline([[scanner]])), limits=Limits(max_size=10)) as (
        _,
        port,
    ):
        reply = await _legacy(port, EXIM_HEAD + MAIL)
        assert reply.startswith(b"RSPAMD/1.3 400 EX_ERROR\r\nError: message over max_size")
        reply = await _legacy(
            port, b"CHECK RSPAMC/1.3\r\nQueue-Id: a\x00b\r\nContent-length: 1\r\n\r\nx"
        )
        assert b"CR, LF or NUL" in reply
    assert scanner.seen == []
    async with serving(PolicyRouter(Pipeline([[scanner]]))) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = EXIM_HEAD + MAIL
        for i in range(0, len(data), 50):
            writer.write(data[i : i + 50])
            await writer.drain()
            await asyncio.sleep(0.01)
        reply = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert b"\r\nAction: no action\r\n" in reply
    assert scanner.seen[0].as_bytes() == MAIL
