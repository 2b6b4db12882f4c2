"""Signals and the ``ready`` line, the same for every long-running adapter.

SIGTERM and SIGINT stop accepting and drain the scans in flight (bounded);
SIGHUP reloads the configuration and keeps the old one when the new file is bad.
``ready (pid N)`` is logged only when sockets are bound, privileges dropped and
the handlers installed: service scripts and tests wait for that line before they
send mail or signals.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from .engines import EngineHolder, EngineLike

__all__ = ["Reloader", "run_until_signalled"]


class Reloader:
    """SIGHUP: build a new engine from the configuration file and swap it in."""

    def __init__(
        self,
        holder: EngineHolder[EngineLike],
        build: Callable[[], EngineLike],
        source: str,
        log: logging.Logger,
        on_reload: Callable[[bool], None] | None = None,
    ) -> None:
        self.holder = holder
        self.build = build
        self.source = source
        self.log = log
        self.on_reload = on_reload
        self._running: asyncio.Task[None] | None = None

    async def reload(self) -> bool:
        try:
            engine = self.build()
        except Exception as exc:  # a bad file must never take the service down
            self.log.error("reload failed, keeping the old configuration: %s", exc)
            if self.on_reload:
                self.on_reload(False)
            return False
        self.holder.replace(engine)
        if self.on_reload:
            self.on_reload(True)
        self.log.info("configuration reloaded from %s", self.source)
        return True

    def start(self) -> None:
        """From the signal handler: one reload at a time, the next one after it."""
        previous = self._running

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await self.reload()

        self._running = asyncio.ensure_future(run())


async def run_until_signalled(
    log: logging.Logger,
    *,
    drain: Callable[[float], Awaitable[None]],
    drain_timeout: float,
    reload: Callable[[], None] | None = None,
) -> None:
    """Log ``ready``, wait for SIGTERM/SIGINT, then ``drain(drain_timeout)``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = [signal.SIGTERM, signal.SIGINT]
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
        signals.append(signal.SIGHUP)
    try:
        log.info("ready (pid %d)", os.getpid())
        await stop.wait()
        log.info("stopping: draining scans in flight (up to %ss)", drain_timeout)
        await drain(drain_timeout)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
