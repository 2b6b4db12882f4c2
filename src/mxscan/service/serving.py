"""Starting a server on bound sockets: the same steps for every long-running adapter.

Bind every address, start serving on each, and only then drop privileges (a
unix socket under /run needs root to create, a port below 1024 too). If any
step fails, what was bound is closed again and the server stopped, so a
failed start leaves no socket behind.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable

from mxscan.addresses import Address

from .listen import BACKLOG, Listening, SocketPermissions, bind
from .privileges import drop_privileges

__all__ = ["bind_and_serve", "start_server"]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


#: asyncio's own default for a stream reader's buffer.
READ_LIMIT = 64 * 1024


async def start_server(
    listening: Listening, handler: Handler, *, limit: int = READ_LIMIT
) -> asyncio.Server:
    """asyncio's server on a socket from ``bind()``, unix or inet alike, keeping
    the backlog ``bind()`` was given (asyncio listens again, with 100 unless told)."""
    if listening.sock.family == socket.AF_UNIX:
        return await asyncio.start_unix_server(
            handler, sock=listening.sock, limit=limit, backlog=listening.backlog
        )
    return await asyncio.start_server(
        handler, sock=listening.sock, limit=limit, backlog=listening.backlog
    )


async def bind_and_serve(
    addresses: Iterable[Address],
    permissions: SocketPermissions,
    *,
    serve: Callable[[Listening], Awaitable[None]],
    stop: Callable[[float], Awaitable[None]],
    user: str | None,
    backlog: int = BACKLOG,
) -> list[Listening]:
    bound: list[Listening] = []
    try:
        for address in addresses:
            bound.append(bind(address, permissions, backlog))
        for listening in bound:
            await serve(listening)
        if user:
            drop_privileges(user)
    except BaseException:
        for listening in bound:
            listening.close()
        await stop(0)
        raise
    return bound
