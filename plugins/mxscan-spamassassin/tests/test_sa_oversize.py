"""Cutting an oversized message at a line boundary."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mxscan_spamassassin.oversize import head_at_line


def test_cut_after_the_last_whole_line() -> None:
    assert head_at_line([b"ab\ncd\nef\n"], 7) == b"ab\ncd\n"
    assert head_at_line([b"ab\r\n", b"cd\r\nef"], 8) == b"ab\r\ncd\r\n"


def test_message_within_the_limit_is_whole() -> None:
    assert head_at_line([b"ab\n", b"cd"], 5) == b"ab\ncd"


def test_no_line_end_in_the_window_cuts_at_the_limit() -> None:
    assert head_at_line([b"x" * 100], 10) == b"x" * 10


def test_stops_reading_once_past_the_limit() -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b"a\n" * 10
        yield b"b\n" * 10
        raise AssertionError("read past the limit")

    assert head_at_line(chunks(), 15) == b"a\n" * 7


@settings(deadline=None)  # a loaded CI machine may pause an example past 200 ms
@given(st.lists(st.binary(max_size=40), max_size=8), st.integers(min_value=1, max_value=200))
def test_result_is_a_prefix_within_the_limit(parts: list[bytes], limit: int) -> None:
    data = b"".join(parts)
    head = head_at_line(parts, limit)
    assert data.startswith(head)
    assert len(head) <= limit
    if len(data) <= limit:
        assert head == data
    elif b"\n" in data[:limit]:
        assert head.endswith(b"\n")
        assert b"\n" not in data[len(head) : limit]
