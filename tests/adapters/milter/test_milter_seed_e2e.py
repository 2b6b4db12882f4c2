"""The seed's secondary MX end to end: SMTP -> private Postfix 3.7 -> `mxscan milter`
(examples/mxscan.toml with the real clamd and spamd) -> aiosmtpd sink.

One Postfix serves three smtpd listeners, each with its own `mxscan milter` process:

* ``seed``: examples/mxscan.toml as shipped (inbound strip, clamav + spamassassin,
  the seed's header_checks file after the scanners);
* ``seed_tagged``: the same with spamd's headers added to every message (no
  ``tag_score``), so the outbound rules really have X-Spam-* headers to strip;
* ``no_outbound``: without the outbound stage, headers also on ham, so every
  scanner header reaches the recipient, and must do so exactly once.

These are the outcomes the classic stack (milter-manager, clamav-milter,
spamass-milter, header_checks; docs/migration.md) gets wrong.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate

import dkim
import pytest

from tests.support.daemons import (
    EICAR_SIGNATURE,
    corpus_dir,
    eicar_message,
    gtube_message,
    require_daemon,
)
from tests.support.milter import EXAMPLES, MilterProcess, remove_dir, seed_config, socket_dir
from tests.support.postfix import PostfixInstance
from tests.support.sink import Delivery, SMTPSink, header_fields
from tests.support.snippets import milter_main_cf

pytestmark = [pytest.mark.postfix, pytest.mark.e2e, pytest.mark.clamd, pytest.mark.spamd]

SCANNER_HEADERS = (
    "X-Virus-Scanned",
    "X-Virus-Status",
    "X-Spam-Checker-Version",
    "X-Spam-Level",
    "X-Spam-Status",
)


@dataclass
class Stack:
    postfix: PostfixInstance
    sink: SMTPSink
    milters: dict[str, MilterProcess]
    ports: dict[str, int]

    def send(self, setup: str, message: bytes) -> str:
        """Send over SMTP to the listener of ``setup``; return Postfix's queue id."""
        result = self.postfix.send(message, port=self.ports[setup])
        assert result.code == 250, result.text
        assert result.queue_id
        return result.queue_id

    def delivered(self, token: bytes, timeout: float = 30) -> Delivery:
        """The one delivery whose bytes contain ``token`` (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [d for d in self.sink.deliveries if token in d.data]
            if hits:
                time.sleep(0.3)  # a duplicate would arrive right behind it
                hits = [d for d in self.sink.deliveries if token in d.data]
                assert len(hits) == 1, f"{len(hits)} deliveries of {token!r}"
                return hits[0]
            time.sleep(0.05)
        raise AssertionError(f"{token!r} never reached the sink; log:\n{self.postfix.log_tail()}")

    def log_line(self, setup: str, queue_id: str) -> str:
        """mxscan's one log line for the message Postfix queued as ``queue_id``."""
        log = self.milters[setup].wait_for_log(f"{queue_id}: ")
        return next(x for x in log.splitlines() if f"{queue_id}: " in x)

    def assert_discarded(self, setup: str, queue_id: str, token: bytes, status: str) -> None:
        """Postfix itself dropped it on mxscan's word, and nothing reached the sink."""
        self.postfix.wait_for_log(
            rf"{queue_id}: milter-discard: END-OF-MESSAGE .*milter triggers DISCARD action"
        )
        line = self.log_line(setup, queue_id)
        assert status in line and " action=discard" in line, line
        # Postfix never queued it, so there is no later delivery to wait for; a clean
        # message sent afterwards on the same path arrives while this one does not.
        marker = f"after-{queue_id}".encode()
        self.send(setup, ham(marker.decode()))
        self.delivered(marker)
        assert not [d for d in self.sink.deliveries if token in d.data]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    for kind in ("postfix", "clamd", "spamd"):
        require_daemon(kind)  # type: ignore[arg-type]
    configs = {
        "seed": seed_config(),
        "seed_tagged": seed_config(tag_always=True),
        "no_outbound": seed_config(outbound=False, tag_always=True),
    }
    directory = socket_dir()
    sink = SMTPSink().start()
    milters: dict[str, MilterProcess] = {}
    postfix: PostfixInstance | None = None
    try:
        for name, config in configs.items():
            milters[name] = MilterProcess(config, directory, name=name).start()
        postfix = PostfixInstance(
            relay_port=sink.port, main_overrides=milter_main_cf(milters["seed"].address)
        )
        ports = {"seed": postfix.smtp_port}
        for name in ("seed_tagged", "no_outbound"):
            ports[name] = postfix.add_smtpd_listener({"smtpd_milters": milters[name].address})
        postfix.start()
        yield Stack(postfix, sink, milters, ports)
    finally:
        if postfix is not None:
            postfix.remove()
        for milter in milters.values():
            milter.stop()
        sink.stop()
        remove_dir(directory)


_counter = iter(range(1_000_000))


def ham(token: str, extra_headers: bytes = b"") -> bytes:
    """An ordinary message spamd scores as ham; ``token`` in Subject and Message-ID."""
    return (
        b"From: Alice <alice@example.org>\r\n"
        b"To: Bob <rcpt@example.com>\r\n"
        + f"Subject: Lunch {token}\r\n".encode()
        + extra_headers
        + f"Date: {formatdate()}\r\n".encode()
        + f"Message-ID: <{token}.{next(_counter)}@example.org>\r\n".encode()
        + b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n"
        b"Hi Bob,\r\n\r\nShall we meet for lunch at noon tomorrow, as usual?\r\n\r\nAlice\r\n"
    )


def without_received(data: bytes) -> bytes:
    """The delivered bytes minus Postfix's own Received: header (first field, folded)."""
    assert data.startswith(b"Received: ")
    match = re.match(rb"Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", data)
    assert match
    return data[match.end() :]


def header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[0].decode()
        for line in head.split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t")
    ]


def scanner_headers(data: bytes) -> list[str]:
    return [n for n in header_names(data) if n.lower().startswith(("x-spam-", "x-virus-"))]


# ---------------------------------------------------------------- discards


@pytest.mark.parametrize("setup", ["seed", "no_outbound"])
def test_gtube_is_discarded(stack: Stack, setup: str) -> None:
    message = gtube_message().replace(b"<gtube@", f"<gtube-{setup}@".encode())
    queue_id = stack.send(setup, message)
    # 1000 for GTUBE, -1 for ALL_TRUSTED: spamd sees the loopback client (issue 21).
    stack.assert_discarded(setup, queue_id, f"gtube-{setup}@".encode(), "spamassassin=spam(999.0)")


@pytest.mark.parametrize("wrapping", ["base64", "zip"])
def test_eicar_attachment_is_discarded(stack: Stack, wrapping: str) -> None:
    message = eicar_message(wrapping)  # type: ignore[arg-type]
    token = f"<e2e-eicar-{wrapping}@".encode()
    message = re.sub(rb"Message-ID: <[^>]*>", b"Message-ID: " + token + b"mxscan.test>", message)
    queue_id = stack.send("seed", message)
    stack.assert_discarded("seed", queue_id, token, f"clamav=infected({EICAR_SIGNATURE})")


def test_null_from_header_is_discarded_by_the_seed_rule(stack: Stack) -> None:
    message = ham("null-from").replace(b"From: Alice <alice@example.org>", b"From: <>")
    queue_id = stack.send("seed", message)
    stack.assert_discarded(
        "seed", queue_id, b"Lunch null-from", "outbound=discard(" + str(EXAMPLES / "header_checks")
    )
    # Without the outbound stage nothing discards it: the seed's own rule did it.
    message = ham("null-from-kept").replace(b"From: Alice <alice@example.org>", b"From: <>")
    stack.send("no_outbound", message)
    assert b"\r\nFrom: <>\r\n" in stack.delivered(b"Lunch null-from-kept").data


# ---------------------------------------------------------------- clean mail, headers


TRICKY_HEADERS = (
    b"X-Folded: first part\r\n"
    b"\tsecond part after a tab\r\n"
    b"    third part after spaces\r\n"
    b"X-Tab:\tvalue after a tab\r\n"
    b"X-Spaces:    three spaces\r\n"
    b"X-Empty:\r\n"
    b"X-Eight-Bit: caf\xc3\xa9 r\xc3\xa9sum\xc3\xa9\r\n"
)
TRICKY_BODY = (
    b"Body line one\r\n"
    b"  indented line, trailing spaces   \r\n"
    b"\r\n"
    b".a line with a leading dot\r\n"
    b"..and two\r\n" + b"long " * 190 + b"\r\n"
    b"\tlast line, tab first\r\n"
)


def tricky_ham(token: str, extra_headers: bytes = b"") -> bytes:
    head, _ = ham(token, TRICKY_HEADERS + extra_headers).split(b"\r\n\r\n", 1)
    return head + b"\r\n\r\n" + TRICKY_BODY


@pytest.mark.parametrize("setup", ["seed", "seed_tagged"])
def test_clean_mail_leaves_byte_identical_without_scanner_headers(stack: Stack, setup: str) -> None:
    """The seed's intent: the outbound IGNORE rules strip what the scanners added."""
    message = tricky_ham(f"clean-{setup}")
    queue_id = stack.send(setup, message)
    data = stack.delivered(f"clean-{setup}".encode()).data
    assert without_received(data) == message
    line = stack.log_line(setup, queue_id)
    assert "clamav=clean" in line and "spamassassin=ham(" in line, line
    assert " action=accept" in line, line
    # The outbound rules removed the scanners' headers: clamd's two, plus spamd's
    # three when it tags ham too.
    assert f"outbound=edited({ {'seed': 2, 'seed_tagged': 5}[setup] })" in line, line


def test_without_outbound_rules_each_scanner_header_appears_once(stack: Stack) -> None:
    message = tricky_ham("clean-no-outbound")
    stack.send("no_outbound", message)
    data = without_received(stack.delivered(b"clean-no-outbound").data)
    head, body = message.split(b"\r\n\r\n", 1)
    got_head, got_body = data.split(b"\r\n\r\n", 1)
    assert got_body == body
    assert got_head.startswith(head + b"\r\n")  # originals untouched, additions after
    assert sorted(scanner_headers(data)) == sorted(SCANNER_HEADERS)
    assert b"\r\nX-Virus-Status: Clean\r\n" in data
    assert re.search(rb"\r\nX-Spam-Status: No, score=-?\d+\.\d required=5\.0", data)


FORGED = (
    b"X-Spam-Flag: YES\r\n"
    b"X-Spam-Status: No, score=-100.0 forged by the sender\r\n"
    b"X-Spam-Level: \r\n"
    b"X-Virus-Status: Clean\r\n"
    b"X-Virus-Scanned: by the sender's imagination\r\n"
)


def test_forged_spam_flag_is_stripped_and_the_mail_delivered(stack: Stack) -> None:
    """In the classic stack a sender's own `X-Spam-Flag: YES` gets their mail dropped."""
    message = tricky_ham("forged-seed", FORGED)
    stack.send("seed", message)
    data = without_received(stack.delivered(b"forged-seed").data)
    assert data == message.replace(FORGED, b"")  # every other byte as sent
    assert scanner_headers(data) == []


def test_forged_headers_replaced_by_the_scanners_own(stack: Stack) -> None:
    message = tricky_ham("forged-no-outbound", FORGED)
    stack.send("no_outbound", message)
    data = without_received(stack.delivered(b"forged-no-outbound").data)
    assert b"forged by the sender" not in data and b"imagination" not in data
    assert b"X-Spam-Flag" not in data
    assert sorted(scanner_headers(data)) == sorted(SCANNER_HEADERS)
    head, body = message.replace(FORGED, b"").split(b"\r\n\r\n", 1)
    assert data.startswith(head + b"\r\n") and data.endswith(b"\r\n\r\n" + body)


# ---------------------------------------------------------------- DKIM


def _dkim_key() -> tuple[bytes, bytes]:
    base = corpus_dir("dkimpy-tests")
    return (base / "test.private").read_bytes(), (base / "test.txt").read_bytes()


def _dns(name: bytes, timeout: int = 5) -> bytes:
    return _dkim_key()[1] if name == b"test._domainkey.example.com." else b""


@pytest.mark.corpus
@pytest.mark.parametrize("setup", ["seed", "no_outbound"])
def test_dkim_signature_still_verifies_at_the_sink(stack: Stack, setup: str) -> None:
    message = tricky_ham(f"dkim-{setup}", FORGED).replace(
        b"alice@example.org", b"alice@example.com"
    )
    signature = dkim.sign(
        message, b"test", b"example.com", _dkim_key()[0],
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id", b"x-folded",
                         b"x-tab", b"x-eight-bit"],
    )  # fmt: skip
    signed = signature + message
    assert dkim.verify(signed, dnsfunc=_dns)
    stack.send(setup, signed)
    data = stack.delivered(f"dkim-{setup}".encode()).data
    assert data != signed  # headers were added and removed on the way ...
    assert dkim.verify(data, dnsfunc=_dns)  # ... and the signature still holds


def test_dkim_check_can_fail(stack: Stack) -> None:
    """Negative control: a body changed after signing does not verify."""
    message = ham("dkim-control").replace(b"alice@example.org", b"alice@example.com")
    signed = dkim.sign(message, b"test", b"example.com", _dkim_key()[0]) + message
    assert not dkim.verify(signed.replace(b"noon", b"one"), dnsfunc=_dns)


def test_spamd_sees_the_client_that_connected_and_the_message_is_unchanged(
    stack: Stack,
) -> None:
    """Issue 21's measurement: behind the milter spamd got no relay at all
    (NO_RELAYS) while spamass-milter's copy gave ALL_TRUSTED for a loopback
    client. Now spamd gets this hop's Received: line (127.0.0.1 is always in
    trusted_networks), and only spamd: the delivered bytes are the message,
    Postfix's own Received: line and the scanner headers."""
    message = ham("relay-seen")
    stack.send("no_outbound", message)
    data = stack.delivered(b"Lunch relay-seen").data
    status = re.search(rb"X-Spam-Status: ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", data)
    assert status, data[:600]
    tests = status[1].replace(b"\r\n", b"").replace(b"\t", b"")
    assert b"ALL_TRUSTED" in tests and b"NO_RELAYS" not in tests, tests
    rest = without_received(data)
    assert not rest.startswith(b"Received:")  # no second line for this hop
    head, _, body = message.partition(b"\r\n\r\n")
    delivered_head, _, delivered_body = rest.partition(b"\r\n\r\n")
    assert delivered_body == body
    fields = header_fields(delivered_head)
    kept = [f for f in fields if not f.startswith((b"X-Spam-", b"X-Virus-"))]
    assert kept == header_fields(head)
