# ruff: noqa: ASYNC240  (tests may touch the filesystem synchronously)
"""The asyncio server over real sockets, driven by a tiny MTA written in the tests."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mxscan.adapters.milter.constants import ModifyFlag as Flag
from mxscan.adapters.milter.server import MilterServer
from mxscan.addresses import InetAddress, UnixAddress
from mxscan.body import Body
from mxscan.service.listen import ListenError as ServerError
from tests.support import mta, scanners

MSG = b"Subject: hello\r\nFrom: <a@example.org>\r\n\r\nbody\r\n"


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "milter.sock")


@pytest.fixture
async def server(sock_path: str) -> AsyncIterator[MilterServer]:
    srv = MilterServer(scanners.engine(scanners.AddHeader(), scanners.SubjectRule()))
    await srv.listen(UnixAddress(sock_path))
    yield srv
    await srv.stop(1)


async def one_message(client: mta.MtaClient, raw: bytes = MSG, rcpt: str = "r@example.net"):  # type: ignore[no-untyped-def]
    await client.send(mta.mail("s@example.org"), mta.rcpt(rcpt))
    assert await client.read() == (b"c", b"")  # RCPT is answered (policy split)
    await client.send(*mta.message_packets(raw))
    return await client.read_until_final()


async def test_full_session_over_unix_socket(server: MilterServer, sock_path: str) -> None:
    client = await mta.MtaClient.open_unix(sock_path)
    code, data = await client.handshake()
    assert code == b"O"
    version, _actions, proto = struct.unpack("!III", data[:12])
    assert version == 6 and proto & mta.HDR_LEADSPC and proto & mta.NR_BODY
    await client.send(mta.macro(b"C", **{"{client_addr}": "192.0.2.1"}), mta.connect(), mta.helo())
    replies = await one_message(client)
    assert replies == [(b"h", b"X-Scanned\0 mxscan\0"), (b"c", b"")]
    # A second message on the same connection, after Postfix's ABORT.
    await client.send(mta.ABORT)
    replies = await one_message(client, b"Subject: discard-me\r\n\r\nx\r\n")
    assert replies[-1] == (b"d", b"")
    await client.send(mta.ABORT)
    replies = await one_message(client, b"Subject: reject-me\r\n\r\nx\r\n")
    assert replies == [(b"y", b"554 5.7.1 Rejected: 100%% bad\0")]
    await client.send(mta.ABORT)
    replies = await one_message(client, b"Subject: hold-me\r\n\r\nx\r\n")
    assert replies[-2:] == [(b"q", b"held for review\0"), (b"c", b"")]
    await client.send(mta.QUIT)
    assert await client.reader.read() == b""  # server closes after QUIT
    await client.close()
    assert server.messages == 4


async def test_progress_keepalives_during_slow_scan(sock_path: str) -> None:
    gate = scanners.Gate()  # the scan lasts until the keepalives were seen, not 0.5 s
    srv = MilterServer(scanners.engine(gate), progress_interval=0.1)
    await srv.listen(UnixAddress(sock_path))
    try:
        client = await mta.MtaClient.open_unix(sock_path)
        await client.handshake()
        await client.send(mta.mail("s@example.org"), mta.rcpt("r@example.net"))
        assert await client.read() == (b"c", b"")
        await client.send(*mta.message_packets(MSG))
        assert [await client.read(), await client.read()] == [(b"p", b"")] * 2
        gate.release.set()
        replies = await client.read_until_final()
        assert replies[-1] == (b"c", b"")
        assert set(replies[:-1]) <= {(b"p", b"")}
        await client.close()
    finally:
        await srv.stop(1)


async def test_engine_exception_gives_tempfail(sock_path: str) -> None:
    srv = MilterServer(scanners.RaisingEngine())  # type: ignore[arg-type]
    await srv.listen(UnixAddress(sock_path))
    try:
        client = await mta.MtaClient.open_unix(sock_path)
        await client.handshake()
        replies = await one_message(client)
        assert replies[-1][0] == b"y" and replies[-1][1].startswith(b"451 4.7.1")
        # The connection stays usable for the next message.
        await client.send(mta.ABORT)
        replies = await one_message(client)
        assert replies[-1][0] == b"y"
        await client.close()
    finally:
        await srv.stop(1)


async def test_scanner_crash_is_contained_by_the_pipeline(sock_path: str) -> None:
    srv = MilterServer(scanners.engine(scanners.Broken()))
    await srv.listen(UnixAddress(sock_path))
    try:
        client = await mta.MtaClient.open_unix(sock_path)
        await client.handshake()
        replies = await one_message(client)
        assert replies[-1][0] == b"y" and replies[-1][1].startswith(b"451 ")
        await client.close()
    finally:
        await srv.stop(1)


async def test_hangup_mid_message_cleans_up(
    server: MilterServer, sock_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mxscan.adapters.milter import session as session_mod

    closed: list[bool] = []
    original = session_mod.Session.close

    def spy(self: session_mod.Session) -> None:
        closed.append(self._tx.body is not None)
        original(self)

    monkeypatch.setattr(session_mod.Session, "close", spy)
    client = await mta.MtaClient.open_unix(sock_path)
    await client.handshake()
    await client.send(mta.mail("s@example.org"), mta.rcpt("r@example.net"))
    await client.read()
    await client.send(mta.header(b"Subject", b" x"), mta.EOH, *mta.body(b"y" * 100_000))
    await client.close()
    for _ in range(100):
        if closed:
            break
        await asyncio.sleep(0.02)
    assert closed == [True]  # closed while a body was half received
    assert server._connections == set()


async def test_garbage_drops_connection_server_survives(
    server: MilterServer, sock_path: str
) -> None:
    client = await mta.MtaClient.open_unix(sock_path)
    await client.send(mta.pkt(b"Z", b"junk"))
    assert await client.reader.read() == b""
    await client.close()
    client = await mta.MtaClient.open_unix(sock_path)
    assert (await client.handshake())[0] == b"O"
    await client.close()


async def test_socket_mode_stale_socket_and_removal(sock_path: str) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock_path)
    stale.close()  # a socket file nobody listens on: what a crash leaves behind
    srv = MilterServer(scanners.engine(), socket_mode=0o640)
    await srv.listen(UnixAddress(sock_path))
    st = os.stat(sock_path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    # A second instance must not steal a live socket.
    with pytest.raises(ServerError, match="in use"):
        await MilterServer(scanners.engine()).listen(UnixAddress(sock_path))
    await srv.stop(1)
    assert not os.path.exists(sock_path)


async def test_refuses_to_remove_a_regular_file(sock_path: str) -> None:
    Path(sock_path).write_text("not a socket")
    with pytest.raises(ServerError, match="not a socket"):
        await MilterServer(scanners.engine()).listen(UnixAddress(sock_path))
    assert Path(sock_path).read_text() == "not a socket"


async def test_socket_owner_and_group(sock_path: str) -> None:
    if os.getuid() != 0:
        pytest.skip("chown needs root")
    srv = MilterServer(scanners.engine(), socket_owner="nobody", socket_group="nogroup")
    await srv.listen(UnixAddress(sock_path))
    import grp
    import pwd

    st = os.stat(sock_path)
    assert st.st_uid == pwd.getpwnam("nobody").pw_uid
    assert st.st_gid == grp.getgrnam("nogroup").gr_gid
    await srv.stop(1)
    with pytest.raises(ServerError, match="no such user"):
        await MilterServer(scanners.engine(), socket_owner="no-such-user-x").listen(
            UnixAddress(sock_path)
        )
    assert not os.path.exists(sock_path)


async def scan_in_flight(
    sock_path: str, seconds: float
) -> tuple[MilterServer, mta.MtaClient, asyncio.Future[list[tuple[bytes, bytes]]]]:
    """A server whose only scanner takes ``seconds``, with one message being scanned."""
    slow = scanners.Slow(seconds)
    srv = MilterServer(scanners.engine(slow), progress_interval=5)
    await srv.listen(UnixAddress(sock_path))
    client = await mta.MtaClient.open_unix(sock_path)
    await client.handshake()
    pending = asyncio.ensure_future(one_message(client))
    await asyncio.wait_for(slow.started.wait(), 30)
    return srv, client, pending


async def test_drain_finishes_scan_in_flight(sock_path: str) -> None:
    srv, client, pending = await scan_in_flight(sock_path, 0.4)
    await srv.stop(drain_timeout=30)
    assert (await pending)[-1] == (b"c", b"")
    assert not os.path.exists(sock_path)
    with pytest.raises(OSError):
        await mta.MtaClient.open_unix(sock_path)
    await client.close()


async def test_drain_is_bounded(sock_path: str) -> None:
    srv, client, pending = await scan_in_flight(sock_path, 30)
    await asyncio.wait_for(srv.stop(drain_timeout=0.2), 10)
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await pending
    await client.close()


async def test_replace_engine_closes_old_one(server: MilterServer, sock_path: str) -> None:
    old_tagger = scanners.AddHeader()
    server.engine = scanners.engine(old_tagger)
    server.replace_engine(scanners.engine(scanners.AddHeader(header="X-New")))
    await asyncio.sleep(0.05)
    assert old_tagger.closed
    client = await mta.MtaClient.open_unix(sock_path)
    await client.handshake()
    replies = await one_message(client)
    assert replies[0] == (b"h", b"X-New\0 mxscan\0")
    await client.close()


async def test_inet_listener() -> None:
    srv = MilterServer(scanners.engine(scanners.AddHeader()))
    await srv.listen(InetAddress("127.0.0.1", 0))
    port = srv.sockets[0].getsockname()[1]
    try:
        client = await mta.MtaClient.open_tcp("127.0.0.1", port)
        await client.handshake()
        replies = await one_message(client)
        assert replies[-1] == (b"c", b"")
        await client.close()
    finally:
        await srv.stop(1)


def closed(body: Body) -> bool:
    try:
        body.read_at(0, 1)
    except ValueError:
        return True
    return False


async def test_replaced_body_is_streamed_then_closed(sock_path: str, tmp_path: Path) -> None:
    rebody = scanners.ReplaceBody(3 * 1024 * 1024, spool_dir=str(tmp_path))
    srv = MilterServer(scanners.engine(rebody))
    await srv.listen(UnixAddress(sock_path))
    try:
        client = await mta.MtaClient.open_unix(sock_path)
        _, data = await client.handshake()
        assert struct.unpack("!III", data[:12])[1] & int(Flag.CHGBODY)  # asked for, as needed
        replies = await one_message(client)
        await client.close()
    finally:
        await srv.stop(1)
    assert [code for code, _ in replies[-2:]] == [b"b", b"c"]
    assert {code for code, _ in replies[:-1]} == {b"b"}
    assert all(len(data) <= 65535 for _, data in replies)
    assert b"".join(data for _, data in replies[:-1]) == rebody.new_body()
    [body] = rebody.made
    assert body.spooled and closed(body)


async def test_hang_up_while_a_replaced_body_streams(sock_path: str, tmp_path: Path) -> None:
    rebody = scanners.ReplaceBody(16 * 1024 * 1024, spool_dir=str(tmp_path))
    srv = MilterServer(scanners.engine(rebody))
    await srv.listen(UnixAddress(sock_path))
    try:
        client = await mta.MtaClient.open_unix(sock_path)
        await client.handshake()
        await client.send(mta.mail("s@example.org"), mta.rcpt("r@example.net"))
        await client.read()
        await client.send(*mta.message_packets(MSG))
        # Take the first packet, then go away with 16 MiB still to come.
        assert (await client.read())[0] == b"b"
        await client.close()
        for _ in range(500):  # the server notices the hang-up at its next drain
            if rebody.made and closed(rebody.made[0]):
                break
            await asyncio.sleep(0.01)
        assert rebody.made and closed(rebody.made[0])
        # The server goes on serving.
        client = await mta.MtaClient.open_unix(sock_path)
        await client.handshake()
        assert (await one_message(client))[-1] == (b"c", b"")
        await client.close()
    finally:
        await srv.stop(1)
