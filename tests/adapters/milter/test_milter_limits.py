"""What a hostile or heavy MTA connection can cost the milter, over real sockets: big
edit batches off the event loop, timeouts, the connection limit, the listen backlog,
and a scan cancelled when the MTA hangs up."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mxscan.adapters.milter.server import MilterServer
from mxscan.adapters.milter.session import Limits
from mxscan.addresses import UnixAddress
from mxscan.edits import HeaderEdit
from mxscan.message import Message
from mxscan.verdict import Verdict
from tests.support import mta, scanners

SMALL = b"Subject: small\r\nFrom: <a@example.org>\r\n\r\nbody\r\n"


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "milter.sock")


async def started(sock_path: str, engine: object, **options: object) -> MilterServer:
    srv = MilterServer(engine, **options)  # type: ignore[arg-type]
    await srv.listen(UnixAddress(sock_path))
    return srv


@pytest.fixture
async def clients() -> AsyncIterator[list[mta.MtaClient]]:
    opened: list[mta.MtaClient] = []
    yield opened
    for client in opened:
        await client.close()


async def negotiated(sock_path: str, clients: list[mta.MtaClient]) -> mta.MtaClient:
    client = await mta.MtaClient.open_unix(sock_path)
    clients.append(client)
    await client.handshake()
    await client.send(mta.mail("s@example.org"), mta.rcpt("r@example.net"))
    assert await client.read() == (b"c", b"")
    return client


# -- finding 1: one message's header edits do not stall the others ----------------------------


class SpamStripper:
    """Deletes every X-Spam-Level field, as the seed's ``/^X-Spam-Level:/ IGNORE`` rule
    does, and says when its verdict is out: from then on the milter is applying and
    encoding 20,000 deletions."""

    name = "strip"

    def __init__(self) -> None:
        self.returned = asyncio.Event()

    async def scan(self, message: Message) -> Verdict:
        count = len(message.get_all("X-Spam-Level"))
        self.returned.set()
        return Verdict(edits=(HeaderEdit.delete("X-Spam-Level", 1),) * count)

    async def aclose(self) -> None:
        pass


async def test_a_small_message_is_answered_while_a_big_edit_batch_is_applied(
    sock_path: str, clients: list[mta.MtaClient]
) -> None:
    n = 20_000
    stripper = SpamStripper()
    srv = await started(
        sock_path,
        scanners.engine(stripper),
        limits=Limits(max_headers=3 * n, max_header_bytes=64 * 1024 * 1024),
    )
    try:
        big_head = b"".join(b"X-Ordinary-%d: v\r\n" % i for i in range(n))
        big_head += b"X-Spam-Level: ***\r\n" * n
        big, small = await negotiated(sock_path, clients), await negotiated(sock_path, clients)
        *small_packets, small_eom = mta.message_packets(SMALL)
        await small.send(*small_packets)  # all but its end-of-message
        *big_packets, big_eom = mta.message_packets(big_head + b"\r\nbody\r\n")
        await big.send(*big_packets)
        order: list[str] = []

        async def answer(name: str, client: mta.MtaClient) -> list[tuple[bytes, bytes]]:
            replies = await client.read_until_final(wait=120)
            order.append(name)
            return replies

        big_answer = asyncio.ensure_future(answer("big", big))
        await big.send(big_eom)
        await asyncio.wait_for(stripper.returned.wait(), 60)
        # The big one's 20,000 deletions are being applied now: the small one,
        # one packet away from its answer, must not wait for them.
        await small.send(small_eom)
        assert (await answer("small", small))[-1] == (b"c", b"")
        replies = await big_answer
        assert order == ["small", "big"]
        deletions = [data for code, data in replies if code == b"m"]
        assert len(deletions) == n and replies[-1] == (b"c", b"")
    finally:
        await srv.stop(1)


# -- finding 5: read / idle timeouts ----------------------------------------------------------


async def test_an_idle_connection_is_tempfailed_and_closed(
    sock_path: str, clients: list[mta.MtaClient], caplog: pytest.LogCaptureFixture
) -> None:
    srv = await started(sock_path, scanners.engine(), idle_timeout=0.3)
    try:
        client = await negotiated(sock_path, clients)
        await client.send(mta.header(b"Subject", b" x"))  # then silence, mid-message
        assert await client.read(wait=30) == (
            b"y",
            b"451 4.4.2 Milter connection timed out, try again later\0",
        )
        assert await asyncio.wait_for(client.reader.read(), 30) == b""
        assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
            "milter connection idle for 0.3s: tempfailing and closing the connection"
        ]
        assert srv._connections == set()
    finally:
        await srv.stop(1)


async def test_slowloris_cannot_keep_a_packet_open(
    sock_path: str, clients: list[mta.MtaClient]
) -> None:
    # One byte every 0.1 s resets no idle timer: a started packet must be whole
    # within the packet timeout.
    srv = await started(sock_path, scanners.engine(), idle_timeout=30, packet_timeout=0.5)
    try:
        client = await negotiated(sock_path, clients)
        packet = mta.header(b"Subject", b" " + b"x" * 200)
        answer = asyncio.ensure_future(client.read(wait=30))
        for byte in packet:
            if answer.done():
                break
            client.writer.write(bytes([byte]))
            await asyncio.sleep(0.05)
        code, data = await answer
        assert code == b"y" and data.startswith(b"451 4.4.2")
    finally:
        await srv.stop(1)


async def test_packets_split_across_reads_do_not_trip_the_packet_timeout(
    sock_path: str, clients: list[mta.MtaClient]
) -> None:
    # Every read ends in the middle of a packet, and the whole stream takes 3x the
    # packet timeout: only one packet that stays incomplete that long may be cut off.
    srv = await started(sock_path, scanners.engine(), packet_timeout=0.5)
    try:
        client = await negotiated(sock_path, clients)
        stream = b"".join(mta.header(b"X-H%d" % i, b" v" * 20) for i in range(20))
        for start in range(0, len(stream), 37):
            client.writer.write(stream[start : start + 37])
            await client.writer.drain()
            await asyncio.sleep(0.05)
        await client.send(mta.EOH, mta.EOM)
        assert (await client.read_until_final())[-1] == (b"c", b"")
    finally:
        await srv.stop(1)


# -- finding 6: the connection limit and the listen backlog -----------------------------------


async def test_past_max_connections_new_ones_are_tempfailed(
    sock_path: str, clients: list[mta.MtaClient]
) -> None:
    srv = await started(sock_path, scanners.engine(), max_connections=3)
    try:
        for _ in range(3):
            await negotiated(sock_path, clients)
        extra = await mta.MtaClient.open_unix(sock_path)
        clients.append(extra)
        code, _ = await extra.handshake()
        assert code == b"O"
        await extra.send(mta.macro(b"C", j="mx.example"), mta.connect())
        assert await extra.read() == (b"t", b"")  # tempfail, not a silent wait
        assert await asyncio.wait_for(extra.reader.read(), 10) == b""
        # The ones within the limit are served as ever.
        await clients[0].send(*mta.message_packets(SMALL))
        assert (await clients[0].read_until_final())[-1] == (b"c", b"")
        # And once one goes, a new one gets in.
        await clients.pop(0).close()
        for _ in range(100):
            if len(srv._connections) < 3:
                break
            await asyncio.sleep(0.02)
        await negotiated(sock_path, clients)
    finally:
        await srv.stop(1)


def burst(path: str, count: int) -> int:
    """Connect ``count`` non-blocking sockets while nobody accepts; the EAGAINs."""
    refused = 0
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        socks.append(s)
        try:
            s.connect(path)
        except BlockingIOError:
            refused += 1
        except OSError as exc:
            assert exc.errno == errno.EAGAIN
            refused += 1
    for s in socks:
        s.close()
    return refused


@pytest.mark.skipif(socket.SOMAXCONN < 400, reason="this kernel's SOMAXCONN is below 400")
async def test_listen_backlog_is_somaxconn_or_configured(sock_path: str) -> None:
    # The loop does not run during burst(): nothing is accepted, so the backlog
    # alone decides how many connections wait (asyncio's default was 100).
    srv = await started(sock_path, scanners.engine())
    try:
        assert burst(sock_path, 300) == 0
    finally:
        await srv.stop(1)
    srv = await started(sock_path, scanners.engine(), backlog=20)
    try:
        assert 250 <= burst(sock_path, 300) <= 280
    finally:
        await srv.stop(1)


# -- finding 8: a hang-up cancels the scan ----------------------------------------------------


async def test_hang_up_during_the_scan_cancels_it(
    sock_path: str, clients: list[mta.MtaClient], caplog: pytest.LogCaptureFixture
) -> None:
    watched = scanners.Gate("watched")  # lasts until cancelled, and records that it was
    srv = await started(sock_path, scanners.engine(watched), progress_interval=30)
    try:
        client = await negotiated(sock_path, clients)
        await client.send(mta.macro(b"E", i="QID42"), *mta.message_packets(SMALL))
        await asyncio.wait_for(watched.entered.wait(), 30)
        await client.close()
        await asyncio.wait_for(watched.cancelled.wait(), 30)
        for _ in range(100):
            if not srv._connections:
                break
            await asyncio.sleep(0.02)
        assert srv._connections == set() and srv._scans == 0
        assert "QID42: the MTA hung up during the scan: scan cancelled" in caplog.text
    finally:
        await srv.stop(1)


async def test_input_pipelined_during_the_scan_is_kept(
    sock_path: str, clients: list[mta.MtaClient]
) -> None:
    gate = scanners.Gate()
    srv = await started(sock_path, scanners.engine(gate))
    try:
        client = await negotiated(sock_path, clients)
        await client.send(*mta.message_packets(SMALL))
        await asyncio.wait_for(gate.entered.wait(), 30)
        # The next transaction's commands arrive before the answer: not a hang-up.
        await client.send(mta.ABORT, mta.mail("s@example.org"), mta.rcpt("r@example.net"))
        await asyncio.sleep(0.1)
        gate.release.set()
        assert await client.read_until_final() == [(b"c", b"")]
        assert await client.read() == (b"c", b"")  # the pipelined RCPT's answer
    finally:
        await srv.stop(1)
