"""received_header(): this hop's Received: line in Postfix's form, from the envelope.

The plain ESMTP form is checked against the line real Postfix writes in
tests/adapters/milter/test_milter_postfix.py; these cover the other branches.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mxscan import Envelope, Header, received_header

WHEN = datetime(2026, 12, 2, 20, 14, 6, tzinfo=timezone(timedelta(hours=1), "CET"))
BASE = Envelope(
    recipients=("bob@example.net",),
    client_address="192.0.2.7",
    client_name="mail.example.org",
    helo="mail.example.org",
    queue_id="4ABC",
    receiver="mx.example.net",
)


def line(envelope: Envelope) -> str:
    header = received_header(envelope, when=WHEN)
    assert isinstance(header, Header)
    return header.raw.decode()


def test_plain_esmtp() -> None:
    assert line(BASE) == (
        "Received: from mail.example.org (mail.example.org [192.0.2.7])\r\n"
        "\tby mx.example.net (Postfix) with ESMTP id 4ABC\r\n"
        "\tfor <bob@example.net>; Wed,  2 Dec 2026 20:14:06 +0100 (CET)\r\n"
    )


def test_tls_and_auth_give_esmtpsa_and_the_tls_clause() -> None:
    import attrs

    text = line(
        attrs.evolve(
            BASE,
            tls_version="TLSv1.3",
            tls_cipher="TLS_AES_256_GCM_SHA384",
            tls_bits="256",
            auth_type="PLAIN",
        )
    )
    assert "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n" in text
    assert " with ESMTPSA id 4ABC\r\n" in text


def test_ipv6_unknown_name_no_helo_several_recipients() -> None:
    envelope = Envelope(recipients=("a@x.example", "b@x.example"), client_address="2001:db8::1")
    assert line(envelope) == (
        "Received: from unknown (unknown [IPv6:2001:db8::1])\r\n"
        "\tby localhost (Postfix) with ESMTP id NOQUEUE\r\n"
        "\tWed,  2 Dec 2026 20:14:06 +0100 (CET)\r\n"
    )


def test_no_line_without_a_client_or_when_the_message_has_it() -> None:
    import attrs

    assert received_header(Envelope()) is None
    assert received_header(attrs.evolve(BASE, received_in_message=True)) is None


def test_client_chosen_text_cannot_break_the_line() -> None:
    import attrs

    text = line(attrs.evolve(BASE, helo="evil\r\nX-Injected: 1"))
    assert text.count("\r\n") == 3 and "X-Injected: 1" not in text.split("\r\n")[1:]


def test_lf_messages_get_lf_lines() -> None:
    header = received_header(BASE, when=WHEN, eol=b"\n")
    assert header is not None and b"\r" not in header.raw and header.raw.count(b"\n") == 3
