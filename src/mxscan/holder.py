"""One current engine, swapped on reload; a retired one closes once its scans end.

A reload must neither cut off scans that are running on the old engine (their
daemon connections would be closed under them) nor keep the old engine's
connections open for ever. So every scan holds a lease on the engine it
started with (``use()``), and an engine that is no longer current is closed
once the last lease on it ends (or at once, when nothing uses it).

The close runs in a task of its own: a scan's answer (a milter reply, an SMTP
250) never waits for an old engine's daemon connections to shut. A caller
that must know the old engine is gone awaits ``wait_closed()``; ``aclose()``
waits for every close still running.

Every adapter shares this holder: the function adapter keeps one per
configuration file, a long-running adapter (through ``mxscan.service``) one
for its configuration, swapped on SIGHUP. One holder belongs to one event loop:
leases are counted without locks, and the engine's connections belong to that
loop.
"""

from __future__ import annotations

import asyncio
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
        self._current = engine
        self._users: dict[int, int] = {}
        self._retired: dict[int, E] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        #: Leases open on any engine, the retired ones included.
        self.active = 0

    @property
    def current(self) -> E:
        """The engine new scans get."""
        return self._current

    @asynccontextmanager
    async def use(self) -> AsyncIterator[E]:
        """The current engine, kept open until the ``async with`` block ends."""
        engine = self._current
        key = id(engine)
        self._users[key] = self._users.get(key, 0) + 1
        self.active += 1
        self._idle.clear()
        try:
            yield engine
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                retired = self._retired.pop(key, None)
                if retired is not None:
                    self._close_later(retired)
            self.active -= 1
            if not self.active:
                self._idle.set()

    def replace(self, engine: E) -> None:
        """New leases get ``engine``; the old one closes now if unused, else
        when its last lease ends."""
        old, self._current = self._current, engine
        if old is not engine:
            self._retire(old)

    def retire(self) -> None:
        """The holder is going away (its configuration no longer loads): close
        the current engine once its leases end."""
        self._retire(self._current)

    def _retire(self, old: E) -> None:
        if self._users.get(id(old)):
            self._retired[id(old)] = old
        else:
            self._close_later(old)

    def _close_later(self, engine: E) -> None:
        task = asyncio.ensure_future(_close(engine))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def wait_closed(self) -> None:
        """Until the closes already started (of retired engines) are done."""
        if self._closing:
            await asyncio.wait(list(self._closing))

    async def wait_idle(self, timeout: float) -> bool:
        """True when no lease is open within ``timeout`` seconds (a drain)."""
        if not self.active:
            return True  # wait_for with 0 s times out even on a set event
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Close the current engine and any retired one still waiting."""
        engines = [self._current, *self._retired.values()]
        self._retired.clear()
        for engine in engines:
            await _close(engine)
        await self.wait_closed()


async def _close(engine: Closeable) -> None:
    try:
        await engine.aclose()
    except Exception as exc:  # a scanner that fails to close must not fail a scan
        log.error("error while closing the scanners: %s", exc)
