"""spamd's HEADERS answer, parsed without sockets."""

from __future__ import annotations

from mxscan_spamassassin.answer import SpamdAnswer, parse_header_block, rule_names, unfold

# Verbatim from spamd 4.0.1 (HEADERS, report_safe 1, GTUBE).
GTUBE_HEADERS = (
    b"Received: from localhost by vm\n\twith SpamAssassin (version 4.0.1);\n"
    b"\tSat, 28 Nov 2026 04:11:55 +0000\nFrom: a@example.com\nTo: b@example.net\n"
    b"Subject: test\nMessage-Id: <1@x>\n"
    b"X-Spam-Checker-Version: SpamAssassin 4.0.1 (2024-03-25) on vm\n"
    b"X-Spam-Flag: YES\n"
    b"X-Spam-Level: **************************************************\n"
    b"X-Spam-Status: Yes, score=1002.7 required=5.0 tests=GTUBE,MISSING_DATE,\n"
    b"\tMSGID_SHORT,NO_RECEIVED,NO_RELAYS,TVD_SPACE_RATIO autolearn=no\n"
    b"\tautolearn_force=no version=4.0.1\nMIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="----------=_6B0A548B.0E7A4016"\n\n'
)


def test_unfold_joins_a_fold_after_a_comma_without_a_space() -> None:
    assert unfold(" tests=A,B,\n\tC,D autolearn=no\n\tversion=4.0.1") == (
        "tests=A,B,C,D autolearn=no version=4.0.1"
    )


def test_unfold_handles_crlf_folds() -> None:
    assert unfold(" a=1\r\n b=2,\r\n\tc") == "a=1 b=2,c"


def test_parse_header_block_keeps_order_and_unfolds() -> None:
    fields = parse_header_block(GTUBE_HEADERS)
    names = [name for name, _ in fields]
    assert names[:2] == ["Received", "From"]
    assert names[-2:] == ["MIME-Version", "Content-Type"]
    status = dict(fields)["X-Spam-Status"]
    assert status == (
        "Yes, score=1002.7 required=5.0 tests=GTUBE,MISSING_DATE,MSGID_SHORT,"
        "NO_RECEIVED,NO_RELAYS,TVD_SPACE_RATIO autolearn=no autolearn_force=no version=4.0.1"
    )
    assert dict(fields)["X-Spam-Level"] == "*" * 50


def test_parse_header_block_skips_junk_lines_and_stops_at_blank() -> None:
    fields = parse_header_block(b"not a header\nX-Spam-Level: *\n\nX-Spam-Flag: YES\n")
    assert fields == [("X-Spam-Level", "*")]


def test_parse_header_block_keeps_8bit_bytes() -> None:
    fields = parse_header_block(b"X-Spam-Foo: caf\xe9\n")
    assert fields[0][1].encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_rule_names() -> None:
    assert rule_names("No, score=-1.0 required=5.0 tests=ALL_TRUSTED autolearn=ham") == (
        "ALL_TRUSTED",
    )
    assert rule_names("No, score=0.0 required=5.0 tests=none autolearn=no") == ()
    assert rule_names("custom template without the list") == ()


def test_answer_keeps_only_x_spam_fields() -> None:
    answer = SpamdAnswer.from_parts(True, 1002.7, 5.0, GTUBE_HEADERS)
    assert [name for name, _ in answer.headers] == [
        "X-Spam-Checker-Version",
        "X-Spam-Flag",
        "X-Spam-Level",
        "X-Spam-Status",
    ]
    assert answer.tests == (
        "GTUBE",
        "MISSING_DATE",
        "MSGID_SHORT",
        "NO_RECEIVED",
        "NO_RELAYS",
        "TVD_SPACE_RATIO",
    )
