"""Fixtures: a scriptable fake clamd, the real private clamd, corpus and EICAR.

The fake clamd is a real asyncio server (unix socket in tmp or 127.0.0.1 with a
free port) that speaks just enough zINSTREAM to misbehave in precise ways: the
failure modes a real daemon shows only under load or crashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from mxscan_clamav import ClamdClient, ClamdError
from tests.support.daemons import (
    EICAR_SIGNATURE,
    clamd_inet,
    clamd_unix,
    corpus_dir,
    daemons_required,
    eicar_bytes,
)
from tests.support.private_clamd import private_clamd

# The EICAR test file, joined at run time so that no file in the repository is it.
EICAR = eicar_bytes()
EICAR_NAME = EICAR_SIGNATURE


# -- the fake clamd ----------------------------------------------------------------


@dataclass
class Request:
    command: bytes
    payload: bytearray = field(default_factory=bytearray)
    frame_sizes: list[int] = field(default_factory=list)
    complete: bool = False


Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Behaviour = Callable[["FakeClamd", Request, Reader, Writer], Awaitable[None]]


async def read_stream(
    request: Request, reader: asyncio.StreamReader, limit: int | None = None
) -> bool:
    """Read INSTREAM frames; False (stopping early) once ``limit`` bytes are exceeded."""
    while True:
        (size,) = struct.unpack("!I", await reader.readexactly(4))
        if size == 0:
            request.complete = True
            return True
        request.frame_sizes.append(size)
        request.payload += await reader.readexactly(size)
        if limit is not None and len(request.payload) > limit:
            return False


def answer(reply: bytes) -> Behaviour:
    """A well-behaved clamd that gives ``reply`` after the whole stream."""

    async def behave(
        fake: FakeClamd,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if request.command == b"zINSTREAM":
            await read_stream(request, reader)
        writer.write(reply)
        await writer.drain()

    return behave


def over_limit(limit: int) -> Behaviour:
    """What clamd does past StreamMaxLength: answer ERROR and close, unread data left."""

    async def behave(
        fake: FakeClamd,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if not await read_stream(request, reader, limit):
            writer.write(b"INSTREAM size limit exceeded. ERROR\0")
            await writer.drain()

    return behave


def die_after(nbytes: int) -> Behaviour:
    """clamd killed mid-scan: the connection drops with no answer."""

    async def behave(
        fake: FakeClamd,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        await read_stream(request, reader, nbytes)
        writer.transport.abort()

    return behave


async def never_answer(fake: FakeClamd, request: Request, reader: Reader, writer: Writer) -> None:
    """Reads the whole stream, then sits on the connection."""
    await read_stream(request, reader)
    await asyncio.Event().wait()


async def never_read(fake: FakeClamd, request: Request, reader: Reader, writer: Writer) -> None:
    """Accepts, then neither reads nor answers (a wedged daemon)."""
    await asyncio.Event().wait()


class FakeClamd:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests: list[Request] = []
        self.server: asyncio.Server | None = None
        self.address = ""
        self._tasks: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            command = (await reader.readuntil(b"\0"))[:-1]
            request = Request(command)
            self.requests.append(request)
            await self.behaviour(self, request, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def start_unix(self, path: Path) -> FakeClamd:
        self.server = await asyncio.start_unix_server(self._handle, path=str(path))
        self.address = f"unix:{path}"
        return self

    async def start_inet(self) -> FakeClamd:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.address = f"inet:127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


FakeFactory = Callable[..., Awaitable[FakeClamd]]


@pytest_asyncio.fixture
async def fake_clamd(tmp_path: Path) -> AsyncIterator[FakeFactory]:
    """``await fake_clamd(behaviour, transport="unix"|"inet")`` -> a running fake."""
    fakes: list[FakeClamd] = []

    async def start(behaviour: Behaviour, transport: str = "unix") -> FakeClamd:
        fake = FakeClamd(behaviour)
        fakes.append(fake)
        if transport == "unix":
            return await fake.start_unix(tmp_path / f"clamd{len(fakes)}.sock")
        return await fake.start_inet()

    yield start
    for fake in fakes:
        await fake.stop()


@pytest.fixture
def dead_unix(tmp_path: Path) -> str:
    """A unix socket file nobody listens on (a crashed clamd leaves one behind)."""
    path = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
    return f"unix:{path}"


def free_port() -> int:
    """A 127.0.0.1 port with nothing listening (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def closed_port() -> str:
    """A 127.0.0.1 port with nothing listening (bound then released)."""
    return f"inet:127.0.0.1:{free_port()}"


# -- the real clamd ----------------------------------------------------------------


def require_daemon(what: str) -> None:
    """Skip, or fail when CI says the daemons must be there."""
    if daemons_required():
        pytest.fail(f"{what} (MXSCAN_REQUIRE_DAEMONS=1)")
    pytest.skip(f"{what}; start it with: bash scripts/daemons start clamd")


def clamd_up(addresses: list[str]) -> str | None:
    """None if every address answers zPING, else why not."""

    async def ping() -> str | None:
        for address in addresses:
            try:
                await ClamdClient(address, timeout=15, connect_timeout=10).ping()
            except ClamdError as exc:
                return str(exc)
        return None

    return asyncio.run(ping())


@pytest.fixture(scope="session")
def clamd_addresses() -> list[str]:
    """The private clamd's unix and TCP addresses (both must answer)."""
    addresses = [
        clamd_unix(),
        clamd_inet(),
    ]
    problem = clamd_up(addresses)
    if problem:
        require_daemon(f"the private clamd is not answering: {problem}")
    return addresses


SMALL_PREFIX = "/tmp/mxscan-clamav-small-"


@pytest.fixture(scope="session")
def small_clamd() -> Iterator[dict[str, str]]:
    """A second private clamd with StreamMaxLength 1M, started by scripts/daemons."""
    with private_clamd("1M", prefix=SMALL_PREFIX, STREAM_MAX="1M") as addresses:
        yield {**addresses, "stream_max": str(1024 * 1024)}


@pytest.fixture(scope="session")
def alerting_clamd() -> Iterator[dict[str, str]]:
    """A clamd with AlertExceedsMax yes (as scripts/daemons and docs/clamav.md
    set it): a scan cut short by a limit answers Heuristics.Limits.Exceeded.*."""
    with private_clamd("alerting", STREAM_MAX="30M", ALERT_EXCEEDS_MAX="yes") as addresses:
        yield addresses


@pytest.fixture(scope="session")
def silent_clamd() -> Iterator[dict[str, str]]:
    """A clamd with AlertExceedsMax no (clamd's own default): it answers OK."""
    with private_clamd("silent", ALERT_EXCEEDS_MAX="no") as addresses:
        yield addresses


# -- the corpus --------------------------------------------------------------------


@pytest.fixture(scope="session")
def corpus() -> Path:
    return corpus_dir()
