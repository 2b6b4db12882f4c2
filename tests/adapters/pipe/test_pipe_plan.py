"""The sans-I/O decision: a scan result (possibly split by policy) -> exit status,
status line and re-injections."""

from __future__ import annotations

import pytest

from mxscan import Action, Envelope, HeaderEdit, Message, Result, Route, SmtpReply, Verdict
from mxscan.adapters.pipe.exitcodes import ExitCode, dsn_line
from mxscan.adapters.pipe.plan import Quarantine, plan

RAW = b"Subject: hi\r\nX-Mxscan-Hold: forged\r\n\r\nbody\r\n"


def group(action: Action, rcpts: tuple[str, ...], policy: str = "default", **kw: object) -> Result:
    message = Message.from_bytes(RAW, envelope=Envelope("s@example.org", rcpts))
    verdict = Verdict(action, scanner="fake", reason=f"fake {action}", **kw)  # type: ignore[arg-type]
    return Result(verdict, (verdict,), message, policy=policy, recipients=rcpts)


def split(*groups: Result) -> Result:
    worst = max(groups, key=lambda g: g.action)
    rcpts = tuple(r for g in groups for r in g.recipients)
    return Result(worst.verdict, (), worst.message, policy="split", recipients=rcpts, splits=groups)


HOLD = Quarantine("hold")


def test_accept_delivers_to_the_recipients_without_forged_markers() -> None:
    decided = plan(group(Action.ACCEPT, ("a@x.test",)), quarantine=HOLD)
    assert decided.exit_code is ExitCode.OK and decided.output == ""
    (delivery,) = decided.deliveries
    assert delivery.recipients == ("a@x.test",)
    assert delivery.message.as_bytes() == b"Subject: hi\r\n\r\nbody\r\n"


def test_reject_uses_the_scanner_reply() -> None:
    reply = SmtpReply(554, "5.7.0", "virus found")
    decided = plan(group(Action.REJECT, ("a@x.test",), reply=reply), quarantine=None)
    assert (decided.exit_code, decided.output, decided.deliveries) == (
        ExitCode.UNAVAILABLE,
        "5.7.0 virus found",
        (),
    )


def test_tempfail_beats_everything_and_delivers_nothing() -> None:
    result = split(
        group(Action.ACCEPT, ("a@x.test",)),
        group(Action.REJECT, ("b@y.test",), "y"),
        group(Action.TEMPFAIL, ("c@z.test",), "z"),
    )
    decided = plan(result, quarantine=HOLD)
    assert decided.exit_code is ExitCode.TEMPFAIL and decided.deliveries == ()
    assert decided.output.startswith("4.7.1 ")


def test_hold_adds_the_marker_with_queue_id_and_reason() -> None:
    decided = plan(group(Action.QUARANTINE, ("a@x.test",)), quarantine=HOLD, queue_id="QID")
    (delivery,) = decided.deliveries
    assert delivery.kind == "hold"
    assert delivery.message.get_all("X-Mxscan-Hold") == ["QID fake: fake quarantine"]


def test_quarantine_address_replaces_the_recipients() -> None:
    decided = plan(
        group(Action.QUARANTINE, ("a@x.test", "b@x.test")),
        quarantine=Quarantine("address", "q@x.test"),
    )
    (delivery,) = decided.deliveries
    assert delivery.recipients == ("q@x.test",)
    assert delivery.message.get("X-Mxscan-Quarantine") == (
        "NOQUEUE fake: fake quarantine; recipients=a@x.test, b@x.test"
    )
    assert delivery.message.get("X-Mxscan-Hold") is None


def test_mixed_reject_is_dropped_with_a_note_and_the_rest_delivered() -> None:
    result = split(
        group(Action.ACCEPT, ("a@x.test",)),
        group(Action.REJECT, ("b@y.test",), "y"),
        group(Action.DISCARD, ("c@z.test",), "z"),
    )
    decided = plan(result, quarantine=None)
    assert decided.exit_code is ExitCode.OK
    assert [d.recipients for d in decided.deliveries] == [("a@x.test",)]
    (note,) = decided.notes
    assert "policy=y rcpts=b@y.test rejected-as-discard" in note


def test_all_groups_rejected_bounce() -> None:
    result = split(group(Action.REJECT, ("a@x.test",)), group(Action.REJECT, ("b@y.test",), "y"))
    assert plan(result, quarantine=None).exit_code is ExitCode.UNAVAILABLE


def test_reject_and_discard_groups_deliver_nothing_and_exit_0() -> None:
    result = split(group(Action.REJECT, ("a@x.test",)), group(Action.DISCARD, ("b@y.test",), "y"))
    decided = plan(result, quarantine=None)
    assert (decided.exit_code, decided.deliveries) == (ExitCode.OK, ())


def test_routes_redirect_then_bcc() -> None:
    routes = (Route("redirect", "r@x.test"), Route("bcc", "archive@x.test"))
    decided = plan(group(Action.ACCEPT, ("a@x.test",), routes=routes), quarantine=None)
    assert decided.deliveries[0].recipients == ("r@x.test", "archive@x.test")


def test_group_edits_stay_with_their_group() -> None:
    tagged = group(Action.ACCEPT, ("a@x.test",))
    edited = Result(
        tagged.verdict,
        tagged.verdicts,
        tagged.message.apply([HeaderEdit.add("X-Tag", "a")]),
        recipients=tagged.recipients,
    )
    result = split(edited, group(Action.ACCEPT, ("b@y.test",), "y"))
    first, second = plan(result, quarantine=None).deliveries
    assert first.message.get("X-Tag") == "a" and second.message.get("X-Tag") is None


@pytest.mark.parametrize(
    ("code", "status", "want"),
    [
        (ExitCode.TEMPFAIL, "5.7.1", "4.3.0"),
        (ExitCode.UNAVAILABLE, "4.7.1", "5.7.1"),
        (ExitCode.TEMPFAIL, "4.7.1", "4.7.1"),
        (ExitCode.UNAVAILABLE, "junk", "5.7.1"),
    ],
)
def test_dsn_line_class_always_matches_the_exit_status(
    code: ExitCode, status: str, want: str
) -> None:
    line = dsn_line(code, status, "some\ntext\twith  space")
    assert line == f"{want} some text with space"
