"""Fault matrix for the pipe(8) filter: clamd or spamd down, slow, killed mid-scan,
or answering garbage, behind real Postfix set up from the docs' snippets
(tests/support/pipe_postfix.py). Expected outcome of every row: ``mxscan
pipe`` exits 75, Postfix keeps the message deferred in its queue (nothing reaches
the sink unscanned); once the daemon is healthy, a queue run delivers it exactly
once.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.daemons import ham_message, require_daemon
from tests.support.faults import (
    FaultProxy,
    logged_pipe_postfix,
    pipe_config,
    scanner_proxies,
    smtp_send,
)
from tests.support.pipe_postfix import PipePostfix
from tests.support.sink import SMTPSink

pytestmark = [pytest.mark.faults, pytest.mark.postfix, pytest.mark.clamd, pytest.mark.spamd]


@dataclass
class Rig:
    postfix: PipePostfix
    sink: SMTPSink
    proxies: dict[str, FaultProxy]
    log: Path


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    require_daemon("postfix")
    with scanner_proxies() as proxies:
        sink = SMTPSink().start()
        try:
            text = pipe_config(
                clamd=proxies["clamav"].address, spamd=proxies["spamassassin"].address
            )
            text = text.replace('timeout = "20s"', 'timeout = "3s"')
            assert proxies["spamassassin"].address in text and 'timeout = "3s"' in text
            with logged_pipe_postfix(sink.port, text) as (postfix, log):
                yield Rig(postfix, sink, proxies, log)
        finally:
            sink.stop()


def copies(rig: Rig, msgid: bytes) -> int:
    return sum(msgid in d.data for d in rig.sink.deliveries)


@pytest.mark.parametrize("scanner", ["clamav", "spamassassin"])
@pytest.mark.parametrize("fault", ["down", "slow", "killed", "garbage"])
def test_pipe_daemon_fault_defers_then_delivers_once(rig: Rig, scanner: str, fault: str) -> None:
    proxy = rig.proxies[scanner]
    msgid = f"<pipe-{scanner}-{fault}-{uuid.uuid4().hex[:8]}@mxscan.test>".encode()
    message = re.sub(rb"(?m)^Message-ID: <[^>]*>", b"Message-ID: " + msgid, ham_message())
    try:
        if fault == "down":
            proxy.stop()
        else:
            proxy.start("stall" if fault == "killed" else fault)
        reply = smtp_send(rig.postfix.smtp_port, message)
        assert reply.code == 250, reply  # after-queue filter: Postfix owns the message now
        queue_id = re.search(r"queued as ([0-9A-F]+)", reply.text).group(1)  # type: ignore[union-attr]
        if fault == "killed":
            proxy.wait_got()  # mxscan pipe is streaming the message to "the daemon"
            proxy.kill()
        line = rig.postfix.wait_for_log(
            rf"{queue_id}: to=<rcpt@example.com>, relay=mxscan, .*status=deferred", timeout=90
        )[0]
        assert "4.3.0" in line or "4.7" in line or "temporar" in line.lower(), line
        (entry,) = rig.postfix.queue()
        assert entry.queue_id == queue_id  # still in Postfix's queue (deferred, or being retried)
        assert copies(rig, msgid) == 0
    finally:
        proxy.start("pass")
    rig.postfix.flush()
    deadline = time.monotonic() + 60
    while copies(rig, msgid) < 1 or rig.postfix.queue():
        assert time.monotonic() < deadline, rig.postfix.log_tail()
        time.sleep(0.2)
    time.sleep(1)
    assert copies(rig, msgid) == 1
    assert "Traceback" not in rig.log.read_text()
