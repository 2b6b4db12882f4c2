"""Header edits: forged X-Spam-* removal and SpamAssassin's headers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mxscan import HeaderEdit, Message
from mxscan_spamassassin.answer import SpamdAnswer
from mxscan_spamassassin.edits import (
    forged_removals,
    sent_fields,
    spam_header_edits,
    subject_edits,
)
from mxscan_spamassassin.levels import Levels, decide

STATUS = (
    "Yes, score=1002.7 required=5.0 tests=GTUBE,MISSING_DATE autolearn=no "
    "autolearn_force=no version=4.0.1"
)
SA_HEADERS = (
    ("X-Spam-Checker-Version", "SpamAssassin 4.0.1 (2024-03-25) on vm"),
    ("X-Spam-Flag", "YES"),
    ("X-Spam-Level", "*" * 50),
    ("X-Spam-Status", STATUS),
)


def names(message: Message) -> list[str]:
    return [h.name for h in message.headers]


def test_removes_every_forged_x_spam_header_in_any_case() -> None:
    message = Message.from_bytes(
        b"X-Spam-Flag: YES\r\nFrom: a@example.com\r\nx-spam-flag: yes\r\n"
        b"X-Spam-Status: No,\r\n forged\r\nX-Spamish: keep\r\nX-SPAM-Level: ***\r\n"
        b"Subject: hi\r\n\r\nbody\r\n"
    )
    result = message.apply(forged_removals(message.headers))
    assert names(result) == ["From", "X-Spamish", "Subject"]
    assert result.as_bytes() == (
        b"From: a@example.com\r\nX-Spamish: keep\r\nSubject: hi\r\n\r\nbody\r\n"
    )


def test_no_forged_headers_no_edits() -> None:
    message = Message.from_bytes(b"From: a@example.com\r\n\r\nbody\r\n")
    assert forged_removals(message.headers) == []


_names = st.sampled_from(
    [
        "X-Spam-Flag",
        "x-spam-flag",
        "X-Spam-Status",
        "X-SPAM-LEVEL",
        "From",
        "Received",
        "X-Spammy",
        "Subject",
    ]
)


@settings(deadline=None)  # a loaded CI machine may pause an example past 200 ms
@given(st.lists(st.tuples(_names, st.integers(0, 99)), max_size=20))
def test_sequential_removal_leaves_exactly_the_other_headers(
    fields: list[tuple[str, int]],
) -> None:
    data = b"".join(b"%s: v%d\r\n" % (n.encode(), i) for n, i in fields) + b"\r\nbody\r\n"
    message = Message.from_bytes(data)
    result = message.apply(forged_removals(message.headers))
    kept = [h.raw for h in message.headers if not h.name.lower().startswith("x-spam-")]
    assert [h.raw for h in result.headers] == kept


def test_spam_headers_in_sa_order() -> None:
    answer = SpamdAnswer(True, 1002.7, 5.0, SA_HEADERS)
    edits = spam_header_edits(answer, decide(answer, Levels()))
    assert edits == [HeaderEdit.add(n, v) for n, v in SA_HEADERS]


def test_ham_drops_flag_and_report_and_says_no() -> None:
    answer = SpamdAnswer(True, 6.0, 5.0, (*SA_HEADERS, ("X-Spam-Report", "details")))
    edits = spam_header_edits(answer, decide(answer, Levels(spam_score=8.0)))
    assert [e.name for e in edits] == ["X-Spam-Checker-Version", "X-Spam-Level", "X-Spam-Status"]
    assert edits[-1].value == STATUS.replace("Yes", "No").replace("required=5.0", "required=8.0")


def test_spam_by_our_level_adds_the_flag_after_the_checker_version() -> None:
    ham_status = STATUS.replace("Yes", "No")
    answer = SpamdAnswer(
        False,
        3.0,
        5.0,
        (
            *tuple((n, v) for n, v in SA_HEADERS if n != "X-Spam-Flag")[:2],
            ("X-Spam-Status", ham_status),
        ),
    )
    edits = spam_header_edits(answer, decide(answer, Levels(spam_score=2.0)))
    assert [(e.name, e.value) for e in edits][:3] == [
        ("X-Spam-Checker-Version", "SpamAssassin 4.0.1 (2024-03-25) on vm"),
        ("X-Spam-Flag", "YES"),
        ("X-Spam-Level", "*" * 50),
    ]
    assert edits[-1].value is not None
    assert edits[-1].value.startswith("Yes, score=1002.7 required=2.0 ")


def test_below_tag_score_adds_nothing() -> None:
    answer = SpamdAnswer(False, 1.0, 5.0, SA_HEADERS[2:])
    assert spam_header_edits(answer, decide(answer, Levels(tag_score=2.0))) == []


def test_status_is_synthesised_when_spamd_sends_none() -> None:
    answer = SpamdAnswer(False, -1.0, 5.0, ())
    edits = spam_header_edits(answer, decide(answer, Levels()))
    assert edits == [HeaderEdit.add("X-Spam-Status", "No, score=-1.0 required=5.0 tests=none")]


def test_custom_status_template_is_left_alone() -> None:
    answer = SpamdAnswer(False, 0.0, 5.0, (("X-Spam-Status", "custom _SCORE_ text"),))
    edits = spam_header_edits(answer, decide(answer, Levels()))
    assert edits == [HeaderEdit.add("X-Spam-Status", "custom _SCORE_ text")]


def test_fields_the_sender_sent_are_not_added_twice() -> None:
    message = Message.from_bytes(b"X-Spam-Virus: No\r\nX-Spam-Level: **\r\n\r\nx\r\n")
    answer = SpamdAnswer(
        False, 2.0, 5.0, (("X-Spam-Virus", "No"), ("X-Spam-Level", "**"), ("X-Spam-Level", "*"))
    )
    edits = spam_header_edits(answer, decide(answer, Levels()), sent_fields(message.headers))
    assert [(e.name, e.value) for e in edits if e.name != "X-Spam-Status"] == [
        ("X-Spam-Level", "*")
    ]


def test_subject_tag_only_on_spam_and_only_once() -> None:
    spam = decide(SpamdAnswer(True, 9.0, 5.0), Levels())
    ham = decide(SpamdAnswer(False, 1.0, 5.0), Levels())
    assert subject_edits("hello", "[SPAM]", spam) == [
        HeaderEdit.change("Subject", 1, "[SPAM] hello")
    ]
    assert subject_edits("[SPAM] hello", "[SPAM]", spam) == []
    assert subject_edits(None, "[SPAM]", spam) == [HeaderEdit.add("Subject", "[SPAM]")]
    assert subject_edits("hello", "[SPAM]", ham) == []
    assert subject_edits("hello", None, spam) == []
