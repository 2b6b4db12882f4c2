"""``--metrics inet:HOST:PORT`` for a long-running adapter, written once.

The registry, its HTTP endpoint (bound with the adapter's sockets, before the
privilege drop), the engine wrapper that feeds it, a reload's outcome, and the
health probes that run while the adapter serves. ``mxscan http`` serves the
same registry on its own port instead (``Metrics.page``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable

from mxscan.addresses import Address

from . import args as types
from .engines import EngineLike
from .metrics import Metrics, MetricsServer

__all__ = ["Exporter", "add_metrics_options"]


def add_metrics_options(p: argparse.ArgumentParser) -> None:
    """``--metrics`` and ``--probe-interval``, worded alike for each adapter."""
    p.add_argument("--metrics", type=types.address, metavar="inet:HOST:PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics "
                        "(needs mxscan[metrics])")  # fmt: skip
    p.add_argument("--probe-interval", type=types.duration, default=15.0, metavar="TIME",
                   help="with --metrics: health-probe each scanner whose plugin can "
                        "(clamd and spamd PING) this often (default 15s)")  # fmt: skip


class Exporter:
    """What ``--metrics`` asked for; with no address every method does nothing,
    so an adapter calls them unconditionally."""

    def __init__(self, address: Address | None, probe_interval: float, log: logging.Logger):
        self.address = address
        self.probe_interval = probe_interval
        self.log = log
        self.metrics = Metrics() if address is not None else None
        self._server: MetricsServer | None = None
        self._probes: asyncio.Future[None] | None = None

    def wrap(self, engine: EngineLike) -> EngineLike:
        """The engine as the adapter should scan with it (counted when enabled)."""
        return self.metrics.instrument(engine) if self.metrics else engine

    def reloaded(self, ok: bool) -> None:
        if self.metrics:
            self.metrics.reloaded(ok=ok)

    def listen(self) -> None:
        """Bind the endpoint (a ``ConfigError`` names the address when it cannot)."""
        if self.metrics and self.address is not None:
            self._server = self.metrics.serve(self.address)
            self.log.info("metrics listening on %s", self._server.address)

    def start_probes(self, current: Callable[[], object]) -> None:
        """Probe ``current()`` (the engine in use, after any reload) while serving."""
        if self.metrics:
            self._probes = asyncio.ensure_future(
                self.metrics.probe_forever(current, self.probe_interval)
            )

    def stop_probes(self) -> None:
        """Before a drain closes the engines the probes use."""
        if self._probes is not None:
            self._probes.cancel()
            self._probes = None

    def close(self) -> None:
        """After the drain: the endpoint answered scrapes until then."""
        self.stop_probes()
        if self._server is not None:
            self._server.close()
            self._server = None
