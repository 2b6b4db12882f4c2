"""The clamd codec, byte for byte and without sockets."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxscan_clamav.protocol import (
    END_OF_STREAM,
    MAX_REPLY_SIZE,
    ClamdError,
    ClamdErrorReply,
    ClamdProtocolError,
    ScanResult,
    StreamLimitExceeded,
    frame,
    instream_frames,
    is_heuristic,
    parse_ping_reply,
    parse_scan_reply,
    parse_version_reply,
)


def decode_frames(data: bytes) -> list[bytes]:
    """The server side of INSTREAM: length-prefixed chunks up to a zero length."""
    chunks: list[bytes] = []
    offset = 0
    while True:
        (size,) = struct.unpack_from("!I", data, offset)
        offset += 4
        if size == 0:
            assert offset == len(data), "bytes after the end-of-stream frame"
            return chunks
        chunks.append(data[offset : offset + size])
        offset += size


def test_frame_is_big_endian_length_then_bytes() -> None:
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame(bytearray(300)) == b"\x00\x00\x01\x2c" + bytes(300)
    assert END_OF_STREAM == b"\x00\x00\x00\x00"


def test_empty_frame_is_refused_because_it_would_end_the_stream() -> None:
    with pytest.raises(ValueError):
        frame(b"")


@settings(deadline=None)  # a loaded CI machine may pause an example past 200 ms
@given(
    st.lists(st.binary(max_size=300), max_size=20),
    st.integers(min_value=1, max_value=128),
)
def test_frames_carry_the_stream_unchanged_in_full_chunks(
    pieces: list[bytes], chunk_size: int
) -> None:
    frames = list(instream_frames(iter(pieces), chunk_size))
    assert frames[-1] == END_OF_STREAM
    chunks = decode_frames(b"".join(frames))
    assert b"".join(chunks) == b"".join(pieces)
    assert all(len(c) == chunk_size for c in chunks[:-1])
    assert all(0 < len(c) <= chunk_size for c in chunks)


def test_frames_are_produced_lazily() -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield b"x" * 1000

    frames = instream_frames(endless(), 4096)
    first = next(frames)
    assert first[:4] == struct.pack("!I", 4096) and len(first) == 4100


def test_clean() -> None:
    assert parse_scan_reply(b"stream: OK\0") == ScanResult(())
    assert not parse_scan_reply(b"stream: OK\0").infected


def test_found() -> None:
    result = parse_scan_reply(b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0")
    assert result.infected
    assert result.signatures == ("Eicar-Test-Signature.UNOFFICIAL",)


def test_found_with_extended_detection_info_gives_the_bare_name() -> None:
    reply = b"stream: Eicar-Test-Signature(44d88612fea8a8f36de82e1278abb02f:68) FOUND\0"
    assert parse_scan_reply(reply).signatures == ("Eicar-Test-Signature",)


def test_allmatch_reports_every_name_once() -> None:
    reply = b"stream: A.B FOUND\0stream: Heuristics.Encrypted.Zip FOUND\0stream: A.B FOUND\0"
    assert parse_scan_reply(reply).signatures == ("A.B", "Heuristics.Encrypted.Zip")


def test_size_limit_is_its_own_error() -> None:
    with pytest.raises(StreamLimitExceeded) as info:
        parse_scan_reply(b"INSTREAM size limit exceeded. ERROR\0")
    assert info.value.text == "INSTREAM size limit exceeded. ERROR"
    assert "size limit exceeded" in str(info.value)


@pytest.mark.parametrize(
    "reply",
    [
        b"stream: Can't allocate memory ERROR\0",
        b"Error processing command. ERROR\0",
        b"ERROR\0",
        b"stream: OK\0stream: lstat() failed ERROR\0",
    ],
)
def test_other_error_replies(reply: bytes) -> None:
    with pytest.raises(ClamdErrorReply) as info:
        parse_scan_reply(reply)
    assert not isinstance(info.value, StreamLimitExceeded)


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"", "without a reply"),
        (b"\0", "empty reply"),
        (b"stream: OK", "without its terminating NUL"),
        (b"stream: O", "without its terminating NUL"),
        (b"PONG\0", "unexpected reply"),
        (b"UNKNOWN COMMAND\0", "unexpected reply"),
        (b"stream: MAYBE\0", "unexpected reply"),
        (b"stream:  FOUND\0", "without a name"),
        (b"file: OK\0", "unexpected reply"),
        (b"\xff\xfe garbage \x00", "unexpected reply"),
        (b"x" * (MAX_REPLY_SIZE + 1), "too long"),
    ],
)
def test_garbage_is_a_protocol_error_never_a_verdict(reply: bytes, words: str) -> None:
    with pytest.raises(ClamdProtocolError, match=words):
        parse_scan_reply(reply)


@settings(deadline=None)  # a loaded CI machine may pause an example past 200 ms
@given(st.binary(max_size=200))
def test_any_bytes_give_a_result_or_a_clamd_error(reply: bytes) -> None:
    try:
        result = parse_scan_reply(reply)
    except ClamdError:
        return
    # Anything accepted as a verdict was a well-formed, NUL-terminated stream reply.
    assert reply.endswith(b"\0") and b"stream: " in reply
    assert isinstance(result, ScanResult)


def test_ping_and_version() -> None:
    parse_ping_reply(b"PONG\0")
    with pytest.raises(ClamdProtocolError):
        parse_ping_reply(b"PING\0")
    version = b"ClamAV 1.4.6/27000/Thu Nov 27 09:00:00 2026\0"
    assert parse_version_reply(version) == version[:-1].decode()
    with pytest.raises(ClamdProtocolError):
        parse_version_reply(b"hello\0")


def test_heuristics_are_recognised_by_prefix() -> None:
    assert is_heuristic("Heuristics.Encrypted.Zip")
    assert not is_heuristic("Eicar-Test-Signature.UNOFFICIAL")
    assert not is_heuristic("Win.Heuristics.Fake")


def test_errors_name_the_address_once_it_is_known() -> None:
    error = ClamdErrorReply("INSTREAM size limit exceeded. ERROR")
    assert str(error) == "replied 'INSTREAM size limit exceeded. ERROR'"
    error.address = "inet:127.0.0.1:3310"
    assert str(error) == (
        "clamd at inet:127.0.0.1:3310: replied 'INSTREAM size limit exceeded. ERROR'"
    )
