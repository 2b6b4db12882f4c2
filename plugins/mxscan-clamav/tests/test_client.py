"""The asyncio client against a fake clamd that misbehaves on purpose.

Every test is wrapped in an outer ``asyncio.timeout`` far above the client's own
timeouts: it only turns a hang (the bug these tests look for) into a failure.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from clamav_support import (
    FakeFactory,
    answer,
    die_after,
    never_answer,
    never_read,
    over_limit,
)

from mxscan_clamav import (
    ClamdClient,
    ClamdConnectionLost,
    ClamdErrorReply,
    ClamdProtocolError,
    ClamdTimeout,
    ClamdUnavailable,
    StreamLimitExceeded,
)

GUARD = 20  # seconds; only a hang gets anywhere near this


def pieces(total: int, size: int = 10_000) -> Iterator[bytes]:
    """``total`` bytes in odd-sized pieces, produced lazily like a spooled body."""
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield bytes([sent % 251]) * n
        sent += n


@pytest.mark.parametrize("transport", ["unix", "inet"])
async def test_instream_sends_the_stream_in_64k_frames(
    fake_clamd: FakeFactory, transport: str
) -> None:
    fake = await fake_clamd(answer(b"stream: OK\0"), transport)
    data = b"".join(pieces(200_000))
    async with asyncio.timeout(GUARD):
        result = await ClamdClient(fake.address).instream(pieces(200_000))
    assert not result.infected
    (request,) = fake.requests
    assert request.command == b"zINSTREAM" and request.complete
    assert bytes(request.payload) == data
    assert request.frame_sizes == [65536, 65536, 65536, 200_000 - 3 * 65536]


async def test_found(fake_clamd: FakeFactory) -> None:
    fake = await fake_clamd(answer(b"stream: Win.Test.Thing FOUND\0"))
    async with asyncio.timeout(GUARD):
        result = await ClamdClient(fake.address).instream([b"hello"])
    assert result.signatures == ("Win.Test.Thing",)


async def test_ping_and_version(fake_clamd: FakeFactory) -> None:
    pong = await fake_clamd(answer(b"PONG\0"))
    version = await fake_clamd(answer(b"ClamAV 1.4.6/27000/Thu Nov 27 2026\0"))
    async with asyncio.timeout(GUARD):
        await ClamdClient(pong.address).ping()
        assert await ClamdClient(version.address).version() == "ClamAV 1.4.6/27000/Thu Nov 27 2026"
    assert pong.requests[0].command == b"zPING"
    assert version.requests[0].command == b"zVERSION"


@pytest.mark.parametrize("transport", ["unix", "inet"])
@pytest.mark.parametrize("attempt", range(5))
async def test_stream_limit_answer_is_read_despite_the_broken_pipe(
    fake_clamd: FakeFactory, transport: str, attempt: int
) -> None:
    """clamd answers and hangs up while the client is still writing megabytes:
    the answer must come through, not a BrokenPipeError or ConnectionResetError."""
    fake = await fake_clamd(over_limit(256 * 1024), transport)
    client = ClamdClient(fake.address, timeout=10)
    async with asyncio.timeout(GUARD):
        with pytest.raises(StreamLimitExceeded) as info:
            await client.instream(pieces(20_000_000, 65536))
    assert info.value.address == fake.address
    assert str(info.value) == (
        f"clamd at {fake.address}: replied 'INSTREAM size limit exceeded. ERROR'"
    )


@pytest.mark.parametrize("transport", ["unix", "inet"])
async def test_killed_mid_stream_is_a_lost_connection(
    fake_clamd: FakeFactory, transport: str
) -> None:
    fake = await fake_clamd(die_after(100_000), transport)
    async with asyncio.timeout(GUARD):
        with pytest.raises(ClamdConnectionLost) as info:
            await ClamdClient(fake.address, timeout=10).instream(pieces(20_000_000, 65536))
    message = str(info.value)
    assert message.startswith(f"clamd at {fake.address}: closed the connection after ")
    assert "without an answer" in message


async def test_killed_after_the_stream_before_answering(fake_clamd: FakeFactory) -> None:
    fake = await fake_clamd(die_after(10**9))
    async with asyncio.timeout(GUARD):
        with pytest.raises(ClamdConnectionLost, match="closed the connection without an answer"):
            await ClamdClient(fake.address, timeout=10).instream(pieces(100_000))
    assert fake.requests[0].complete


async def test_a_partial_stream_never_gets_a_verdict(fake_clamd: FakeFactory) -> None:
    """A peer that says OK after reading only part of the stream and hanging up
    gave no verdict on the rest: that is a lost connection, not "clean"."""

    async def ok_too_early(fake, request, reader, writer):  # type: ignore[no-untyped-def]
        await reader.readexactly(1000)
        writer.write(b"stream: OK\0")
        await writer.drain()

    fake = await fake_clamd(ok_too_early, "inet")
    async with asyncio.timeout(GUARD):
        with pytest.raises(ClamdConnectionLost):
            await ClamdClient(fake.address, timeout=10).instream(pieces(20_000_000, 65536))


async def test_no_answer_times_out(fake_clamd: FakeFactory) -> None:
    fake = await fake_clamd(never_answer)
    async with asyncio.timeout(GUARD):
        with pytest.raises(ClamdTimeout) as info:
            await ClamdClient(fake.address, timeout=0.5).instream([b"data"])
    assert str(info.value) == (
        f"clamd at {fake.address}: no answer within 0.5s while waiting for the reply"
    )


async def test_a_daemon_that_stops_reading_times_out_while_sending(
    fake_clamd: FakeFactory,
) -> None:
    fake = await fake_clamd(never_read, "inet")
    async with asyncio.timeout(GUARD):
        with pytest.raises(ClamdTimeout, match="while sending the request"):
            await ClamdClient(fake.address, timeout=0.5).instream(pieces(50_000_000, 65536))


@pytest.mark.parametrize(
    ("reply", "error", "words"),
    [
        (b"hello there\0", ClamdProtocolError, "unexpected reply: 'hello there'"),
        (b"stream: OK", ClamdProtocolError, "without its terminating NUL"),
        (b"\x00\x01\x02\xff", ClamdProtocolError, "without its terminating NUL"),
        (b"", ClamdConnectionLost, "closed the connection without an answer"),
        (b"stream: Can't allocate memory ERROR\0", ClamdErrorReply, "Can't allocate memory"),
    ],
)
async def test_bad_replies_are_errors_naming_the_address(
    fake_clamd: FakeFactory, reply: bytes, error: type[Exception], words: str
) -> None:
    fake = await fake_clamd(answer(reply))
    async with asyncio.timeout(GUARD):
        with pytest.raises(error) as info:
            await ClamdClient(fake.address, timeout=10).instream([b"data"])
    assert str(info.value).startswith(f"clamd at {fake.address}: ")
    assert words in str(info.value)


async def test_endless_garbage_is_cut_off(fake_clamd: FakeFactory) -> None:
    async def spew(fake, request, reader, writer):  # type: ignore[no-untyped-def]
        while True:
            writer.write(b"x" * 65536)
            await writer.drain()

    fake = await fake_clamd(spew)
    async with asyncio.timeout(GUARD):
        with pytest.raises(ClamdProtocolError, match="too long"):
            await ClamdClient(fake.address, timeout=5).ping()


@pytest.mark.parametrize("dead", ["dead_unix", "closed_port", "missing_socket"])
async def test_failover_to_the_next_address_on_connect_failure(
    fake_clamd: FakeFactory, request: pytest.FixtureRequest, dead: str, tmp_path: Path
) -> None:
    dead_address = (
        f"unix:{tmp_path / 'nothing.sock'}"
        if dead == "missing_socket"
        else request.getfixturevalue(dead)
    )
    fake = await fake_clamd(answer(b"stream: OK\0"))
    client = ClamdClient([dead_address, fake.address], timeout=5)
    async with asyncio.timeout(GUARD):
        for _ in range(4):
            assert not (await client.instream([b"data"])).infected
    assert len(fake.requests) == 4


async def test_all_dead_names_every_address(
    dead_unix: str, closed_port: str, tmp_path: Path
) -> None:
    missing = f"unix:{tmp_path / 'nothing.sock'}"
    client = ClamdClient([dead_unix, closed_port, missing], timeout=5)
    async with asyncio.timeout(GUARD):
        with pytest.raises(ClamdUnavailable) as info:
            await client.instream([b"data"])
    message = str(info.value)
    assert message.startswith("no clamd reachable: ")
    assert f"{dead_unix}: Connection refused" in message
    assert f"{closed_port}: Connection refused" in message
    assert f"{missing}: No such file or directory" in message


async def test_round_robin_spreads_requests(fake_clamd: FakeFactory) -> None:
    first = await fake_clamd(answer(b"stream: OK\0"))
    second = await fake_clamd(answer(b"stream: OK\0"), "inet")
    client = ClamdClient([first.address, second.address])
    async with asyncio.timeout(GUARD):
        await asyncio.gather(*(client.instream([b"x"]) for _ in range(6)))
    assert len(first.requests) == 3 and len(second.requests) == 3


async def test_connect_timeout_fails_over(fake_clamd: FakeFactory) -> None:
    """A listener whose backlog is full drops SYNs: connect() hangs, not fails."""
    wedged = socket.socket()
    wedged.bind(("127.0.0.1", 0))
    wedged.listen(0)
    host, port = wedged.getsockname()
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex((host, port))
            fillers.append(filler)
        await asyncio.sleep(0.1)
        fake = await fake_clamd(answer(b"stream: OK\0"))
        client = ClamdClient([f"inet:{host}:{port}", fake.address], timeout=5, connect_timeout=0.3)
        async with asyncio.timeout(GUARD):
            assert not (await client.instream([b"x"])).infected
        assert len(fake.requests) == 1
        # Alone, the wedged address is reported with its timeout.
        with pytest.raises(ClamdUnavailable, match=r"no connection within 0\.3s"):
            async with asyncio.timeout(GUARD):
                await ClamdClient(f"inet:{host}:{port}", connect_timeout=0.3).ping()
    finally:
        for filler in fillers:
            filler.close()
        wedged.close()


def test_bad_construction_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unix:/path or inet:host:port"):
        ClamdClient("localhost:3310")
    with pytest.raises(ValueError, match="positive"):
        ClamdClient("inet:127.0.0.1:3310", timeout=0)


async def test_the_stream_is_sent_while_it_is_produced(fake_clamd: FakeFactory) -> None:
    """Nothing buffers the whole message: by the time the producer makes its 50th
    64 KiB piece, clamd has already received most of the first 49."""
    fake = await fake_clamd(answer(b"stream: OK\0"))
    seen_at_50: list[int] = []

    def produce() -> Iterator[bytes]:
        for index in range(100):
            if index == 50:
                seen_at_50.append(len(fake.requests[0].payload))
            yield b"z" * 65536

    async with asyncio.timeout(GUARD):
        await ClamdClient(fake.address).instream(produce())
    assert seen_at_50[0] >= 40 * 65536, seen_at_50
    assert len(fake.requests[0].payload) == 100 * 65536
