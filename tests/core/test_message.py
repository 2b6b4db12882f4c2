"""Message parsing: each odd input has a defined, byte-exact outcome."""

from __future__ import annotations

import io

import pytest

from mxscan import Body, Envelope, Header, HeaderEdit, InvalidHeader, Message
from mxscan.body import BodyBuilder


def test_simple_crlf_message_splits_and_round_trips() -> None:
    data = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody line\r\n"
    msg = Message.from_bytes(data)
    assert [h.name for h in msg.headers] == ["From", "Subject"]
    assert msg.separator == b"\r\n"
    assert msg.body.as_bytes() == b"body line\r\n"
    assert msg.as_bytes() == data
    assert msg.eol == b"\r\n"


def test_folded_header_keeps_raw_bytes_and_unfolds_value() -> None:
    data = b"Subject: one\n\ttwo\n  three\nTo: x\n\nb\n"
    msg = Message.from_bytes(data)
    subject = msg.headers[0]
    assert subject.raw == b"Subject: one\n\ttwo\n  three\n"
    assert subject.value == "one\ttwo  three"
    assert subject.logical == "Subject: one\n\ttwo\n  three"
    assert msg.as_bytes() == data


def test_mbox_from_line_is_kept_aside_and_written_back() -> None:
    data = b"From sender@example.com Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody\n"
    msg = Message.from_bytes(data)
    assert msg.mbox_from.startswith(b"From sender@")
    assert [h.name for h in msg.headers] == ["Subject"]
    assert msg.as_bytes() == data


def test_from_header_with_colon_is_not_an_mbox_line() -> None:
    msg = Message.from_bytes(b"From: a@example.com\n\nx")
    assert msg.mbox_from == b""
    assert msg.get("from") == "a@example.com"


def test_missing_separator_ends_header_at_first_non_header_line() -> None:
    # Postfix: a line that is not a header starts the body.
    data = b"Subject: x\nthis line has no colon\nmore\n"
    msg = Message.from_bytes(data)
    assert [h.name for h in msg.headers] == ["Subject"]
    assert msg.separator == b""
    assert msg.body.as_bytes() == b"this line has no colon\nmore\n"
    assert msg.as_bytes() == data


def test_headers_only_message_has_empty_body() -> None:
    data = b"Subject: x\nTo: y\n"
    msg = Message.from_bytes(data)
    assert len(msg.headers) == 2
    assert msg.separator == b""
    assert msg.body.size == 0
    assert msg.as_bytes() == data


def test_missing_final_newline_is_kept() -> None:
    data = b"Subject: x\n\nno newline at end"
    assert Message.from_bytes(data).as_bytes() == data
    data = b"Subject: x"
    msg = Message.from_bytes(data)
    assert msg.headers[0].raw == b"Subject: x"
    assert msg.as_bytes() == data


def test_added_header_after_unterminated_last_header_gets_a_line_ending() -> None:
    msg = Message.from_bytes(b"Subject: x").apply([HeaderEdit.add("X-A", "1")])
    assert msg.as_bytes() == b"Subject: x\r\nX-A: 1\r\n"


def test_nul_and_8bit_bytes_are_kept() -> None:
    data = b"Subject: caf\xe9 \x00 x\nX-Raw: \xff\xfe\n\nbody \x00\xff\n"
    msg = Message.from_bytes(data)
    assert msg.as_bytes() == data
    assert msg.headers[0].value.encode("utf-8", "surrogateescape") == b"caf\xe9 \x00 x"


def test_nul_or_8bit_in_a_name_makes_the_line_body() -> None:
    data = b"Subject: x\nX-\xe9: y\n\nbody\n"
    msg = Message.from_bytes(data)
    assert [h.name for h in msg.headers] == ["Subject"]
    assert msg.body.as_bytes().startswith(b"X-\xe9: y\n")
    assert msg.as_bytes() == data


def test_bare_cr_is_data_not_a_line_end() -> None:
    data = b"Subject: a\rb\nTo: c\n\nx\ry\n"
    msg = Message.from_bytes(data)
    assert [h.raw for h in msg.headers] == [b"Subject: a\rb\n", b"To: c\n"]
    assert msg.as_bytes() == data


def test_space_before_colon_is_a_header_and_postfix_key_drops_the_space() -> None:
    msg = Message.from_bytes(b"Subject : x\n\n")
    assert msg.headers[0].name == "Subject"
    assert msg.headers[0].logical == "Subject: x"
    assert msg.headers[0].raw == b"Subject : x\n"


def test_leading_whitespace_line_starts_the_body() -> None:
    data = b" continuation without header\nSubject: x\n\n"
    msg = Message.from_bytes(data)
    assert msg.headers == ()
    assert msg.as_bytes() == data


def test_empty_input() -> None:
    msg = Message.from_bytes(b"")
    assert msg.headers == ()
    assert msg.as_bytes() == b""


def test_mixed_line_endings_are_kept_per_line() -> None:
    data = b"A: 1\r\nB: 2\nC: 3\r\n\nbody\r\nx\n"
    msg = Message.from_bytes(data)
    assert msg.separator == b"\n"
    assert msg.as_bytes() == data


def test_get_all_is_case_insensitive_and_in_order() -> None:
    msg = Message.from_bytes(b"Received: a\nreceived: b\nRECEIVED: c\n\n")
    assert msg.get_all("Received") == ["a", "b", "c"]
    assert msg.get("x-missing") is None


def test_email_view_parses_mime_lazily() -> None:
    data = (
        b"Content-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\n"
        b"hello\n--XX--\n"
    )
    msg = Message.from_bytes(data)
    parts = list(msg.email.walk())
    assert [p.get_content_type() for p in parts] == ["multipart/mixed", "text/plain"]
    assert msg.email is msg.email  # parsed once


def test_large_body_is_spooled_and_streams_back_identically() -> None:
    body = b"".join(b"line %07d of the body\r\n" % i for i in range(100_000))
    data = b"Subject: big\r\n\r\n" + body
    msg = Message.from_bytes(data, spool_threshold=64 * 1024)
    assert msg.body.spooled
    assert msg.body.size == len(body)
    out = io.BytesIO()
    assert msg.write_to(out) == len(data)
    assert out.getvalue() == data
    assert b"".join(msg.chunks(1000)) == data
    assert msg.body.read_at(25, 10) == body[25:35]
    with msg.body.open() as fp:
        fp.seek(len(body) - 5)
        assert fp.read() == body[-5:]
    msg.close()


def test_small_body_stays_in_memory() -> None:
    msg = Message.from_bytes(b"Subject: x\n\nsmall\n")
    assert not msg.body.spooled


def test_concurrent_readers_of_a_spooled_body_do_not_interfere() -> None:
    builder = BodyBuilder(threshold=10)
    builder.write(bytes(range(256)) * 100)
    body = builder.finish()
    first, second = body.chunks(100), body.chunks(100)
    a = next(first)
    b = next(second)
    assert a == b == bytes(range(100))
    assert next(first) == next(second)


def test_body_builder_close_discards_spool() -> None:
    builder = BodyBuilder(threshold=4)
    builder.write(b"0123456789")
    builder.close()
    with pytest.raises(ValueError, match="finished"):
        builder.write(b"x")


def test_message_open_reads_whole_message() -> None:
    data = b"Subject: x\n\nhello\n"
    with Message.from_bytes(data).open() as fp:
        assert fp.read() == data


def test_from_file_and_stream(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = b"Subject: file\n\nbody\n"
    path = tmp_path / "m.eml"
    path.write_bytes(data)
    assert Message.from_file(path).as_bytes() == data
    with path.open("rb") as fp:
        assert Message.from_stream(fp).as_bytes() == data


def test_envelope_is_carried_and_replaced() -> None:
    env = Envelope(sender="a@example.com", recipients=["b@example.net"], queue_id="ABC")
    msg = Message.from_bytes(b"S: x\n\n", envelope=env)
    assert msg.envelope.recipients == ("b@example.net",)
    other = msg.with_envelope(Envelope(sender=""))
    assert other.envelope.sender == ""
    assert other.body is msg.body


def test_header_rejects_non_headers() -> None:
    with pytest.raises(InvalidHeader):
        Header(b"no colon here\n")


def test_body_repr_and_len() -> None:
    body = Body(b"abc")
    assert len(body) == 3
    assert "in memory" in repr(body)


# The two parsers (in-memory for bytes, streaming for files) must agree.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_pieces = st.sampled_from(
    [b"From x\n", b"Subject: a\r\n", b"To: b\n", b" folded\n", b"\tfolded\r\n", b"\r\n", b"\n",
     b"no colon\n", b"X-8: \xff\n", b"X\xe9: y\n", b"a\rb: c\n", b"Name : v\n", b"body", b":\n",
     b"\x00\n", b"From: z\n"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(_pieces, max_size=12))
def test_bytes_and_stream_parsers_agree(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    a = Message.from_bytes(data)
    b = Message.from_stream(io.BytesIO(data))
    assert (a.mbox_from, [h.raw for h in a.headers], a.separator, a.body.as_bytes()) == (
        b.mbox_from,
        [h.raw for h in b.headers],
        b.separator,
        b.body.as_bytes(),
    )
    assert a.as_bytes() == data
