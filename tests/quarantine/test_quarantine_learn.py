"""Learning: the optional ``learn(message, spam)`` hook, through spamd's TELL.

The shared spamd may run without ``--allow-tell``, so these tests start a spamd
of their own with it. What spamd learned is read back from spamd itself: a
second TELL of the same message and class answers without ``DidSet`` (its
Bayes database already has it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxscan import parse_addresses
from mxscan_spamassassin.client import tell_spamd
from tests.support.daemons import gtube_message, require_daemon
from tests.support.own_spamd import own_spamd
from tests.support.sink import SMTPSink

pytestmark = [pytest.mark.spamd, pytest.mark.e2e]


@pytest.fixture(scope="module")
def learning_spamd() -> Iterator[str]:
    require_daemon("spamd")
    # The shared site configuration turns Bayes off; TELL learns into Bayes.
    with own_spamd("use_bayes 1\n", args=["--allow-tell"]) as spamd:
        yield spamd.address


def mxscan(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mxscan", *args], capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def config(tmp_path: Path, spamd: str, sink_port: int) -> Path:
    path = tmp_path / "mxscan.toml"
    path.write_text(
        f'[scanner.spamassassin]\nplugin = "spamassassin"\naddress = "{spamd}"\n'
        "discard_score = 15.0\n"
        f'[quarantine]\nstore = "sqlite:{tmp_path / "q.db"}"\n'
        f'release = "smtp://127.0.0.1:{sink_port}"\n'
    )
    return path


async def test_tell_learns_once(learning_spamd: str) -> None:
    addresses = parse_addresses(learning_spamd)
    data = gtube_message().replace(b"<gtube@", b"<gtube-tell-once@")
    assert await tell_spamd(addresses, data, spam=True, timeout=60) is True
    assert await tell_spamd(addresses, data, spam=True, timeout=60) is False


def test_release_as_ham_delivers_and_teaches_spamd(
    tmp_path: Path, learning_spamd: str, smtp_sink: SMTPSink
) -> None:
    cfg = config(tmp_path, learning_spamd, smtp_sink.port)
    message = gtube_message().replace(b"<gtube@", b"<gtube-as-ham@")
    (tmp_path / "gtube.eml").write_bytes(message)
    scan = mxscan("scan", "-c", str(cfg), "-f", "sender@example.org", "-r", "rcpt@example.com",
                  str(tmp_path / "gtube.eml"))  # fmt: skip
    assert scan.returncode == 1 and "discard" in scan.stdout, scan.stdout + scan.stderr
    (record,) = json.loads(mxscan("quarantine", "list", "--json", "-c", str(cfg)).stdout)
    assert record["scanner"] == "spamassassin" and record["score"] >= 999

    released = mxscan("quarantine", "release", record["id"], "--as-ham", "-c", str(cfg))
    assert released.returncode == 0, released.stderr
    assert f"{record['id']}: spamassassin learned it as ham" in released.stdout
    (delivery,) = smtp_sink.wait_for(1)
    assert delivery.data == message
    # spamd has it as ham now: telling it again changes nothing.
    import asyncio

    again = asyncio.run(
        tell_spamd(parse_addresses(learning_spamd), message, spam=False, timeout=60)
    )
    assert again is False


def test_learn_command_files_and_ids(
    tmp_path: Path, learning_spamd: str, smtp_sink: SMTPSink
) -> None:
    cfg = config(tmp_path, learning_spamd, smtp_sink.port)
    spam = tmp_path / "spam.eml"
    spam.write_bytes(gtube_message().replace(b"<gtube@", b"<gtube-learn-cmd@"))
    learned = mxscan("learn", "--spam", str(spam), "-c", str(cfg))
    assert learned.returncode == 0, learned.stderr
    assert f"{spam}: spamassassin learned it as spam" in learned.stdout
    missing = mxscan("learn", "--ham", "no-such-id", "-c", str(cfg))
    assert missing.returncode == 2
    assert "no-such-id: no such message" in missing.stderr


def test_learn_without_a_learning_scanner(tmp_path: Path) -> None:
    cfg = tmp_path / "mxscan.toml"
    cfg.write_text('[scanner.rules]\nplugin = "header-rules"\nrules = ""\n')
    (tmp_path / "m.eml").write_bytes(b"Subject: x\r\n\r\nx\r\n")
    proc = mxscan("learn", "--ham", str(tmp_path / "m.eml"), "-c", str(cfg))
    assert proc.returncode == 1
    assert "no configured scanner can learn" in proc.stderr
