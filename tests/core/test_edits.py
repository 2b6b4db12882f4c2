"""Header edits: milter semantics, injection refused, untouched bytes untouched."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxscan import HeaderEdit, InvalidHeader, Message

BASE = (
    b"Received: from a by b;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"X-Spam-Flag: YES\r\n"
    b"Subject: hello\r\n"
    b"X-Spam-Flag: maybe\r\n"
    b"\r\n"
    b"body\r\n"
)


def test_add_appends_with_message_line_ending() -> None:
    msg = Message.from_bytes(BASE).apply([HeaderEdit.add("X-Scanned", "yes")])
    assert msg.headers[-1].raw == b"X-Scanned: yes\r\n"
    lf = Message.from_bytes(b"A: 1\n\nb\n").apply([HeaderEdit.add("X", "y")])
    assert lf.as_bytes() == b"A: 1\nX: y\n\nb\n"


def test_insert_at_position_and_past_the_end() -> None:
    msg = Message.from_bytes(BASE).apply(
        [HeaderEdit.insert(0, "X-First", "1"), HeaderEdit.insert(99, "X-Last", "2")]
    )
    assert msg.headers[0].name == "X-First"
    assert msg.headers[-1].name == "X-Last"


def test_change_nth_occurrence_is_one_based_per_name() -> None:
    msg = Message.from_bytes(BASE).apply([HeaderEdit.change("x-spam-flag", 2, "NO")])
    assert msg.get_all("X-Spam-Flag") == ["YES", "NO"]


def test_change_past_last_occurrence_appends_like_libmilter() -> None:
    msg = Message.from_bytes(BASE).apply([HeaderEdit.change("X-New", 1, "v")])
    assert msg.headers[-1].raw == b"X-New: v\r\n"


def test_delete_applies_sequentially() -> None:
    # Deleting occurrence 1 twice removes both, as Postfix applies milter replies.
    msg = Message.from_bytes(BASE).apply(
        [HeaderEdit.delete("X-Spam-Flag", 1), HeaderEdit.delete("X-Spam-Flag", 1)]
    )
    assert msg.get_all("X-Spam-Flag") == []
    assert msg.as_bytes() == BASE.replace(b"X-Spam-Flag: YES\r\n", b"").replace(
        b"X-Spam-Flag: maybe\r\n", b""
    )


def test_delete_missing_is_a_no_op() -> None:
    msg = Message.from_bytes(BASE)
    assert msg.apply([HeaderEdit.delete("X-None", 3)]).as_bytes() == BASE


def test_value_with_leading_whitespace_is_written_as_is() -> None:
    msg = Message.from_bytes(b"A: 1\n\n").apply([HeaderEdit.add("X", " spaced")])
    assert msg.headers[-1].raw == b"X: spaced\n"


@pytest.mark.parametrize("value", ["a\r\nBcc: victim@example.com", "a\nb", "a\rb", "x\0"])
def test_values_with_cr_lf_or_nul_are_refused(value: str) -> None:
    for make in (
        lambda: HeaderEdit.add("X-A", value),
        lambda: HeaderEdit.insert(0, "X-A", value),
        lambda: HeaderEdit.change("X-A", 1, value),
    ):
        with pytest.raises(InvalidHeader):
            make()


@pytest.mark.parametrize("name", ["", "Bad Name", "Bad:Name", "X\r\nY", "Ünicode"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidHeader):
        HeaderEdit.add(name, "v")


def test_occurrence_and_index_are_checked() -> None:
    with pytest.raises(ValueError, match="1-based"):
        HeaderEdit.change("X", 0, "v")
    with pytest.raises(ValueError, match="index"):
        HeaderEdit.insert(-1, "X", "v")


def test_unedited_headers_are_the_same_objects() -> None:
    msg = Message.from_bytes(BASE)
    edited = msg.apply([HeaderEdit.add("X", "y")])
    assert all(a is b for a, b in zip(msg.headers, edited.headers, strict=False))
    assert edited.body is msg.body


names = st.sampled_from(["Received", "From", "X-Spam-Flag", "Subject", "X-New", "To"])
values = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\x7f"),
    max_size=40,
)
edits = st.one_of(
    st.builds(HeaderEdit.add, names, values),
    st.builds(HeaderEdit.insert, st.integers(0, 8), names, values),
    st.builds(HeaderEdit.change, names, st.integers(1, 3), values),
    st.builds(HeaderEdit.delete, names, st.integers(1, 3)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(edits, max_size=8))
def test_edited_message_differs_only_in_edited_lines(edit_list: list[HeaderEdit]) -> None:
    """Replay the edits on a plain list model: every header line that the model
    keeps untouched must come out with exactly its original bytes, and the body
    must not change."""
    msg = Message.from_bytes(BASE)
    edited = msg.apply(edit_list)
    # Model: list of (name, raw-or-None); None marks a line written by an edit.
    model: list[tuple[str, bytes | None]] = [(h.name, h.raw) for h in msg.headers]

    def find(name: str, occ: int) -> int | None:
        seen = 0
        for i, (n, _) in enumerate(model):
            if n.lower() == name.lower():
                seen += 1
                if seen == occ:
                    return i
        return None

    for e in edit_list:
        kind = e.kind.value
        if kind == "add":
            model.append((e.name, None))
        elif kind == "insert":
            assert e.index is not None
            model.insert(min(e.index, len(model)), (e.name, None))
        elif kind == "change":
            assert e.occurrence is not None
            i = find(e.name, e.occurrence)
            if i is None:
                model.append((e.name, None))
            else:
                model[i] = (e.name, None)
        else:
            assert e.occurrence is not None
            i = find(e.name, e.occurrence)
            if i is not None:
                del model[i]
    assert len(model) == len(edited.headers)
    for (_, raw), header in zip(model, edited.headers, strict=True):
        if raw is not None:
            assert header.raw == raw
    head, _, body = edited.as_bytes().partition(b"\r\n\r\n")
    assert body == b"body\r\n"
    # The serialised header is exactly the concatenation of the fields.
    assert head + b"\r\n" == b"".join(h.raw for h in edited.headers)


@pytest.mark.parametrize(
    "data",
    [
        b"From: a@example.com\r\nSubject: no line end",  # issue250.eml's shape
        b"From: a@example.com\nSubject: no line end",
        b"Subject: only header",
    ],
)
def test_edits_that_cancel_out_leave_the_input_bytes(data: bytes) -> None:
    """Scanners add fields after a last header without line end, and the
    outbound rules delete them again: no line end may be left behind."""
    msg = Message.from_bytes(data)
    added = msg.apply([HeaderEdit.add("X-Spam-Status", "No"), HeaderEdit.add("X-Virus", "n")])
    assert added.as_bytes() != data
    cancelled = added.apply(
        [HeaderEdit.delete("X-Virus", 1), HeaderEdit.delete("X-Spam-Status", 1)]
    )
    assert cancelled.as_bytes() == data
    # The same in one edit list, as the pipeline replays a stage's edits.
    one_pass = msg.apply(
        [HeaderEdit.add("X-A", "1"), HeaderEdit.insert(0, "X-B", "2"), HeaderEdit.delete("X-A", 1)]
    )
    assert one_pass.as_bytes() == b"X-B: 2" + msg.eol + data


def test_a_field_after_a_bare_last_header_still_gets_its_line_end() -> None:
    msg = Message.from_bytes(b"A: 1\r\nB: 2").apply([HeaderEdit.add("X", "y")])
    assert msg.as_bytes() == b"A: 1\r\nB: 2\r\nX: y\r\n"
