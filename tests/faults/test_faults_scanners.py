"""Fault matrix, scanner side: clamd or spamd down, slow, killed mid-scan, or
answering garbage, behind real Postfix 3.7 and an ``mxscan milter`` process running
examples/mxscan.toml (defaults: ``on_error = "tempfail"``).

Each daemon is reached through a fault proxy (its own process, see tests/support/proxy.py)
in front of the shared private clamd/spamd, so the shared daemons are never
stopped. Expected outcome of every row: the SMTP client gets 451 at DATA (it keeps
the message and retries: nothing lost, nothing passed unscanned), Postfix queued
nothing, mxscan logs ``NAME=error(...) action=tempfail`` and stays up; once the
daemon is healthy again, the same message is delivered exactly once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.daemons import require_daemon
from tests.support.faults import FaultProxy, LogCursor, scanner_proxies, smtp_send
from tests.support.messages import copies as arrived
from tests.support.messages import lunch as ham
from tests.support.milter import MilterProcess, seed_config, socket_dir
from tests.support.postfix import PostfixInstance, process_alive
from tests.support.sink import SMTPSink

pytestmark = [pytest.mark.faults, pytest.mark.postfix, pytest.mark.clamd, pytest.mark.spamd]

SCAN_TIMEOUT = "3s"


@dataclass
class Rig:
    postfix: PostfixInstance
    sink: SMTPSink
    milter: MilterProcess
    proxies: dict[str, FaultProxy]
    log: LogCursor


def config(proxies: dict[str, FaultProxy]) -> dict[str, Any]:
    data = seed_config(clamav={"address": proxies["clamav"].address, "timeout": SCAN_TIMEOUT})
    data["scanner"]["spamassassin"]["address"] = proxies["spamassassin"].address
    data["scanner"]["spamassassin"]["timeout"] = SCAN_TIMEOUT
    return data


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    require_daemon("postfix")
    with scanner_proxies() as proxies:
        sink = SMTPSink().start()
        milter = MilterProcess(config(proxies), socket_dir(), name="faults")
        postfix: PostfixInstance | None = None
        try:
            milter.start()
            postfix = PostfixInstance(
                relay_port=sink.port, main_overrides={"smtpd_milters": milter.address}
            ).start()
            yield Rig(postfix, sink, milter, proxies, LogCursor(milter.log_path))
        finally:
            if postfix is not None:
                postfix.remove()
            milter.stop()
            sink.stop()


@pytest.mark.parametrize("scanner", ["clamav", "spamassassin"])
@pytest.mark.parametrize("fault", ["down", "slow", "killed", "garbage"])
def test_daemon_fault_tempfails_then_delivers_once(rig: Rig, scanner: str, fault: str) -> None:
    proxy = rig.proxies[scanner]
    token = f"fault-{scanner}-{fault}-{uuid.uuid4().hex[:8]}"
    message = ham(token)
    rig.log.new()
    try:
        if fault == "down":
            proxy.stop()  # nothing listens on its address any more: connection refused
        elif fault == "killed":
            proxy.start("stall")
        else:
            proxy.start(fault)
        start = time.monotonic()
        if fault == "killed":
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(smtp_send, rig.postfix.smtp_port, message)
                proxy.wait_got()
                proxy.kill()  # SIGKILL with the scan's connection open
                reply = pending.result(timeout=60)
        else:
            reply = smtp_send(rig.postfix.smtp_port, message)
        took = time.monotonic() - start
    finally:
        proxy.start("pass")

    assert reply.code == 451, reply  # the client keeps the message and retries
    assert "4.7.1" in reply.text, reply
    lines = list(rig.log.wait(" action=tempfail"))
    line = next(x for x in lines if " action=tempfail" in x)
    assert f"{scanner}=error(" in line, line
    other = "spamassassin" if scanner == "clamav" else "clamav"
    assert f"{other}=error(" not in line, line  # only the faulty daemon failed
    assert "Traceback" not in "\n".join(lines)
    if fault == "slow":
        assert took < 30, f"the {SCAN_TIMEOUT} scan timeout did not bound the wait ({took:.1f}s)"
    assert rig.postfix.queue() == []  # Postfix accepted nothing unscanned
    assert arrived(rig.sink, token) == 0
    assert process_alive(rig.milter.pid)

    # The daemon is back: the client's retry goes through, exactly once.
    again = smtp_send(rig.postfix.smtp_port, message)
    assert again.code == 250, again
    line = next(x for x in rig.log.wait(" action=") if " action=" in x)
    assert "clamav=clean" in line and "spamassassin=ham(" in line, line
    deadline = time.monotonic() + 30
    while arrived(rig.sink, token) < 1:
        assert time.monotonic() < deadline, rig.postfix.log_tail()
        time.sleep(0.05)
    time.sleep(0.5)
    assert arrived(rig.sink, token) == 1
