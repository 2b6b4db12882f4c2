"""Starting a server on bound sockets: the same steps for every long-running adapter.

Bind every address, start serving on each, and only then drop privileges (a
unix socket under /run needs root to create, a port below 1024 too). If any
step fails, what was bound is closed again and the server stopped, so a
failed start leaves no socket behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from mxscan.addresses import Address
from mxscan.config import Config, load_given_config
from mxscan.errors import ConfigError
from mxscan.holder import EngineHolder
from mxscan.logline import setup_logging

from .connections import Connections
from .listen import BACKLOG, ListenError, Listening, SocketPermissions, bind
from .privileges import drop_privileges

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "Listeners",
    "bind_and_serve",
    "drain",
    "run_command",
    "start_server",
]

EXIT_OK = 0
#: A user error (bad option, configuration or socket): argparse's own status.
EXIT_ERROR = 2

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


class Listeners:
    """One adapter's asyncio servers and the bound sockets under them.

    ``stop`` is the whole SIGTERM sequence of an adapter whose connections all
    end alike (the milter, HTTP): stop accepting and remove the unix sockets we
    created, let the scans in flight finish (bounded), cancel what is left,
    close the engines.
    """

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.bound: list[Listening] = []
        self._stopped = False

    async def start(
        self, listening: Listening, handler: Handler, *, limit: int = READ_LIMIT
    ) -> None:
        try:
            server = await start_server(listening, handler, limit=limit)
        except BaseException:
            listening.close()
            raise
        self.servers.append(server)
        self.bound.append(listening)

    @property
    def sockets(self) -> list[socket.socket]:
        return [s for server in self.servers for s in server.sockets]

    async def stop(
        self,
        holder: EngineHolder[Any],
        connections: Connections,
        drain_timeout: float,
        log: logging.Logger,
    ) -> None:
        """A second call (a failed start stops twice) does nothing: the engines
        are closed once."""
        if self._stopped:
            return
        self._stopped = True
        for server in self.servers:
            server.close()
        for listening in self.bound:
            listening.close()
        await drain(holder, connections, drain_timeout, log)
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        self.servers.clear()
        self.bound.clear()
        await holder.aclose()


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


async def drain(
    holder: EngineHolder[Any], connections: Connections, timeout: float, log: logging.Logger
) -> None:
    """SIGTERM's middle step, once the listeners are closed: the scans in flight
    get ``timeout`` seconds, then every connection still open is cancelled."""
    if not await holder.wait_idle(timeout):
        log.warning("drain timeout: %d scans still running, closing anyway", holder.active)
    await connections.cancel_all()


def run_command(
    config_path: str | None,
    main: Callable[[Config], Coroutine[Any, Any, int]],
    check: Callable[[], None] | None = None,
) -> int:
    """A long-running subcommand from start to exit status: ``check`` the
    arguments, load the configuration, log where it says, run ``main``. Every
    user error (bad file, socket in use, no such user) is one line on stderr and
    status 2, never a traceback; Ctrl-C before ``ready`` is a clean exit."""
    try:
        if check is not None:
            check()
        config = load_given_config(config_path)
        setup_logging(config.log_target, config.log_facility, config.log_level)
        return asyncio.run(main(config))
    except (ConfigError, ListenError) as exc:
        print(f"mxscan: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK
