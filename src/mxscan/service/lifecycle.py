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

from mxscan.config import load_given_config

from .engines import EngineHolder, EngineLike
from .exporter import Exporter

__all__ = ["Reloader", "run_until_signalled", "serve_until_signalled"]


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


async def serve_until_signalled(
    log: logging.Logger,
    holder: EngineHolder[EngineLike],
    source: str,
    *,
    stop: Callable[[float], Awaitable[None]],
    drain_timeout: float,
    exporter: Exporter,
) -> None:
    """A started adapter from ``ready`` to exit: SIGHUP rebuilds the engine from
    ``source`` (wrapped and counted by the exporter), the health probes run on
    the engine in use, SIGTERM stops the probes, drains through ``stop`` and
    only then closes the metrics endpoint (scrapes work during the drain)."""
    reloader = Reloader(
        holder,
        lambda: exporter.wrap(load_given_config(source).build()),
        source,
        log,
        on_reload=exporter.reloaded,
    )
    exporter.start_probes(lambda: holder.current)

    async def drain(timeout: float) -> None:
        exporter.stop_probes()
        await stop(timeout)
        exporter.close()

    await run_until_signalled(log, drain=drain, drain_timeout=drain_timeout, reload=reloader.start)
