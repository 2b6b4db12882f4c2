"""Fixtures: the real spamd (from scripts/daemons), fake spamds, test messages."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.support.daemons import GTUBE, daemons_required, spamd_alive, spamd_inet
from tests.support.fixtures import tagging_spamd

__all__ = [
    "CLEAN",
    "FakeSpamd",
    "free_port",
    "never_answers",
    "read_request",
    "spam_message",
    "spamd",
    "spamd_reply",
    "tagging_spamd",
    "unix_path",
    "with_body",
]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# A plain message from a trusted loopback relay: SpamAssassin scores it -1.0
# (ALL_TRUSTED), so it is ham at any sane threshold.
CLEAN = (
    b"Received: from localhost (localhost [127.0.0.1])\r\n"
    b"\tby mx.example.net (Postfix) with ESMTP id 4ABC\r\n"
    b"\tfor <bob@example.net>; Sat, 28 Nov 2026 04:00:00 +0000\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.net>\r\n"
    b"Subject: lunch\r\n"
    b"Date: Sat, 28 Nov 2026 04:00:00 +0000\r\n"
    b"Message-ID: <20261128040000.1234@example.com>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n\r\nshall we have lunch tomorrow at noon?\r\n\r\nAlice\r\n"
)


def with_body(body: bytes, extra_headers: bytes = b"") -> bytes:
    """CLEAN's header (plus ``extra_headers``) with another body."""
    head, _, _ = CLEAN.partition(b"\r\n\r\n")
    return head + b"\r\n" + extra_headers + b"\r\n" + body


def spam_message(extra_headers: bytes = b"") -> bytes:
    return with_body(b"Buy now.\r\n\r\n" + GTUBE + b"\r\n", extra_headers)


@pytest.fixture(scope="session")
def spamd() -> str:
    """The private spamd's address; skip (or fail in CI) when it is not there."""
    address = spamd_inet()
    if not spamd_alive(address):
        why = f"no spamd answering at {address} (start it: bash scripts/daemons start spamd)"
        if daemons_required():
            pytest.fail(why)
        pytest.skip(why)
    return address


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeSpamd:
    """A loopback server that plays a broken (or canned) spamd."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"inet:{host}:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def __aenter__(self) -> FakeSpamd:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await self.server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One SPAMC request: header lines, then Content-length bytes."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    return head + body


def spamd_reply(score: float, threshold: float, headers: bytes) -> bytes:
    """A well-formed SPAMD HEADERS answer, as spamd 4.0.1 writes it."""
    verdict = b"True" if score >= threshold else b"False"
    return (
        b"SPAMD/1.1 0 EX_OK\r\n"
        + b"Content-length: %d\r\n" % len(headers)
        + b"Spam: %s ; %.1f / %.1f\r\n\r\n" % (verdict, score, threshold)
        + headers
    )


@pytest.fixture
def unix_path(tmp_path: Path) -> str:
    return str(tmp_path / "spamd.sock")


@pytest.fixture
async def never_answers() -> AsyncIterator[FakeSpamd]:
    """Accepts the connection, reads the request, and never answers."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(3600)

    async with FakeSpamd(handler) as fake:
        yield fake


class Canned:
    """A fake spamd that records each request and answers with ``reply``."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.requests: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests.append(await read_request(reader))
        writer.write(self.reply)
        await writer.drain()
        writer.close()


def spamc(address: str, *args: str, data: bytes) -> str:
    """What Debian's spamc prints for ``data`` from the spamd at ``address``."""
    host, _, port = address.removeprefix("inet:").rpartition(":")
    run = subprocess.run(
        ["spamc", "-d", host, "-p", port, "-t", "60", *args],
        input=data,
        capture_output=True,
        check=False,
    )
    return run.stdout.decode().strip()
