"""Hostile sizes through real Postfix 3.7 + ``mxscan milter`` (examples/mxscan.toml,
real clamd and spamd): a 100 MB message, 100,000 header lines, one 1 MB header.

Postfix's own limits are raised on this instance (message_size_limit,
header_size_limit) so that the bytes really reach mxscan; with Postfix's defaults
they would be refused or truncated before the milter saw them. Each row asserts a
defined outcome, that the milter process is alive afterwards, and a bound on its
peak memory (VmHWM) growth, printed with the timing.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate

import pytest

from tests.support.daemons import require_daemon
from tests.support.faults import LogCursor, figure, smtp_send, status_kib
from tests.support.milter import MilterProcess, seed_config, socket_dir
from tests.support.mta import (
    EOH,
    EOM,
    QUIT,
    MtaClient,
    body,
    connect,
    header,
    headers_of,
    helo,
    mail,
    rcpt,
)
from tests.support.postfix import PostfixInstance, process_alive
from tests.support.sink import SMTPSink

pytestmark = [pytest.mark.faults, pytest.mark.postfix, pytest.mark.clamd, pytest.mark.spamd]

MiB = 1024 * 1024


@dataclass
class Rig:
    postfix: PostfixInstance
    sink: SMTPSink
    milter: MilterProcess
    log: LogCursor


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    for kind in ("postfix", "clamd", "spamd"):
        require_daemon(kind)
    sink = SMTPSink(data_size_limit=300 * MiB).start()
    milter = MilterProcess(seed_config(), socket_dir(), name="sizes")
    postfix: PostfixInstance | None = None
    try:
        milter.start()
        postfix = PostfixInstance(
            relay_port=sink.port,
            main_overrides={
                "smtpd_milters": milter.address,
                "message_size_limit": str(200 * MiB),
                "header_size_limit": str(4 * MiB),
                "milter_content_timeout": "600s",
            },
        ).start()
        rig = Rig(postfix, sink, milter, LogCursor(milter.log_path))
        token = "warm-up"
        assert smtp_send(postfix.smtp_port, head(token) + b"\r\nhello\r\n").code == 250
        wait_delivered(rig, token)
        yield rig
    finally:
        if postfix is not None:
            postfix.remove()
        milter.stop()
        sink.stop()


def head(token: str, extra: bytes = b"") -> bytes:
    return (
        b"From: Alice <alice@example.org>\r\nTo: rcpt@example.com\r\n"
        + f"Subject: {token}\r\nDate: {formatdate()}\r\nMessage-ID: <{token}@example.org>\r\n".encode()
        + extra
        + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
    )


def wait_delivered(rig: Rig, token: str, timeout: float = 180) -> bytes:
    needle = f"<{token}@".encode()
    deadline = time.monotonic() + timeout
    while True:
        hits = [d for d in rig.sink.deliveries if needle in d.data[:1_000_000]]
        if hits:
            assert len(hits) == 1
            return hits[0].data
        assert time.monotonic() < deadline, rig.postfix.log_tail()
        time.sleep(0.1)


def verdict_line(rig: Rig) -> str:
    return next(x for x in rig.log.wait(" action=", timeout=120) if " action=" in x)


def run(rig: Rig, token: str, message: bytes) -> tuple[str, bytes, float, int]:
    before = status_kib(rig.milter.pid, "VmHWM")
    rig.log.new()
    start = time.monotonic()
    reply = smtp_send(rig.postfix.smtp_port, message, timeout=600)
    took = time.monotonic() - start
    assert reply.code == 250, reply
    line = verdict_line(rig)
    data = wait_delivered(rig, token)
    growth = status_kib(rig.milter.pid, "VmHWM") - before
    assert process_alive(rig.milter.pid)
    assert "Traceback" not in rig.milter.log()
    figure(
        f"\n{token}: {len(message) / MiB:.1f} MiB accepted in {took:.1f}s; "
        f"milter peak RSS growth {growth / 1024:.1f} MiB; {line.split(': ', 2)[-1]}"
    )
    return line, data, took, growth


def test_100_mb_message(rig: Rig) -> None:
    line_bytes = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-+0123456789ab\r\n"
    body = line_bytes * (100 * MiB // len(line_bytes))
    token = f"hundred-mb-{uuid.uuid4().hex[:6]}"
    line, data, _, growth = run(rig, token, head(token) + b"\r\n" + body)
    # Over clamd's StreamMaxLength and spamassassin's max_size: both say so, explicitly.
    assert "clamav=skipped(oversize)" in line or "clamav=clean" in line, line
    assert "spamassassin=skipped(oversize)" in line and " action=accept" in line, line
    got = data.split(b"\r\n\r\n", 1)[1]
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    assert growth < 40 * 1024, f"peak RSS grew {growth} KiB for a 100 MB message"


def test_100000_header_lines(rig: Rig) -> None:
    token = f"many-headers-{uuid.uuid4().hex[:6]}"
    extra = b"".join(b"X-Filler-%06d: v\r\n" % i for i in range(100_000))
    message = head(token, extra) + b"\r\nbody\r\n"
    line, data, _, growth = run(rig, token, message)
    assert " action=accept" in line, line
    assert data.count(b"\r\nX-Filler-") == 100_000
    assert growth < 300 * 1024, f"peak RSS grew {growth} KiB for 100,000 headers"


async def _milter_exchange(path: str, packets: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Send everything, then QUIT; every reply until the milter closes."""
    client = await MtaClient.open_unix(path)
    await client.handshake()
    replies: list[tuple[bytes, bytes]] = []
    try:
        await client.send(*packets, QUIT)
    except ConnectionError:  # the milter hung up on us: what it said is still readable
        pass
    try:
        while True:
            replies.append(await client.read(wait=60))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    await client.close()
    return replies


def test_one_megabyte_header(rig: Rig) -> None:
    """Through Postfix, mxscan sees what Postfix hands to milters: Postfix itself cuts
    a header to about 60 KB once smtpd_milters is set (even with a milter that edits
    nothing; measured on 3.7.11). So the full 1 MB header is also sent straight to
    the milter socket, as one HEADER packet, the way Postfix would send it."""
    token = f"huge-header-{uuid.uuid4().hex[:6]}"
    folded = b"X-Huge: start" + b"".join(b"\r\n\t" + b"h" * 76 for _ in range(MiB // 79)) + b"\r\n"
    assert len(folded) >= MiB - 200
    line, data, _, growth = run(rig, token, head(token, folded) + b"\r\nbody\r\n")
    assert " action=accept" in line, line
    kept = data.index(b"\r\nMIME-Version") - data.index(b"X-Huge: start")
    assert 0 < kept <= len(folded)
    figure(f"Postfix kept {kept} of the header's {len(folded)} bytes")
    assert growth < 100 * 1024, f"peak RSS grew {growth} KiB for a 1 MB header"

    # The whole megabyte, straight to mxscan.
    value = b" start" + b"".join(b"\n\t" + b"h" * 76 for _ in range(MiB // 79))
    before = status_kib(rig.milter.pid, "VmHWM")
    rig.log.new()
    packets = [
        connect(), helo(), mail("alice@example.org"), rcpt("rcpt@example.com"),
        *headers_of(head(token)), header(b"X-Huge", value), EOH, *body(b"body\r\n"), EOM,
    ]  # fmt: skip
    replies = asyncio.run(_milter_exchange(str(rig.milter.sock), packets))
    assert replies and replies[-1][0] == b"c", replies[-3:]  # accepted (continue)
    line = verdict_line(rig)
    assert " action=accept" in line, line
    growth = status_kib(rig.milter.pid, "VmHWM") - before
    assert growth < 100 * 1024, f"peak RSS grew {growth} KiB for a 1 MB header"
    assert process_alive(rig.milter.pid)

    # Past the milter protocol's packet limit: the connection is dropped with one
    # log line (Postfix would apply milter_default_action), the process lives on.
    rig.log.new()
    too_big = [*packets[:4], header(b"X-Huge", value * 3), EOH, EOM]
    asyncio.run(_milter_exchange(str(rig.milter.sock), too_big))
    assert any("protocol error" in x for x in rig.log.wait("protocol error"))
    assert process_alive(rig.milter.pid)
    token = f"after-huge-{uuid.uuid4().hex[:6]}"
    assert smtp_send(rig.postfix.smtp_port, head(token) + b"\r\nhello\r\n").code == 250
    wait_delivered(rig, token)
