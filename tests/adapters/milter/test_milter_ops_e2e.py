"""Operating the seed's secondary MX: mxscan down, privilege drop, a slow scan of a
30 MB message. Real Postfix 3.7 instances, `mxscan milter` as a process, real
clamd/spamd, an aiosmtpd sink."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemons import clamd_stream_max_bytes, require_daemon
from tests.support.messages import tagged as message
from tests.support.milter import (
    MilterProcess,
    dump_toml,
    milter_group,
    plain_config,
    remove_dir,
    seed_config,
    socket_dir,
)
from tests.support.postfix import PostfixInstance
from tests.support.service_install import service_venv_python
from tests.support.sink import SMTPSink

pytestmark = [pytest.mark.postfix, pytest.mark.e2e]

MakePostfix = Callable[..., PostfixInstance]


@pytest.fixture
def milter_dir() -> Path:
    return socket_dir()


@pytest.fixture
def milters() -> Iterator[list[MilterProcess]]:
    """Started milters to stop (and their directories to remove) at teardown."""
    with milter_group() as started:
        yield started


# ---------------------------------------------------------------- mxscan down


@pytest.mark.clamd
@pytest.mark.spamd
def test_mxscan_down_upstream_keeps_mail_deferred_then_delivers_once(
    make_postfix: MakePostfix, smtp_sink: SMTPSink, milter_dir: Path, milters: list[MilterProcess]
) -> None:
    """Relay A (no milter) -> secondary MX B (mxscan milter, milter_default_action
    tempfail) -> sink. With mxscan down B answers 4xx, so the mail waits *in A's
    queue*, deferred by Postfix; once mxscan is back, a flush of A delivers it once."""
    require_daemon("clamd")
    require_daemon("spamd")
    milter = MilterProcess(seed_config(), milter_dir)  # not started: mxscan is down
    milters.append(milter)
    b = make_postfix(
        main_overrides={"smtpd_milters": milter.address, "milter_default_action": "tempfail"}
    )
    a = make_postfix(
        relay_port=b.smtp_port,
        main_overrides={
            "myhostname": "relay-a.mxscan.test",  # B greets as mx.mxscan.test: no loop
            # Retry only when flushed, so delivery is provably the flush's doing.
            "queue_run_delay": "300s",
            "minimal_backoff_time": "300s",
            "maximal_backoff_time": "600s",
        },
    )
    sent = message("while-mxscan-is-down")
    result = a.send(sent)
    assert result.code == 250, result.text

    # B refused with a temporary error; A holds the mail as deferred.
    deadline = time.monotonic() + 30
    while True:
        queued = a.queue()
        if queued and queued[0].queue_name == "deferred":
            break
        assert time.monotonic() < deadline, f"not deferred in A: {queued}\n{a.log_tail()}"
        time.sleep(0.2)
    (entry,) = queued
    assert entry.queue_id == result.queue_id
    assert any("4.7.1" in reason for reason in entry.reasons), entry.reasons
    b.wait_for_log(r"connect to Milter service unix:.*mxscan\.sock")
    assert b.queue() == []  # B accepted nothing unscanned
    assert len(smtp_sink) == 0

    milter.start()
    time.sleep(2)
    assert len(smtp_sink) == 0  # nothing moves until A retries
    a.flush()
    (delivery,) = smtp_sink.wait_for(1, timeout=60)
    assert delivery.data.endswith(sent)  # after B's and A's Received: headers
    assert delivery.data.count(b"Received: ") == 2
    line = milter.wait_for_log(" action=accept")
    assert "clamav=clean" in line and "spamassassin=" in line

    # Exactly once: nothing left anywhere to deliver a second copy.
    a.flush()
    deadline = time.monotonic() + 10
    while a.queue() or b.queue():
        assert time.monotonic() < deadline, f"A: {a.queue()} B: {b.queue()}"
        time.sleep(0.2)
    time.sleep(2)
    assert len(smtp_sink) == 1


# ---------------------------------------------------------------- privilege drop


RULES = {"rules": {"plugin": "header-rules", "rules": "/^Subject:.*drop-me/ DISCARD\n"}}


def proc_ids(status: dict[str, str], field: str) -> set[int]:
    return {int(x) for x in status[field].split()}


@pytest.mark.parametrize("socket_dir_owner", ["user", "root"])
def test_user_drops_privileges_after_binding(
    make_postfix: MakePostfix,
    smtp_sink: SMTPSink,
    milters: list[MilterProcess],
    socket_dir_owner: str,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the privilege drop needs root")  # make_postfix already needs root
    nobody = pwd.getpwnam("nobody")
    directory = socket_dir()
    if socket_dir_owner == "user":  # e.g. /run/mxscan owned by the mxscan user
        os.chown(directory, nobody.pw_uid, nobody.pw_gid)
    milter = MilterProcess(
        plain_config(RULES),
        directory,
        args=["--user", "nobody", "--socket-owner", "nobody", "--socket-group", "postfix",
              "--socket-mode", "0660"],
        python=service_venv_python("nobody"),  # an install nobody can read, as a service's
    )  # fmt: skip
    milters.append(milter.start())
    milter.wait_for_log("running as user nobody")
    assert "cannot read" not in milter.log()

    status = milter.status()
    assert proc_ids(status, "Uid") == {nobody.pw_uid}  # real, effective, saved, fs
    assert proc_ids(status, "Gid") == {nobody.pw_gid}
    assert {int(g) for g in status["Groups"].split()} <= {nobody.pw_gid}  # root's are gone

    st = os.stat(milter.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == nobody.pw_uid
    assert st.st_gid == pwd.getpwnam("postfix").pw_gid

    # Postfix (smtpd runs as postfix) still reaches it, and it still scans.
    postfix = make_postfix(main_overrides={"smtpd_milters": milter.address})
    assert postfix.send(message("drop-me")).code == 250
    postfix.wait_for_log(r"milter-discard: END-OF-MESSAGE")
    assert postfix.send(message("keep-me")).code == 250
    (delivery,) = smtp_sink.wait_for(1, timeout=30)
    assert b"Subject: keep-me" in delivery.data

    # As nobody, the unchanged file reloads (plugins found, tables read).
    milter.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    milter.wait_for_log("configuration reloaded")
    assert "reload failed" not in milter.log()

    assert milter.stop() == 0
    if socket_dir_owner == "user":
        assert not milter.sock.exists()  # removed at stop
    else:
        # Unprivileged, mxscan cannot unlink from root's directory: it says so, and
        # the next start removes the stale socket.
        assert milter.sock.exists()
        assert "cannot remove unix:" in milter.log()
        again = MilterProcess(plain_config(RULES), directory, name="mxscan")
        milters.append(again.start())
        assert "removing stale socket" in again.log()


def test_user_who_cannot_read_the_install_is_a_start_up_error(tmp_path: Path) -> None:
    """--user with an install that user cannot read (a venv in a clone under /root,
    0700): no "ready" and a SIGHUP that could never work, but an exit at start
    naming the user, the configuration and the directory the user cannot read."""
    if os.geteuid() != 0:
        pytest.skip("the privilege drop needs root")
    outer = socket_dir()
    private = outer / "private"
    private.mkdir(mode=0o700)  # root's: nobody cannot enter
    try:
        venv = private / "venv"
        shutil.copytree(Path(service_venv_python("nobody")).parents[1], venv, symlinks=True)
        directory = socket_dir()
        nobody = pwd.getpwnam("nobody")
        os.chown(directory, nobody.pw_uid, nobody.pw_gid)  # as /run/mxscan would be
        config = directory / "mxscan.toml"
        config.write_text(dump_toml(plain_config(RULES)))
        config.chmod(0o644)
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "mxscan", "milter", "--config", str(config),
             "--listen", f"unix:{directory}/mxscan.sock", "--user", "nobody"],
            capture_output=True, text=True, timeout=60, cwd=directory,
        )  # fmt: skip
    finally:
        remove_dir(outer)
    assert done.returncode == 2, done.stderr
    assert "ready" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    error = done.stderr.splitlines()[-1]
    assert error.startswith("mxscan: error: as user nobody, "), error
    assert str(config) in error and f"nobody cannot read {private}" in error, error
    assert not (directory / "mxscan.sock").exists()  # cleaned up
    remove_dir(directory)


# ---------------------------------------------------------------- slow scan, 30 MB


def big_body(size: int) -> bytes:
    """About ``size`` bytes of numbered 77-byte text lines (nothing any scanner flags)."""
    filler = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+-"
    return b"".join(b"%010d " % i + filler + b"\r\n" for i in range(size // 77))


@pytest.mark.clamd
@pytest.mark.spamd
def test_30mb_slow_scan_flat_memory_and_no_postfix_timeout(
    make_postfix: MakePostfix,
    smtp_sink: SMTPSink,
    milters: list[MilterProcess],
    slowplugin_path: Path,
) -> None:
    """The seed pipeline plus a 12 s stage, behind Postfix with
    milter_content_timeout = 10s: the progress keepalives (every 2 s) carry the
    message through; with keepalives rarer than the timeout (the control listener)
    Postfix gives up and tempfails. The milter's peak RSS grows far less than the
    message size: the body is spooled, and streamed to clamd."""
    require_daemon("clamd")
    require_daemon("spamd")
    limit = clamd_stream_max_bytes()
    size = limit - 1024 * 1024  # just under clamd's StreamMaxLength (30M)
    slow = {"slow": {"plugin": "sleep", "seconds": 12}}
    directory = socket_dir()
    kept = MilterProcess(
        seed_config(extra_stage=slow), directory, name="keepalive",
        args=["--socket-group", "postfix", "--progress-interval", "2s"],
        pythonpath=[slowplugin_path],
    )  # fmt: skip
    silent = MilterProcess(
        seed_config(extra_stage=slow), directory, name="silent",
        args=["--socket-group", "postfix", "--progress-interval", "60s"],
        pythonpath=[slowplugin_path],
    )  # fmt: skip
    milters.extend([kept.start(), silent.start()])
    postfix = make_postfix(
        start=False,
        main_overrides={
            "smtpd_milters": kept.address,
            "milter_content_timeout": "10s",
            "milter_command_timeout": "10s",
        },
    )
    control_port = postfix.add_smtpd_listener({"smtpd_milters": silent.address})
    postfix.start()

    # Warm up (imports, daemon connections), then take the baseline peak.
    assert postfix.send(message("warm-up")).code == 250
    smtp_sink.wait_for(1, timeout=60)
    before = kept.kib("VmHWM")

    body = big_body(size - len(message("thirty-megabytes", b"")))
    big = message("thirty-megabytes", body)
    assert limit - 2 * 1024 * 1024 < len(big) < limit
    start = time.monotonic()
    result = postfix.send(big, timeout=120)
    took = time.monotonic() - start
    assert result.code == 250, result.text
    after = kept.kib("VmHWM")
    deliveries = smtp_sink.wait_for(2, timeout=120)
    data = deliveries[-1].data
    assert hashlib.sha256(data.split(b"\r\n\r\n", 1)[1]).digest() == hashlib.sha256(body).digest()
    log = kept.wait_for_log(f"{result.queue_id}: ")
    line = next(x for x in log.splitlines() if f"{result.queue_id}: " in x and " action=" in x)
    assert "clamav=clean" in line and "spamassassin=skipped(oversize)" in line, line
    assert "slow=slept(12)" in line and " action=accept" in line, line
    growth = after - before
    print(
        f"\n30 MB via Postfix + mxscan milter: {len(big) / 2**20:.1f} MiB in {took:.1f}s "
        f"(12 s of it the slow stage); milter VmHWM {before / 1024:.1f} -> "
        f"{after / 1024:.1f} MiB (growth {growth / 1024:.1f} MiB)"
    )
    assert growth * 1024 < len(big) / 2, f"peak RSS grew {growth} KiB for a {len(big)} B message"
    assert after * 1024 < 100 * 2**20

    # Control: the same slow scan without timely keepalives hits Postfix's timeout.
    refused = postfix.send(message("no-keepalive"), port=control_port)
    assert refused.code == 451, refused.text
    postfix.wait_for_log(
        r"milter unix:.*silent\.sock: can't read SMFIC_BODYEOB reply packet header: "
        r"Connection timed out"
    )
    assert len(smtp_sink) == 2


@pytest.mark.clamd
def test_message_over_clamd_stream_limit_gets_on_oversize_through_postfix(
    make_postfix: MakePostfix, smtp_sink: SMTPSink, milters: list[MilterProcess]
) -> None:
    """Just over clamd's StreamMaxLength: clamd refuses the stream; with
    on_oversize = "tempfail" the SMTP client is told 452 4.3.4 (never silently passed,
    never a crash), and memory stays flat on the way."""
    require_daemon("clamd")
    limit = clamd_stream_max_bytes()
    config = seed_config(spamassassin=False, clamav={"on_oversize": "tempfail"})
    milter = MilterProcess(config, socket_dir())
    milters.append(milter.start())
    postfix = make_postfix(main_overrides={"smtpd_milters": milter.address})
    assert postfix.send(message("warm-up")).code == 250
    smtp_sink.wait_for(1, timeout=60)
    before = milter.kib("VmHWM")

    big = message("over-the-limit", big_body(limit + 512 * 1024))
    assert len(big) > limit
    result = postfix.send(big, timeout=120)
    assert result.code == 452, result.text
    assert "4.3.4" in result.text
    log = milter.wait_for_log(" action=tempfail")
    line = next(x for x in log.splitlines() if " action=tempfail" in x)
    assert "clamav=skipped(oversize)" in line, line
    growth = milter.kib("VmHWM") - before
    print(f"\nover StreamMaxLength: {len(big)} B, milter VmHWM growth {growth / 1024:.1f} MiB")
    assert growth * 1024 < len(big) / 2
    time.sleep(1)
    assert len(smtp_sink) == 1  # only the warm-up
