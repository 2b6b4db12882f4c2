"""service.connections: a drain can end connections that are still open."""

from __future__ import annotations

import asyncio
import socket

from mxscan.service.connections import Connections


async def test_tracked_handlers_are_cancelled_and_tcp_gets_nodelay() -> None:
    connections = Connections()
    nodelay: list[int] = []
    cancelled = asyncio.Event()
    tracked = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with connections.track(writer):
            tracked.set()
            nodelay.append(
                writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            )
            try:
                await reader.read()  # an idle client
            except asyncio.CancelledError:
                cancelled.set()
                raise
            finally:
                writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, client = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.wait_for(tracked.wait(), 5)
    assert len(connections) == 1
    await connections.cancel_all(timeout=2)
    assert cancelled.is_set()
    assert len(connections) == 0
    assert nodelay == [1]
    client.close()
    server.close()
    await server.wait_closed()
