"""IGNORE/STRIP/REPLACE/PREPEND on MIME-part and attached-message headers are
made inside the body, byte-exactly: only the matched header's raw lines change."""

from __future__ import annotations

import pytest

from mxscan import Action, Body, Message, Pipeline, Verdict
from mxscan.body import BodyBuilder
from mxscan_header_rules import HeaderRules
from mxscan_header_rules.mime import walk_body

HEAD = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
BODY = (
    b"preamble\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Description: a\r\n"
    b" folded part\r\n"
    b"\r\n"
    b"Content-Description: not a header, body text\r\n"
    b"--XX\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: inner\r\n"
    b"X-Inner: 1\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--XX--\r\n"
)
MULT_RAW = b"Content-Description: a\r\n folded part\r\n"
NEST_RAW = b"X-Inner: 1\r\n"


def lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def check(eol: bytes, **options: str) -> tuple[HeaderRules, Verdict, bytes]:
    conv = (lambda b: b) if eol == b"\r\n" else lf
    options.setdefault("rules", "/^nothing/ DUNNO\n")
    scanner = HeaderRules("t", **options)
    message = Message.from_bytes(conv(HEAD + BODY))
    verdict = scanner.check(message)
    assert verdict.body is not None
    return scanner, verdict, verdict.body.as_bytes()


def expect(eol: bytes, old: bytes, new: bytes) -> bytes:
    body = BODY.replace(old, new)
    assert body != BODY or old == new
    return body if eol == b"\r\n" else lf(body)


EOLS = pytest.mark.parametrize("eol", [b"\r\n", b"\n"], ids=["crlf", "lf"])


@EOLS
@pytest.mark.parametrize("cmd", ["IGNORE", "STRIP"])
def test_remove_mult_header(eol: bytes, cmd: str) -> None:
    scanner, verdict, body = check(eol, mime_rules=f"/^Content-Description: a/ {cmd}\n")
    assert scanner.changes_body
    assert body == expect(eol, MULT_RAW, b"")
    assert verdict.edits == ()
    assert verdict.status == "edited(1)"


@EOLS
def test_replace_mult_header(eol: bytes) -> None:
    _, _, body = check(eol, mime_rules="/^Content-Description: (a)/ REPLACE X-Was: $1\n")
    assert body == expect(eol, MULT_RAW, b"X-Was: a\r\n")


@EOLS
def test_prepend_mult_header(eol: bytes) -> None:
    _, _, body = check(eol, mime_rules="/^Content-Description:/ PREPEND X-Seen: yes\n")
    assert body == expect(eol, MULT_RAW, b"X-Seen: yes\r\n" + MULT_RAW)


@EOLS
@pytest.mark.parametrize(
    ("rule", "new"),
    [
        ("IGNORE", b""),
        ("STRIP", b""),
        ("REPLACE X-Was-Inner: 1", b"X-Was-Inner: 1\r\n"),
        ("PREPEND X-Seen: inner", b"X-Seen: inner\r\n" + NEST_RAW),
    ],
)
def test_nest_header(eol: bytes, rule: str, new: bytes) -> None:
    scanner, _, body = check(eol, mime_rules="", nested_rules=f"/^X-Inner:/ {rule}\n")
    assert scanner.changes_body
    assert body == expect(eol, NEST_RAW, new)


def test_primary_headers_and_their_edits_are_unchanged() -> None:
    scanner = HeaderRules(
        "t",
        rules="/^From:/ PREPEND X-Top: 1\n",
        mime_rules="/^Content-Description:/ IGNORE\n",
    )
    message = Message.from_bytes(HEAD + BODY)
    verdict = scanner.check(message)
    out = message.apply(verdict.edits)
    assert out.head_bytes() == b"X-Top: 1\r\n" + HEAD
    assert verdict.body is not None
    assert verdict.body.as_bytes() == BODY.replace(MULT_RAW, b"")


def test_no_match_no_body_and_no_changes_body_without_editing_rules() -> None:
    scanner = HeaderRules("t", rules="/^Subject: inner/ WARN\n", mime_rules="/^x/ HOLD\n")
    assert not scanner.changes_body
    verdict = scanner.check(Message.from_bytes(HEAD + BODY))
    assert verdict.body is None


def test_main_table_edit_counts_for_body_headers_by_default() -> None:
    # mime/nested tables default to the main table, as in Postfix.
    assert HeaderRules("t", rules="/^Subject:/ IGNORE\n").changes_body
    assert not HeaderRules(
        "t", rules="/^Subject:/ IGNORE\n", mime_rules="", nested_rules=""
    ).changes_body
    assert HeaderRules("t", rules="/^nothing/ DUNNO\n", nested_rules="/(.*)/ $1\n").changes_body


def test_reject_needs_no_new_body() -> None:
    scanner = HeaderRules(
        "t",
        rules="/^x/ DUNNO\n",
        mime_rules="/^Content-Description:/ IGNORE\n/^Content-Type: message/ REJECT\n",
    )
    verdict = scanner.check(Message.from_bytes(HEAD + BODY))
    assert verdict.action is Action.REJECT
    assert verdict.body is None


def test_bad_replace_text_is_not_applied() -> None:
    scanner = HeaderRules(
        "t",
        rules="/^x/ DUNNO\n",
        mime_rules="/^Content-Description:/ REPLACE not a header\n",
        strict=False,
    )
    verdict = scanner.check(Message.from_bytes(HEAD + BODY))
    assert verdict.body is None


def test_walk_body_gives_raw_ranges() -> None:
    found = list(walk_body(Body(BODY).open(), [b" multipart/mixed; boundary=XX"]))
    ranges = {h.key.split(b":")[0]: BODY[h.start : h.end] for h in found}
    assert ranges[b"Content-Description"] == MULT_RAW
    assert ranges[b"X-Inner"] == NEST_RAW
    assert ranges[b"Subject"] == b"Subject: inner\r\n"


def test_spooled_body_is_rebuilt_spooled_and_exact() -> None:
    filler = b"x" * 70 + b"\r\n"
    big_body = BODY.replace(b"inner body\r\n", filler * 30000)  # ~2 MB
    builder = BodyBuilder(threshold=64 * 1024)
    builder.write(big_body)
    message = Message(headers=Message.from_bytes(HEAD).headers, body=builder.finish())
    assert message.body.spooled
    verdict = HeaderRules("t", rules="/^x/ DUNNO\n", nested_rules="/^X-Inner:/ IGNORE\n").check(
        message
    )
    assert verdict.body is not None and verdict.body.spooled
    assert verdict.body.as_bytes() == big_body.replace(NEST_RAW, b"")


async def test_pipeline_delivers_the_new_body_and_later_stages_see_it() -> None:
    edit = HeaderRules("edit", rules="/^x/ DUNNO\n", mime_rules="/^Content-Description:/ IGNORE\n")
    after = HeaderRules(
        "after", rules="/^x/ DUNNO\n", mime_rules="/^Content-Description: a/ REJECT\n"
    )
    result = await Pipeline([[edit], [after]]).run(Message.from_bytes(HEAD + BODY))
    assert result.body_replaced
    assert result.action is Action.ACCEPT
    assert result.message.as_bytes() == HEAD + BODY.replace(MULT_RAW, b"")
