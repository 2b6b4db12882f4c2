"""Optional Prometheus metrics for long-running adapters (``mxscan milter --metrics``).

The log line answers "what happened to this message"; metrics answer "is the
pipeline healthy": how often a scanner fails or times out, how slow each one
is, how many messages wait. ``prometheus-client`` is an optional extra
(``pip install 'mxscan[metrics]'``) so the core keeps its single dependency;
it is imported only when metrics are asked for.

Metrics are kept in their own registry, not the library's global one, so an
embedding application (or a test) can run several engines side by side.

Every series an alert reads exists from the first scrape: the error and skip
counters of each configured scanner start at 0, because ``rate()`` and
``increase()`` cannot see the step from "absent" to 1, and the first failures
are the ones an admin most wants to hear about.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from mxscan.addresses import Address, InetAddress
from mxscan.errors import ConfigError
from mxscan.message import Message
from mxscan.mimelimits import LIMITS as MIME_LIMITS
from mxscan.mimelimits import SCANNER as MIME_SCANNER
from mxscan.quarantine.settings import KEEPABLE
from mxscan.verdict import Action, Result

from .engines import EngineLike

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from mxscan.pipeline import Step

__all__ = ["InstrumentedEngine", "Metrics", "MetricsServer"]

log = logging.getLogger("mxscan.metrics")

#: Seconds; scanners take from a millisecond (header rules) to a minute (timeouts).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Bytes, by fours from 1 KiB to 64 MiB: a plain-text note to a large attachment;
#: the buckets around spamd's usual 500 KiB limit show how much skips it.
SIZE_BUCKETS = tuple(float(1024 * 4**i) for i in range(9))
#: The ``error`` kinds the pipeline gives (``Verdict.error``).
ERROR_KINDS = ("timeout", "failed", "crashed", "garbage")
#: The ``skip`` reasons the core's conditions give (``Verdict.skip``; plugins'
#: own size limits say ``oversize`` too).
SKIP_REASONS = ("authenticated", "network", "oversize")
#: A health probe that has not answered in this long counts as down.
PROBE_TIMEOUT = 10.0


def _import_prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError(
            "metrics need the prometheus-client package: pip install 'mxscan[metrics]'"
        ) from None
    return prometheus_client


class _WithoutCreated:
    """The registry as served: without the ``*_created`` series.

    prometheus-client adds a ``NAME_created`` gauge per counter and histogram to
    the text format; nobody alerts on them, they double the series count, and
    switching them off there (``disable_created_metrics``) is process-wide, which
    would change an embedding application's own metrics.
    """

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family

    def restricted_registry(self, names: Iterable[str]) -> _WithoutCreated:
        """``/metrics?name[]=...``, as prometheus-client serves it."""
        return _WithoutCreated(self._registry.restricted_registry(names))


def _distinct_steps(engine: object) -> list[Step]:
    """One step per scanner name (the first: the default policy's), in order.

    Engines without ``steps`` (test fakes, embedders' own) have no scanners to
    pre-create series for or to probe."""
    seen: dict[str, Step] = {}
    for step in getattr(engine, "steps", ()):
        seen.setdefault(step.name, step)
    return list(seen.values())


class Metrics:
    """The counters, gauges and histograms, fed one [`Result`][mxscan.Result] at a time."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        prom = _import_prometheus()
        from mxscan import __version__

        self.registry: CollectorRegistry = registry or prom.CollectorRegistry()
        r = self.registry
        self.build_info = prom.Info(
            "mxscan_build", "The running mxscan and Python versions (value 1).", registry=r
        )
        self.build_info.info({"version": __version__, "python_version": platform.python_version()})
        self.messages = prom.Counter(
            "mxscan_messages", "Messages scanned, by final action.", ["action"], registry=r
        )
        self.failures = prom.Counter(
            "mxscan_pipeline_failures",
            "Messages whose scan raised (the adapter's default action applied).",
            registry=r,
        )
        self.verdicts = prom.Counter(
            "mxscan_verdicts",
            "Scanner verdicts, by scanner instance, action and mode (enforce or shadow).",
            ["scanner", "action", "mode"],
            registry=r,
        )
        self.errors = prom.Counter(
            "mxscan_scanner_errors",
            "Scans a scanner could not do, by kind: timeout, failed, crashed, garbage.",
            ["scanner", "kind"],
            registry=r,
        )
        self.skipped = prom.Counter(
            "mxscan_scanner_skipped",
            "Scans skipped by a condition or the plugin: authenticated, network, oversize...",
            ["scanner", "reason"],
            registry=r,
        )
        self.unchecked = prom.Counter(
            "mxscan_unchecked",
            "Messages not fully scanned, by the limit that stopped the scan: the core's "
            "MIME limits (scanner mime) or a scanner's own (clamd's Heuristics.Limits.*).",
            ["scanner", "limit"],
            registry=r,
        )
        self.latency = prom.Histogram(
            "mxscan_scanner_duration_seconds",
            "Time each scanner took per message (skipped scans are not observed).",
            ["scanner"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.wait = prom.Histogram(
            "mxscan_scanner_wait_seconds",
            "Time each scan waited for a free slot (max_concurrent) before it ran; "
            "part of mxscan_scanner_duration_seconds and of the scanner's timeout.",
            ["scanner"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.message_latency = prom.Histogram(
            "mxscan_message_duration_seconds",
            "Time the whole pipeline took per message.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.message_size = prom.Histogram(
            "mxscan_message_size_bytes",
            "Size of each scanned message (header and body, as received).",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.in_flight = prom.Gauge(
            "mxscan_messages_in_flight", "Messages being scanned right now.", registry=r
        )
        self.reloads = prom.Counter(
            "mxscan_config_reloads",
            "Configuration reloads (SIGHUP), by result: success or failure "
            "(a failed one keeps the old configuration).",
            ["result"],
            registry=r,
        )
        self.last_reload_ok = prom.Gauge(
            "mxscan_config_last_reload_successful",
            "1 when the last reload (or the start) loaded the configuration, 0 when it failed.",
            registry=r,
        )
        self.up = prom.Gauge(
            "mxscan_scanner_up",
            "1 when the scanner's last health probe (its plugin's ping()) answered, else 0.",
            ["scanner"],
            registry=r,
        )
        self.probe_latency = prom.Gauge(
            "mxscan_scanner_probe_duration_seconds",
            "How long the scanner's last health probe took (until it answered or failed).",
            ["scanner"],
            registry=r,
        )
        self.quarantined = prom.Counter(
            "mxscan_quarantined",
            "Copies committed to the quarantine store, by the final action they were kept for.",
            ["action"],
            registry=r,
        )
        self.store_errors = prom.Counter(
            "mxscan_quarantine_store_errors",
            "Copies the quarantine store could not take (the MTA heard tempfail, or "
            "on_store_error = proceed).",
            registry=r,
        )
        self.store_latency = prom.Histogram(
            "mxscan_quarantine_store_duration_seconds",
            "Time to commit one copy (or to fail to), bytes included.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store_messages = prom.Gauge(
            "mxscan_quarantine_messages",
            "Messages in the quarantine store (read at each health-probe round; with a "
            "store shared by several hosts, the store's total).",
            registry=r,
        )
        self.store_released = prom.Gauge(
            "mxscan_quarantine_released_messages",
            "Messages in the quarantine store that were released (same reading).",
            registry=r,
        )
        for action in Action:  # every series exists from the first scrape, at 0
            self.messages.labels(action=str(action))
        for result in ("success", "failure"):
            self.reloads.labels(result=result)
        self.last_reload_ok.set(1)
        self._probed: set[str] = set()

    def track(self, engine: object) -> None:
        """Create each configured scanner's error and skip series and the
        core's MIME limit series at 0, and count what the engine's quarantine
        step stores."""
        for limit in MIME_LIMITS:
            self.unchecked.labels(scanner=MIME_SCANNER, limit=limit)
        for step in _distinct_steps(engine):
            for kind in ERROR_KINDS:
                self.errors.labels(scanner=step.name, kind=kind)
            for reason in SKIP_REASONS:
                self.skipped.labels(scanner=step.name, reason=reason)
        keeper = getattr(engine, "keeper", None)
        if keeper is not None:
            for action in KEEPABLE:
                self.quarantined.labels(action=action)
            keeper.events.stored = self._stored
            keeper.events.failed = self._store_failed

    def _stored(self, action: str, seconds: float) -> None:
        self.quarantined.labels(action=action).inc()
        self.store_latency.observe(seconds)

    def _store_failed(self, seconds: float) -> None:
        self.store_errors.inc()
        self.store_latency.observe(seconds)

    async def _read_store(self, engine: object, timeout: float) -> None:
        keeper = getattr(engine, "keeper", None)
        if keeper is None:
            return
        try:
            async with asyncio.timeout(timeout):
                stats = await keeper.store.stats()
        except Exception as exc:  # the store is down: the gauges keep their last reading
            log.warning("reading the quarantine store for metrics failed: %s", exc or repr(exc))
            return
        self.store_messages.set(float(stats["messages"]))
        self.store_released.set(float(stats["released"]))

    def reloaded(self, ok: bool) -> None:
        """Count a SIGHUP reload; ``ok`` false: the old configuration stays."""
        self.reloads.labels(result="success" if ok else "failure").inc()
        self.last_reload_ok.set(1 if ok else 0)

    async def probe(self, engine: object, timeout: float = PROBE_TIMEOUT) -> None:
        """One round of health probes: ``ping()`` of every scanner whose plugin has
        one, concurrently, each bounded by ``timeout`` (and its step's timeout).

        Scanners without the hook get no ``up`` series: absent is "not probed",
        never a made-up 1. A scanner no longer configured loses its series."""
        steps = [s for s in _distinct_steps(engine) if callable(getattr(s.scanner, "ping", None))]
        results = await asyncio.gather(*(self._probe_one(s, timeout) for s in steps))
        await self._read_store(engine, timeout)
        for name in self._probed - {s.name for s in steps}:
            self.up.remove(name)
            self.probe_latency.remove(name)
        self._probed = {s.name for s in steps}
        for step, (ok, seconds) in zip(steps, results, strict=True):
            self.up.labels(scanner=step.name).set(1 if ok else 0)
            self.probe_latency.labels(scanner=step.name).set(seconds)

    async def _probe_one(self, step: Step, timeout: float) -> tuple[bool, float]:
        start = time.monotonic()
        try:
            async with asyncio.timeout(min(timeout, step.timeout)):
                await step.scanner.ping()  # type: ignore[attr-defined]
        except Exception as exc:  # down, slow, garbage or a broken hook: all "down"
            log.warning("health probe of scanner %s failed: %s", step.name, exc or repr(exc))
            return False, time.monotonic() - start
        return True, time.monotonic() - start

    async def probe_forever(self, current: Callable[[], object], interval: float) -> None:
        """Probe ``current()`` (the engine now serving: reloads replace it) every
        ``interval`` seconds until cancelled, the first round at once. Rounds never
        overlap: a slow daemon delays the next round rather than piling probes up."""
        while True:
            await self.probe(current())
            await asyncio.sleep(interval)

    def observe(self, result: Result, seconds: float | None = None) -> None:
        """Count one scanned message and every scanner verdict in it."""
        self.messages.labels(action=str(result.verdict.action)).inc()
        if seconds is not None:
            self.message_latency.observe(seconds)
        for verdict in result.verdicts:
            mode = "shadow" if verdict.shadow else "enforce"
            self.verdicts.labels(
                scanner=verdict.scanner, action=str(verdict.action), mode=mode
            ).inc()
            if verdict.error is not None:
                self.errors.labels(scanner=verdict.scanner, kind=verdict.error).inc()
            elif verdict.skip is not None:
                self.skipped.labels(scanner=verdict.scanner, reason=verdict.skip).inc()
            for limit in verdict.unchecked:
                self.unchecked.labels(scanner=verdict.scanner, limit=limit).inc()
            if verdict.elapsed is not None:
                self.latency.labels(scanner=verdict.scanner).observe(verdict.elapsed)
            if verdict.waited is not None:
                self.wait.labels(scanner=verdict.scanner).observe(verdict.waited)

    def instrument(self, engine: EngineLike) -> InstrumentedEngine:
        self.track(engine)
        return InstrumentedEngine(engine, self)

    def serve(self, address: Address) -> MetricsServer:
        """Serve ``/metrics`` over HTTP on ``inet:HOST:PORT`` (a thread, off the event loop)."""
        if not isinstance(address, InetAddress):
            raise ConfigError(f"metrics: {address} is not inet:HOST:PORT")
        prom = _import_prometheus()
        try:
            httpd, thread = _start_http(address, prom.make_wsgi_app(_WithoutCreated(self.registry)))
        except OSError as exc:
            raise ConfigError(
                f"metrics: cannot listen on {address}: {exc.strerror or exc}"
            ) from None
        return MetricsServer(httpd, thread)

    def page(self) -> tuple[str, bytes]:
        """The content type and text of a scrape, for an adapter that serves
        ``/metrics`` on its own port (``mxscan http --metrics``)."""
        exposition = _import_prometheus().exposition
        return exposition.CONTENT_TYPE_LATEST, exposition.generate_latest(
            _WithoutCreated(self.registry)
        )


def _start_http(
    address: InetAddress, app: Any, poll_interval: float = 0.5
) -> tuple[Any, threading.Thread]:
    """prometheus_client's start_http_server, minus its one network side effect:
    http.server's server_bind asks the resolver for the listen address's name
    (socket.getfqdn), a reverse DNS query at every start for a name nobody uses."""
    from socketserver import TCPServer, ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in address.host else socket.AF_INET

        def server_bind(self) -> None:
            TCPServer.server_bind(self)
            host, port = self.server_address[:2]
            self.server_name, self.server_port = str(host), int(port)
            self.setup_environ()

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes are not worth a log line each."""

    httpd = make_server(address.host, address.port, app, Server, handler_class=Quiet)
    thread = threading.Thread(
        target=httpd.serve_forever, args=(poll_interval,), name="mxscan-metrics", daemon=True
    )
    thread.start()
    return httpd, thread


class MetricsServer:
    """The running HTTP endpoint; ``port`` is the real one when 0 was asked for."""

    def __init__(self, httpd: Any, thread: Any) -> None:
        self._httpd = httpd
        self._thread = thread

    @property
    def address(self) -> InetAddress:
        host, port = self._httpd.server_address[:2]
        return InetAddress(str(host), int(port))

    def close(self) -> None:
        """Stop serving, at once.

        ``shutdown()`` alone waits for the server thread's next poll (every 0.5 s)
        and held SIGTERM up that long; a connection of our own wakes its
        ``select()`` so it sees the request now (repeated, in case the wake-up
        arrived before the request did)."""
        stopper = threading.Thread(target=self._httpd.shutdown, daemon=True)
        stopper.start()
        address = self.address
        while stopper.is_alive():
            with contextlib.suppress(OSError):
                socket.create_connection((address.host, address.port), timeout=1).close()
            stopper.join(0.05)
        self._httpd.server_close()
        self._thread.join(5)


class InstrumentedEngine:
    """An engine that feeds ``Metrics``; adapters use it in place of the engine."""

    def __init__(self, engine: EngineLike, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics

    async def scan(self, message: Message) -> Result:
        self.metrics.in_flight.inc()
        self.metrics.message_size.observe(message.size)
        start = time.monotonic()
        try:
            result = await self.engine.scan(message)
        except Exception:
            self.metrics.failures.inc()
            raise
        finally:
            self.metrics.in_flight.dec()
        self.metrics.observe(result, time.monotonic() - start)
        return result

    @property
    def changes_body(self) -> bool:
        """The wrapped engine's: the milter asks the MTA for body replacement from it,
        so without this a scanner's new body would be refused when metrics are on."""
        return getattr(self.engine, "changes_body", False) is True

    @property
    def keeper(self) -> object:
        """The wrapped engine's quarantine step (None without ``[quarantine]``)."""
        return getattr(self.engine, "keeper", None)

    @property
    def steps(self) -> tuple[Step, ...]:
        """The wrapped engine's (for the health probes)."""
        return tuple(getattr(self.engine, "steps", ()))

    def policy_for(self, recipient: str) -> str:
        return self.engine.policy_for(recipient)

    async def aclose(self) -> None:
        await self.engine.aclose()
