"""Real Postfix end to end: content_filter = mxscan:[127.0.0.1]:PORT (the lines of
docs/snippets/smtp-*.cf), `mxscan smtp`/`mxscan lmtp` with the private clamd and
spamd, the re-injection smtpd, an SMTP sink."""

from __future__ import annotations

import re
import smtplib
import time

import dkim
import pytest
from smtp_stack import DSN_DOMAIN, Stack

from tests.support.daemons import corpus_dir, eicar_message, gtube_message, ham_message
from tests.support.sink import Delivery, header_fields

pytestmark = [pytest.mark.postfix, pytest.mark.e2e, pytest.mark.clamd, pytest.mark.spamd]

ORIGINAL = (
    b"Date: Thu, 01 Feb 2024 10:00:00 +0000\r\n"
    b"From: Sender <sender@example.org>\r\n"
    b"To: rcpt@example.com\r\n"
    b"Message-ID: <smtp-e2e-1@example.org>\r\n"
    b"Subject:   three spaces, then a fold\r\n"
    b"\tsecond line of the subject\r\n"
    b"X-Eight-Bit: caf\xc3\xa9 \xff raw\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Body line one, caf\xc3\xa9\r\n"
    b"  indented line, trailing spaces   \r\n"
    b".leading dot\r\n..two dots\r\n.\r\n" + b"x" * 998 + b"\r\nlast line\r\n"
)


def delivered(stack: Stack, token: bytes, count: int = 1, timeout: float = 60) -> list[Delivery]:
    """The deliveries holding ``token``: exactly ``count`` of them (waits, then
    checks no duplicate arrives right behind)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hits = [d for d in stack.sink.deliveries if token in d.data]
        if len(hits) >= count:
            time.sleep(1.0)
            hits = [d for d in stack.sink.deliveries if token in d.data]
            assert len(hits) == count, f"{len(hits)} deliveries of {token!r}"
            return hits
        time.sleep(0.05)
    raise AssertionError(
        f"{token!r}: {len([d for d in stack.sink.deliveries if token in d.data])} of {count} "
        f"deliveries; postfix log:\n{stack.postfix.log_tail(40)}\nsmtp:\n{stack.smtp.log()[-3000:]}"
    )


def strip_postfix_received(data: bytes, count: int) -> tuple[list[bytes], bytes]:
    """(Postfix's own first ``count`` Received: fields, the rest of the message)."""
    fields: list[bytes] = []
    rest = data
    for _ in range(count):
        head, _, _ = rest.partition(b"\r\n\r\n")
        first = header_fields(head)[0]
        assert first.startswith(b"Received: "), first
        fields.append(first)
        rest = rest[len(first) + 2 :]
    return fields, rest


def test_clean_mail_is_byte_identical_and_the_client_is_forwarded(stack: Stack) -> None:
    message = ORIGINAL.replace(b"smtp-e2e-1", b"clean-smtp")
    result = stack.postfix.send(message)
    assert result.code == 250, result.text
    (got,) = delivered(stack, b"clean-smtp")
    (_, original), rest = strip_postfix_received(got.data, 2)
    kept = [
        f
        for f in header_fields(rest.partition(b"\r\n\r\n")[0])
        if not f.startswith((b"X-Spam-", b"X-Virus-"))
    ]
    assert b"\r\n".join(kept) + b"\r\n\r\n" + rest.partition(b"\r\n\r\n")[2] == message
    assert (got.mail_from, got.rcpt_tos) == ("sender@example.org", ("rcpt@example.com",))
    assert b"client.mxscan.test" in original
    # XFORWARD: the re-injection smtpd logs the original client and queue id (its
    # Received: line always names the connection, here mxscan's).
    stack.postfix.wait_for_log(
        rf"client=unknown\[127\.0\.0\.1\], orig_queue_id={result.queue_id}, "
        rf"orig_client=unknown\[127\.0\.0\.1\]"
    )
    # ... and mxscan's envelope had Postfix's queue id (XFORWARD IDENT) for its log line.
    line = stack.smtp.wait_for(f"{result.queue_id}: ")
    assert "action=accept" in line, line
    stack.postfix.wait_for_log(
        rf"{result.queue_id}: .*relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.*status=sent \(250 "
    )


@pytest.mark.corpus
def test_dkim_signature_still_verifies(stack: Stack) -> None:
    base = corpus_dir("dkimpy-tests")
    private, public = (base / "test.private").read_bytes(), (base / "test.txt").read_bytes()
    raw = ORIGINAL.replace(b"smtp-e2e-1", b"dkim-smtp")
    signed = dkim.sign(raw, b"test", b"example.com", private,
                       include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])  # fmt: skip
    signed += raw

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return public if name == b"test._domainkey.example.com." else b""

    assert stack.postfix.send(signed).code == 250
    (got,) = delivered(stack, b"dkim-smtp")
    assert dkim.verify(got.data, dnsfunc=dns)


@pytest.mark.parametrize("kind", ["gtube", "eicar"])
def test_spam_and_virus_are_discarded(stack: Stack, kind: str) -> None:
    message = gtube_message() if kind == "gtube" else eicar_message()
    token = f"discard-{kind}".encode()
    message = message.replace(b"Subject: ", b"X-Token: " + token + b"\r\nSubject: ", 1)
    result = stack.postfix.send(message)
    assert result.code == 250, result.text
    line = stack.smtp.wait_for(f"{result.queue_id}: ")
    assert "action=discard" in line, line
    stack.postfix.wait_for_log(
        rf"{result.queue_id}: .*status=sent \(250 2\.0\.0 Ok: discarded by mxscan\)"
    )
    marker = f"after-{kind}".encode()
    assert stack.postfix.send(ham_message().replace(b"Lunch", marker)).code == 250
    delivered(stack, marker)
    assert not [d for d in stack.sink.deliveries if token in d.data]


def test_forged_scanner_headers_are_stripped(stack: Stack) -> None:
    forged = ham_message().replace(
        b"Subject: ",
        b"X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=-100.0 forged\r\nX-Token: forged-smtp\r\nSubject: ",
        1,
    )
    assert stack.postfix.send(forged).code == 250
    (got,) = delivered(stack, b"forged-smtp")
    assert b"forged\r\n" not in got.data and b"X-Spam-Flag: YES" not in got.data


def test_lmtp_mixed_policies_get_their_own_outcome(stack: Stack) -> None:
    """GTUBE to example.com (discard at 15) and example.jp (discard only at 2000),
    in one LMTP delivery: the first recipient's copy is discarded, the second's
    delivered, tagged as spam, to that recipient only."""
    message = gtube_message().replace(b"Subject: ", b"X-Token: lmtp-mixed\r\nSubject: ", 1)
    result = stack.postfix.send(
        message, recipients=("one@example.com", "two@example.jp"), port=stack.lmtp_port
    )
    assert result.code == 250, result.text
    (got,) = delivered(stack, b"lmtp-mixed")
    assert got.rcpt_tos == ("two@example.jp",)
    assert b"X-Spam-Flag: YES" in got.data
    qid = result.queue_id
    stack.postfix.wait_for_log(
        rf"{qid}: to=<one@example.com>.*status=sent \(250 2\.0\.0 Ok: discarded by mxscan\)"
    )
    stack.postfix.wait_for_log(rf"{qid}: to=<two@example.jp>.*status=sent \(250 ")
    # One log line per policy group, as Postfix logs one line per delivery.
    assert "action=discard" in stack.lmtp.wait_for(f"{qid}: policy=default ")
    jp = stack.lmtp.wait_for(f"{qid}: policy=example.jp ")
    assert "action=accept" in jp and "next=250" in jp, jp


def test_smtp_mixed_policies_are_split_at_rcpt(stack: Stack) -> None:
    """SMTP has one reply after DATA: the second policy's recipient is deferred
    with 452 4.5.3 and Postfix delivers it in a second transaction."""
    message = ham_message().replace(b"Lunch", b"smtp-split")
    result = stack.postfix.send(message, recipients=("one@example.com", "two@example.jp"))
    assert result.code == 250
    hits = delivered(stack, b"smtp-split", count=2)
    assert sorted(d.rcpt_tos for d in hits) == [("one@example.com",), ("two@example.jp",)]
    stack.postfix.wait_for_log(rf"{result.queue_id}: to=<two@example.jp>.*status=deferred.*4\.5\.3")


def test_size_limit_is_552_at_mail(stack: Stack) -> None:
    """A message over --max-size is refused at MAIL SIZE=: Postfix bounces it."""
    with smtplib.SMTP("127.0.0.1", stack.smtp.port, local_hostname="localhost", timeout=10) as c:
        c.ehlo("localhost")
        assert "size" in c.esmtp_features
        code, text = c.mail("a@example.org", ["SIZE=999999999"])
    assert code == 552 and text.startswith(b"5.3.4"), text


def test_no_spaces_in_xforward_idents_fake_queue_ids(stack: Stack) -> None:
    """Postfix's queue id from XFORWARD IDENT names the message in mxscan's log."""
    result = stack.postfix.send(ham_message().replace(b"Lunch", b"ident-check"))
    delivered(stack, b"ident-check")
    assert re.fullmatch(r"[0-9A-Za-z]+", result.queue_id or "")
    assert f"{result.queue_id}: " in stack.smtp.wait_for(f"{result.queue_id}: ")


def test_postfix_knows_every_snippet_setting(stack: Stack) -> None:
    """A misspelt (or per-transport, for a transport that does not exist) parameter
    is silently ignored by Postfix; postconf names it."""
    import subprocess

    done = subprocess.run(
        ["postconf", "-c", str(stack.postfix.config_dir), "-n"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "unused parameter" not in done.stderr, done.stderr
    assert "mxscan_initial_destination_concurrency = 10" in done.stdout
    assert "mxscan-lmtp_initial_destination_concurrency = 10" in done.stdout


def _send_with_rcpt_dsn(port: int, message: bytes) -> None:
    """As _send_with_dsn, with a different NOTIFY/ORCPT per recipient (smtplib
    gives every recipient the same options, so RCPT is spoken by hand)."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.mxscan.test", timeout=60) as c:
        c.ehlo("client.mxscan.test")
        assert c.has_extn("dsn")
        code, text = c.mail(
            "sender@example.org", ["BODY=8BITMIME", "SMTPUTF8", "RET=HDRS", "ENVID=Env+2BId-Case.7"]
        )
        assert code == 250, text
        code, text = c.rcpt(
            f"one@{DSN_DOMAIN}", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Orig+2BUser@Example.NET"]
        )
        assert code == 250, text
        code, text = c.rcpt(f"two@{DSN_DOMAIN}", ["NOTIFY=NEVER"])
        assert code == 250, text
        code, text = c.data(message)
        assert code == 250, text


@pytest.mark.parametrize("path", ["smtp", "lmtp"])
def test_dsn_parameters_reach_the_next_hop_as_without_the_filter(stack: Stack, path: str) -> None:
    """The same submission through Postfix with no content_filter and through
    mxscan: the sink (which announces DSN) sees the same RET/ENVID/NOTIFY/ORCPT,
    BODY and SMTPUTF8. The no-filter run is the expectation: what Postfix's own
    smtp client passes on, not a hand-written list."""
    base = ORIGINAL.replace(b"\xff", b"\xc3\xbf")  # SMTPUTF8 mail: UTF-8 header text
    port = stack.postfix.smtp_port if path == "smtp" else stack.lmtp_port
    got = {}
    for name, to in (("plain", stack.plain_port), ("filter", port)):
        token = f"dsn-{path}-{name}".encode()
        _send_with_rcpt_dsn(to, base.replace(b"smtp-e2e-1", token))
        got[name] = stack.dsn_sink.wait_for(token)
    plain, filtered = got["plain"], got["filter"]
    # The reference run did carry every parameter (else the comparison proves nothing).
    assert plain.params("RET") and plain.params("ENVID"), plain
    assert all(any(p.upper().startswith("NOTIFY=") for p in ps) for _, ps in plain.rcpts), plain
    assert sorted(filtered.dsn()[1]) == sorted(plain.dsn()[1])
    assert filtered.dsn()[0] == plain.dsn()[0]
    without_size = [p for p in filtered.mail_params if not p.upper().startswith("SIZE=")]
    assert without_size == [p for p in plain.mail_params if not p.upper().startswith("SIZE=")]
    log = stack.smtp if path == "smtp" else stack.lmtp
    assert "dsn=dropped" not in log.log()
