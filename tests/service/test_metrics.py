"""mxscan.service.metrics without a milter: what is served, which series exist before the
first message, reload counts, build info, the message-size histogram and the
health probes through scanners' optional ``ping()`` hook."""

from __future__ import annotations

import asyncio
import platform
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import mxscan
from mxscan.addresses import InetAddress
from mxscan.message import Message
from mxscan.pipeline import Pipeline, Step
from mxscan.router import PolicyRouter
from mxscan.scanner import ScannerError
from mxscan.service.metrics import ERROR_KINDS, SKIP_REASONS, Metrics
from mxscan.verdict import Verdict


class Plain:
    """A scanner without the ping hook."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def scan(self, message: Message) -> Verdict:
        return Verdict(status="clean")

    async def aclose(self) -> None:
        pass


class Pinged(Plain):
    """A scanner whose ping answers, raises, or hangs, as told."""

    def __init__(self, name: str, behaviour: str) -> None:
        super().__init__(name)
        self.behaviour = behaviour
        self.pings = 0
        self.pinged = asyncio.Event()

    async def pinged_times(self, count: int) -> None:
        while self.pings < count:
            self.pinged.clear()
            await self.pinged.wait()

    async def ping(self) -> None:
        self.pings += 1
        self.pinged.set()
        if self.behaviour == "down":
            raise ScannerError("daemon at inet:127.0.0.1:1: Connection refused")
        if self.behaviour == "hang":
            await asyncio.sleep(3600)
        if self.behaviour == "bug":
            raise RuntimeError("plugin bug")


def engine(*scanners: object) -> PolicyRouter:
    return PolicyRouter(Pipeline([[Step(s, timeout=60.0) for s in scanners]]))  # type: ignore[arg-type]


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def scrape(address: InetAddress) -> str:
    with urllib.request.urlopen(f"http://{address.host}:{address.port}/metrics", timeout=10) as r:
        return r.read().decode()


async def test_served_metrics_have_no_created_series() -> None:
    metrics = Metrics()
    instrumented = metrics.instrument(engine(Plain("rules")))
    await instrumented.scan(Message.from_bytes(b"Subject: x\r\n\r\nbody\r\n"))
    http = metrics.serve(InetAddress("127.0.0.1", 0))
    try:
        text = await asyncio.to_thread(scrape, http.address)
    finally:
        http.close()
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert "mxscan_messages_total" in names and "mxscan_scanner_duration_seconds_count" in names
    assert not [n for n in names if n.endswith("_created")]


def test_error_and_skip_series_of_every_configured_scanner_start_at_zero() -> None:
    metrics = Metrics()
    policies = {"example.net": Pipeline([[Step(Plain("policy-only"))]])}
    metrics.instrument(
        PolicyRouter(Pipeline([[Step(Plain("clamav")), Step(Plain("spam"))]]), policies)
    )
    for scanner in ("clamav", "spam", "policy-only"):
        for kind in ERROR_KINDS:
            assert sample(metrics, "mxscan_scanner_errors_total", scanner=scanner, kind=kind) == 0
        for reason in SKIP_REASONS:
            assert (
                sample(metrics, "mxscan_scanner_skipped_total", scanner=scanner, reason=reason) == 0
            )
    assert ERROR_KINDS == ("timeout", "failed", "crashed", "garbage")


def test_reloads_are_counted_by_result() -> None:
    metrics = Metrics()
    assert sample(metrics, "mxscan_config_reloads_total", result="failure") == 0
    assert sample(metrics, "mxscan_config_last_reload_successful") == 1
    metrics.reloaded(ok=False)
    assert sample(metrics, "mxscan_config_reloads_total", result="failure") == 1
    assert sample(metrics, "mxscan_config_last_reload_successful") == 0
    metrics.reloaded(ok=True)
    assert sample(metrics, "mxscan_config_reloads_total", result="success") == 1
    assert sample(metrics, "mxscan_config_last_reload_successful") == 1


def test_build_info_names_the_versions() -> None:
    labels = {"version": mxscan.__version__, "python_version": platform.python_version()}
    assert Metrics().registry.get_sample_value("mxscan_build_info", labels) == 1


async def test_message_size_histogram() -> None:
    metrics = Metrics()
    instrumented = metrics.instrument(engine(Plain("rules")))
    small = Message.from_bytes(b"Subject: x\r\n\r\nbody\r\n")
    large = Message.from_bytes(b"Subject: y\r\n\r\n" + b"x" * 70_000 + b"\r\n")
    for message in (small, large):
        await instrumented.scan(message)
    assert sample(metrics, "mxscan_message_size_bytes_count") == 2
    assert sample(metrics, "mxscan_message_size_bytes_sum") == small.size + large.size
    assert sample(metrics, "mxscan_message_size_bytes_bucket", le="1024.0") == 1
    assert sample(metrics, "mxscan_message_size_bytes_bucket", le="65536.0") == 1
    assert sample(metrics, "mxscan_message_size_bytes_bucket", le="262144.0") == 2


async def test_probes_set_up_and_latency_from_the_ping_hook() -> None:
    metrics = Metrics()
    up, down, hang, bug = (Pinged(n, n) for n in ("up", "down", "hang", "bug"))
    instrumented = metrics.instrument(engine(up, down, hang, bug, Plain("noping")))
    await asyncio.wait_for(metrics.probe(instrumented, timeout=0.2), 10)
    assert [s.pings for s in (up, down, hang, bug)] == [1, 1, 1, 1]
    assert sample(metrics, "mxscan_scanner_up", scanner="up") == 1
    for name in ("down", "hang", "bug"):
        assert sample(metrics, "mxscan_scanner_up", scanner=name) == 0, name
    # a scanner without the hook is not probed, and not claimed to be up
    assert sample(metrics, "mxscan_scanner_up", scanner="noping") is None
    assert sample(metrics, "mxscan_scanner_probe_duration_seconds", scanner="noping") is None
    hung = sample(metrics, "mxscan_scanner_probe_duration_seconds", scanner="hang")
    assert hung is not None and hung >= 0.2  # stopped at the probe timeout
    answered = sample(metrics, "mxscan_scanner_probe_duration_seconds", scanner="up")
    assert answered is not None and answered < hung


async def test_probe_drops_series_of_scanners_no_longer_configured() -> None:
    metrics = Metrics()
    await metrics.probe(metrics.instrument(engine(Pinged("old", "up"), Pinged("kept", "up"))))
    await metrics.probe(metrics.instrument(engine(Pinged("kept", "down"))))  # after a reload
    assert sample(metrics, "mxscan_scanner_up", scanner="old") is None
    assert sample(metrics, "mxscan_scanner_up", scanner="kept") == 0


async def test_probe_forever_follows_the_current_engine() -> None:
    metrics = Metrics()
    first, second = Pinged("a", "up"), Pinged("b", "up")
    current = [engine(first)]
    task = asyncio.ensure_future(metrics.probe_forever(lambda: current[0], 0.01))
    try:
        await asyncio.wait_for(first.pinged_times(2), 10)
        current[0] = engine(second)
        await asyncio.wait_for(second.pinged_times(1), 10)

        for _ in range(1000):  # the gauge is set once ping() has returned, not before
            if sample(metrics, "mxscan_scanner_up", scanner="b") == 1:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sample(metrics, "mxscan_scanner_up", scanner="b") == 1
    assert sample(metrics, "mxscan_scanner_up", scanner="a") is None


def test_stopping_the_endpoint_does_not_wait_for_its_poll_interval() -> None:
    """SIGTERM with --metrics waited for the HTTP thread's next poll; with an hour
    between polls, close() must still return (python -m benchmarks bench_metrics
    has the figures: 540 ms before, as fast as without --metrics now)."""
    import threading

    from prometheus_client import make_wsgi_app

    from mxscan.addresses import InetAddress
    from mxscan.service.metrics import MetricsServer, _start_http

    httpd, thread = _start_http(InetAddress("127.0.0.1", 0), make_wsgi_app(), poll_interval=3600)
    server = MetricsServer(httpd, thread)
    assert "python_info" in scrape(server.address)  # it serves (the default registry)
    closer = threading.Thread(target=server.close, daemon=True)
    closer.start()
    closer.join(30)
    assert not closer.is_alive() and not thread.is_alive()


async def test_skips_errors_and_limits_are_counted_from_the_verdict_fields() -> None:
    """The counters read ``skip``, ``error`` and ``unchecked``, not the log text:
    a plugin's own skip word, a shadow scanner's error and each of several
    limits are counted; a free-text status is only a status."""

    class Fixed(Plain):
        def __init__(self, name: str, verdict: Verdict) -> None:
            super().__init__(name)
            self.verdict = verdict

        async def scan(self, message: Message) -> Verdict:
            return self.verdict

    steps = [
        Step(Fixed("quota", Verdict.skipped("quota", reason="over the user's quota"))),  # type: ignore[arg-type]
        Step(Fixed("limits", Verdict(unchecked=("MaxFiles", "MaxRecursion")))),  # type: ignore[arg-type]
        Step(Fixed("text", Verdict(status="skipped: oversize"))),  # type: ignore[arg-type]
        Step(Fixed("shadowed", Verdict(error="store")), shadow=True),  # type: ignore[arg-type]
    ]
    pipeline = Pipeline([steps[:3], steps[3:]])
    metrics = Metrics()
    instrumented = metrics.instrument(PolicyRouter(pipeline))
    await instrumented.scan(Message.from_bytes(b"Subject: x\r\n\r\nbody\r\n"))
    assert sample(metrics, "mxscan_scanner_skipped_total", scanner="quota", reason="quota") == 1
    for limit in ("MaxFiles", "MaxRecursion"):
        assert sample(metrics, "mxscan_unchecked_total", scanner="limits", limit=limit) == 1
    assert sample(metrics, "mxscan_scanner_errors_total", scanner="shadowed", kind="store") == 1
    counted = {
        s.labels.get("scanner")
        for family in metrics.registry.collect()
        if family.name in ("mxscan_scanner_skipped", "mxscan_scanner_errors", "mxscan_unchecked")
        for s in family.samples
        if s.value and s.name.endswith("_total")
    }
    assert counted == {"quota", "limits", "shadowed"}  # "text" is in no state counter
