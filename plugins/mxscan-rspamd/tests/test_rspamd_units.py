"""The sans-I/O parts: request headers, the answer, the edits, the options."""

from __future__ import annotations

import json

import pytest
from mxscan_rspamd import Rspamd
from mxscan_rspamd.answer import AnswerError, HeaderAdd, parse_answer
from mxscan_rspamd.edits import forged_removals, is_spam_header, milter_edits, unfold
from mxscan_rspamd.request import envelope_headers, settings_header

from mxscan import (
    Action,
    ConfigError,
    EditKind,
    Envelope,
    Header,
    HeaderEdit,
    Message,
    ScannerError,
)


def test_envelope_goes_in_rspamd_headers_with_rcpt_repeated() -> None:
    envelope = Envelope(
        sender="alice@example.com",
        recipients=["bob@example.net", "carol@example.net"],
        client_address="192.0.2.7",
        client_name="mail.example.com",
        helo="mail.example.com",
        queue_id="4ABC",
        auth_user="alice",
    )
    assert envelope_headers(envelope) == [
        ("From", "alice@example.com"),
        ("Rcpt", "bob@example.net"),
        ("Rcpt", "carol@example.net"),
        ("Ip", "192.0.2.7"),
        ("Helo", "mail.example.com"),
        ("Hostname", "mail.example.com"),
        ("User", "alice"),
        ("Queue-Id", "4ABC"),
    ]


def test_null_sender_is_sent_as_angle_brackets_and_unknown_fields_are_left_out() -> None:
    assert envelope_headers(Envelope(sender="", recipients=["bob@example.net"])) == [
        ("From", "<>"),
        ("Rcpt", "bob@example.net"),
    ]


@pytest.mark.parametrize("bad", ["evil\r\nSettings: {}", "evil\nX: y", "a\0b", "a\x1bb"])
def test_a_control_character_in_an_envelope_field_is_refused(bad: str) -> None:
    with pytest.raises(ScannerError, match="refusing to send Helo"):
        envelope_headers(Envelope(helo=bad))


def test_undecodable_bytes_in_an_envelope_field_are_refused() -> None:
    with pytest.raises(ScannerError, match="not valid UTF-8"):
        envelope_headers(Envelope(sender=b"a\xffb@example.com".decode("utf-8", "surrogateescape")))


def test_settings_header_carries_the_thresholds() -> None:
    assert settings_header({}) is None
    text = settings_header({"reject": 10.0, "add header": 4.0})
    assert text is not None
    assert json.loads(text) == {"actions": {"add header": 4.0, "reject": 10.0}}
    assert "\n" not in text


REAL_ANSWER = (
    b'{"is_skipped":false,"score":1.100000,"required_score":15.0,"action":"no action",'
    b'"symbols":{"ONCE_RECEIVED":{"name":"ONCE_RECEIVED","score":0.100000},'
    b'"RDNS_NONE":{"name":"RDNS_NONE","score":1.0},"FROM_NO_DN":{"name":"FROM_NO_DN","score":0.0}},'
    b'"messages":{},"message-id":"2@example.org","time_real":0.233233,'
    b'"milter":{"remove_headers":{"X-Spamd-Result":0,"X-Spam":0},'
    b'"add_headers":{"X-Spam-Level":{"order":-1,"value":"*"},'
    b'"X-Spamd-Result":{"order":-1,"value":"default: False [1.10 / 15.00];\\r\\n\\tRDNS_NONE(1.00)[]"},'
    b'"X-Spam-Status":{"order":-1,"value":"No, score=1.10"}}}}'
)


def test_a_real_checkv2_answer_is_read() -> None:
    answer = parse_answer(REAL_ANSWER)
    assert answer.action == "no action"
    assert (answer.score, answer.required_score) == (1.1, 15.0)
    assert answer.symbols == ("RDNS_NONE", "ONCE_RECEIVED", "FROM_NO_DN")  # by score
    assert answer.remove_headers == (("X-Spamd-Result", 0), ("X-Spam", 0))
    assert answer.add_headers[0] == HeaderAdd("X-Spam-Level", "*", None)
    assert answer.add_headers[1].value == "default: False [1.10 / 15.00];\r\n\tRDNS_NONE(1.00)[]"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>hello</html>", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"error": "bad request"}', "rspamd error"),
        (b'{"score": 1.0, "required_score": 15.0}', "'action' is None"),
        (b'{"action": "reject", "score": "high", "required_score": 15.0}', "'score' is 'high'"),
        (b'{"action": "reject", "score": NaN, "required_score": 15.0}', "'score' is nan"),
        (b'{"action": "reject", "score": 1, "required_score": 15, "milter": 3}', "'milter'"),
        (
            b'{"action": "reject", "score": 1, "required_score": 15,'
            b' "milter": {"add_headers": {"X-A": {"value": 3}}}}',
            "value is 3",
        ),
    ],
)
def test_anything_but_a_checkv2_result_is_an_answer_error(body: bytes, why: str) -> None:
    with pytest.raises(AnswerError, match=why):
        parse_answer(body)


def test_folds_are_unfolded_and_any_other_line_break_is_refused() -> None:
    assert unfold("X-Spamd-Result", "a;\r\n\tB(1)[];\n C") == "a;\tB(1)[]; C"
    with pytest.raises(ScannerError, match="not a fold"):
        unfold("X-Spamd-Result", "a\r\nBcc: victim@example.org")
    with pytest.raises(ScannerError, match="not a fold"):
        unfold("X-Spamd-Result", "a\r\n")


def headers(data: bytes) -> list[Header]:
    return list(Message.from_bytes(data).headers)


def test_forged_verdict_headers_are_deleted_last_first() -> None:
    hs = headers(
        b"X-Spam-Flag: YES\r\nFrom: a@example.com\r\nX-Spam: yes\r\nX-Spamd-Result: x\r\n"
        b"X-Rspamd-Server: y\r\nX-Spam-Flag: NO\r\nX-Spammy: kept\r\n\r\nbody\r\n"
    )
    edits = forged_removals(hs)
    assert [str(e) for e in edits] == [
        "delete X-Spam-Flag[2]",
        "delete X-Rspamd-Server[1]",
        "delete X-Spamd-Result[1]",
        "delete X-Spam[1]",
        "delete X-Spam-Flag[1]",
    ]
    left = Message.from_bytes(b"".join(h.raw for h in hs) + b"\r\nbody\r\n").apply(edits)
    assert [h.name for h in left.headers] == ["From", "X-Spammy"]
    assert not is_spam_header("X-Spammy") and is_spam_header("x-spam")


def test_milter_block_becomes_edits_removals_first() -> None:
    answer = parse_answer(REAL_ANSWER)
    hs = headers(b"X-Spam: a\r\nFrom: a@example.com\r\nX-Spam: b\r\n\r\n")
    edits = milter_edits(answer, hs)
    assert edits[:2] == [HeaderEdit.delete("X-Spam", 2), HeaderEdit.delete("X-Spam", 1)]
    assert edits[2:] == [
        HeaderEdit.add("X-Spam-Level", "*"),
        HeaderEdit.add("X-Spamd-Result", "default: False [1.10 / 15.00];\tRDNS_NONE(1.00)[]"),
        HeaderEdit.add("X-Spam-Status", "No, score=1.10"),
    ]


def test_a_positive_order_inserts_and_negative_removal_counts_from_the_end() -> None:
    body = (
        b'{"action":"add header","score":7,"required_score":15,"milter":{'
        b'"add_headers":{"X-Spam":{"order":0,"value":"Yes"}},"remove_headers":{"X-Old":-1}}}'
    )
    hs = headers(b"X-Old: 1\r\nX-Old: 2\r\nX-Old: 3\r\n\r\n")
    edits = milter_edits(parse_answer(body), hs)
    assert edits == [HeaderEdit.delete("X-Old", 3), HeaderEdit.insert(0, "X-Spam", "Yes")]
    assert edits[1].kind is EditKind.INSERT


def test_options_are_checked_and_name_the_option() -> None:
    with pytest.raises(ConfigError, match="actions.reject: expected one of"):
        Rspamd(actions={"reject": "bounce"})
    with pytest.raises(ConfigError, match="actions: expected a table"):
        Rspamd(actions="discard")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="reject_score: expected a number"):
        Rspamd(reject_score="high")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="on_oversize: expected one of accept, tempfail, reject"):
        Rspamd(on_oversize="truncate")
    with pytest.raises(ConfigError, match="password: expected one printable line"):
        Rspamd(password="a\r\nb")
    with pytest.raises(ConfigError, match="address"):
        Rspamd(address="tcp://localhost")


def test_action_table_defaults_and_overrides() -> None:
    table = Rspamd(actions={"reject": "discard", "add_header": "quarantine"}).options.actions
    assert table["reject"] is Action.DISCARD
    assert table["add header"] is Action.QUARANTINE
    assert table["soft reject"] is Action.TEMPFAIL
    assert table["rewrite subject"] is Action.ACCEPT
    assert Rspamd().options.actions["reject"] is Action.REJECT


def test_thresholds_go_in_a_settings_header() -> None:
    scanner = Rspamd(reject_score=9, add_header_score=3.5)
    (name, value), *_ = scanner._extra
    assert name == "Settings"
    assert json.loads(value) == {"actions": {"reject": 9.0, "add header": 3.5}}
    assert Rspamd()._extra == []
