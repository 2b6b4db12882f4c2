"""MAX_HEADER_LINE: a field too long to hold in memory ends the header and is
kept, byte for byte, as the start of the body, by both parsers."""

from __future__ import annotations

import io

import pytest

from mxscan import Message
from mxscan import message as message_module


@pytest.fixture(autouse=True)
def _small_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(message_module, "MAX_HEADER_LINE", 40)


def test_a_long_line_ends_the_header() -> None:
    data = b"Subject: short\r\nX-Long: " + b"y" * 40 + b"\r\nTo: b\r\n\r\nbody\r\n"
    msg = Message.from_bytes(data)
    assert [h.raw for h in msg.headers] == [b"Subject: short\r\n"]
    assert msg.separator == b""
    assert msg.body.as_bytes() == data[len(b"Subject: short\r\n") :]
    assert msg.as_bytes() == data


def test_folding_past_the_limit_moves_the_whole_field_to_the_body() -> None:
    folded = b"X-Folded: start\r\n" + b" " + b"z" * 20 + b"\r\n" + b" " + b"z" * 20 + b"\r\n"
    data = b"From x\nA: 1\n" + folded + b"\r\nbody"
    msg = Message.from_bytes(data)
    assert msg.mbox_from == b"From x\n"
    assert [h.raw for h in msg.headers] == [b"A: 1\n"]
    assert msg.body.as_bytes() == folded + b"\r\nbody"
    assert msg.as_bytes() == data


def test_fields_within_the_limit_are_headers() -> None:
    data = b"A: 1\r\n" + b"X-Folded: start\r\n z\r\n" * 3 + b"\n" + b"body"
    msg = Message.from_bytes(data)
    assert len(msg.headers) == 4
    assert msg.separator == b"\n"
    assert msg.body.as_bytes() == b"body"


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: short\r\nX-Long: " + b"y" * 40 + b"\r\nTo: b\r\n\r\nbody\r\n",
        b"X-Long: " + b"y" * 40 + b"\r\n\r\nbody\r\n",  # the first line
        b"From " + b"m" * 40 + b"\nA: 1\n\nbody",  # an over-long mbox line
        b"From x\nA: 1\nX-Folded: start\r\n " + b"z" * 20 + b"\r\n " + b"z" * 20 + b"\r\n\r\nb",
        b"A: 1\r\nX-Exact: " + b"e" * (40 - 11) + b"\r\n\r\nbody",  # exactly the limit
    ],
)
def test_the_streaming_parser_draws_the_same_line(data: bytes) -> None:
    """Both parsers put a field over the limit in the body, also when the stream
    hands it over in one read (a line just over the limit is not 'cut')."""
    ours = Message.from_bytes(data)
    streamed = Message.from_stream(io.BytesIO(data))
    assert [h.raw for h in streamed.headers] == [h.raw for h in ours.headers]
    assert (streamed.mbox_from, streamed.separator) == (ours.mbox_from, ours.separator)
    assert streamed.body.as_bytes() == ours.body.as_bytes()
    assert streamed.as_bytes() == data
