"""Fault matrix for the pipe(8) filter: clamd or spamd down, slow, killed mid-scan,
or answering garbage, behind real Postfix set up from the docs' snippets
(tests/adapters/pipe/pipe_postfix.py). Expected outcome of every row: ``mxscan
pipe`` exits 75, Postfix keeps the message deferred in its queue (nothing reaches
the sink unscanned); once the daemon is healthy, a queue run delivers it exactly
once.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from faults_support import FaultProxy, smtp_send
from pipe_postfix import (
    SNIPPETS,
    PipePostfix,
    alternate_config_directory,
    mxscan_config,
    mxscan_for_pipe_user,
    snippet_main_cf,
    snippet_master_cf,
    write_world_readable,
)

from tests.support.daemons import clamd_inet, ham_message, require_daemon, spamd_inet
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
    for kind in ("postfix", "clamd", "spamd"):
        require_daemon(kind)
    proxies = {
        "clamav": FaultProxy(clamd_inet().removeprefix("inet:")),
        "spamassassin": FaultProxy(spamd_inet().removeprefix("inet:")),
    }
    mxscan = mxscan_for_pipe_user()
    sink = SMTPSink().start()
    try:
        for proxy in proxies.values():
            proxy.start("pass")
        postfix = PipePostfix(relay_port=sink.port, main_overrides=snippet_main_cf())
        postfix.config_dir.mkdir(parents=True, exist_ok=True)
        log = postfix.dir / "mxscan-pipe.log"
        log.touch()
        log.chmod(0o666)
        wrapper = postfix.dir / "mxscan-logged"
        wrapper.write_text(f'#!/bin/sh\nexec {mxscan} "$@" 2>>{log}\n')
        wrapper.chmod(0o755)
        config = postfix.dir / "mxscan.toml"
        text = mxscan_config(clamd=proxies["clamav"].address)
        text = text.replace(
            f'address = "{spamd_inet()}"', f'address = "{proxies["spamassassin"].address}"'
        )
        text = text.replace('timeout = "20s"', 'timeout = "3s"')
        assert proxies["spamassassin"].address in text and 'timeout = "3s"' in text
        write_world_readable(config, text)
        postfix.master_extra = snippet_master_cf(str(wrapper), config, postfix.config_dir)
        shutil.copy(SNIPPETS / "mxscan-hold.regexp", postfix.config_dir)
        with alternate_config_directory(postfix.config_dir):
            try:
                postfix.start()
                yield Rig(postfix, sink, proxies, log)
            finally:
                postfix.remove()
    finally:
        for proxy in proxies.values():
            proxy.stop()
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
