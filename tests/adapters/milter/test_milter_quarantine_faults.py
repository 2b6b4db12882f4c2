"""The quarantine when things break, through a private Postfix and `mxscan milter`:

* the store's file system is full (a real tmpfs of 1 MiB): the client hears a
  tempfail, nothing half-stored is listed, and storing works again once a
  message fits;
* `quarantine_action = "hold"`: Postfix holds it, mxscan keeps a copy too;
* `kill -9` of the milter while it writes a 40 MB copy: Postfix tempfails the
  client (milter_default_action) and `quarantine list` shows no half record.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import require_daemon
from tests.support.milter import MilterProcess, plain_config, remove_dir, socket_dir
from tests.support.postfix import PostfixInstance, SendResult
from tests.support.quarantine import DROP_RULE, dropped, listed
from tests.support.sink import SMTPSink
from tests.support.snippets import milter_main_cf

pytestmark = [pytest.mark.postfix, pytest.mark.e2e, pytest.mark.faults]

RULES = DROP_RULE


@contextlib.contextmanager
def stack(
    store_dir: Path, rules: str = RULES, **quarantine: Any
) -> Iterator[tuple[PostfixInstance, MilterProcess]]:
    require_daemon("postfix")
    directory = socket_dir()
    sink = SMTPSink().start()
    config = plain_config({"rules": {"plugin": "header-rules", "rules": rules}})
    config["quarantine"] = {"store": f"sqlite:{store_dir / 'q.db'}", **quarantine}
    milter = MilterProcess(config, directory)
    postfix: PostfixInstance | None = None
    try:
        subprocess.run(
            [sys.executable, "-m", "mxscan", "quarantine", "init", "-c", str(milter.config_path)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        milter.start()
        postfix = PostfixInstance(
            relay_port=sink.port, main_overrides=milter_main_cf(milter.address)
        )
        postfix.start()
        yield postfix, milter
    finally:
        if postfix is not None:
            postfix.remove()
        milter.stop()
        sink.stop()
        remove_dir(directory)


@pytest.fixture
def tiny_fs() -> Iterator[Path]:
    """A real 1 MiB file system (tmpfs): writes past it fail with ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the suite as root)")
    mountpoint = Path(tempfile.mkdtemp(prefix="q-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mountpoint)],
                   check=True)  # fmt: skip
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        mountpoint.rmdir()


def test_disk_full_store_tempfails_then_recovers(tiny_fs: Path) -> None:
    with stack(tiny_fs) as (postfix, milter):
        big = postfix.send(dropped("too-big", 2 * 1024 * 1024))
        assert big.code == 451 and "4.3.0 Quarantine unavailable" in big.text, big.text
        assert "database or disk is full" in milter.wait_for_log("cannot store in the quarantine")
        assert listed(milter.config_path) == []
        small = postfix.send(dropped("fits", 10 * 1024))
        assert small.code == 250, small.text
        (record,) = listed(milter.config_path)
        assert record["queue_id"] == small.queue_id


def test_hold_mode_keeps_postfix_hold_and_a_copy(tmp_path: Path) -> None:
    """``quarantine_action = "hold"``: QUARANTINE is Postfix's hold queue again, and
    the copy is kept beside it (``quarantine`` is in keep_copy)."""
    store_dir = Path(tempfile.mkdtemp(prefix="q-hold-", dir=socket_dir().parent))
    try:
        rules = "/^Subject:.*hold-me/ HOLD for review\n"
        with stack(store_dir, rules, quarantine_action="hold") as (postfix, milter):
            result = postfix.send(dropped("hold-me", 10 * 1024).replace(b"drop-me ", b""))
            assert result.code == 250, result.text
            postfix.wait_for_log(rf"{result.queue_id}: milter-hold: END-OF-MESSAGE")
            assert [(q.queue_id, q.queue_name) for q in postfix.queue()] == [
                (result.queue_id, "hold")
            ]
            (record,) = listed(milter.config_path)
            assert (record["queue_id"], record["action"]) == (result.queue_id, "quarantine")
    finally:
        remove_dir(store_dir)


def test_kill_9_mid_store_leaves_no_half_record(tmp_path: Path) -> None:
    store_dir = Path(tempfile.mkdtemp(prefix="q-kill-", dir=socket_dir().parent))
    try:
        with stack(store_dir) as (postfix, milter):
            wal = store_dir / "q.db-wal"
            sent: list[SendResult | BaseException] = []

            def send() -> None:
                try:
                    sent.append(postfix.send(dropped("killed", 40 * 1024 * 1024), timeout=120))
                except BaseException as exc:  # the reply is checked below
                    sent.append(exc)

            thread = threading.Thread(target=send)
            thread.start()
            deadline = time.monotonic() + 120
            # The WAL grows only while the copy is written: kill in the middle of it.
            while not (wal.exists() and wal.stat().st_size > 4 * 1024 * 1024):
                assert time.monotonic() < deadline, milter.log()
                assert thread.is_alive(), sent
                time.sleep(0.001)
            os.kill(milter.pid, signal.SIGKILL)
            size_at_kill = wal.stat().st_size
            thread.join(120)
            (reply,) = sent
            assert isinstance(reply, SendResult) and reply.code == 451, reply
            assert size_at_kill < 40 * 1024 * 1024  # it was mid-store, not done
            assert listed(milter.config_path) == []
            db = subprocess.run(
                [sys.executable, "-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
                 "print(c.execute('PRAGMA integrity_check').fetchone()[0], "
                 "c.execute('SELECT count(*) FROM quarantine_chunk').fetchone()[0])",
                 str(store_dir / "q.db")], capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert db.stdout.split() == ["ok", "0"]
            # A new milter on the same store keeps working.
            milter.start()
            ok = postfix.send(dropped("after-kill", 10 * 1024))
            assert ok.code == 250, ok.text
            assert [r["queue_id"] for r in listed(milter.config_path)] == [ok.queue_id]
    finally:
        remove_dir(store_dir)
