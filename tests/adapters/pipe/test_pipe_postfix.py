"""Real Postfix 3.7 end to end: ``content_filter = mxscan:dummy`` and a pipe(8)
service running ``mxscan pipe`` (set up from docs/snippets), with the real clamd
and spamd, relaying to an SMTP sink."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.daemons import eicar_message, gtube_message, ham_message, require_daemon
from tests.support.pipe_postfix import (
    SNIPPETS,
    PipePostfix,
    alternate_config_directory,
    mxscan_config,
    mxscan_for_pipe_user,
    snippet_main_cf,
    snippet_master_cf,
    write_mxscan_config,
)
from tests.support.sink import Delivery, SMTPSink, header_fields

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.e2e,
    pytest.mark.clamd,
    pytest.mark.spamd,
]

DEAD_CLAMD = "inet:127.0.0.1:9"  # discard port: nothing listens on loopback


@dataclass
class Setup:
    postfix: PipePostfix
    sink: SMTPSink
    config: Path

    def write_config(self, **kwargs: str) -> None:
        write_mxscan_config(self.config, mxscan_config(**kwargs))


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    for kind in ("postfix", "clamd", "spamd"):
        require_daemon(kind)  # type: ignore[arg-type]
    mxscan = mxscan_for_pipe_user()
    sink = SMTPSink().start()
    try:
        postfix = PipePostfix(relay_port=sink.port, main_overrides=snippet_main_cf())
        config = postfix.dir / "mxscan.toml"
        postfix.master_extra = snippet_master_cf(mxscan, config, postfix.config_dir)
        postfix.config_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(SNIPPETS / "mxscan-hold.regexp", postfix.config_dir)
        result = Setup(postfix, sink, config)
        result.write_config()
        with alternate_config_directory(postfix.config_dir):
            try:
                postfix.start()
                yield result
            finally:
                postfix.remove()
    finally:
        sink.stop()


def unique(message: bytes, tag: str) -> tuple[bytes, bytes]:
    """The message with a unique Message-ID (to find it at the sink), and that id."""
    msgid = f"<{tag}-{uuid.uuid4().hex}@mxscan.test>".encode()
    new, count = re.subn(rb"(?m)^Message-ID: <[^>]*>", b"Message-ID: " + msgid, message)
    assert count == 1
    return new, msgid


def arrived(sink: SMTPSink, msgid: bytes) -> list[Delivery]:
    return [d for d in sink.deliveries if msgid in d.data.split(b"\r\n\r\n", 1)[0]]


def wait_arrived(
    sink: SMTPSink, msgid: bytes, count: int = 1, timeout: float = 60
) -> list[Delivery]:
    deadline = time.monotonic() + timeout
    while True:
        found = arrived(sink, msgid)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{msgid!r}: {len(found)} of {count} arrived"
        time.sleep(0.1)


def wait_filtered(setup: Setup, queue_id: str, rcpt: str, status: str = "sent") -> str:
    """Wait for Postfix's log line of the pipe delivery of queue_id to rcpt."""
    (line,) = setup.postfix.wait_for_log(
        rf"{queue_id}: to=<{re.escape(rcpt)}>, relay=mxscan, .*status={status}", timeout=90
    )[:1]
    return line


def wait_queue_empty(setup: Setup, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while setup.postfix.queue():
        assert time.monotonic() < deadline, f"queue not empty: {setup.postfix.queue()}"
        time.sleep(0.2)


def set_recipient_limit(setup: Setup, limit: str) -> None:
    """mxscan_destination_recipient_limit = ``limit``, and Postfix reloaded."""
    config_dir = str(setup.postfix.config_dir)
    setup.postfix._run(
        "postconf", "-c", config_dir, "-e", f"mxscan_destination_recipient_limit={limit}"
    )
    setup.postfix._run("postfix", "-c", config_dir, "reload")


def test_clean_mail_is_delivered_byte_identical_apart_from_added_headers(setup: Setup) -> None:
    original, msgid = unique(ham_message(recipient="rcpt@example.com"), "ham")
    original = original.replace(
        b"Subject: Lunch tomorrow\r\n", b"Subject: Lunch tomorrow,\r\n\tfolded\r\nX-Tab:\tvalue\r\n"
    )
    sent = setup.postfix.send(original, recipients=["rcpt@example.com"])
    assert sent.code == 250 and sent.queue_id
    wait_filtered(setup, sent.queue_id, "rcpt@example.com")
    (delivery,) = wait_arrived(setup.sink, msgid)
    assert delivery.rcpt_tos == ("rcpt@example.com",)
    assert delivery.mail_from == "sender@example.org"
    head, _, body = delivery.data.partition(b"\r\n\r\n")
    orig_head, _, orig_body = original.partition(b"\r\n\r\n")
    assert body == orig_body
    got = [f for f in header_fields(head) if not f.startswith(b"Received:")]
    want = header_fields(orig_head)
    assert got[: len(want)] == want, got
    added = got[len(want) :]
    assert all(f.startswith(b"X-") for f in added), added


def test_gtube_and_eicar_are_discarded(setup: Setup) -> None:
    gtube, gtube_id = unique(gtube_message(), "gtube")
    eicar, eicar_id = unique(eicar_message(), "eicar")
    clean, clean_id = unique(ham_message(), "after")
    queued = []
    for message in (gtube, eicar):
        sent = setup.postfix.send(message, recipients=["rcpt@example.com"])
        assert sent.code == 250 and sent.queue_id
        queued.append(sent.queue_id)
    for queue_id in queued:
        wait_filtered(setup, queue_id, "rcpt@example.com")
    # Anything re-injected is in the maildrop before mxscan exits; a later clean
    # message arriving and an empty queue mean nothing else is on its way.
    setup.postfix.send(clean, recipients=["rcpt@example.com"])
    wait_arrived(setup.sink, clean_id)
    wait_queue_empty(setup)
    assert arrived(setup.sink, gtube_id) == []
    assert arrived(setup.sink, eicar_id) == []


@pytest.mark.parametrize("limit", ["snippet", "50"], ids=["one-rcpt-per-run", "split-in-one-run"])
def test_two_recipients_of_one_message_get_their_own_domain_policy(
    setup: Setup, limit: str
) -> None:
    """example.jp is lenient (spam tagged, not discarded); example.com discards GTUBE.
    With the snippet's recipient limit of 1 each recipient has its own run; with
    several per run, mxscan splits them by policy itself."""
    if limit != "snippet":
        set_recipient_limit(setup, limit)
    try:
        gtube, msgid = unique(gtube_message(), "policy")
        rcpts = ["rcpt@example.com", "rcpt@example.jp"]
        sent = setup.postfix.send(gtube, recipients=rcpts)
        assert sent.code == 250 and sent.queue_id
        for rcpt in rcpts:
            wait_filtered(setup, sent.queue_id, rcpt)
        (delivery,) = wait_arrived(setup.sink, msgid)
        wait_queue_empty(setup)
        assert arrived(setup.sink, msgid) == [delivery]
        assert delivery.rcpt_tos == ("rcpt@example.jp",)
        assert b"GTUBE" in delivery.data
    finally:
        if limit != "snippet":
            set_recipient_limit(setup, "1")


def test_quarantine_goes_to_the_hold_queue_and_is_released_intact(setup: Setup) -> None:
    message, msgid = unique(ham_message(), "hold")
    message = message.replace(b"Subject: Lunch tomorrow", b"Subject: mxscan-hold-test")
    sent = setup.postfix.send(message, recipients=["rcpt@example.com"])
    assert sent.queue_id
    wait_filtered(setup, sent.queue_id, "rcpt@example.com")
    setup.postfix.wait_for_log(r": hold: header X-Mxscan-Hold: " + re.escape(sent.queue_id))
    held = [q for q in setup.postfix.queue() if q.queue_name == "hold"]
    assert [q.recipients for q in held] == [("rcpt@example.com",)]
    assert arrived(setup.sink, msgid) == []
    setup.postfix._run("postsuper", "-c", str(setup.postfix.config_dir), "-H", held[0].queue_id)
    setup.postfix.flush()
    (delivery,) = wait_arrived(setup.sink, msgid)
    assert b"\r\nX-Mxscan-Hold: " + sent.queue_id.encode() in delivery.data
    assert delivery.data.endswith(message.partition(b"\r\n\r\n")[2])


def test_reject_bounces_to_the_sender_with_the_5_7_1_text(setup: Setup) -> None:
    message, msgid = unique(ham_message(), "reject")
    message = message.replace(b"Subject: Lunch tomorrow", b"Subject: mxscan-reject-test")
    sent = setup.postfix.send(
        message, sender="bounce-me@example.org", recipients=["rcpt@example.com"]
    )
    assert sent.queue_id
    line = wait_filtered(setup, sent.queue_id, "rcpt@example.com", status="bounced")
    assert "dsn=5.7.1" in line and "(rejected by the pipe test)" in line
    deadline = time.monotonic() + 60
    while not [d for d in setup.sink.deliveries if d.rcpt_tos == ("bounce-me@example.org",)]:
        assert time.monotonic() < deadline, "no bounce reached the sender"
        time.sleep(0.2)
    (bounce,) = [d for d in setup.sink.deliveries if d.rcpt_tos == ("bounce-me@example.org",)]
    assert bounce.mail_from in ("", "<>")  # the null sender
    assert b"rejected by the pipe test" in bounce.data
    assert arrived(setup.sink, msgid) == []


def test_clamd_down_defers_and_nothing_is_lost_when_it_is_back(setup: Setup) -> None:
    setup.write_config(clamd=DEAD_CLAMD)
    try:
        message, msgid = unique(ham_message(), "deferred")
        sent = setup.postfix.send(message, recipients=["rcpt@example.com", "rcpt@example.net"])
        assert sent.queue_id
        for rcpt in ("rcpt@example.com", "rcpt@example.net"):
            line = wait_filtered(setup, sent.queue_id, rcpt, status="deferred")
            assert "dsn=4.7.1" in line, line
        time.sleep(3)  # several retries (backoff is 1-2 s here): still deferred
        (entry,) = [q for q in setup.postfix.queue() if q.queue_id == sent.queue_id]
        assert entry.queue_name in ("deferred", "active", "incoming")
        assert sorted(entry.recipients) == ["rcpt@example.com", "rcpt@example.net"]
        assert arrived(setup.sink, msgid) == []
    finally:
        setup.write_config()
    setup.postfix.flush()
    deliveries = wait_arrived(setup.sink, msgid, count=2, timeout=90)
    wait_queue_empty(setup)
    assert sorted(r for d in arrived(setup.sink, msgid) for r in d.rcpt_tos) == [
        "rcpt@example.com",
        "rcpt@example.net",
    ]
    assert len(deliveries) == 2


def test_null_sender_mail_is_reinjected_with_the_null_sender(setup: Setup) -> None:
    message, msgid = unique(ham_message(), "null-sender")
    sent = setup.postfix.send(message, sender="", recipients=["rcpt@example.com"])
    assert sent.queue_id
    wait_filtered(setup, sent.queue_id, "rcpt@example.com")
    (delivery,) = wait_arrived(setup.sink, msgid)
    assert delivery.mail_from in ("", "<>")


def test_a_forged_hold_header_neither_holds_nor_survives(setup: Setup) -> None:
    message, msgid = unique(ham_message(), "forged-hold")
    message = b"X-Mxscan-Hold: forged by the sender\r\n" + message
    sent = setup.postfix.send(message, recipients=["rcpt@example.com"])
    assert sent.queue_id
    wait_filtered(setup, sent.queue_id, "rcpt@example.com")
    (delivery,) = wait_arrived(setup.sink, msgid)
    assert b"X-Mxscan-Hold" not in delivery.data
    assert not [q for q in setup.postfix.queue() if q.queue_name == "hold"]
