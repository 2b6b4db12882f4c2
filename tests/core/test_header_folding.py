"""Folded header values: what a HeaderEdit may carry, and the 998-byte line limit.

A fold (CRLF, then a space or tab, then text) keeps a field one field; every
other CR or LF could start a header of the sender's choosing and is refused.
Every header mxscan writes fits RFC 5322's 998 bytes a line, whatever the
scanner built (Postfix would break a longer line mid-word).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxscan import HeaderEdit, InvalidHeader, Message, Verdict
from mxscan.header import MAX_LINE, fold_long_lines


def lines_of(message: Message) -> list[bytes]:
    return message.head_bytes().split(b"\r\n")


@pytest.mark.parametrize(
    "value",
    [
        "a\r\n\tb",
        "Yes, score=1.0\r\n tests=A,B",
        "\r\n\t* 1000 GTUBE BODY: Generic Test\r\n\t*  0.0 OTHER",  # SA's X-Spam-Report
    ],
)
def test_a_fold_is_accepted_and_written_with_the_messages_line_ending(value: str) -> None:
    crlf = Message.from_bytes(b"A: 1\r\n\r\nb\r\n").apply([HeaderEdit.add("X-R", value)])
    lf = Message.from_bytes(b"A: 1\n\nb\n").apply([HeaderEdit.add("X-R", value)])
    assert len(crlf.headers) == len(lf.headers) == 2
    assert crlf.headers[-1].raw.count(b"\r\n") == value.count("\r\n") + 1
    assert b"\r" not in lf.headers[-1].raw
    assert crlf.headers[-1].value == lf.headers[-1].value


@pytest.mark.parametrize(
    "value",
    [
        "a\r\nBcc: victim@example.com",  # a new header
        "a\r\n",  # a fold with nothing after it
        "a\r\n \t",  # a whitespace-only continuation
        "a\r\n\r\n body",  # an empty line: the end of the header
        "a\n b",  # bare LF
        "a\r b",  # bare CR
        "a\r\r\n b",
        "a\r\n b\nc",
    ],
)
def test_anything_but_a_fold_is_refused(value: str) -> None:
    with pytest.raises(InvalidHeader):
        HeaderEdit.add("X-R", value)
    with pytest.raises(InvalidHeader):
        HeaderEdit.change("X-R", 1, value)


def test_a_long_value_is_folded_at_whitespace_within_998_bytes() -> None:
    words = " ".join(f"word{i}" for i in range(400))  # ~3,000 bytes
    verdict = Verdict(edits=[HeaderEdit.add("X-Spam-Report", words)])
    (edit,) = verdict.edits
    assert edit.value is not None and "\r\n" in edit.value
    assert edit.value.replace("\r\n", "") == words  # unfolding gives the value back
    out = Message.from_bytes(b"A: 1\r\n\r\nb\r\n").apply(verdict.edits)
    assert max(len(line) for line in lines_of(out)) <= MAX_LINE


def test_one_word_longer_than_a_line_is_broken_at_the_limit() -> None:
    token = "é" * 1500 + "x" * 700  # no whitespace at all, 3,700 bytes
    folded = fold_long_lines("X-Long", token)
    out = Message.from_bytes(b"A: 1\r\n\r\n").apply([HeaderEdit.add("X-Long", folded)])
    assert max(len(line) for line in lines_of(out)) <= MAX_LINE
    assert out.headers[-1].raw.decode().count("\ufffd") == 0  # no UTF-8 sequence split
    assert out.headers[-1].value.replace(" ", "") == token


def test_values_that_fit_are_the_same_objects() -> None:
    edit = HeaderEdit.add("X-Spam-Status", "No, score=0.1")
    verdict = Verdict(edits=[edit])
    assert verdict.edits[0] is edit


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(["a", "b", " ", "\t", "é", "\U0001f600", ","]),
        min_size=1,
        max_size=3000,
    ).filter(lambda v: v.strip(" \t"))
)
def test_folding_any_value_fits_and_is_a_valid_fold(value: str) -> None:
    folded = fold_long_lines("X-Test", value)
    edit = HeaderEdit.add("X-Test", folded)  # validates the folds
    out = Message.from_bytes(b"A: 1\r\n\r\n").apply([edit])
    assert max(len(line) for line in lines_of(out)) <= MAX_LINE
    assert len(out.headers) == 2


def test_a_folded_edit_prints_on_one_line() -> None:
    """str(edit) goes into log lines: a fold must not split the log record."""
    edit = HeaderEdit.add("X-Spam-Report", "\r\n\t* 1.0 A\r\n\t* 2.0 B")
    assert str(edit) == "add X-Spam-Report: \\r\\n\t* 1.0 A\\r\\n\t* 2.0 B"
    assert "\n" not in str(HeaderEdit.change("X", 1, "a\r\n b"))
