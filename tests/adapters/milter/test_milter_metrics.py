"""The Prometheus endpoint, scraped after known messages went through the milter.

In-process: a MilterServer with in-test scanners (one per failure mode) and a tiny
MTA; as a process: ``mxscan milter --metrics`` with the header-rules plugin.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import struct
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mxscan.adapters.milter.constants import ModifyFlag as Flag
from mxscan.adapters.milter.server import MilterServer
from mxscan.addresses import InetAddress, UnixAddress
from mxscan.conditions import Conditions
from mxscan.message import Message
from mxscan.pipeline import Pipeline, Step
from mxscan.router import PolicyRouter
from mxscan.service.metrics import Metrics, MetricsServer
from mxscan.verdict import Action, Verdict
from tests.support import mta, scanners
from tests.support.daemons import clamd_unix, daemons_required, require_daemon, spamd_inet
from tests.support.milter import RULES
from tests.support.postfix import free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape_text(address: InetAddress) -> str:
    with urllib.request.urlopen(f"http://{address.host}:{address.port}/metrics", timeout=10) as r:
        return r.read().decode()


def scrape(address: InetAddress) -> Samples:
    text = scrape_text(address)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class AlwaysDiscard:
    """Runs in shadow mode: counted, never applied."""

    name = "candidate"

    async def scan(self, message: Message) -> Verdict:
        return Verdict(Action.DISCARD, status="would-discard")

    async def aclose(self) -> None:
        pass


async def send(sock: str, subject: str) -> list[tuple[bytes, bytes]]:
    client = await mta.MtaClient.open_unix(sock)
    try:
        await client.handshake()
        await client.send(mta.mail("s@example.org"), mta.rcpt("r@example.net"))
        assert await client.read() == (b"c", b"")
        await client.send(*mta.message_packets(f"Subject: {subject}\r\n\r\nbody\r\n".encode()))
        return await client.read_until_final()
    finally:
        await client.close()


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[tuple[MilterServer, Metrics, MetricsServer]]:
    metrics = Metrics()
    engine = PolicyRouter(
        Pipeline(
            [
                [
                    Step(scanners.SubjectRule()),
                    Step(scanners.Broken(), on_error=Action.ACCEPT),
                    Step(scanners.Slow(5.0), timeout=0.05, on_error=Action.ACCEPT),
                    Step(scanners.AddHeader(), conditions=Conditions(max_size=10)),
                    Step(AlwaysDiscard(), shadow=True),
                ]
            ]
        )
    )
    server = MilterServer(metrics.instrument(engine))
    await server.listen(UnixAddress(str(tmp_path / "m.sock")))
    http = metrics.serve(InetAddress("127.0.0.1", 0))
    yield server, metrics, http
    http.close()
    await server.stop(1)


async def test_counts_after_known_messages(
    endpoint: tuple[MilterServer, Metrics, MetricsServer], tmp_path: Path
) -> None:
    _, _, http = endpoint
    sock = str(tmp_path / "m.sock")
    finals = [(await send(sock, s))[-1][0] for s in ("hi", "discard-me", "reject-me", "hold-me")]
    assert finals == [b"c", b"d", b"y", b"c"]  # accept, discard, reply 554, quarantine+continue

    got = await asyncio.to_thread(scrape, http.address)
    for action in ("accept", "discard", "reject", "quarantine"):
        assert value(got, "mxscan_messages_total", action=action) == 1, action
    assert value(got, "mxscan_messages_total", action="tempfail") == 0
    for action in ("accept", "discard", "reject", "quarantine"):
        assert (
            value(got, "mxscan_verdicts_total", scanner="subject", action=action, mode="enforce")
            == 1
        )
    # on_error=accept: the broken and the slow scanner "accept", and are counted as errors
    assert (
        value(got, "mxscan_verdicts_total", scanner="broken", action="accept", mode="enforce") == 4
    )
    assert value(got, "mxscan_scanner_errors_total", scanner="broken", kind="crashed") == 4
    assert value(got, "mxscan_scanner_errors_total", scanner="slow", kind="timeout") == 4
    assert value(got, "mxscan_scanner_errors_total", scanner="subject", kind="timeout") == 0
    # max_size condition: skipped, counted, and no latency observed for it
    assert value(got, "mxscan_scanner_skipped_total", scanner="tagger", reason="oversize") == 4
    assert value(got, "mxscan_scanner_duration_seconds_count", scanner="tagger") == 0
    # shadow verdicts are counted under mode="shadow" while the accepts above stood
    assert (
        value(got, "mxscan_verdicts_total", scanner="candidate", action="discard", mode="shadow")
        == 4
    )
    # latency: one observation per scan; the timed-out scanner took at least its timeout
    assert value(got, "mxscan_scanner_duration_seconds_count", scanner="subject") == 4
    assert value(got, "mxscan_scanner_duration_seconds_count", scanner="slow") == 4
    assert value(got, "mxscan_scanner_duration_seconds_sum", scanner="slow") >= 4 * 0.05
    assert value(got, "mxscan_scanner_duration_seconds_bucket", scanner="slow", le="0.025") == 0
    assert value(got, "mxscan_message_duration_seconds_count") == 4
    assert value(got, "mxscan_messages_in_flight") == 0
    assert value(got, "mxscan_pipeline_failures_total") == 0


async def test_in_flight_gauge_and_pipeline_failures(tmp_path: Path) -> None:
    metrics = Metrics()
    gate = scanners.Gate()
    server = MilterServer(metrics.instrument(PolicyRouter(Pipeline([[gate]]))))
    sock = str(tmp_path / "g.sock")
    await server.listen(UnixAddress(sock))
    http = metrics.serve(InetAddress("127.0.0.1", 0))
    try:
        pending = asyncio.ensure_future(send(sock, "wait"))
        await asyncio.wait_for(gate.entered.wait(), 10)
        during = await asyncio.to_thread(scrape, http.address)
        assert value(during, "mxscan_messages_in_flight") == 1
        assert value(during, "mxscan_messages_total", action="accept") == 0
        gate.release.set()
        assert (await pending)[-1][0] == b"c"
        after = await asyncio.to_thread(scrape, http.address)
        assert value(after, "mxscan_messages_in_flight") == 0
        assert value(after, "mxscan_messages_total", action="accept") == 1

        server.replace_engine(metrics.instrument(scanners.RaisingEngine()))  # type: ignore[arg-type]
        final = (await send(sock, "boom"))[-1]
        assert final[0] == b"y" and final[1].startswith(b"451")  # default action: tempfail
        failed = await asyncio.to_thread(scrape, http.address)
        assert value(failed, "mxscan_pipeline_failures_total") == 1
        assert value(failed, "mxscan_messages_in_flight") == 0
        assert value(failed, "mxscan_messages_total", action="accept") == 1
    finally:
        http.close()
        await server.stop(1)


async def start_with_metrics(
    cfg: Path, sock: Path, *extra: str
) -> tuple[asyncio.subprocess.Process, int, bytes]:
    """``mxscan milter --metrics`` on a free port, once it logged ``ready``: the
    process, the port and its log so far. free_port() was free a moment ago, but
    another process may take it before mxscan binds it: that start is retried."""
    for _ in range(5):
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mxscan", "milter", "--config", str(cfg), "--listen",
            f"unix:{sock}", "--metrics", f"inet:127.0.0.1:{port}", *extra,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        seen = b""
        while b"ready (pid " not in seen:  # bound, handlers installed: SIGHUP is safe
            line = await asyncio.wait_for(proc.stderr.readline(), 30)
            if not line:
                break
            seen += line
        else:
            return proc, port, seen
        await asyncio.wait_for(proc.wait(), 30)
        if b"cannot listen on" not in seen:
            raise AssertionError(f"mxscan milter exited before it was ready:\n{seen.decode()}")
    raise AssertionError(f"no free port for --metrics in 5 tries:\n{seen.decode()}")


async def test_mxscan_milter_metrics_option(tmp_path: Path) -> None:
    """The CLI wiring: --metrics serves the counts of the process's own messages,
    and SIGHUP (a new engine) keeps counting into the same series."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(RULES)
    sock = tmp_path / "m.sock"
    proc, port, seen = await start_with_metrics(cfg, sock)
    assert proc.stderr is not None
    try:
        assert f"metrics listening on inet:127.0.0.1:{port}".encode() in seen
        assert (await send(str(sock), "discard-me"))[-1][0] == b"d"
        proc.send_signal(signal.SIGHUP)
        line = b""
        while b"reloaded" not in line:
            line = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert line, "mxscan milter exited instead of reloading"
        assert (await send(str(sock), "hello"))[-1][0] == b"c"
        got = await asyncio.to_thread(scrape, InetAddress("127.0.0.1", port))
        assert value(got, "mxscan_messages_total", action="discard") == 1
        assert value(got, "mxscan_messages_total", action="accept") == 1
        assert (
            value(got, "mxscan_verdicts_total", scanner="rules", action="discard", mode="enforce")
            == 1
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0


async def test_metrics_option_errors_are_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(RULES)
    busy = __import__("socket").socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        for target, expect in (
            (f"unix:{tmp_path}/x.sock", "is not inet:HOST:PORT"),
            (f"inet:127.0.0.1:{busy.getsockname()[1]}", "cannot listen on"),
        ):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mxscan", "milter", "--config", str(cfg),
                "--listen", f"unix:{tmp_path}/m.sock", "--metrics", target,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 2
            assert expect in err.decode() and "Traceback" not in err.decode()
            assert not (tmp_path / "m.sock").exists()  # the milter socket is cleaned up
    finally:
        busy.close()


def test_without_prometheus_client_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mxscan.errors import ConfigError

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'mxscan\[metrics\]'"):
        Metrics()


async def test_instrumented_engine_keeps_body_replacement(tmp_path: Path) -> None:
    # The milter negotiates SMFIF_CHGBODY from engine.changes_body; the metrics
    # wrapper must pass it on, or every replaced body would be tempfailed.
    rebody = scanners.ReplaceBody(100)
    server = MilterServer(Metrics().instrument(scanners.engine(rebody)))
    sock = str(tmp_path / "m.sock")
    await server.listen(UnixAddress(sock))
    try:
        client = await mta.MtaClient.open_unix(sock)
        try:
            _, data = await client.handshake()
            assert struct.unpack("!III", data[:12])[1] & int(Flag.CHGBODY)
            await client.send(mta.mail("s@example.org"), mta.rcpt("r@example.net"))
            assert await client.read() == (b"c", b"")
            await client.send(*mta.message_packets(b"Subject: x\r\n\r\nbody\r\n"))
            replies = await client.read_until_final()
        finally:
            await client.close()
    finally:
        await server.stop(1)
    assert replies == [(b"b", rebody.new_body()), (b"c", b"")]


def promtool() -> str:
    """Debian's ``prometheus`` package (scripts/install-system-deps) ships it."""
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed; run scripts/install-system-deps"
        if daemons_required():
            pytest.fail(f"MXSCAN_REQUIRE_DAEMONS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


async def wait_for_line(proc: asyncio.subprocess.Process, text: bytes) -> bytes:
    assert proc.stderr is not None
    line = b""
    while text not in line:
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert line, f"mxscan milter exited before logging {text!r}"
    return line


@pytest.mark.e2e
@pytest.mark.clamd
@pytest.mark.spamd
async def test_real_metrics_pass_promtool_and_probe_the_daemons(tmp_path: Path) -> None:
    """``mxscan milter --metrics`` with the real clamd and spamd: the health probes
    find both up, every alerting series exists before the first error, a failed
    reload is counted, and ``promtool check metrics`` accepts the whole output."""
    require_daemon("clamd")
    require_daemon("spamd")
    tool = promtool()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[scanner.clamav]\nplugin = "clamav"\naddress = "{clamd_unix()}"\n\n'
        f'[scanner.spamassassin]\nplugin = "spamassassin"\naddress = "{spamd_inet()}"\n\n'
        + RULES
        + '[[stage]]\nrun = ["clamav", "spamassassin"]\n'
    )
    sock = tmp_path / "m.sock"
    proc, port, _ = await start_with_metrics(cfg, sock, "--probe-interval", "0.2s")
    address = InetAddress("127.0.0.1", port)
    try:
        got: Samples = {}
        for _ in range(300):  # the first probe round runs at start
            got = await asyncio.to_thread(scrape, address)
            if ("mxscan_scanner_up", (("scanner", "spamassassin"),)) in got and (
                "mxscan_scanner_up",
                (("scanner", "clamav"),),
            ) in got:
                break
            await asyncio.sleep(0.1)
        assert value(got, "mxscan_scanner_up", scanner="clamav") == 1
        assert value(got, "mxscan_scanner_up", scanner="spamassassin") == 1
        assert ("mxscan_scanner_up", (("scanner", "rules"),)) not in got  # no ping hook
        assert value(got, "mxscan_scanner_probe_duration_seconds", scanner="clamav") > 0
        for scanner in ("clamav", "spamassassin", "rules"):
            assert (
                "mxscan_scanner_errors_total",
                (("kind", "timeout"), ("scanner", scanner)),
            ) in got
            assert (
                "mxscan_scanner_skipped_total",
                (("reason", "oversize"), ("scanner", scanner)),
            ) in got

        assert (await send(str(sock), "hello"))[-1][0] == b"c"
        cfg.write_text("[scanner.broken\n")
        proc.send_signal(signal.SIGHUP)
        await wait_for_line(proc, b"reload failed")
        text = await asyncio.to_thread(scrape_text, address)
        got = await asyncio.to_thread(scrape, address)
        assert value(got, "mxscan_config_reloads_total", result="failure") == 1
        assert value(got, "mxscan_config_reloads_total", result="success") == 0
        assert value(got, "mxscan_config_last_reload_successful") == 0
        assert value(got, "mxscan_message_size_bytes_count") == 1
        assert not [name for name, _ in got if name.endswith("_created")]
        info = [labels for name, labels in got if name == "mxscan_build_info"]
        assert len(info) == 1 and dict(info[0])["version"] == __import__("mxscan").__version__

        checked = await asyncio.to_thread(
            subprocess.run,
            [tool, "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checked.returncode == 0 and not checked.stdout + checked.stderr, (
            checked.stdout + checked.stderr
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0
