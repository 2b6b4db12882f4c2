"""rspamd's request headers -> Envelope (sans-I/O)."""

from __future__ import annotations

import pytest

from mxscan.adapters.http.request import BadRequest, parse_scan_request


def test_envelope_from_rspamd_headers() -> None:
    request = parse_scan_request(
        [
            (b"from", b"<alice@example.org>"),
            (b"rcpt", b"<bob@example.net>"),
            (b"rcpt", b"carol@example.com, dave@example.com"),
            (b"ip", b"192.0.2.7"),
            (b"helo", b"mail.example.org"),
            (b"hostname", b"mail.example.org"),
            (b"user", b"alice"),
            (b"queue-id", b"4ABCDEF"),
            (b"pass", b"all"),
            (b"settings-id", b"Example.NET"),
            (b"password", b"s3cret"),
        ]
    )
    env = request.envelope
    assert env.sender == "alice@example.org"
    assert env.recipients == (
        "bob@example.net",
        "carol@example.com",
        "dave@example.com",
    )
    assert env.client_address == "192.0.2.7"
    assert env.helo == "mail.example.org"
    assert env.client_name == "mail.example.org"
    assert env.auth_user == "alice"
    assert env.queue_id == "4ABCDEF"
    assert request.policy == "example.net"
    assert request.password == "s3cret"


def test_no_envelope_headers_is_the_null_sender() -> None:
    request = parse_scan_request([(b"content-length", b"10"), (b"user-agent", b"rspamc")])
    assert request.envelope.sender == ""
    assert request.envelope.recipients == ()
    assert request.policy is None


@pytest.mark.parametrize("value", [b"a\rb", b"a\nb", b"a\0b"])
def test_line_breaks_and_nul_are_refused(value: bytes) -> None:
    with pytest.raises(BadRequest, match="CR, LF or NUL"):
        parse_scan_request([(b"queue-id", value)])


def test_non_utf8_is_refused() -> None:
    with pytest.raises(BadRequest, match="not UTF-8"):
        parse_scan_request([(b"helo", b"\xff\xfe")])


def test_a_single_field_given_twice_is_refused() -> None:
    with pytest.raises(BadRequest, match="given twice"):
        parse_scan_request([(b"from", b"a@example.org"), (b"from", b"b@example.org")])


def test_utf8_addresses_are_kept() -> None:
    request = parse_scan_request([(b"rcpt", "jörg@exämple.de".encode())])
    assert request.envelope.recipients == ("jörg@exämple.de",)
