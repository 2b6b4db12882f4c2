"""Faults around `mxscan smtp` behind real Postfix: whatever breaks, Postfix keeps
the message and delivers it exactly once when things are back.

* the next hop down, then back: deferred (451 4.4.2), then delivered once;
* mxscan SIGKILLed mid-DATA: Postfix loses the connection, defers, delivers once;
* clamd killed mid-scan (a fault proxy in front of the private clamd is killed,
  never the shared daemon): on_error = tempfail, 451, delivered once later;
* SIGTERM with messages in flight: those finish (or are cut and retried), none is
  lost or doubled.
"""

from __future__ import annotations

import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.daemons import clamd_inet, ham_message, require_daemon, run_dir
from tests.support.faults import FaultProxy
from tests.support.postfix import PostfixInstance, free_port
from tests.support.sink import SMTPSink
from tests.support.smtp import FilterProcess, filter_postfix, full_config

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.e2e,
    pytest.mark.faults,
    pytest.mark.clamd,
    pytest.mark.spamd,
]


@dataclass
class Rig:
    postfix: PostfixInstance
    sink: SMTPSink
    proxy: FaultProxy
    work: Path
    filter_port: int
    next_port: int
    smtp: FilterProcess | None = None

    def start_filter(self, next_port: int | None = None) -> FilterProcess:
        self.stop_filter()
        config = full_config(clamd=self.proxy.address)
        self.smtp = FilterProcess(
            "smtp",
            config,
            self.work,
            self.filter_port,
            next_port or self.next_port,
            args=["--next-timeout", "3s", "--drain-timeout", "20s"],
        ).start()
        return self.smtp

    def stop_filter(self) -> None:
        if self.smtp is not None:
            self.smtp.stop()
            self.smtp = None

    def count(self, token: bytes) -> int:
        return len([d for d in self.sink.deliveries if token in d.data])

    def wait_delivered(self, token: bytes, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.count(token) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.count(token)} of {count} {token!r}; log:\n{self.postfix.log_tail(30)}"
                )
            time.sleep(0.1)
        time.sleep(1.5)  # a duplicate would arrive right behind
        assert self.count(token) == count


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    for kind in ("postfix", "clamd", "spamd"):
        require_daemon(kind)  # type: ignore[arg-type]
    sink = SMTPSink().start()
    proxy = FaultProxy(clamd_inet().removeprefix("inet:")).start("pass")
    work = Path(tempfile.mkdtemp(prefix="smtp-faults-", dir=run_dir()))
    postfix, filter_port, next_port = filter_postfix("smtp", sink.port)
    rig = Rig(postfix, sink, proxy, work, filter_port, next_port)
    try:
        postfix.start()
        rig.start_filter()
        yield rig
    finally:
        rig.stop_filter()
        proxy.stop()
        postfix.remove()
        sink.stop()


def message(token: str, size: int = 0) -> bytes:
    body = ham_message().replace(b"Lunch", token.encode())
    if size:
        line = b"y" * 76 + b"\r\n"
        body += line * (size // len(line))
    return body


def test_next_hop_down_then_back(rig: Rig) -> None:
    rig.start_filter(next_port=free_port())  # nothing listens there
    result = rig.postfix.send(message("nexthop-down"))
    assert result.code == 250

    rig.postfix.wait_for_log(rf"{result.queue_id}: .*status=deferred .*451 4\.4\.2")
    assert rig.count(b"nexthop-down") == 0
    rig.start_filter()
    rig.postfix.flush()
    rig.wait_delivered(b"nexthop-down")


def _rchar(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def test_sigkill_mid_data(rig: Rig) -> None:
    smtp = rig.start_filter()
    assert smtp.proc is not None
    before = _rchar(smtp.proc.pid)
    data = message("killed-mid-data", size=30 * 1024 * 1024)
    result = rig.postfix.send(data)
    assert result.code == 250
    deadline = time.monotonic() + 60
    while _rchar(smtp.proc.pid) - before < 2 * 1024 * 1024:  # DATA under way
        assert time.monotonic() < deadline, "the message never reached mxscan"
        time.sleep(0.005)
    smtp.kill()
    rig.postfix.wait_for_log(
        rf"{result.queue_id}: .*status=deferred .*(lost connection|Connection reset)"
    )
    assert rig.count(b"killed-mid-data") == 0
    rig.start_filter()
    rig.postfix.flush()
    rig.wait_delivered(b"killed-mid-data", timeout=120)
    (got,) = [d for d in rig.sink.deliveries if b"killed-mid-data" in d.data]
    assert got.data.endswith(data.partition(b"\r\n\r\n")[2])


def test_clamd_killed_mid_scan(rig: Rig) -> None:
    rig.start_filter()
    rig.proxy.start("stall")
    try:
        result = rig.postfix.send(message("clamd-killed"))
        assert result.code == 250
        rig.proxy.wait_got()
        rig.proxy.kill()  # SIGKILL with the scan's connection open
        rig.postfix.wait_for_log(rf"{result.queue_id}: .*status=deferred .*451 4\.")
        assert rig.count(b"clamd-killed") == 0
    finally:
        rig.proxy.start("pass")
    rig.postfix.flush()
    rig.wait_delivered(b"clamd-killed")


def test_sigterm_with_messages_in_flight(rig: Rig) -> None:
    smtp = rig.start_filter()
    tokens = [f"sigterm-{i}" for i in range(8)]
    for token in tokens:
        assert rig.postfix.send(message(token, size=200_000)).code == 250
    rig.postfix.wait_for_log(rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{rig.filter_port}", timeout=30)
    smtp.signal(signal.SIGTERM)
    assert smtp.proc is not None
    assert smtp.proc.wait(30) == 0
    rig.start_filter()
    rig.postfix.flush()
    for token in tokens:
        rig.wait_delivered(token.encode(), timeout=90)
