"""Optional Prometheus metrics for long-running adapters (``mxscan milter --metrics``).

The log line answers "what happened to this message"; metrics answer "is the
pipeline healthy": how often a scanner fails or times out, how slow each one
is, how many messages wait. ``prometheus-client`` is an optional extra
(``pip install 'mxscan[metrics]'``) so the core keeps its single dependency;
it is imported only when metrics are asked for.

Metrics are kept in their own registry, not the library's global one, so an
embedding application (or a test) can run several engines side by side.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from .addresses import Address, InetAddress
from .errors import ConfigError
from .message import Message
from .verdict import Action, Result

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["InstrumentedEngine", "Metrics", "MetricsServer"]

#: Seconds; scanners take from a millisecond (header rules) to a minute (timeouts).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_TOKEN = re.compile(r"(?:shadow:)?(error|skipped)\(([^)]*)\)")


class _Engine(Protocol):
    async def scan(self, message: Message) -> Result: ...

    def policy_for(self, recipient: str) -> str: ...

    async def aclose(self) -> None: ...


def _import_prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError(
            "metrics need the prometheus-client package: pip install 'mxscan[metrics]'"
        ) from None
    return prometheus_client


class Metrics:
    """The counters, gauge and histograms, fed one :class:`Result` at a time."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        prom = _import_prometheus()
        self.registry: CollectorRegistry = registry or prom.CollectorRegistry()
        r = self.registry
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
        self.latency = prom.Histogram(
            "mxscan_scanner_duration_seconds",
            "Time each scanner took per message (skipped scans are not observed).",
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
        self.in_flight = prom.Gauge(
            "mxscan_messages_in_flight", "Messages being scanned right now.", registry=r
        )
        for action in Action:  # every series exists from the first scrape, at 0
            self.messages.labels(action=str(action))

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
            match = _TOKEN.fullmatch(verdict.token)
            if match and match[1] == "error":
                self.errors.labels(scanner=verdict.scanner, kind=match[2]).inc()
            elif match:
                self.skipped.labels(scanner=verdict.scanner, reason=match[2]).inc()
            if verdict.elapsed is not None:
                self.latency.labels(scanner=verdict.scanner).observe(verdict.elapsed)

    def instrument(self, engine: _Engine) -> InstrumentedEngine:
        return InstrumentedEngine(engine, self)

    def serve(self, address: Address) -> MetricsServer:
        """Serve ``/metrics`` over HTTP on ``inet:HOST:PORT`` (a thread, off the event loop)."""
        if not isinstance(address, InetAddress):
            raise ConfigError(f"metrics: {address} is not inet:HOST:PORT")
        prom = _import_prometheus()
        try:
            httpd, thread = _start_http(address, prom.make_wsgi_app(self.registry))
        except OSError as exc:
            raise ConfigError(
                f"metrics: cannot listen on {address}: {exc.strerror or exc}"
            ) from None
        return MetricsServer(httpd, thread)


def _start_http(address: InetAddress, app: Any) -> tuple[Any, threading.Thread]:
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
    thread = threading.Thread(target=httpd.serve_forever, name="mxscan-metrics", daemon=True)
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
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


class InstrumentedEngine:
    """An engine that feeds :class:`Metrics`; adapters use it in place of the engine."""

    def __init__(self, engine: _Engine, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics

    async def scan(self, message: Message) -> Result:
        self.metrics.in_flight.inc()
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

    def policy_for(self, recipient: str) -> str:
        return self.engine.policy_for(recipient)

    async def aclose(self) -> None:
        await self.engine.aclose()
