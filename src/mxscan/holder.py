"""One current engine, swapped on reload; a retired one closes once its scans end.

A reload must neither cut off scans that are running on the old engine (their
daemon connections would be closed under them) nor keep the old engine's
connections open for ever. So every scan holds a lease on the engine it
started with, and an engine that is no longer current is closed by whichever
lease on it ends last (or at once, when nothing uses it).

This is the function adapter's holder today; a long-running adapter's reload is
the same swap. One holder belongs to one event loop: leases are counted
without locks, and the engine's connections belong to that loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("mxscan")

__all__ = ["Closeable", "EngineHolder"]


class Closeable(Protocol):
    async def aclose(self) -> None: ...


E = TypeVar("E", bound=Closeable)


class EngineHolder(Generic[E]):
    def __init__(self, engine: E) -> None:
        self.engine = engine
        self._users: dict[int, int] = {}
        self._retired: dict[int, E] = {}

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[E]:
        """The current engine, kept open until the ``async with`` block ends."""
        engine = self.engine
        key = id(engine)
        self._users[key] = self._users.get(key, 0) + 1
        try:
            yield engine
        finally:
            self._users[key] -= 1
            if self._users[key] == 0:
                del self._users[key]
                retired = self._retired.pop(key, None)
                if retired is not None:
                    await _close(retired)

    async def replace(self, engine: E) -> None:
        """New leases get ``engine``; the old one closes now if unused, else
        when its last lease ends."""
        old, self.engine = self.engine, engine
        if old is not engine:
            await self._retire(old)

    async def retire(self) -> None:
        """The holder is going away (its configuration no longer loads): close
        the current engine once its leases end."""
        await self._retire(self.engine)

    async def _retire(self, old: E) -> None:
        if self._users.get(id(old)):
            self._retired[id(old)] = old
        else:
            await _close(old)

    @property
    def in_use(self) -> int:
        """Leases open on any engine, the retired ones included."""
        return sum(self._users.values())

    async def aclose(self) -> None:
        """Close the current engine and any retired one still waiting."""
        engines = [self.engine, *self._retired.values()]
        self._retired.clear()
        for engine in engines:
            await _close(engine)


async def _close(engine: Closeable) -> None:
    try:
        await engine.aclose()
    except Exception:  # a scanner that fails to close must not fail the scan
        log.exception("closing a retired engine failed")
