"""mxscan's milter driven by a second, independent implementation of the protocol:
``kilter.protocol`` (PyPI, MPL-2.0) builds every MTA packet and parses every reply.

The tests' own ``tests.support.mta`` and Debian's Lua ``miltertest`` are the other clients.
(PyPI's pure-Python ``miltertest`` is GPL-3.0, so it is not used: no GPL dependency,
tests included.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path

import kilter.protocol as kp  # the [test] extra
import pytest
from kilter.protocol.buffer import SimpleBuffer

from mxscan.adapters.milter.server import MilterServer
from mxscan.addresses import UnixAddress
from tests.support import scanners

MTA_ACTIONS = kp.ActionFlags(0x1FF)
MTA_PROTOCOL = kp.ProtocolFlags(0x1FFFFF)


class KilterMta:
    """An MTA whose packets are all packed, and replies unpacked, by kilter."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.inbox = SimpleBuffer(4 * 1024 * 1024)

    async def send(self, *messages: kp.Message) -> None:
        out = SimpleBuffer(4 * 1024 * 1024)
        for message in messages:
            message.pack(out)
        self.writer.write(out[:].tobytes())
        await self.writer.drain()

    async def receive(self) -> kp.Message:
        while True:
            try:
                message, size = kp.Message.unpack(self.inbox)
            except kp.NeedsMore:
                data = await asyncio.wait_for(self.reader.read(65536), 10)
                assert data, "the milter closed the connection"
                self.inbox[:] = self.inbox[:].tobytes() + data
                continue
            message.freeze()
            del self.inbox[:size]
            return message

    async def final(self) -> list[kp.Message]:
        replies = []
        while True:
            replies.append(await self.receive())
            if not isinstance(replies[-1], kp.Progress | kp.AddHeader | kp.ChangeHeader):
                return replies


@pytest.fixture
async def mta(tmp_path: Path) -> AsyncIterator[KilterMta]:
    path = str(tmp_path / "milter.sock")
    server = MilterServer(scanners.engine(scanners.AddHeader(), scanners.SubjectRule()))
    await server.listen(UnixAddress(path))
    reader, writer = await asyncio.open_unix_connection(path)
    yield KilterMta(reader, writer)
    writer.close()
    await server.stop(1)


def shape(messages: list[kp.Message]) -> list[tuple[str, dict[str, object]]]:
    """Comparable form (kilter's no-data messages have no equality of their own)."""
    return [(type(m).__name__, dict(vars(m))) for m in messages]


async def negotiate(mta: KilterMta) -> kp.Negotiate:
    await mta.send(kp.Negotiate(6, MTA_ACTIONS, MTA_PROTOCOL))
    reply = await mta.receive()
    assert isinstance(reply, kp.Negotiate)
    return reply


async def message(mta: KilterMta, subject: bytes) -> list[kp.Message]:
    await mta.send(
        kp.Macro(ord("M"), {"i": "KILTER1"}),  # macros are sent per command byte
        kp.EnvelopeFrom(b"<sender@example.org>", [b"SIZE=100"]),
        kp.EnvelopeRecipient(b"<rcpt@example.net>"),
    )
    assert isinstance(await mta.receive(), kp.Continue)  # RCPT is answered
    await mta.send(
        kp.Data(),
        kp.Header("From", b" <sender@example.org>"),
        kp.Header("Subject", b" " + subject),
        kp.EndOfHeaders(),
        kp.Body(b"line one\r\nline two\r\n"),
        kp.EndOfMessage(b""),
    )
    return await mta.final()


async def test_negotiation_as_kilter_reads_it(mta: KilterMta) -> None:
    reply = await negotiate(mta)
    assert reply.version == 6
    assert kp.ActionFlags.ADD_HEADERS in reply.action_flags
    assert kp.ActionFlags.CHANGE_HEADERS in reply.action_flags
    assert kp.ProtocolFlags.NR_BODY in reply.protocol_flags
    assert kp.ProtocolFlags.HEADER_LEADING_SPACE in reply.protocol_flags
    assert kp.ProtocolFlags.NR_RECIPIENT not in reply.protocol_flags
    connect_macros = reply.macros[kp.Stage.CONNECT]
    assert "v" in connect_macros and "{client_addr}" in connect_macros


async def test_a_session_with_every_outcome(mta: KilterMta) -> None:
    await negotiate(mta)
    await mta.send(
        kp.Macro(ord("C"), {"j": "mx.example", "v": "Postfix 3.7.11"}),
        kp.Connect("client.example", IPv4Address("192.0.2.1"), 4321),
        kp.Helo("client.example"),
    )
    replies = await message(mta, b"plain")
    assert shape(replies) == shape([kp.AddHeader("X-Scanned", b" mxscan"), kp.Continue()])
    await mta.send(kp.Abort())
    replies = await message(mta, b"change-me")
    # A first instance on Postfix: insert before it (index 2: Postfix's Received: is
    # 0, From 1), then delete the old one, now the second.
    assert shape(replies) == shape(
        [
            kp.AddHeader("X-Scanned", b" mxscan"),
            kp.InsertHeader(2, "Subject", b" changed"),
            kp.ChangeHeader(2, "Subject", b""),
            kp.Continue(),
        ]
    )
    await mta.send(kp.Abort())
    assert shape(await message(mta, b"discard-me")) == shape([kp.Discard()])
    await mta.send(kp.Abort())
    (reply,) = await message(mta, b"reject-me")
    assert isinstance(reply, kp.ReplyCode)
    assert bytes(reply.content).rstrip(b"\0") == b"554 5.7.1 Rejected: 100%% bad"
    await mta.send(kp.Abort(), kp.Close())
    assert await asyncio.wait_for(mta.reader.read(), 10) == b""
