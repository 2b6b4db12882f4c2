"""The quarantine end to end: SMTP -> private Postfix -> `mxscan milter` (seed
configuration, real clamd and spamd, a ``[quarantine]`` SQLite store) -> sink.

GTUBE and EICAR are discarded by Postfix on mxscan's word, and `mxscan quarantine
list` (another process, reading the store the milter wrote) shows them with their
score and virus name; `release` delivers the stored bytes to the sink exactly
once; a second release needs --force.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import EICAR_SIGNATURE, eicar_message, gtube_message, require_daemon
from tests.support.milter import MilterProcess, remove_dir, seed_config, socket_dir
from tests.support.postfix import PostfixInstance
from tests.support.sink import SMTPSink
from tests.support.snippets import milter_main_cf

pytestmark = [pytest.mark.postfix, pytest.mark.e2e, pytest.mark.clamd, pytest.mark.spamd]

HOLD_RULE = "/^Subject:.*please-quarantine/ HOLD kept for review\n"


@dataclass
class Stack:
    postfix: PostfixInstance
    sink: SMTPSink
    milter: MilterProcess
    store: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "mxscan", "quarantine", *args, "-c",
             str(self.milter.config_path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if check:
            assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def listed(self, **filters: str) -> list[dict[str, Any]]:
        args = [a for k, v in filters.items() for a in (f"--{k.replace('_', '-')}", v)]
        return list(json.loads(self.cli("list", "--json", *args).stdout))

    def discarded(self, message: bytes, token: bytes) -> str:
        result = self.postfix.send(message)
        assert result.code == 250, result.text
        assert result.queue_id
        self.postfix.wait_for_log(
            rf"{result.queue_id}: milter-discard: END-OF-MESSAGE .*milter triggers DISCARD action"
        )
        assert not [d for d in self.sink.deliveries if token in d.data]
        return result.queue_id

    def deliveries(self, token: bytes) -> list[Any]:
        return [d for d in self.sink.deliveries if token in d.data]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    for kind in ("postfix", "clamd", "spamd"):
        require_daemon(kind)  # type: ignore[arg-type]
    directory = socket_dir()
    sink = SMTPSink().start()
    store = directory / "quarantine.db"
    config = seed_config(extra_stage={"review": {"plugin": "header-rules", "rules": HOLD_RULE}})
    config["quarantine"] = {"store": f"sqlite:{store}", "release": f"smtp://127.0.0.1:{sink.port}"}
    milter: MilterProcess | None = None
    postfix: PostfixInstance | None = None
    try:
        milter = MilterProcess(config, directory).start()
        postfix = PostfixInstance(
            relay_port=sink.port, main_overrides=milter_main_cf(milter.address)
        )
        postfix.start()
        yield Stack(postfix, sink, milter, store)
    finally:
        if postfix is not None:
            postfix.remove()
        if milter is not None:
            milter.stop()
        sink.stop()
        remove_dir(directory)


def _one(stack: Stack, queue_id: str) -> dict[str, Any]:
    hits = [r for r in stack.listed() if r["queue_id"] == queue_id]
    assert len(hits) == 1, hits
    return hits[0]


def _wait_one(stack: Stack, token: bytes, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hits = stack.deliveries(token)
        if hits:
            time.sleep(0.5)  # a duplicate would arrive right behind it
            hits = stack.deliveries(token)
            assert len(hits) == 1, f"{len(hits)} deliveries"
            return hits[0]
        time.sleep(0.05)
    raise AssertionError(f"{token!r} never reached the sink")


def test_gtube_is_kept_listed_and_released_once(stack: Stack) -> None:
    message = gtube_message().replace(b"<gtube@", b"<gtube-quarantine@")
    token = b"<gtube-quarantine@"
    queue_id = stack.discarded(message, token)
    record = _one(stack, queue_id)
    assert record["action"] == "discard" and record["scanner"] == "spamassassin"
    assert record["score"] == 999.0  # 1000 for GTUBE, -1 ALL_TRUSTED (see the seed e2e)
    assert record["sender"] == "sender@example.org"
    assert record["recipients"] == ["rcpt@example.com"]
    assert record["helo"] == "client.mxscan.test"
    assert record["client_address"] == "127.0.0.1"
    assert record["size"] == len(message)
    assert [r["id"] for r in stack.listed(min_score="500", scanner="spamassassin")].count(
        record["id"]
    ) == 1
    assert record["id"] not in [r["id"] for r in stack.listed(min_score="1000")]
    # The bytes the client sent, exactly (Postfix's own Received: is not shown to milters).
    raw = subprocess.run(
        [sys.executable, "-m", "mxscan", "quarantine", "show", record["id"], "--raw", "-c",
         str(stack.milter.config_path)], capture_output=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert raw == message

    out = stack.cli("release", record["id"]).stdout
    assert f"{record['id']}: released to rcpt@example.com" in out
    delivered = _wait_one(stack, token)
    assert delivered.data == message
    assert delivered.mail_from == "sender@example.org"
    assert delivered.rcpt_tos == ("rcpt@example.com",)

    again = stack.cli("release", record["id"], check=False)
    assert again.returncode == 1
    assert "already released" in again.stderr and "--force" in again.stderr
    time.sleep(0.5)
    assert len(stack.deliveries(token)) == 1
    assert _one(stack, queue_id)["releases"] == 1

    stack.cli("release", record["id"], "--force", "--to", "admin@example.com")
    deadline = time.monotonic() + 20
    while len(stack.deliveries(token)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    second = stack.deliveries(token)[1]
    assert second.rcpt_tos == ("admin@example.com",) and second.data == message
    assert _one(stack, queue_id)["releases"] == 2


def test_eicar_is_kept_with_its_virus_name(stack: Stack) -> None:
    message = eicar_message("base64")
    token = b"<e2e-eicar-quarantine@"
    message = re.sub(rb"Message-ID: <[^>]*>", b"Message-ID: " + token + b"mxscan.test>", message)
    queue_id = stack.discarded(message, token)
    record = _one(stack, queue_id)
    assert record["scanner"] == "clamav" and record["action"] == "discard"
    clamav = next(v for v in record["verdicts"] if v["scanner"] == "clamav")
    assert clamav["findings"] == [EICAR_SIGNATURE]
    assert clamav["status"] == f"infected({EICAR_SIGNATURE})"
    table = stack.cli("list", "--scanner", "clamav").stdout
    row = next(line for line in table.splitlines() if line.startswith(record["id"]))
    assert EICAR_SIGNATURE in row and "discard" in row
    stack.cli("release", record["id"])
    assert _wait_one(stack, token).data == message


def test_quarantine_verdict_is_stored_and_discarded_not_held(stack: Stack) -> None:
    message = (
        b"From: a@example.org\r\nTo: rcpt@example.com\r\nSubject: please-quarantine me\r\n"
        b"Message-ID: <held-1@example.org>\r\n\r\nkeep me for review\r\n"
    )
    queue_id = stack.discarded(message, b"<held-1@")
    assert not stack.postfix.queue(), "the quarantine is mxscan's store, not Postfix's hold"
    record = _one(stack, queue_id)
    assert record["action"] == "quarantine" and record["scanner"] == "review"
    log = stack.milter.wait_for_log(f"{queue_id}: quarantined as {record['id']} ")
    assert f"{queue_id}: quarantined as {record['id']} (quarantine by review)" in log
