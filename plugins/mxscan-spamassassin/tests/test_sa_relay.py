"""SpamAssassin sees the relay that connected, against a real spamd.

Behind a milter, Postfix keeps its own Received: line from mxscan; the plugin
sends spamd one built from the envelope. These tests run against a spamd of
their own (``tagging_spamd``: trusted_networks 192.0.2.0/24, report_safe 0),
because the shared spamd has no trusted_networks but the implicit 127/8.
"""

from __future__ import annotations

from email.utils import formatdate

from mxscan import Envelope, Message, Verdict
from mxscan_spamassassin import SpamAssassin

# No Received: line at all, as a milter sees a message straight from its client.
# Dated now: a fixed date would add DATE_IN_PAST_* rules as the calendar moves.
PLAIN = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.net>\r\n"
    b"Subject: lunch tomorrow\r\n"
    b"Date: " + formatdate(usegmt=True).encode() + b"\r\n"
    b"Message-ID: <20261202100000.1234@example.com>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n\r\nshall we have lunch tomorrow at noon?\r\n\r\nAlice\r\n"
)


def envelope(client: str) -> Envelope:
    return Envelope(
        sender="alice@example.com",
        recipients=("bob@example.net",),
        client_address=client,
        client_name="unknown",
        helo="mail.example.com",
        queue_id="4ABCD1234",
        receiver="mx.example.net",
    )


def without_spam_fields(data: bytes) -> bytes:
    """The message with the X-Spam-* fields the scan added taken out again."""
    message = Message.from_bytes(data)
    kept = tuple(h for h in message.headers if not h.name.lower().startswith("x-spam-"))
    return Message(headers=kept, body=message.body, separator=message.separator).as_bytes()


async def scan(address: str, env: Envelope | None) -> tuple[Verdict, bytes]:
    message = Message.from_bytes(PLAIN, envelope=env)
    verdict = await SpamAssassin(address=address, timeout=60).scan(message)
    return verdict, message.apply(verdict.edits).as_bytes()


async def test_trusted_client_gets_all_trusted_and_an_outside_one_does_not(
    tagging_spamd: str,
) -> None:
    trusted, trusted_out = await scan(tagging_spamd, envelope("192.0.2.10"))
    outside, outside_out = await scan(tagging_spamd, envelope("198.51.100.7"))
    unknown, _ = await scan(tagging_spamd, None)
    assert "ALL_TRUSTED" in trusted.findings
    assert "ALL_TRUSTED" not in outside.findings
    # Without the line SpamAssassin sees no relay at all (what the issue measured).
    assert "NO_RELAYS" in unknown.findings
    assert "NO_RELAYS" not in trusted.findings and "NO_RELAYS" not in outside.findings
    assert set(trusted.findings) != set(outside.findings)
    # The line went to spamd only: the delivered bytes are the input plus X-Spam-*.
    for out in (trusted_out, outside_out):
        assert not Message.from_bytes(out).get_all("Received")
        assert without_spam_fields(out) == PLAIN


async def test_spamds_report_keeps_its_lines_within_998_bytes(tagging_spamd: str) -> None:
    """report_safe 0: spamd writes X-Spam-Report, one rule a line; mxscan keeps
    those lines instead of joining them into one past RFC 5322's limit."""
    from sa_support import spam_message

    message = Message.from_bytes(spam_message(), envelope=envelope("198.51.100.7"))
    verdict = await SpamAssassin(address=tagging_spamd, timeout=60).scan(message)
    report = next(e.value for e in verdict.edits if e.name == "X-Spam-Report")
    assert report is not None
    rule_lines = [line for line in report.split("\r\n") if line.strip()]
    assert len(rule_lines) >= 2
    assert any("GTUBE" in line for line in rule_lines)
    out = message.apply(verdict.edits).as_bytes()
    assert max(len(line) for line in out.split(b"\r\n")) <= 998
