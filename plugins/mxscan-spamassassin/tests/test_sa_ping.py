"""spamd PING, the plugin's optional health-probe hook (``SpamAssassin.ping``):
the sans-I/O reply check, the real spamd, and spamds that fail each way."""

from __future__ import annotations

import asyncio

import pytest
from sa_support import FakeSpamd, free_port

from mxscan import ScannerError
from mxscan_spamassassin import SpamAssassin
from mxscan_spamassassin.ping import PING_REQUEST, parse_pong

GUARD = 30


def test_parse_pong() -> None:
    assert PING_REQUEST == b"PING SPAMC/1.5\r\n\r\n"
    parse_pong(b"SPAMD/1.5 0 PONG\r\n")
    parse_pong(b"SPAMD/1.1 0 PONG\n")
    for bad in (b"SPAMD/1.5 76 Bad header line: PING\r\n", b"HTTP/1.0 200 OK\r\n", b"PONG\r\n"):
        with pytest.raises(ValueError, match="answered PING with"):
            parse_pong(bad)


@pytest.mark.spamd
async def test_real_spamd_answers_and_a_dead_first_address_is_skipped(spamd: str) -> None:
    dead = f"inet:127.0.0.1:{free_port()}"
    async with asyncio.timeout(GUARD):
        await SpamAssassin(address=spamd).ping()
        await SpamAssassin(address=[dead, spamd]).ping()


async def answer(reply: bytes) -> FakeSpamd:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readuntil(b"\r\n\r\n") == PING_REQUEST
        writer.write(reply)
        await writer.drain()
        if reply == b"hang":
            await asyncio.sleep(3600)

    return FakeSpamd(handler)


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (b"HTTP/1.0 400 Bad Request\r\n", r"answered PING with b'HTTP/1.0 400"),
        (b"SPAMD/1.5 0 PO", r"closed the connection after b'SPAMD/1.5 0 PO'"),
        (b"x" * 1000, r"a line of over 256 bytes"),
        (b"hang", r"no PONG within 0\.5\d*s"),
    ],
    ids=["garbage", "cut-short", "endless-line", "never-answers"],
)
async def test_failures_are_one_scanner_error_naming_the_address(reply: bytes, why: str) -> None:
    dead = f"inet:127.0.0.1:{free_port()}"
    async with await answer(reply) as fake, asyncio.timeout(GUARD):
        where = fake.address
        scanner = SpamAssassin(address=[dead, where], timeout=0.6)
        with pytest.raises(ScannerError) as caught:
            await scanner.ping()
    message = str(caught.value)
    assert message.startswith("spamd PING failed: ")
    assert f"{dead.removeprefix('inet:')}: Connection refused" in message
    assert where in message
    assert __import__("re").search(why, message), message
