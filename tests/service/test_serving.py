"""bind_and_serve: a failed start leaves no socket behind."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from mxscan.addresses import InetAddress, UnixAddress
from mxscan.service.listen import ListenError, Listening, SocketPermissions
from mxscan.service.serving import bind_and_serve, start_server


async def test_a_later_address_in_use_closes_the_earlier_ones(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    path = tmp_path / "first.sock"
    served: list[Listening] = []
    stopped: list[float] = []

    async def serve(listening: Listening) -> None:
        served.append(listening)

    async def stop(timeout: float) -> None:
        stopped.append(timeout)

    try:
        with pytest.raises(ListenError, match="cannot listen"):
            await bind_and_serve(
                [UnixAddress(str(path)), InetAddress("127.0.0.1", port)],
                SocketPermissions(),
                serve=serve,
                stop=stop,
                user=None,
            )
    finally:
        busy.close()
    assert not path.exists()  # the unix socket bound first was removed again
    assert stopped == [0] and served == []


async def test_start_server_serves_unix_and_inet(tmp_path: Path) -> None:
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi\n")
        await writer.drain()
        writer.close()

    bound = await bind_and_serve(
        [UnixAddress(str(tmp_path / "s.sock")), InetAddress("127.0.0.1", 0)],
        SocketPermissions(mode=0o600),
        serve=lambda listening: _serve(listening, hello),
        stop=_nothing,
        user=None,
    )
    assert (tmp_path / "s.sock").stat().st_mode & 0o777 == 0o600
    unix_reader, _ = await asyncio.open_unix_connection(str(tmp_path / "s.sock"))
    assert await unix_reader.readline() == b"hi\n"
    inet = bound[1].address
    assert isinstance(inet, InetAddress)
    inet_reader, _ = await asyncio.open_connection("127.0.0.1", inet.port)
    assert await inet_reader.readline() == b"hi\n"
    for listening in bound:
        listening.close()


SERVERS: list[asyncio.Server] = []


async def _serve(listening: Listening, handler) -> None:  # type: ignore[no-untyped-def]
    SERVERS.append(await start_server(listening, handler))


async def _nothing(timeout: float) -> None:
    pass


def _listen_backlog(sock: socket.socket) -> int:
    """The backlog the kernel holds for a listening TCP socket: Linux reports
    it in TCP_INFO's ``tcpi_sacked`` while the socket is in LISTEN."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int.from_bytes(info[28:32], sys.byteorder)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO backlog is Linux's")
async def test_the_server_keeps_the_backlog_bind_was_given() -> None:
    """asyncio listens again when a server starts, with 100 unless told: a burst
    of Postfix connections past that is refused by the kernel."""
    from mxscan.service.listen import bind

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    listening = bind(InetAddress("127.0.0.1", 0), backlog=777)
    server = await start_server(listening, handler)
    try:
        assert _listen_backlog(server.sockets[0]) == 777
    finally:
        server.close()
        listening.close()
