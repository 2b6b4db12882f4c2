"""Hostile input against a running ``mxscan milter`` process, in bounded time.

Each test throws one class of bad input at the same process (random bytes,
truncated and oversized length prefixes, unknown and out-of-order commands, macro
floods, header bombs, 1,000 idle connections, slowloris, hang-ups at every stage);
the last one checks what must hold afterwards: the process is up and logged no
traceback, its descriptors are back at their baseline, its memory stayed bounded,
and a well-behaved MTA is still answered. Timeouts are shortened (1 s) so that
what the server must close, it closes while the test waits.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import struct
from collections.abc import Iterator

import pytest

from tests.support import mta
from tests.support.milter import MilterProcess, plain_config, remove_dir, socket_dir

CONFIG = plain_config({"rules": {"plugin": "header-rules", "rules": "/^X-Spam-Level:/ IGNORE\n"}})
GOOD = b"Subject: fine\r\nFrom: <a@example.org>\r\nX-Spam-Level: ***\r\n\r\nbody\r\n"
IDLE = 1.0
#: Far above what the process needs for its interpreter, plugins and a few
#: connections; a leak of the flood's bytes (50 MB) or a header bomb's would show.
RSS_BOUND_KIB = 150 * 1024


class Fuzzed:
    def __init__(self, process: MilterProcess) -> None:
        self.process = process
        self.sock = str(process.sock)
        self.fds = self.open_fds()
        self.rss = process.kib("VmRSS")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    async def raw(self, *chunks: bytes, read: bool = True) -> bytes:
        """Send ``chunks`` on a new connection, then whatever the server answers
        until it closes (or nothing, when ``read`` is false)."""
        reader, writer = await asyncio.open_unix_connection(self.sock)
        try:
            # One write: Python 3.12's transport sums its buffered chunks on every
            # write(), so 250,000 small writes without a drain are quadratic here.
            writer.write(b"".join(chunks))
            await writer.drain()
            if not read:
                return b""
            return await asyncio.wait_for(reader.read(), 30)
        except ConnectionError:
            return b""
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    async def good_message(self) -> list[tuple[bytes, bytes]]:
        client = await mta.MtaClient.open_unix(self.sock)
        try:
            await client.handshake()
            await client.send(mta.macro(b"C", j="mx.example", v="Postfix 3.7.11"), mta.connect())
            await client.send(mta.mail("s@example.org"), mta.rcpt("r@example.net"))
            assert await client.read() == (b"c", b"")
            await client.send(*mta.message_packets(GOOD))
            return await client.read_until_final(wait=5)
        finally:
            await client.close()


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Fuzzed]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard}: 1,000 connections need more")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2200), hard))  # inherited
    directory = socket_dir()
    process = MilterProcess(
        CONFIG,
        directory,
        args=["--idle-timeout", f"{IDLE}s", "--packet-timeout", f"{IDLE}s",
              "--max-connections", "1100"],
    )  # fmt: skip
    try:
        yield Fuzzed(process.start())
    finally:
        process.stop()
        remove_dir(directory)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def full_session() -> list[bytes]:
    """Every packet of a well-behaved session, in order."""
    return [
        mta.optneg(),
        mta.macro(b"C", j="mx.example"),
        mta.connect(),
        mta.helo(),
        mta.macro(b"M", i="QID1"),
        mta.mail("s@example.org"),
        mta.rcpt("r@example.net"),
        mta.DATA,
        *mta.message_packets(GOOD),
        mta.ABORT,
        mta.QUIT,
    ]


async def test_a_well_behaved_client_is_served(fuzzed: Fuzzed) -> None:
    replies = await fuzzed.good_message()
    assert replies[-1] == (b"c", b"") and replies[0][0] == b"m"  # the IGNORE rule


async def test_random_bytes(fuzzed: Fuzzed) -> None:
    rng = random.Random(13)
    for size in [1, 3, 4, 5, 17, 100, 4096, 65536] * 4:
        await fuzzed.raw(rng.randbytes(size))
    # Random bytes after a good negotiation, too.
    for size in (5, 100, 4096):
        await fuzzed.raw(mta.optneg(), rng.randbytes(size))


async def test_truncated_oversized_and_zero_length_prefixes(fuzzed: Fuzzed) -> None:
    await fuzzed.raw(b"\0\0")  # half a length, then EOF
    await fuzzed.raw(struct.pack("!I", 100) + b"O" + b"x" * 10)  # short packet, EOF
    assert await fuzzed.raw(struct.pack("!I", 0xFFFFFFFF) + b"O") == b""
    assert await fuzzed.raw(struct.pack("!I", 64 * 1024 * 1024) + b"B") == b""
    assert await fuzzed.raw(struct.pack("!I", 0)) == b""
    # A truncated payload inside a well-formed frame.
    assert await fuzzed.raw(mta.pkt(b"O", b"\0\0\0\6")) == b""
    assert await fuzzed.raw(mta.optneg(), mta.pkt(b"C", b"host")) == b""


async def test_unknown_and_out_of_order_commands(fuzzed: Fuzzed) -> None:
    assert await fuzzed.raw(mta.pkt(b"Z", b"junk")) == b""
    assert await fuzzed.raw(mta.header(b"Subject", b" x")) == b""  # before OPTNEG
    assert await fuzzed.raw(mta.EOM) == b""
    # After negotiation: commands in the wrong order are answered or ignored, and
    # the connection ends cleanly at QUIT.
    for packets in (
        [mta.EOM],
        [*mta.body(b"x" * 10), mta.EOM],
        [mta.rcpt("r@example.net"), mta.EOH, mta.EOM],
        [mta.optneg(), mta.optneg()],
        [mta.pkt(b"U", b"HELP\0"), mta.ABORT, mta.ABORT],
    ):
        answer = await fuzzed.raw(mta.optneg(), *packets, mta.QUIT)
        assert answer[4:5] == b"O"  # negotiated first, whatever came after


async def test_macro_flood(fuzzed: Fuzzed) -> None:
    # 50 MB of distinct connect macros (the flood) then a RCPT: the milter
    # keeps at most 1 MiB of them and tempfails the connection.
    flood = [
        mta.macro(b"C", **{f"{{m{i}-{j}}}": "v" * 1000 for j in range(500)}) for i in range(100)
    ]
    answer = await fuzzed.raw(mta.optneg(), *flood, mta.mail("s@example.org"),
                              mta.rcpt("r@example.net"), mta.QUIT)  # fmt: skip
    assert b"451 4.7.0 Too many milter macros" in answer
    assert fuzzed.process.kib("VmRSS") < RSS_BOUND_KIB


async def test_header_bombs(fuzzed: Fuzzed) -> None:
    envelope = [mta.optneg(), mta.mail("s@example.org"), mta.rcpt("r@example.net")]
    many = [mta.header(b"X-H", b" v") for _ in range(250_000)]
    answer = await fuzzed.raw(*envelope, *many, mta.EOH, mta.EOM, mta.QUIT)
    assert b"552 5.3.4 Message header too large" in answer
    big = [mta.header(b"X-Big", b" " + b"v" * (1024 * 1024 - 16)) for _ in range(100)]
    answer = await fuzzed.raw(*envelope, *big, mta.EOH, mta.EOM, mta.QUIT)
    assert b"552 5.3.4 Message header too large" in answer
    assert fuzzed.process.kib("VmRSS") < RSS_BOUND_KIB


async def test_a_thousand_idle_connections_are_closed(fuzzed: Fuzzed) -> None:
    async def idle(stage: int) -> bytes:
        reader, writer = await asyncio.open_unix_connection(fuzzed.sock)
        try:
            if stage >= 1:
                writer.write(mta.optneg())
            if stage >= 2:
                writer.write(mta.mail("s@example.org") + mta.header(b"Subject", b" x"))
            await writer.drain()
            return await asyncio.wait_for(reader.read(), 60)  # until the server closes
        finally:
            writer.close()

    idlers = asyncio.gather(*(idle(i % 3) for i in range(1000)))
    # While the thousand sit there, a well-behaved MTA is still answered.
    assert (await fuzzed.good_message())[-1] == (b"c", b"")
    answers = await idlers
    assert all(
        a.endswith(b"451 4.4.2 Milter connection timed out, try again later\0") for a in answers
    )


async def test_slowloris(fuzzed: Fuzzed) -> None:
    async def slow() -> bytes:
        reader, writer = await asyncio.open_unix_connection(fuzzed.sock)
        data = mta.optneg() + mta.header(b"Subject", b" " + b"x" * 1000)
        answer = asyncio.ensure_future(asyncio.wait_for(reader.read(), 60))
        try:
            for byte in data:  # each byte well within the idle timeout
                if answer.done():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)
            return await answer
        except ConnectionError:
            return b"closed"
        finally:
            writer.close()

    answers = await asyncio.gather(*(slow() for _ in range(50)))
    assert all(a for a in answers)  # every one was cut off by the server


async def test_hang_ups_at_every_stage(fuzzed: Fuzzed) -> None:
    stream = full_session()
    for cut in range(1, len(stream)):
        await fuzzed.raw(*stream[:cut], read=False)  # hang up between packets
        packet = stream[cut]
        await fuzzed.raw(*stream[:cut], packet[: len(packet) // 2], read=False)  # mid-packet


async def test_after_the_fuzz_the_milter_is_unharmed(fuzzed: Fuzzed) -> None:
    process = fuzzed.process
    assert process.proc is not None and process.proc.poll() is None
    for _ in range(300):  # the server closes what the fuzz left open within IDLE
        if fuzzed.open_fds() <= fuzzed.fds:
            break
        await asyncio.sleep(0.1)
    assert fuzzed.open_fds() <= fuzzed.fds
    print(  # figures for the log (-s): what the fuzz cost
        f"fds {fuzzed.fds} -> {fuzzed.open_fds()}, VmRSS {fuzzed.rss} -> "
        f"{process.kib('VmRSS')} KiB, VmHWM {process.kib('VmHWM')} KiB"
    )
    assert process.kib("VmHWM") < RSS_BOUND_KIB + 64 * 1024
    assert process.kib("VmRSS") < RSS_BOUND_KIB
    for _ in range(5):
        assert (await fuzzed.good_message())[-1] == (b"c", b"")
    log = process.log()
    assert "Traceback" not in log and "unexpected error" not in log
    assert os.path.exists(fuzzed.sock)  # noqa: ASYNC240
