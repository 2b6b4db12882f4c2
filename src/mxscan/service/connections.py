"""The client connections a server holds open, so a drain can end them.

Each connection handler runs inside ``track()``; after the scans in flight have
finished (or the drain timeout passed), ``cancel_all()`` ends the idle and slow
ones. TCP connections get TCP_NODELAY: small request/answer exchanges otherwise
wait on Nagle's algorithm meeting delayed ACKs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

__all__ = ["Connections", "no_delay"]


class Connections:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def tasks(self) -> frozenset[asyncio.Task[object]]:
        """The handlers running now."""
        return frozenset(self._tasks)

    @contextlib.contextmanager
    def track(self, writer: asyncio.StreamWriter) -> Iterator[None]:
        task = asyncio.current_task()
        assert task is not None, "track() runs inside a connection handler task"
        no_delay(writer)
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    async def cancel_all(self, timeout: float = 5.0) -> None:
        """Cancel every tracked handler and wait (bounded) for them to unwind."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


def no_delay(writer: asyncio.StreamWriter) -> None:
    """TCP_NODELAY on a TCP stream (a unix socket has no Nagle to turn off)."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
