"""The seed's secondary MX end to end, shared by its milter tests with
spamassassin (tests/adapters/milter/test_milter_seed_e2e.py) and with rspamd
(test_milter_rspamd_e2e.py): the stack of Postfix, ``mxscan milter`` processes
and a sink, the messages they send, and how a delivery is read back."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.utils import formatdate

from tests.support.daemons import corpus_dir
from tests.support.milter import MilterProcess
from tests.support.postfix import PostfixInstance
from tests.support.sink import Delivery, SMTPSink

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


FORGED = (
    b"X-Spam-Flag: YES\r\n"
    b"X-Spam-Status: No, score=-100.0 forged by the sender\r\n"
    b"X-Spam-Level: \r\n"
    b"X-Virus-Status: Clean\r\n"
    b"X-Virus-Scanned: by the sender's imagination\r\n"
)


def dkim_key() -> tuple[bytes, bytes]:
    """dkimpy's test key pair from the corpus: (private key, DNS TXT record)."""
    base = corpus_dir("dkimpy-tests")
    return (base / "test.private").read_bytes(), (base / "test.txt").read_bytes()


def dkim_dns(name: bytes, timeout: int = 5) -> bytes:
    """A resolver for dkim.verify that knows the test key only (no DNS query)."""
    return dkim_key()[1] if name == b"test._domainkey.example.com." else b""
