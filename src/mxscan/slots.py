"""A per-scanner bound on scans in flight (``max_concurrent``).

A daemon serves a fixed number of scans at once (spamd's ``--max-children``,
clamd's ``MaxThreads``); what it cannot serve waits in its listen backlog while
the scanner's timeout runs, with nothing to show for it. Twelve SMTP sessions
gave spamd twelve connections and the seven beyond its five children sat there.
Waiting here instead keeps the daemon's queue empty, counts in the scanner's
``timeout`` (a scan that gets no slot in time fails by that timeout, it never
hangs), and is measured (``Verdict.waited``, the metrics' wait histogram).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["Slots", "default_slots"]


class Slots:
    """At most ``size`` scans at once; shared by every Step of one scanner.

    The semaphore is made per event loop: an engine may outlive the loop it
    first ran on (``mxscan.scan()`` runs each call on a loop of its own), and an
    asyncio primitive is bound to one loop."""

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"max_concurrent must be a whole number >= 1, got {size!r}")
        self.size = size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None
        #: Scans waiting for a slot right now.
        self.waiting = 0

    def _current(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._loop, self._semaphore = loop, asyncio.Semaphore(self.size)
        return self._semaphore

    @property
    def busy(self) -> int:
        """Slots in use now (on the current loop's semaphore)."""
        if self._semaphore is None:
            return 0
        return self.size - self._semaphore._value

    async def __aenter__(self) -> Slots:
        semaphore = self._current()
        self.waiting += 1
        try:
            await semaphore.acquire()
        finally:
            self.waiting -= 1
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._semaphore is not None
        self._semaphore.release()

    def __repr__(self) -> str:
        return f"Slots({self.size})"


def default_slots(scanner: object) -> Slots | None:
    """The plugin's declared default (a ``max_concurrent`` attribute: what its
    daemon serves by default), or None: no bound, e.g. in-process header rules."""
    size = getattr(scanner, "max_concurrent", None)
    if isinstance(size, int) and not isinstance(size, bool) and size >= 1:
        return Slots(size)
    return None
