"""An in-process ``SmtpServer`` on 127.0.0.1 with a real ``mxscan.PolicyRouter`` and the
test sink as next hop, and a raw client that shows the exact replies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from mxscan import PolicyRouter
from mxscan.adapters.smtp.nexthop import NextHop
from mxscan.adapters.smtp.server import SmtpServer
from mxscan.addresses import InetAddress
from mxscan.service.engines import EngineHolder, EngineLike
from mxscan.service.listen import bind


@contextlib.asynccontextmanager
async def serving(
    engine: PolicyRouter, next_port: int, *, lmtp: bool = False, **kw: object
) -> AsyncIterator[tuple[SmtpServer, int]]:
    holder: EngineHolder[EngineLike] = EngineHolder(engine)
    nexthop = NextHop(InetAddress("127.0.0.1", next_port), timeout=kw.pop("next_timeout", 5.0))  # type: ignore[arg-type]
    server = SmtpServer(holder, nexthop, lmtp=lmtp, **kw)  # type: ignore[arg-type]
    listening = bind(InetAddress("127.0.0.1", 0))
    await server.serve(listening)
    assert isinstance(listening.address, InetAddress)
    try:
        yield server, listening.address.port
    finally:
        await server.stop(1)


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        assert (await client.reply())[0] == 220
        return client

    async def reply(self) -> tuple[int, bytes]:
        data = b""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            if not line:
                raise ConnectionError("closed")
            data += line
            if line[3:4] != b"-":
                return int(line[:3]), data

    async def cmd(self, line: bytes) -> tuple[int, bytes]:
        self.writer.write(line + b"\r\n")
        return await self.reply()

    async def send(
        self, data: bytes, sender: str, rcpts: list[str], *, hello: bytes = b"EHLO client"
    ) -> list[tuple[int, bytes]]:
        """One transaction; returns RCPT replies then the DATA reply(s)."""
        assert (await self.cmd(hello))[0] == 250
        assert (await self.cmd(f"MAIL FROM:<{sender}>".encode()))[0] == 250
        out = [await self.cmd(f"RCPT TO:<{r}>".encode()) for r in rcpts]
        code, _ = await self.cmd(b"DATA")
        assert code == 354
        wire = data.replace(b"\n.", b"\n..")
        if wire.startswith(b"."):
            wire = b"." + wire
        self.writer.write(wire + b".\r\n")
        n = sum(1 for c, _ in out if c == 250) if hello.startswith(b"LHLO") else 1
        for _ in range(n):
            out.append(await self.reply())
        return out

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.cmd(b"QUIT")
        self.writer.close()
