"""The message is streamed to spamd from its spool: the bytes on the wire are
exactly the joined request's, and spamd answers them identically."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sa_support import FakeSpamd, read_request, spamd_reply

from mxscan import Body, Envelope, Message, parse_address, received_header
from mxscan_spamassassin import SpamAssassin
from mxscan_spamassassin.answer import SpamdAnswer
from mxscan_spamassassin.client import Content, ask_spamd, exchange
from mxscan_spamassassin.edits import forged_removals
from mxscan_spamassassin.spamc import Request
from tests.support.daemons import corpus_dir

ENVELOPE = Envelope(client_address="192.0.2.7", client_name="mail.example.org", helo="mail")
LINE = b"Just an ordinary line of an ordinary long newsletter, nothing to see.\r\n"


def spooled(tmp_path: Path, lines: int = 20_000) -> Message:
    data = b"From: a@example.org\r\nSubject: big\r\n\r\n" + LINE * lines
    message = Message.from_bytes(
        data, envelope=ENVELOPE, spool_threshold=64 * 1024, spool_dir=str(tmp_path)
    )
    assert message.body.spooled
    return message


@pytest.mark.parametrize("compress", [False, True])
async def test_the_streamed_request_is_byte_for_byte_the_joined_one(
    tmp_path: Path, compress: bool
) -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(spamd_reply(1.0, 5.0, b"X-Spam-Flag: NO\r\n"))
        await writer.drain()

    message = spooled(tmp_path)
    scanner = SpamAssassin(max_size="10MiB", compress=compress, user="bob")
    async with FakeSpamd(handler) as fake:
        scanner.addresses = [parse_address(fake.address)]
        await scanner.scan(message)
    line = received_header(message.envelope, eol=message.eol)
    assert line is not None
    joined = line.raw + message.as_bytes()  # what the scanner sent before it streamed
    assert seen == [Request("HEADERS", joined, user="bob", compress=compress).to_bytes()]


async def test_each_address_tried_gets_the_whole_message(tmp_path: Path) -> None:
    """The body is read again for the next address (a fresh iterator per try)."""
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(spamd_reply(1.0, 5.0, b"X-Spam-Flag: NO\r\n"))

    message = spooled(tmp_path, 2000)
    content = Content(b"Subject: x\r\n\r\n", message.body)
    async with FakeSpamd(handler) as fake:
        dead = parse_address(f"unix:{tmp_path}/no-spamd.sock")
        await ask_spamd([dead, parse_address(fake.address)], content, timeout=10)
        await ask_spamd([parse_address(fake.address)], content, timeout=10)
    assert len(seen) == 2 and seen[0] == seen[1]
    assert seen[0].endswith(b"\r\n\r\nSubject: x\r\n\r\n" + LINE * 2000)


@pytest.mark.spamd
@pytest.mark.corpus
@pytest.mark.parametrize("compress", [False, True])
async def test_spamd_answers_the_stream_as_it_answers_the_joined_message(
    spamd: str, tmp_path: Path, compress: bool
) -> None:
    folder = corpus_dir("spamassassin-tdata")
    files = sorted(p for sub in ("nice", "spam") for p in (folder / sub).glob("*") if p.is_file())
    assert len(files) >= 20
    address = parse_address(spamd)
    checked = 0
    for path in files[:: max(1, len(files) // 12)]:
        message = Message.from_bytes(
            path.read_bytes(), spool_threshold=4096, spool_dir=str(tmp_path)
        )
        to_scan = message.apply(forged_removals(message.headers))
        head = b"".join(h.raw for h in to_scan.headers) + to_scan.separator
        content = Content(to_scan.mbox_from + head, to_scan.body)
        joined = Request("HEADERS", to_scan.as_bytes(), compress=compress)
        before = await exchange(address, joined, 60)
        _, streamed = await ask_spamd([address], content, timeout=60, compress=compress)
        spam = before.spam
        assert spam is not None
        expected = SpamdAnswer.from_parts(spam.is_spam, spam.score, spam.threshold, before.body)
        assert streamed == expected, path.name
        checked += 1
    assert checked >= 12


async def test_spamd_gets_the_start_before_the_end_is_read_from_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streamed, not joined: when spamd has the first body bytes, most of the
    body is still in the spool file (a joined message is read whole first)."""
    pulled = 0
    real_chunks = Body.chunks

    def counting(self: Body, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        nonlocal pulled
        for chunk in real_chunks(self, chunk_size):
            pulled += 1
            yield chunk

    monkeypatch.setattr(Body, "chunks", counting)
    pulled_when_started: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the protocol head
        await reader.readuntil(b"\r\n\r\n")  # the message's header
        assert await reader.readexactly(len(LINE)) == LINE
        pulled_when_started.append(pulled)
        while await reader.read(65536):
            pass  # to EOF: the client half-closes after the body
        writer.write(spamd_reply(1.0, 5.0, b"X-Spam-Flag: NO\r\n"))

    # 28 MB (434 chunks): more than the kernel buffers of a loopback TCP connection
    # (tcp_wmem + tcp_rmem, at most some 10 MB by default) take before spamd reads.
    message = spooled(tmp_path, 400_000)
    scanner = SpamAssassin(max_size="100MiB")
    async with FakeSpamd(handler) as fake:
        scanner.addresses = [parse_address(fake.address)]
        await scanner.scan(message)
    total = -(-message.body.size // (64 * 1024))
    assert pulled == total
    assert pulled_when_started[0] < total // 2
