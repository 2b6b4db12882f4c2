"""The MTA side of the milter protocol, for tests: builds what Postfix 3.7 sends and
parses what the milter answers. Written from the protocol, independent of the codec
under test (it does not import it)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable

POSTFIX_ACTIONS = 0x1FF
POSTFIX_PROTOCOL = 0x1FFFFF
# Bits from the protocol, restated here so the tests do not trust the code under test.
NR_RCPT = 1 << 15
NR_BODY = 1 << 19
NR_HDR = 1 << 7
HDR_LEADSPC = 1 << 20


def pkt(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + cmd + data


def optneg(
    version: int = 6, actions: int = POSTFIX_ACTIONS, proto: int = POSTFIX_PROTOCOL
) -> bytes:
    return pkt(b"O", struct.pack("!III", version, actions, proto))


def macro(stage: bytes, **pairs: str) -> bytes:
    data = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs.items())
    return pkt(b"D", stage + data)


def macros(stage: bytes, pairs: dict[str, str]) -> bytes:
    data = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs.items())
    return pkt(b"D", stage + data)


def connect(host: str = "client.example", addr: str = "192.0.2.1", port: int = 4321) -> bytes:
    return pkt(b"C", host.encode() + b"\0" + b"4" + struct.pack("!H", port) + addr.encode() + b"\0")


def helo(name: str = "client.example") -> bytes:
    return pkt(b"H", name.encode() + b"\0")


def mail(sender: str, *args: str) -> bytes:
    return pkt(b"M", b"".join(a.encode() + b"\0" for a in (f"<{sender}>", *args)))


def rcpt(recipient: str) -> bytes:
    return pkt(b"R", f"<{recipient}>".encode() + b"\0")


def header(name: bytes, value: bytes) -> bytes:
    return pkt(b"L", name + b"\0" + value + b"\0")


def headers_of(raw_head: bytes) -> list[bytes]:
    """Split a CRLF header block into HEADER packets the way Postfix sends them (LEADSPC)."""
    fields: list[bytes] = []
    for line in raw_head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            fields[-1] += b"\n" + line
        else:
            fields.append(line)
    out = []
    for f in fields:
        name, _, value = f.partition(b":")
        out.append(header(name, value))
    return out


def body(data: bytes, chunk: int = 65535) -> list[bytes]:
    return [pkt(b"B", data[i : i + chunk]) for i in range(0, len(data), chunk)]


EOH = pkt(b"N")
EOM = pkt(b"E")
ABORT = pkt(b"A")
QUIT = pkt(b"Q")
DATA = pkt(b"T")


def message_packets(raw: bytes, chunk: int = 65535) -> list[bytes]:
    head, _, rest = raw.partition(b"\r\n\r\n")
    return [*headers_of(head + b"\r\n"), EOH, *body(rest, chunk), EOM]


def parse_replies(data: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    while data:
        (length,) = struct.unpack("!I", data[:4])
        out.append((data[4:5], data[5 : 4 + length]))
        data = data[4 + length :]
    return out


class MtaClient:
    """A tiny asyncio MTA: sends packets, reads replies one packet at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open_unix(cls, path: str) -> MtaClient:
        r, w = await asyncio.open_unix_connection(path)
        return cls(r, w)

    @classmethod
    async def open_tcp(cls, host: str, port: int) -> MtaClient:
        r, w = await asyncio.open_connection(host, port)
        return cls(r, w)

    async def send(self, *packets: bytes | Iterable[bytes]) -> None:
        for p in packets:
            self.writer.write(p if isinstance(p, bytes) else b"".join(p))
        await self.writer.drain()

    async def read(self, wait: float = 10.0) -> tuple[bytes, bytes]:
        head = await asyncio.wait_for(self.reader.readexactly(4), wait)
        (length,) = struct.unpack("!I", head)
        data = await asyncio.wait_for(self.reader.readexactly(length), wait)
        return data[:1], data[1:]

    async def read_until_final(self, wait: float = 10.0) -> list[tuple[bytes, bytes]]:
        """Replies up to and including the final decision of an end-of-message."""
        out = []
        while True:
            code, data = await self.read(wait)
            out.append((code, data))
            if code in (b"c", b"a", b"r", b"t", b"d", b"y", b"4", b"f"):
                return out

    async def handshake(self) -> tuple[bytes, bytes]:
        await self.send(optneg())
        return await self.read()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
