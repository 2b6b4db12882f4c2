"""What each header_checks action does to the verdict and the message."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mxscan import Action, ConfigError, Message, Route
from mxscan_header_rules import HeaderRules

MAIL = (
    b"Received: from a\r\n"
    b"Received: from b\r\n"
    b"From: alice@example.org\r\n"
    b"Subject: Cheap stuff\r\n"
    b"\r\n"
    b"body\r\n"
)


def run(rules: str, mail: bytes = MAIL, **options: object) -> tuple[Message, object]:
    scanner = HeaderRules("t", rules=rules, **options)  # type: ignore[arg-type]
    message = Message.from_bytes(mail)
    verdict = scanner.check(message)
    return message.apply(verdict.edits), verdict


def test_ignore_second_of_duplicate_headers_keeps_the_first() -> None:
    out, _verdict = run("/^Received: from b/ IGNORE\n")
    assert out.as_bytes() == MAIL.replace(b"Received: from b\r\n", b"")


def test_ignore_both_duplicates() -> None:
    out, _ = run("/^Received:/ IGNORE\n")
    assert out.as_bytes() == MAIL.replace(b"Received: from a\r\nReceived: from b\r\n", b"")


def test_replace_in_place_with_substitution() -> None:
    out, _ = run("/^Subject: (.*)/ REPLACE Subject: [SPAM] $1\n")
    assert out.as_bytes() == MAIL.replace(b"Subject: Cheap stuff", b"Subject: [SPAM] Cheap stuff")


def test_prepend_goes_before_the_matched_header() -> None:
    out, _ = run("/^From:/ PREPEND X-Seen: yes\n/^Received: from b/ PREPEND X-B: 1\n")
    expected = MAIL.replace(b"Received: from b", b"X-B: 1\r\nReceived: from b").replace(
        b"From:", b"X-Seen: yes\r\nFrom:"
    )
    assert out.as_bytes() == expected


def test_edits_after_earlier_edits_use_current_positions() -> None:
    rules = "/^Received: from a/ IGNORE\n/^Received: from b/ PREPEND X-1: a\n/^Subject:/ REPLACE X-2: b\n"
    out, _ = run(rules)
    assert out.as_bytes() == (
        b"X-1: a\r\nReceived: from b\r\nFrom: alice@example.org\r\nX-2: b\r\n\r\nbody\r\n"
    )


def test_replacement_with_a_line_break_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    mail = MAIL.replace(b"Subject: Cheap stuff", b"Subject: Cheap\r\n stuff")
    out, verdict = run("/^Subject: (.*)/ REPLACE Subject: $1\n", mail)
    assert out.as_bytes() == mail
    assert not verdict.edits  # type: ignore[attr-defined]
    assert "refusing REPLACE" in caplog.text


def test_replace_text_that_is_not_a_header_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    out, _verdict = run("/^Subject:/ REPLACE no colon here\n", strict=False)
    assert out.as_bytes() == MAIL
    assert "bad REPLACE header text" in caplog.text
    assert "map (t.rules:1) -- need" in caplog.text  # file:line at scan time too


def test_reject_default_and_custom_status() -> None:
    _, verdict = run("/^Subject: Cheap/ REJECT\n")
    assert verdict.action is Action.REJECT  # type: ignore[attr-defined]
    assert str(verdict.reply) == "550 5.7.1 message content rejected"  # type: ignore[attr-defined]
    _, verdict = run("/^Subject: Cheap/ REJECT 4.7.0 try later\n")
    assert str(verdict.reply) == "450 4.7.0 try later"  # type: ignore[attr-defined]
    _, verdict = run("/^Subject: (Cheap)/ REJECT no $1 mail\n")
    assert str(verdict.reply) == "550 5.7.1 no Cheap mail"  # type: ignore[attr-defined]


def test_reject_stops_further_rules() -> None:
    _, verdict = run("/^Received: from a/ REJECT\n/^Subject:/ IGNORE\n")
    assert verdict.action is Action.REJECT  # type: ignore[attr-defined]
    assert not verdict.edits  # type: ignore[attr-defined]


def test_hold_is_quarantine_and_later_edits_still_apply() -> None:
    out, verdict = run("/^From:/ HOLD\n/^Subject:/ IGNORE\n")
    assert verdict.action is Action.QUARANTINE  # type: ignore[attr-defined]
    assert b"Subject:" not in out.as_bytes()


def test_routes_redirect_bcc_filter() -> None:
    rules = (
        "/^Received: from a/ REDIRECT x@example.net\n"
        "/^Received: from b/ BCC audit@example.net\n"
        "/^From:/ FILTER smtp:[127.0.0.1]:10025\n"
        "/^Subject:/ REDIRECT y@example.net\n"
    )
    _, verdict = run(rules)
    assert verdict.routes == (  # type: ignore[attr-defined]
        Route("bcc", "audit@example.net"),
        Route("filter", "smtp:[127.0.0.1]:10025"),
        Route("redirect", "y@example.net"),
    )
    assert verdict.action is Action.ACCEPT  # type: ignore[attr-defined]


def test_pass_stops_header_rules() -> None:
    out, verdict = run("/^From:/ PASS\n/^Subject:/ IGNORE\n")
    assert out.as_bytes() == MAIL
    assert verdict.findings == ("t.rules:1",)  # type: ignore[attr-defined]


def test_warn_and_info_are_logged_not_acted_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mxscan.header_rules")
    out, verdict = run("/^Subject:/ WARN cheap subject\n/^From:/ INFO\n")
    assert out.as_bytes() == MAIL
    assert verdict.status == "matched(2)"  # type: ignore[attr-defined]
    assert (
        "warning: header Subject: Cheap stuff; from=<> to=<unknown>: cheap subject" in caplog.text
    )
    assert "info: header From: alice@example.org" in caplog.text


def test_dunno_and_ok_change_nothing() -> None:
    out, verdict = run("/^Subject:/ DUNNO\n/^From:/ OK\n")
    assert out.as_bytes() == MAIL
    assert verdict.action is Action.ACCEPT  # type: ignore[attr-defined]


def test_first_matching_rule_wins() -> None:
    out, _verdict = run("/^Subject:/ DUNNO\n/^Subject:/ IGNORE\n")
    assert out.as_bytes() == MAIL


def test_unknown_command_is_warned_with_file_and_line(caplog: pytest.LogCaptureFixture) -> None:
    out, _verdict = run("/^x/ DUNNO\n/^Subject:/ FROBNICATE\n", strict=False)
    assert out.as_bytes() == MAIL
    # At load time, and at scan time naming the rule (issue 19.3).
    assert (
        "pcre map t.rules, line 2: unknown command in header_checks map: FROBNICATE: "
        "this rule never acts" in caplog.text
    )
    assert "NOQUEUE: unknown command in header_checks map: FROBNICATE (t.rules:2)" in caplog.text


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("/^Subject:/ REJCT spam", "unknown command in header_checks map: REJCT"),
        ("/^Subject:/", "unknown command in header_checks map: (none)"),
        ("/^Subject:/ REDIRECT", "missing REDIRECT command argument in header_checks map"),
        ("/^Subject:/ PREPEND", "PREPEND action without text in header_checks map"),
        ("/^Subject:/ REPLACE no colon", 'bad REPLACE header text "no colon" in header_checks'),
        ("/(/ REJECT", "error in regex at offset 1"),
        ("/^Subject: (.*)/ REJECT $2", 'out of range replacement index "2"'),
        ("/^Subject:/i; REJECT", 'unknown regexp option ";"'),
    ],
)
def test_a_rule_postfix_would_skip_is_refused_by_default(rule: str, problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        HeaderRules("t", rules=f"/^x/ DUNNO\n{rule}\n")
    assert "t.rules, line 2: " + problem in str(exc.value), exc.value
    assert "strict = false" in str(exc.value)


def test_rules_whose_action_comes_from_the_match_are_not_judged_at_load() -> None:
    HeaderRules("t", rules="/^X-Do: (\\w+)/ $1\n/^Subject: (.*)/ REPLACE $1\n")


def test_space_before_colon_is_matched_as_postfix_does() -> None:
    mail = MAIL.replace(b"Subject: Cheap", b"Subject : Cheap")
    out, _ = run("/^Subject: Cheap/ IGNORE\n", mail)
    assert b"Cheap" not in out.as_bytes()


MIME_MAIL = (
    b"From: a@example.org\r\n"
    b"Content-Type: multipart/mixed; boundary=XX\r\n"
    b"\r\n"
    b"--XX\r\n"
    b'Content-Type: application/octet-stream; name="run.exe"\r\n'
    b"\r\n"
    b"AAAA\r\n"
    b"--XX\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: inner\r\n"
    b"X-Spam-Flag: YES\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--XX--\r\n"
)


def test_attachment_name_rule_reaches_mime_part_headers() -> None:
    _, verdict = run('/^Content-Type:.*name="?.*\\.exe/ REJECT no executables\n', MIME_MAIL)
    assert verdict.action is Action.REJECT  # type: ignore[attr-defined]


def test_nested_message_headers_use_nested_rules() -> None:
    _, verdict = run("/^X-Spam-Flag: YES/ DISCARD\n", MIME_MAIL)
    assert verdict.action is Action.DISCARD  # type: ignore[attr-defined]
    _, verdict = run("/^X-Spam-Flag: YES/ DISCARD\n", MIME_MAIL, nested_rules="")
    assert verdict.action is Action.ACCEPT  # type: ignore[attr-defined]
    _, verdict = run("/^nothing/ DUNNO\n", MIME_MAIL, nested_rules="/^X-Spam-Flag/ HOLD\n")
    assert verdict.action is Action.QUARANTINE  # type: ignore[attr-defined]


def test_mime_rules_can_be_turned_off() -> None:
    _, verdict = run('/name="run.exe"/ REJECT\n', MIME_MAIL, mime_rules="")
    assert verdict.action is Action.ACCEPT  # type: ignore[attr-defined]


def test_body_header_edits_are_made_in_a_new_body() -> None:
    out, verdict = run("/^Subject: inner/ IGNORE\n", MIME_MAIL)
    assert out.as_bytes() == MIME_MAIL  # the primary header is untouched
    new_body = verdict.body.as_bytes()  # type: ignore[attr-defined]
    assert out.head_bytes() + new_body == MIME_MAIL.replace(b"Subject: inner\r\n", b"")


def test_regexp_type_option() -> None:
    _, verdict = run("/^Subject: (Cheap|Cheap stuff)$/ REJECT $1\n", type="regexp")
    assert str(verdict.reply) == "550 5.7.1 Cheap stuff"  # type: ignore[attr-defined]


def test_bad_lines_warn_without_strict_and_refuse_with_it(caplog: pytest.LogCaptureFixture) -> None:
    HeaderRules("t", rules="/(/ REJECT\n/x/ DUNNO\n", strict=False)
    assert "pcre map t.rules, line 1: error in regex at offset 1" in caplog.text
    with pytest.raises(ConfigError, match="strict"):
        HeaderRules("t", rules="/(/ REJECT\n", strict=True)
    with pytest.raises(ConfigError, match="strict"):
        HeaderRules("t", rules="/(/ REJECT\n")  # the default


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs 'file'"),
        ({"rules": "/x/ OK", "file": "/x"}, "not both"),
        ({"rules": "/x/ OK", "type": "cdb"}, "^type: expected one of pcre, regexp, got 'cdb'"),
        ({"file": "/nonexistent/header_checks"}, "cannot read"),
        ({"rules": "/x/ OK", "match_limit": 0}, "^match_limit: expected a whole number >= 1"),
        ({"rules": "/x/ OK", "depth_limit": "9"}, "^depth_limit: expected a whole number"),
        ({"rules": "/x/ OK", "header_size_limit": -1}, "^header_size_limit: expected a whole"),
        ({"rules": "/x/ OK", "header_size_limit": True}, "^header_size_limit: expected a whole"),
        # None is "the default" for the PCRE limits only: it used to pass the check
        # and then crash every scan comparing None with the key length.
        ({"rules": "/x/ OK", "header_size_limit": None}, "^header_size_limit: expected a whole"),
        ({"rules": "/x/ OK", "strict": "yes"}, "^strict: expected true or false, got 'yes'"),
        ({"rules": 3}, "^rules: expected a string, got 3"),
        ({"rules": "/x/ OK", "mime_file": 3}, "^mime_file: expected a path, got 3"),
    ],
)
def test_config_errors_are_clear(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HeaderRules("t", **options)  # type: ignore[arg-type]


def test_entry_point_builds_the_scanner(tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="mxscan.scanners") if e.name == "header-rules"]
    factory = ep.load()
    scanner = factory(name="x", rules="/^Subject:/ IGNORE\n")
    assert scanner.name == "x"


async def test_scan_is_async_and_concurrent_safe() -> None:
    import asyncio

    scanner = HeaderRules("t", rules="/^Subject: (.*)/ REPLACE Subject: [$1]\n")
    messages = [Message.from_bytes(MAIL.replace(b"Cheap", f"m{i}".encode())) for i in range(20)]
    verdicts = await asyncio.gather(*(scanner.scan(m) for m in messages))
    for i, (message, verdict) in enumerate(zip(messages, verdicts, strict=True)):
        assert f"Subject: [m{i} stuff]".encode() in message.apply(verdict.edits).as_bytes()
