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
from collections.abc import Iterator

import dkim
import pytest

from tests.support.daemons import (
    EICAR_SIGNATURE,
    eicar_message,
    gtube_message,
    require_daemon,
)
from tests.support.milter import EXAMPLES, MilterProcess, remove_dir, seed_config, socket_dir
from tests.support.postfix import PostfixInstance
from tests.support.seed import (
    FORGED,
    SCANNER_HEADERS,
    Stack,
    dkim_dns,
    dkim_key,
    ham,
    scanner_headers,
    tricky_ham,
    without_received,
)
from tests.support.sink import SMTPSink, header_fields
from tests.support.snippets import milter_main_cf

pytestmark = [pytest.mark.postfix, pytest.mark.e2e, pytest.mark.clamd, pytest.mark.spamd]


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


@pytest.mark.corpus
@pytest.mark.parametrize("setup", ["seed", "no_outbound"])
def test_dkim_signature_still_verifies_at_the_sink(stack: Stack, setup: str) -> None:
    message = tricky_ham(f"dkim-{setup}", FORGED).replace(
        b"alice@example.org", b"alice@example.com"
    )
    signature = dkim.sign(
        message, b"test", b"example.com", dkim_key()[0],
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id", b"x-folded",
                         b"x-tab", b"x-eight-bit"],
    )  # fmt: skip
    signed = signature + message
    assert dkim.verify(signed, dnsfunc=dkim_dns)
    stack.send(setup, signed)
    data = stack.delivered(f"dkim-{setup}".encode()).data
    assert data != signed  # headers were added and removed on the way ...
    assert dkim.verify(data, dnsfunc=dkim_dns)  # ... and the signature still holds


def test_dkim_check_can_fail(stack: Stack) -> None:
    """Negative control: a body changed after signing does not verify."""
    message = ham("dkim-control").replace(b"alice@example.org", b"alice@example.com")
    signed = dkim.sign(message, b"test", b"example.com", dkim_key()[0]) + message
    assert not dkim.verify(signed.replace(b"noon", b"one"), dnsfunc=dkim_dns)


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
