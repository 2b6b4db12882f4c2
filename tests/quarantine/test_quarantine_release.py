"""Re-injection without a network: the SMTP DATA encoding and the sendmail argv."""

from __future__ import annotations

import pytest

from mxscan.quarantine.release import ReleaseError, deliver, sendmail_argv, smtp_data


def data(*chunks: bytes) -> bytes:
    return b"".join(smtp_data(chunks))


def test_dot_stuffing_and_the_end_marker() -> None:
    assert data(b"a\r\n.b\r\n..c\r\n") == b"a\r\n..b\r\n...c\r\n.\r\n"
    assert data(b".first\r\n") == b"..first\r\n.\r\n"
    assert data(b"no newline") == b"no newline\r\n.\r\n"
    assert data() == b".\r\n"


def test_lines_split_across_chunks() -> None:
    whole = b"one\r\n.two\r\nthree\r\n.\r\n"
    expected = data(whole)
    for cut in range(1, len(whole)):
        assert data(whole[:cut], whole[cut:]) == expected, cut


def test_bare_lf_becomes_crlf_and_bare_cr_is_data() -> None:
    assert data(b"a\nb\r\n.c\n") == b"a\r\nb\r\n..c\r\n.\r\n"
    assert data(b"a\rb\r\n") == b"a\rb\r\n.\r\n"
    assert data(b"a\r", b"\n.b\r\n") == b"a\r\n..b\r\n.\r\n"


def test_sendmail_argv_ends_options_before_recipients() -> None:
    assert sendmail_argv("/usr/sbin/sendmail", "", ["-oi@example.com"]) == [
        "/usr/sbin/sendmail", "-G", "-i", "-f", "", "--", "-oi@example.com",
    ]  # fmt: skip
    with pytest.raises(ReleaseError, match="no recipients"):
        sendmail_argv("/usr/sbin/sendmail", "a@example.org", [])


def test_release_failures_are_release_errors() -> None:
    with pytest.raises(ReleaseError, match="No such file"):
        deliver("sendmail:/nonexistent/sendmail", "a@example.org", ["b@example.com"], [b"x"])
    with pytest.raises(ReleaseError, match="false exited 1"):
        deliver("sendmail:/usr/bin/false", "a@example.org", ["b@example.com"], [b"x"])
    with pytest.raises(ReleaseError, match="Connection refused"):
        deliver("smtp://127.0.0.1:1", "a@example.org", ["b@example.com"], [b"x"])
    with pytest.raises(ReleaseError, match="must be sendmail:PATH or smtp"):
        deliver("lmtp://x", "a@example.org", ["b@example.com"], [b"x"])
