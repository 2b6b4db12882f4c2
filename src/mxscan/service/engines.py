"""The engine an adapter scans with, swapped on reload without cutting a scan short.

Each scan holds the engine it started with; a reload installs the new engine for
scans that start afterwards, and an old engine is closed (its daemon connections
released) only once its last scan has ended. ``wait_idle()`` is how a drain waits
for the scans in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Generic, Protocol, TypeVar

from mxscan.message import Message
from mxscan.verdict import Result

__all__ = ["EngineHolder", "EngineLike"]

log = logging.getLogger("mxscan.service")


class EngineLike(Protocol):
    """What an adapter needs from ``mxscan.Engine`` (tests pass small fakes)."""

    async def scan(self, message: Message) -> Result: ...

    def policy_for(self, recipient: str) -> str: ...

    async def aclose(self) -> None: ...


E = TypeVar("E", bound=EngineLike)


class EngineHolder(Generic[E]):
    def __init__(self, engine: E) -> None:
        self._current = engine
        self._users: dict[int, int] = {}
        self._retired: list[E] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.active = 0

    @property
    def current(self) -> E:
        return self._current

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[E]:
        """The engine for one scan, kept open until the block ends."""
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
            self.active -= 1
            if not self.active:
                self._idle.set()
            self._close_unused()

    def replace(self, engine: E) -> None:
        """New scans use ``engine``; the old one closes when its scans are done."""
        self._retired.append(self._current)
        self._current = engine
        self._close_unused()

    def _close_unused(self) -> None:
        for old in [e for e in self._retired if id(e) not in self._users]:
            self._retired.remove(old)
            task = asyncio.ensure_future(_close(old))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def wait_idle(self, timeout: float) -> bool:
        """True when no scan is running within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Close every engine, the current one and any still retired."""
        engines, self._retired = [self._current, *self._retired], []
        for engine in engines:
            await _close(engine)
        if self._closing:
            await asyncio.wait(list(self._closing))


async def _close(engine: EngineLike) -> None:
    try:
        await engine.aclose()
    except Exception as exc:
        log.error("error while closing the scanners: %s", exc)
