"""DATA transparency both ways, split at every byte: what goes in comes out."""

from __future__ import annotations

import pytest

from mxscan.adapters.smtp.dots import DotStuffer, DotUnstuffer

SAMPLES = [
    b"",
    b"a\r\n",
    b".\r\n",
    b"..\r\n",
    b".leading dot\r\n.\r\n..\r\nend\r\n",
    b"no final newline",
    b"bare\n.lf\n.\n",
    b"\r\n.\r\n\r\n",
    b"x\r\n.",
    b"8bit \xe9\xff\x00 NUL\r\n.\r\n",
]


def stuff(data: bytes, step: int) -> bytes:
    s = DotStuffer()
    out = b"".join(s.encode(data[i : i + step]) for i in range(0, len(data), step))
    return out + s.end()


def unstuff(wire: bytes, step: int) -> tuple[bytes, bytes]:
    u = DotUnstuffer()
    out = []
    for i in range(0, len(wire), step):
        decoded, rest = u.feed(wire[i : i + step])
        out.append(decoded)
        if rest is not None:
            return b"".join(out), rest + wire[i + step :]
    raise AssertionError("no end of data seen")


@pytest.mark.parametrize("data", SAMPLES)
@pytest.mark.parametrize("step", [1, 2, 3, 7, 1 << 20])
def test_round_trip(data: bytes, step: int) -> None:
    wire = stuff(data, step)
    decoded, rest = unstuff(wire + b"QUIT\r\n", step)
    expected = data if data.endswith(b"\r\n") or not data else data + b"\r\n"
    assert decoded == expected
    assert rest == b"QUIT\r\n"


def test_stuffing_is_rfc5321() -> None:
    assert stuff(b".a\r\nb\r\n.\r\n", 100) == b"..a\r\nb\r\n..\r\n.\r\n"
    assert stuff(b"", 1) == b".\r\n"


def test_a_bare_lf_dot_does_not_end_data() -> None:
    """SMTP smuggling: only CRLF.CRLF ends DATA."""
    u = DotUnstuffer()
    decoded, rest = u.feed(b"a\n.\r\nMAIL FROM:<x>\r\n")
    assert rest is None
    assert decoded == b"a\n\r\nMAIL FROM:<x>\r\n"
    decoded, rest = u.feed(b"\r\n.\r\n")
    assert rest == b""


def test_long_body_is_linear() -> None:
    """Many lines decode with one find per dotted line, not a Python loop per line."""
    body = b"line of text\r\n" * 200_000 + b".dot\r\n" * 10
    decoded, rest = unstuff(stuff(body, 65536), 65536)
    assert decoded == body and rest == b""
