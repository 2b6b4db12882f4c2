"""An mxscan Result -> rspamd's /checkv2 JSON (sans-I/O), one test per row of the
mapping table in docs/http.md."""

from __future__ import annotations

import pytest

from mxscan import Action, HeaderEdit, Message, Pipeline, SmtpReply, Verdict
from mxscan.adapters.http import native, rspamd
from tests.support.scanners import FakeScanner

MESSAGE = (
    b"From: a@example.org\r\nSubject: hello\r\nX-Spam-Flag: YES\r\nX-Spam-Flag: YES\r\n"
    b"Message-ID: <m1@example.org>\r\n\r\nbody\r\n"
)


async def _result(*scanners: FakeScanner, stages: bool = False):  # type: ignore[no-untyped-def]
    pipeline = Pipeline([[s] for s in scanners] if stages else [list(scanners)])
    return await pipeline.run(Message.from_bytes(MESSAGE))


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Action.ACCEPT, "no action"),
        (Action.TEMPFAIL, "soft reject"),
        (Action.QUARANTINE, "quarantine"),
        (Action.DISCARD, "discard"),
        (Action.REJECT, "reject"),
    ],
)
async def test_action_names(action: Action, expected: str) -> None:
    result = await _result(FakeScanner("x", action=action))
    assert rspamd.rspamd_answer(result, elapsed=0.5)["action"] == expected


async def test_every_action_has_an_rspamd_name() -> None:
    assert set(rspamd.ACTIONS) == set(Action)


async def test_spam_scored_but_accepted_is_add_header() -> None:
    result = await _result(FakeScanner("spamassassin", score=7.5, threshold=5.0))
    answer = rspamd.rspamd_answer(result, elapsed=0.0)
    assert answer["action"] == "add header"
    assert answer["score"] == 7.5
    assert answer["required_score"] == 5.0


async def test_ham_scored_is_no_action() -> None:
    result = await _result(FakeScanner("spamassassin", score=1.0, threshold=5.0))
    assert rspamd.rspamd_answer(result, elapsed=0.0)["action"] == "no action"


async def test_subject_change_is_rewrite_subject_with_the_new_subject() -> None:
    edit = HeaderEdit.change("Subject", 1, "[SPAM] hello")
    result = await _result(FakeScanner("sa", edits=(edit,)))
    answer = rspamd.rspamd_answer(result, elapsed=0.0)
    assert answer["action"] == "rewrite subject"
    assert answer["subject"] == "[SPAM] hello"
    assert answer["milter"]["remove_headers"] == {"Subject": 1}
    assert answer["milter"]["add_headers"] == {"Subject": {"value": "[SPAM] hello", "order": -1}}


async def test_reject_carries_the_smtp_message() -> None:
    reply = SmtpReply(550, "5.7.1", "Virus found: Eicar")
    result = await _result(FakeScanner("clamav", action=Action.REJECT, reply=reply))
    answer = rspamd.rspamd_answer(result, elapsed=0.0)
    assert answer["messages"] == {"smtp_message": "5.7.1 Virus found: Eicar"}


async def test_tempfail_carries_the_default_reply() -> None:
    result = await _result(FakeScanner("clamav", action=Action.TEMPFAIL))
    answer = rspamd.rspamd_answer(result, elapsed=0.0)
    assert answer["action"] == "soft reject"
    assert answer["messages"]["smtp_message"].startswith("4.7.1 ")


async def test_symbols_per_scanner_with_findings_as_options() -> None:
    result = await _result(
        FakeScanner("clamav", status="infected(Eicar)", findings=("Eicar-Test-Signature",)),
        FakeScanner("header-rules"),
    )
    symbols = rspamd.rspamd_answer(result, elapsed=0.0)["symbols"]
    assert symbols["CLAMAV"]["options"] == ["Eicar-Test-Signature"]
    assert symbols["CLAMAV"]["name"] == "CLAMAV"
    assert symbols["CLAMAV"]["description"].startswith("infected(Eicar)")
    assert "options" not in symbols["HEADER_RULES"]
    assert symbols["HEADER_RULES"]["score"] == 0.0


async def test_header_edits_as_milter_block() -> None:
    edits = (
        HeaderEdit.add("X-Virus-Status", "Clean"),
        HeaderEdit.add("X-Note", "one"),
        HeaderEdit.add("X-Note", "two"),
        HeaderEdit.insert(0, "X-First", "top"),
    )
    result = await _result(FakeScanner("x", edits=edits))
    milter = rspamd.rspamd_answer(result, elapsed=0.0)["milter"]
    assert milter["add_headers"] == {
        "X-Virus-Status": {"value": "Clean", "order": -1},
        "X-Note": [{"value": "one", "order": -1}, {"value": "two", "order": -1}],
        "X-First": {"value": "top", "order": 0},
    }
    assert "remove_headers" not in milter


async def test_deleting_every_occurrence_is_remove_all() -> None:
    edits = (HeaderEdit.delete("X-Spam-Flag", 1), HeaderEdit.delete("X-Spam-Flag", 1))
    result = await _result(FakeScanner("x", edits=edits))
    assert rspamd.rspamd_answer(result, elapsed=0.0)["milter"] == {
        "remove_headers": {"X-Spam-Flag": 0}
    }


async def test_deleting_one_of_two_names_that_occurrence() -> None:
    result = await _result(FakeScanner("x", edits=(HeaderEdit.delete("X-Spam-Flag", 2),)))
    assert rspamd.rspamd_answer(result, elapsed=0.0)["milter"] == {
        "remove_headers": {"X-Spam-Flag": 2}
    }


async def test_no_edits_no_milter_block_and_message_id_and_time() -> None:
    result = await _result(FakeScanner("x"))
    answer = rspamd.rspamd_answer(result, elapsed=0.1234567)
    assert "milter" not in answer
    assert answer["message-id"] == "m1@example.org"
    assert answer["time_real"] == 0.123457
    assert answer["is_skipped"] is False


async def test_is_skipped_when_every_scanner_skipped() -> None:
    result = await _result(FakeScanner("a", skip="oversize"))
    assert rspamd.rspamd_answer(result, elapsed=0.0)["is_skipped"] is True


async def test_shadow_verdicts_are_marked() -> None:
    scanner = FakeScanner("sa", action=Action.REJECT)
    from mxscan import Step

    result = await Pipeline([[Step(scanner, shadow=True)]]).run(Message.from_bytes(MESSAGE))
    answer = rspamd.rspamd_answer(result, elapsed=0.0)
    assert answer["action"] == "no action"
    assert "SHADOW_SA" in answer["symbols"]


def test_symbol_names() -> None:
    assert rspamd.symbol_name("header-rules") == "HEADER_RULES"
    assert rspamd.symbol_name("ClamAV.2") == "CLAMAV_2"
    assert rspamd.symbol_name("---") == "MXSCAN"


async def test_legacy_check_shape() -> None:
    result = await _result(FakeScanner("x", action=Action.REJECT))
    legacy = rspamd.legacy_answer(rspamd.rspamd_answer(result, elapsed=0.0))
    assert legacy["default"]["is_spam"] is True
    assert legacy["default"]["action"] == "reject"
    assert legacy["default"]["X"]["name"] == "X"
    assert "symbols" not in legacy and "symbols" not in legacy["default"]
    assert legacy["messages"]["smtp_message"]


async def test_native_json_has_every_verdict_and_edit() -> None:
    result = await _result(
        FakeScanner("a", edits=(HeaderEdit.add("X-A", "1"),)),
        FakeScanner("b", action=Action.REJECT, reason="bad", score=3.0),
    )
    out = native.result_json(result, elapsed=0.25)
    assert out["action"] == "reject"
    assert [v["scanner"] for v in out["verdicts"]] == ["a", "b"]
    assert out["verdicts"][1]["score"] == 3.0
    assert out["edits"] == [{"kind": "add", "name": "X-A", "value": "1"}]
    assert out["reply"] == {"code": 550, "status": "5.7.1", "text": "Message rejected"}
    assert out["log"].startswith("NOQUEUE: a=clean b=reject action=reject")
    assert out["splits"] == []


def test_error_answer() -> None:
    answer = rspamd.error_answer(Action.TEMPFAIL, SmtpReply(451, "4.7.1", "try later"), elapsed=0.0)
    assert answer["action"] == "soft reject"
    assert answer["messages"]["smtp_message"] == "4.7.1 try later"
    assert Verdict().score is None
