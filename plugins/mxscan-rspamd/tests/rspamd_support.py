"""Fixtures: the real rspamd (from scripts/daemons), fake rspamds, test messages."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate

import pytest

from tests.support.daemons import (
    GTUBE,
    daemons_required,
    rspamd_alive,
    rspamd_controller,
    rspamd_inet,
    rspamd_password,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

NOW = formatdate(localtime=False)

#: A plain message dated now (rspamd scores old dates): rspamd gives it a score
#: well below its lowest default threshold (greylist, 4).
CLEAN = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.net>\r\n"
    b"Subject: lunch\r\n"
    b"Date: " + NOW.encode() + b"\r\n"
    b"Message-ID: <20261128040000.1234@example.com>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n\r\nshall we have lunch tomorrow at noon?\r\n\r\nAlice\r\n"
)

#: No Date, no Message-ID: rspamd's MISSING_DATE and MISSING_MID give it a
#: positive score (a few points) without any DNS, below its default thresholds.
SLOPPY = (
    b"From: alice@example.com\r\n"
    b"To: bob@example.com, bob@example.net\r\n"
    b"Subject: lunch\r\n"
    b"\r\n"
    b"Hello Bob, shall we have lunch tomorrow at noon?\r\n"
)


def spam_message(extra_headers: bytes = b"") -> bytes:
    head, _, _ = CLEAN.partition(b"\r\n\r\n")
    return head + b"\r\n" + extra_headers + b"\r\nBuy now.\r\n\r\n" + GTUBE + b"\r\n"


def _live(address: str, what: str) -> str:
    if not rspamd_alive(address):
        why = f"no {what} answering at {address} (start it: bash scripts/daemons start rspamd)"
        if daemons_required():
            pytest.fail(why)
        pytest.skip(why)
    return address


@pytest.fixture(scope="session")
def rspamd() -> str:
    """The private rspamd's normal worker; skip (or fail in CI) when it is not there."""
    return _live(rspamd_inet(), "rspamd")


@pytest.fixture(scope="session")
def rspamd_learning() -> tuple[str, str]:
    """The private rspamd's controller and its password."""
    return _live(rspamd_controller(), "rspamd controller"), rspamd_password()


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeRspamd:
    """A loopback server that plays a broken (or canned) rspamd."""

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

    async def __aenter__(self) -> FakeRspamd:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await self.server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, list[tuple[str, str]], bytes]:
    """One HTTP request: request line, headers (in order), Content-Length bytes."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("utf-8").split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
    length = int(next(v for n, v in headers if n.lower() == "content-length"))
    body = await reader.readexactly(length)
    return lines[0].encode(), headers, body


def http_reply(body: bytes, status: str = "200 OK") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def checkv2(action: str = "no action", score: float = 0.5, **extra: object) -> bytes:
    """A /checkv2 answer in the shape rspamd 3.4 writes."""
    data: dict[str, object] = {
        "is_skipped": False,
        "score": score,
        "required_score": 15.0,
        "action": action,
        "symbols": {"FROM_NO_DN": {"name": "FROM_NO_DN", "score": 0.0, "metric_score": 0.0}},
        "messages": {},
    }
    data.update(extra)
    return json.dumps(data).encode()


class Canned:
    """A fake rspamd that records each request and answers with ``reply``."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.requests: list[tuple[bytes, list[tuple[str, str]], bytes]] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests.append(await read_request(reader))
        writer.write(self.reply)
        await writer.drain()
        writer.close()


@pytest.fixture
async def never_answers() -> AsyncIterator[FakeRspamd]:
    """Reads the request and never answers: a hung rspamd."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(3600)

    async with FakeRspamd(handler) as fake:
        yield fake
