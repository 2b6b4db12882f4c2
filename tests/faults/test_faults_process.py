"""Fault matrix, mxscan side: the milter process killed, stopped, reloaded with a
broken file, its clients hanging up, its spool directory unwritable. Real Postfix
3.7 instances and ``mxscan milter`` subprocesses.

"Mid-scan" is made exact with a fault proxy in ``stall`` mode in front of clamd: it
says GOT when the message's bytes reach "clamd", i.e. when mxscan is scanning.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import clamd_inet, require_daemon
from tests.support.faults import FaultProxy, LogCursor, fd_count, fd_targets, figure, smtp_send
from tests.support.messages import copies as count
from tests.support.messages import tagged as message
from tests.support.milter import MilterProcess, milter_group, plain_config, socket_dir
from tests.support.mta import ABORT, MtaClient, connect, helo, mail, message_packets, rcpt
from tests.support.postfix import PostfixInstance, process_alive
from tests.support.service_install import service_venv_python
from tests.support.sink import SMTPSink

pytestmark = [pytest.mark.faults, pytest.mark.postfix]

MakePostfix = Callable[..., PostfixInstance]


@pytest.fixture
def milters() -> Iterator[list[MilterProcess]]:
    """Started milters to stop (and their directories to remove) at teardown."""
    with milter_group() as started:
        yield started


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    p = FaultProxy(clamd_inet().removeprefix("inet:"))
    yield p
    p.stop()


def clamav_only(address: str) -> dict[str, Any]:
    return plain_config({"clamav": {"plugin": "clamav", "address": address, "timeout": "60s"}})


def wait_count(sink: SMTPSink, token: str, n: int = 1, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while count(sink, token) < n:
        assert time.monotonic() < deadline, f"{token}: {count(sink, token)} of {n} delivered"
        time.sleep(0.05)


# ---------------------------------------------------------------- SIGKILL


@pytest.mark.clamd
def test_sigkill_mid_scan_defers_then_delivers_once_after_restart(
    make_postfix: MakePostfix,
    smtp_sink: SMTPSink,
    proxy: FaultProxy,
    milters: list[MilterProcess],
) -> None:
    """Relay A (plain Postfix) -> B (mxscan milter) -> sink. mxscan dies by SIGKILL
    while it scans: B answers 4xx (milter_default_action = tempfail), the mail waits
    deferred in A; mxscan restarted and A flushed, it arrives exactly once."""
    require_daemon("clamd-inet")  # the proxy fronts clamd_inet()
    proxy.start("stall")
    milter = MilterProcess(clamav_only(proxy.address), socket_dir())
    milters.append(milter.start())
    b = make_postfix(main_overrides={"smtpd_milters": milter.address})
    a = make_postfix(
        relay_port=b.smtp_port,
        main_overrides={
            "myhostname": "relay-a.mxscan.test",
            "queue_run_delay": "300s",
            "minimal_backoff_time": "300s",
            "maximal_backoff_time": "600s",
        },
    )
    token = f"sigkill-{uuid.uuid4().hex[:8]}"
    sent = message(token)
    accepted = a.send(sent)
    assert accepted.code == 250
    proxy.wait_got()  # A relayed to B, B's cleanup fed mxscan, mxscan is scanning
    os.kill(milter.pid, signal.SIGKILL)
    milter.proc.wait()  # type: ignore[union-attr]

    deadline = time.monotonic() + 60
    while True:
        queued = a.queue()
        if queued and queued[0].queue_name == "deferred":
            break
        assert time.monotonic() < deadline, f"not deferred in A: {queued}\n{a.log_tail()}"
        time.sleep(0.2)
    assert queued[0].queue_id == accepted.queue_id
    assert any(r.startswith("host 127.0.0.1") and " 4" in r for r in queued[0].reasons), queued
    assert b.queue() == [] and count(smtp_sink, token) == 0

    proxy.start("pass")
    milters.append(milter.start())  # the stale socket of the killed process is replaced
    assert "removing stale socket" in milter.log()
    a.flush()
    wait_count(smtp_sink, token)
    a.flush()
    deadline = time.monotonic() + 20
    while a.queue() or b.queue():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1)
    assert count(smtp_sink, token) == 1
    (delivery,) = [d for d in smtp_sink.deliveries if f"<{token}@".encode() in d.data]
    head, body = sent.split(b"\r\n\r\n", 1)
    assert head in delivery.data and delivery.data.endswith(b"\r\n\r\n" + body)
    assert b"X-Virus-Status: Clean" in delivery.data  # scanned by the restarted mxscan


# ---------------------------------------------------------------- SIGTERM, SIGHUP


def slow_config(seconds: float, started: Path) -> dict[str, Any]:
    """The ``sleep`` scanner, appending a line to ``started`` as each scan begins."""
    return plain_config(
        {"slow": {"plugin": "sleep", "seconds": seconds, "started_file": str(started)}}
    )


def wait_scanning(milter: MilterProcess, started: Path, scans: int = 1) -> None:
    """Until ``scans`` scans have begun: then a signal certainly lands mid-scan (the
    SMTP transaction through Postfix can take more than a guessed sleep on CI)."""
    deadline = time.monotonic() + 60
    while not started.exists() or started.read_text().count("scanning") < scans:
        assert time.monotonic() < deadline, f"no scan began:\n{milter.log()}"
        assert milter.proc is not None and milter.proc.poll() is None, milter.log()
        time.sleep(0.02)


def test_sigterm_mid_scan_lets_the_scan_finish(
    make_postfix: MakePostfix,
    smtp_sink: SMTPSink,
    milters: list[MilterProcess],
    slowplugin_site: Path,
) -> None:
    directory = socket_dir()
    started = directory / "scanning"
    milter = MilterProcess(slow_config(3, started), directory, pythonpath=[slowplugin_site])
    milters.append(milter.start())
    postfix = make_postfix(main_overrides={"smtpd_milters": milter.address})
    token = f"sigterm-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(smtp_send, postfix.smtp_port, message(token))
        wait_scanning(milter, started)
        milter.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        reply = pending.result(timeout=60)
    assert reply.code == 250, reply
    assert milter.proc.wait(30) == 0  # type: ignore[union-attr]
    log = milter.log()
    assert log.index("stopping: draining") < log.index("slow=slept(3) action=accept")
    wait_count(smtp_sink, token)
    assert not milter.sock.exists()


def test_sighup_with_broken_config_keeps_the_old_one_mid_scan(
    make_postfix: MakePostfix,
    smtp_sink: SMTPSink,
    milters: list[MilterProcess],
    slowplugin_site: Path,
) -> None:
    directory = socket_dir()
    started = directory / "scanning"
    milter = MilterProcess(slow_config(2, started), directory, pythonpath=[slowplugin_site])
    milters.append(milter.start())
    postfix = make_postfix(main_overrides={"smtpd_milters": milter.address})
    cursor = LogCursor(milter.log_path)
    first = f"sighup-a-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(smtp_send, postfix.smtp_port, message(first))
        wait_scanning(milter, started)
        milter.config_path.write_text('[scanner.slow]\nplugin = "sleep"\nseconds = \n')
        milter.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        lines = list(cursor.wait("reload failed"))
        reply = pending.result(timeout=60)
    assert reply.code == 250, reply
    assert any("keeping the old configuration" in x for x in lines)
    second = f"sighup-b-{uuid.uuid4().hex[:8]}"
    assert smtp_send(postfix.smtp_port, message(second)).code == 250
    wait_count(smtp_sink, first)
    wait_count(smtp_sink, second)
    assert milter.log().count("slow=slept(2) action=accept") == 2  # both scanned, old config
    assert process_alive(milter.pid)
    assert "Traceback" not in milter.log()


# ---------------------------------------------------------------- hang-ups, fds


def _hang_up_mid_data(port: int, body_bytes: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        f = sock.makefile("rwb")
        f.readline()
        for cmd in (b"EHLO client.mxscan.test", b"MAIL FROM:<a@example.org>",
                    b"RCPT TO:<rcpt@example.com>", b"DATA"):  # fmt: skip
            f.write(cmd + b"\r\n")
            f.flush()
            line = f.readline()
            while line[3:4] == b"-":
                line = f.readline()
        f.write(message("hangup", b"x" * 76 + b"\r\n")[:200])
        f.write((b"y" * 998 + b"\r\n") * (body_bytes // 1000))
        f.flush()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


async def _milter_hang_up(path: str, body_bytes: int, abort: bool) -> None:
    client = await MtaClient.open_unix(path)
    await client.handshake()
    await client.send(connect(), helo(), mail("a@example.org"), rcpt("rcpt@example.com"))
    packets = message_packets(message("milter-hangup", b"z" * 998 + b"\r\n") + b"w" * body_bytes)
    await client.send(*packets[:-1])  # everything but end-of-message: body is spooled
    if abort:
        await client.send(ABORT)
    await client.close()


def unix_connections(path: Path) -> int:
    """Connections accepted on the unix socket at ``path`` and still open: Linux lists
    each under the listener's path in /proc/net/unix (the listener has __SO_ACCEPTCON)."""
    lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    return sum(
        1 for line in lines if line.split()[-1] == str(path) and line.split()[3] != "00010000"
    )


def test_clients_hanging_up_leak_no_file_descriptors(
    make_postfix: MakePostfix,
    smtp_sink: SMTPSink,
    milters: list[MilterProcess],
) -> None:
    """SMTP clients vanishing mid-DATA (through Postfix), and MTAs vanishing in the
    middle of a spooled 3 MB body (direct milter protocol): afterwards the milter
    holds exactly the descriptors it held before, and still scans."""
    import asyncio

    rules = {"rules": {"plugin": "header-rules", "rules": "/^Subject:.*drop-me/ DISCARD\n"}}
    milter = MilterProcess(plain_config(rules), socket_dir())
    milters.append(milter.start())
    postfix = make_postfix(main_overrides={"smtpd_milters": milter.address})
    assert smtp_send(postfix.smtp_port, message("warm-up")).code == 250
    wait_count(smtp_sink, "warm-up")
    # The baseline only once smtpd's milter connection is closed on mxscan's side
    # too (a fixed sleep could catch its descriptor, which never comes back).
    deadline = time.monotonic() + 60
    while unix_connections(milter.sock):
        assert time.monotonic() < deadline, "smtpd's milter connection never closed"
        time.sleep(0.05)
    before = fd_targets(milter.pid)

    for _ in range(10):
        _hang_up_mid_data(postfix.smtp_port, 2_000_000)
    for i in range(10):
        asyncio.run(_milter_hang_up(str(milter.sock), 3_000_000, abort=bool(i % 2)))

    deadline = time.monotonic() + 60
    while fd_targets(milter.pid) != before:
        assert time.monotonic() < deadline, (before, fd_targets(milter.pid))
        time.sleep(0.2)
    assert not [t for t in fd_targets(milter.pid) if "(deleted)" in t]
    token = f"after-hangups-{uuid.uuid4().hex[:8]}"
    assert smtp_send(postfix.smtp_port, message(token)).code == 250
    wait_count(smtp_sink, token)
    assert "Traceback" not in milter.log()
    figure(f"\nmilter fds: {len(before)} before, {fd_count(milter.pid)} after 20 hang-ups")


# ---------------------------------------------------------------- spool


def test_unwritable_spool_directory_tempfails_and_loses_nothing(
    make_postfix: MakePostfix,
    smtp_sink: SMTPSink,
    milters: list[MilterProcess],
) -> None:
    """A body above the spool threshold cannot be spooled (the directory is not
    writable for the milter's user): the client gets 4xx and keeps the message,
    the milter stays up, and small mail (kept in memory) still flows."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the milter as another user")
    directory = socket_dir()
    spool = directory / "spool"
    spool.mkdir(mode=0o755)  # root's: nobody cannot create files here
    nobody = pwd.getpwnam("nobody")
    os.chown(directory, nobody.pw_uid, nobody.pw_gid)
    config = plain_config(
        {"rules": {"plugin": "header-rules", "rules": "/^Subject:.*drop-me/ DISCARD\n"}}
    )
    config["spool"] = {"threshold": "64KiB", "directory": str(spool)}
    milter = MilterProcess(
        config,
        directory,
        args=["--user", "nobody", "--socket-group", "postfix"],
        python=service_venv_python("nobody"),  # an install nobody can read
    )
    milters.append(milter.start())
    postfix = make_postfix(main_overrides={"smtpd_milters": milter.address})

    token = f"spool-{uuid.uuid4().hex[:8]}"
    big = message(token, (b"s" * 78 + b"\r\n") * 2000)  # 160 KB > threshold
    reply = smtp_send(postfix.smtp_port, big)
    # mxscan's own answer (not Postfix's milter_default_action after a dropped
    # connection): one log line, no traceback.
    assert reply.code == 451 and "4.3.0" in reply.text, reply
    assert "cannot spool the message body" in milter.log()
    assert "Traceback" not in milter.log()
    assert postfix.queue() == [] and count(smtp_sink, token) == 0
    assert process_alive(milter.pid)
    small = f"spool-small-{uuid.uuid4().hex[:8]}"
    assert smtp_send(postfix.smtp_port, message(small)).code == 250
    wait_count(smtp_sink, small)
    figure(f"\nunwritable spool: client saw {reply.code} {reply.text!r}")

    spool.chmod(0o777)  # the admin fixes it: the client's retry goes through
    assert smtp_send(postfix.smtp_port, big).code == 250
    wait_count(smtp_sink, token)
    assert count(smtp_sink, token) == 1
