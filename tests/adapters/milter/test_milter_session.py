"""Session units: the state machine driven with hand-built MTA packets, no sockets."""

from __future__ import annotations

import struct
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxscan.adapters.milter.constants import ModifyFlag as Flag
from mxscan.adapters.milter.outcome import body_packets
from mxscan.adapters.milter.packets import ProtocolError
from mxscan.adapters.milter.session import Limits, Output, Session
from mxscan.body import Body, BodyBuilder
from mxscan.edits import HeaderEdit
from mxscan.message import Message
from mxscan.router import domain_of
from mxscan.verdict import Action, Result, Route, SmtpReply, Verdict
from tests.support import mta

RAW = (
    b"Received: from x by y; Thu, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Subject:  two spaces and\r\n\tfolded\r\n"
    b"From: <a@example.org>\r\n"
    b"X-Tab:\tvalue\r\n"
    b"\r\n"
    b"Body line 1\r\n"
    b"\r\n"
    b"last line\r\n"
)


def result(msg: Message, action: Action = Action.ACCEPT, edits=(), **kw) -> Result:  # type: ignore[no-untyped-def]
    v = Verdict(action=action, scanner="t", edits=edits, **kw)
    return Result(verdict=v, verdicts=(v,), message=msg, edits=tuple(edits))


def start(session: Session) -> bytes:
    step = session.receive(mta.optneg())
    return step.send


def envelope(session: Session, *rcpts: str, sender: str = "s@example.org") -> bytes:
    data = mta.macro(b"C", **{"{client_addr}": "192.0.2.9", "j": "mx.example"})
    data += mta.connect() + mta.helo("helo.example")
    data += mta.macro(b"M", i="ABC123", **{"{auth_authen}": "bob"})
    data += mta.mail(sender, "SIZE=10")
    for r in rcpts:
        data += mta.rcpt(r)
    return session.receive(data).send


def deliver(session: Session, raw: bytes = RAW, chunk: int = 65535) -> Message:
    step = session.receive(b"".join(mta.message_packets(raw, chunk)))
    assert step.send == b""  # NR_HDR / NR_BODY: no replies for content
    assert step.message is not None
    return step.message


def test_message_rebuilt_byte_for_byte_with_envelope() -> None:
    s = Session()
    reply = mta.parse_replies(start(s))
    assert reply[0][0] == b"O"
    assert mta.parse_replies(envelope(s, "r1@example.net", "r2@example.net")) == [
        (b"c", b""),
        (b"c", b""),
    ]
    msg = deliver(s)
    assert msg.as_bytes() == RAW
    env = msg.envelope
    assert env.sender == "s@example.org"
    assert env.recipients == ("r1@example.net", "r2@example.net")
    assert env.client_address == "192.0.2.9" and env.client_name == "client.example"
    assert env.helo == "helo.example" and env.queue_id == "ABC123" and env.auth_user == "bob"
    assert env.macros["j"] == "mx.example"
    out = s.complete(result(msg))
    assert mta.parse_replies(out.send) == [(b"c", b"")]


def test_null_sender_and_body_spooled_in_chunks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Session(spool_threshold=1000, spool_dir=str(tmp_path))
    start(s)
    envelope(s, "r@example.net", sender="")
    raw = b"Subject: big\r\n\r\n" + b"0123456789abcde\r\n" * 5000
    msg = deliver(s, raw, chunk=4096)
    assert msg.envelope.sender == ""
    assert msg.body.spooled
    assert msg.as_bytes() == raw


def test_two_messages_on_one_connection_do_not_leak_state() -> None:
    s = Session()
    start(s)
    envelope(s, "r1@example.net")
    first = deliver(s)
    s.complete(result(first))
    s.receive(mta.ABORT)  # Postfix sends ABORT after end-of-message too
    s.receive(mta.mail("other@example.org") + mta.rcpt("r2@example.net"))
    second = deliver(s, b"Subject: second\r\n\r\nhi\r\n")
    assert second.envelope.recipients == ("r2@example.net",)
    assert second.envelope.sender == "other@example.org"
    assert [h.name for h in second.headers] == ["Subject"]
    assert second.envelope.queue_id is None  # the first message's "i" is gone
    assert second.envelope.client_address == "192.0.2.9"  # connection macros stay
    assert s.messages == 1


def test_abort_mid_message_drops_headers_and_body() -> None:
    s = Session(spool_threshold=10)
    start(s)
    envelope(s, "r1@example.net")
    s.receive(mta.header(b"X-Old", b" 1") + b"".join(mta.body(b"x" * 100)))
    builder = s._tx.body
    assert builder is not None
    s.receive(mta.ABORT)
    assert builder._file is None  # spool closed
    s.receive(mta.mail("a@b.example") + mta.rcpt("c@d.example"))
    msg = deliver(s, b"Subject: new\r\n\r\nbody\r\n")
    assert msg.as_bytes() == b"Subject: new\r\n\r\nbody\r\n"


def test_events_after_eom_wait_for_the_result() -> None:
    s = Session()
    start(s)
    envelope(s, "r@example.net")
    step = s.receive(
        b"".join(mta.message_packets(b"Subject: a\r\n\r\nb\r\n")) + mta.ABORT + mta.QUIT
    )
    assert step.message is not None and not step.closed
    after = s.complete(result(step.message))
    assert after.send == mta.pkt(b"c") and after.closed


def test_hangup_closes_spool() -> None:
    s = Session(spool_threshold=10)
    start(s)
    envelope(s, "r@example.net")
    s.receive(b"".join(mta.body(b"y" * 1000)))
    builder = s._tx.body
    assert builder is not None and builder._file is not None
    s.close()
    assert builder._file is None


def test_event_before_negotiation_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        Session().receive(mta.helo())


# -- mapping results to replies ----------------------------------------------------------


def eom(s: Session, raw: bytes = RAW) -> Message:
    start(s)
    envelope(s, "r@example.net")
    return deliver(s, raw)


def test_accept_with_edits_uses_postfix_indexes() -> None:
    s = Session()
    msg = eom(s)
    edits = (
        HeaderEdit.add("X-Scanned", "yes"),
        HeaderEdit.insert(0, "X-Top", "\tfirst"),
        HeaderEdit.change("Subject", 1, "new subject"),
        HeaderEdit.delete("X-Tab", 1),
        HeaderEdit.change("X-Missing", 3, "appended"),
        HeaderEdit.delete("X-Missing-Too", 1),
    )
    out = mta.parse_replies(s.complete(result(msg, edits=edits)).send)
    assert out == [
        (b"h", b"X-Scanned\0 yes\0"),
        # Position 0 of the visible headers is wire index 1 (Postfix's own
        # Received: header is index 0).
        (b"i", struct.pack("!I", 1) + b"X-Top\0\tfirst\0"),
        # First instance: insert before it, then delete the old (now 2nd) one.
        # Headers now: X-Top, Received, Subject -> Subject is at position 2.
        (b"i", struct.pack("!I", 3) + b"Subject\0 new subject\0"),
        (b"m", struct.pack("!I", 2) + b"Subject\0\0"),
        (b"m", struct.pack("!I", 1) + b"X-Tab\0\0"),
        (b"h", b"X-Missing\0 appended\0"),
        (b"c", b""),
    ]


def test_change_second_instance_is_plain_chgheader() -> None:
    s = Session()
    msg = eom(s, b"X-A: 1\r\nX-A: 2\r\n\r\n")
    out = mta.parse_replies(s.complete(result(msg, edits=(HeaderEdit.change("x-a", 2, "b"),))).send)
    assert out == [(b"m", struct.pack("!I", 2) + b"x-a\0 b\0"), (b"c", b"")]


def test_reject_tempfail_discard_quarantine() -> None:
    s = Session()
    msg = eom(s)
    r = s.complete(result(msg, Action.REJECT, reply=SmtpReply(554, "5.7.0", "100% spam")))
    assert mta.parse_replies(r.send) == [(b"y", b"554 5.7.0 100%% spam\0")]

    s = Session()
    msg = eom(s)
    r = s.complete(result(msg, Action.REJECT))
    assert mta.parse_replies(r.send) == [(b"y", b"550 5.7.1 Message rejected\0")]

    s = Session()
    msg = eom(s)
    r = s.complete(result(msg, Action.TEMPFAIL))
    code, data = mta.parse_replies(r.send)[0]
    assert code == b"y" and data.startswith(b"451 4.7.1 ")

    s = Session()
    msg = eom(s)
    # Edits are pointless on discarded mail: only the decision goes out.
    r = s.complete(result(msg, Action.DISCARD, edits=(HeaderEdit.add("X", "y"),)))
    assert mta.parse_replies(r.send) == [(b"d", b"")]

    s = Session()
    msg = eom(s)
    r = s.complete(
        result(msg, Action.QUARANTINE, reason="virus found", edits=(HeaderEdit.add("X", "y"),))
    )
    assert mta.parse_replies(r.send) == [
        (b"h", b"X\0 y\0"),
        (b"q", b"virus found\0"),
        (b"c", b""),
    ]


def test_routes_become_recipient_changes() -> None:
    s = Session()
    msg = eom(s)
    r = s.complete(result(msg, routes=(Route("redirect", "admin@example.org"),)))
    assert mta.parse_replies(r.send) == [
        (b"-", b"<r@example.net>\0"),
        (b"+", b"<admin@example.org>\0"),
        (b"c", b""),
    ]


def test_pipeline_failure_gives_default_reply() -> None:
    s = Session()
    eom(s)
    code, data = mta.parse_replies(s.fail(RuntimeError("boom")).send)[0]
    assert code == b"y" and data.startswith(b"451 4.7.1")
    s = Session(default_action="accept")
    eom(s)
    assert s.fail().send == mta.pkt(b"c")


def test_complete_without_message_is_an_error() -> None:
    s = Session()
    start(s)
    with pytest.raises(RuntimeError):
        s.fail()


def test_quarantine_not_granted_tempfails() -> None:
    s = Session()
    s.receive(mta.optneg(actions=0x1FF & ~(1 << 5)))
    envelope(s, "r@example.net")
    msg = deliver(s)
    assert s.complete(result(msg, Action.QUARANTINE)).send == mta.pkt(b"t")


# -- per-recipient policy split ------------------------------------------------------------


def by_domain(rcpt: str) -> str:
    return "strict" if domain_of(rcpt) == "strict.example" else "default"


def test_policy_split_defers_recipients_of_another_policy() -> None:
    s = Session(policy_for=by_domain)
    start(s)
    out = envelope(s, "a@example.net", "b@strict.example", "c@other.example")
    assert mta.parse_replies(out) == [
        (b"c", b""),
        (b"y", b"452 4.5.3 Recipient policy differs: send to it in a separate transaction\0"),
        (b"c", b""),
    ]
    msg = deliver(s)
    assert msg.envelope.recipients == ("a@example.net", "c@other.example")
    s.complete(result(msg))
    # The next transaction may start with the deferred policy.
    out = s.receive(mta.ABORT + mta.mail("x@y.example") + mta.rcpt("b@strict.example")).send
    assert mta.parse_replies(out) == [(b"c", b"")]


def test_policy_split_can_be_switched_off() -> None:
    s = Session(policy_for=by_domain, split_policies=False)
    start(s)
    out = envelope(s, "a@example.net", "b@strict.example")
    assert mta.parse_replies(out) == [(b"c", b""), (b"c", b"")]


def test_without_leadspc_the_eaten_space_is_restored() -> None:
    s = Session()
    s.receive(mta.optneg(proto=mta.POSTFIX_PROTOCOL & ~mta.HDR_LEADSPC))
    envelope(s, "r@example.net")
    step = s.receive(mta.header(b"Subject", b"hi") + mta.EOH + mta.EOM)
    assert step.message is not None
    assert step.message.as_bytes() == b"Subject: hi\r\n\r\n"
    out = s.complete(result(step.message, edits=(HeaderEdit.add("X", "y"),))).send
    assert mta.parse_replies(out)[0] == (b"h", b"X\0y\0")


# -- body replacement --------------------------------------------------------------------


def _replaced(msg: Message, body: bytes, **kw) -> Result:  # type: ignore[no-untyped-def]
    r = result(msg, **kw)
    new = attrs.evolve(msg, body=Body(body))
    return attrs.evolve(r, message=new, body_replaced=True)


def test_chgbody_is_negotiated_only_when_asked() -> None:
    s = Session()
    reply = mta.parse_replies(start(s))[0]
    assert not struct.unpack("!III", reply[1][:12])[1] & int(Flag.CHGBODY)
    s = Session(changes_body=True)
    reply = mta.parse_replies(start(s))[0]
    assert struct.unpack("!III", reply[1][:12])[1] & int(Flag.CHGBODY)


def sent(step: Output) -> bytes:
    """Everything the server writes for a step, the replaced body streamed and closed."""
    if step.body is None:
        return step.send
    try:
        return step.send + b"".join(body_packets(step.body)) + step.after
    finally:
        step.body.close()


def test_replaced_body_is_streamed_in_chunks_after_header_edits() -> None:
    s = Session(changes_body=True)
    msg = eom(s)
    body = b"A" * 65535 + b"B" * 65535 + b"tail\r\n"
    r = _replaced(msg, body, edits=(HeaderEdit.add("X", "y"),))
    step = s.complete(r)
    # The body is not in the step's bytes: the writer streams it from the Body.
    assert step.body is r.message.body
    assert mta.parse_replies(step.send) == [(b"h", b"X\0 y\0")]
    assert mta.parse_replies(step.after) == [(b"c", b"")]
    out = mta.parse_replies(sent(step))
    assert [code for code, _ in out] == [b"h", b"b", b"b", b"b", b"c"]
    assert all(len(data) <= 65535 for _, data in out)
    assert b"".join(data for _, data in out[1:4]) == body


def test_replaced_spooled_body_streams_from_its_file(tmp_path: Path) -> None:
    s = Session(changes_body=True)
    msg = eom(s)
    builder = BodyBuilder(threshold=1024, spool_dir=str(tmp_path))
    builder.write(b"x" * 300_000)
    new = builder.finish()
    assert new.spooled
    r = attrs.evolve(result(msg), message=attrs.evolve(msg, body=new), body_replaced=True)
    step = s.complete(r)
    packets = body_packets(step.body)  # type: ignore[arg-type]
    first = next(packets)
    assert len(first) == 5 + 65535  # one packet at a time, not the whole body
    rest = b"".join(packets)
    assert len(first) + len(rest) == 300_000 + 5 * 5
    step.body.close()  # type: ignore[union-attr]


def test_replaced_quarantined_body_goes_between_edits_and_hold() -> None:
    s = Session(changes_body=True)
    msg = eom(s)
    r = _replaced(msg, b"new\r\n", action=Action.QUARANTINE, reason="held")
    out = mta.parse_replies(sent(s.complete(r)))
    assert out == [(b"b", b"new\r\n"), (b"q", b"held\0"), (b"c", b"")]


def test_empty_replaced_body_is_one_empty_packet() -> None:
    s = Session(changes_body=True)
    msg = eom(s)
    out = mta.parse_replies(sent(s.complete(_replaced(msg, b""))))
    assert out == [(b"b", b""), (b"c", b"")]


def test_replaced_body_without_chgbody_tempfails(caplog: pytest.LogCaptureFixture) -> None:
    s = Session()  # CHGBODY not negotiated
    msg = eom(s)
    assert s.complete(_replaced(msg, b"new\r\n")).send == mta.pkt(b"t")
    assert "did not grant CHGBODY" in caplog.text
    # Asked for, but the MTA did not offer it.
    s = Session(changes_body=True)
    s.receive(mta.optneg(actions=mta.POSTFIX_ACTIONS & ~int(Flag.CHGBODY)))
    envelope(s, "r@example.net")
    msg = deliver(s)
    assert s.complete(_replaced(msg, b"new\r\n")).send == mta.pkt(b"t")


def test_reject_with_replaced_body_sends_only_the_decision() -> None:
    s = Session(changes_body=True)
    msg = eom(s)
    out = mta.parse_replies(s.complete(_replaced(msg, b"x\r\n", action=Action.REJECT)).send)
    assert out == [(b"y", b"550 5.7.1 Message rejected\0")]


def test_replaced_body_is_closed_when_pipelined_input_after_eom_is_bad(
    tmp_path: Path,
) -> None:
    # complete() hands the replaced body to the writer in the step it returns; if
    # going on with the events queued behind EOM fails, there is no step and no
    # writer, so complete() itself must close it (and the message it replaced).
    s = Session(changes_body=True)
    start(s)
    envelope(s, "r@example.net")
    step = s.receive(
        b"".join(mta.message_packets(RAW)) + mta.mail("s@example.org") + mta.header(b"a b", b"x")
    )
    assert step.message is not None
    builder = BodyBuilder(threshold=16, spool_dir=str(tmp_path))
    builder.write(b"y" * 1000)
    new = builder.finish()
    assert new.spooled and new._file is not None
    r = attrs.evolve(
        result(step.message), message=attrs.evolve(step.message, body=new), body_replaced=True
    )
    with pytest.raises(ProtocolError):
        s.complete(r)
    assert new._file.closed


def test_the_documented_milter_macros_are_the_ones_negotiated() -> None:
    """docs/snippets/milter-main.cf's milter_*_macros lines list what mxscan
    asks for in SMFIC_OPTNEG (the e2e tests run Postfix with those lines)."""
    from mxscan.adapters.milter.constants import MacroStage
    from mxscan.adapters.milter.negotiate import DEFAULT_MACROS
    from tests.support.snippets import milter_main_cf

    settings = milter_main_cf("unix:/x")
    for key, stage in (
        ("milter_connect_macros", MacroStage.CONNECT),
        ("milter_helo_macros", MacroStage.HELO),
        ("milter_mail_macros", MacroStage.ENVFROM),
    ):
        assert sorted(settings[key].split()) == sorted(DEFAULT_MACROS[stage]), key
    needed = {"{client_addr}", "{client_name}", "{client_ptr}", "_", "j", "{tls_version}"}
    assert needed | {"{auth_type}"} <= {m for names in DEFAULT_MACROS.values() for m in names}


# -- edits whole or not at all; Sendmail's index rules ---------------------------------------


@pytest.mark.parametrize(
    ("granted", "missing"), [(0x1, "CHGHDRS"), (0x10, "ADDHDRS")], ids=["ADDHDRS", "CHGHDRS"]
)
def test_replace_needing_an_ungranted_action_sends_no_edit(
    granted: int, missing: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A REPLACE of a first instance is insert + delete: with only one of the two
    # actions granted, half of it went out (two Subjects, or none).
    for default, final in (("tempfail", b"y"), ("accept", b"c")):
        s = Session(default_action=default)  # type: ignore[arg-type]
        s.receive(mta.optneg(actions=granted))
        envelope(s, "r@example.net")
        msg = deliver(s)
        edits = (HeaderEdit.add("X-Ok", "1"), HeaderEdit.change("Subject", 1, "new"))
        caplog.clear()
        out = mta.parse_replies(s.complete(result(msg, edits=edits)).send)
        assert [code for code, _ in out] == [final]  # no h/i/m packet at all
        if final == b"y":
            assert out[0][1].startswith(b"451 4.7.1")
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1
        assert "ABC123" in errors[0].getMessage() and missing in errors[0].getMessage()


def test_mta_is_detected_from_the_v_macro() -> None:
    for version, expected in (
        ("Postfix 3.7.11", "postfix"),
        ("8.17.1.9", "sendmail"),
        ("", "postfix"),
    ):
        s = Session()
        start(s)
        s.receive(mta.macro(b"C", v=version) if version else b"")
        assert s.mta == expected
    s = Session(mta="sendmail")
    start(s)
    s.receive(mta.macro(b"C", v="Postfix 3.7.11"))
    assert s.mta == "sendmail"  # the option wins


def test_sendmail_changes_in_place_and_places_only_first_and_last() -> None:
    # Measured on Sendmail 8.17.1.9 (test_milter_sendmail.py runs it): INSHEADER 1 is
    # just below its Received:, the other indexes count hidden entries, and one past
    # the end appends (ADDHEADER would reuse a deleted field's place).
    s = Session(mta="sendmail")
    msg = eom(s, b"X-Dup: one\r\nX-Dup: two\r\nX-Dup: three\r\nX-Check-Id: 7\r\n\r\nb\r\n")
    edits = (
        HeaderEdit.change("X-Dup", 2, "TWO"),
        HeaderEdit.change("X-Dup", 1, "ONE"),
        # header rules' REPLACE: delete, then insert a same-named field there
        HeaderEdit.delete("X-Dup", 3),
        HeaderEdit.insert(2, "X-Dup", "THREE"),
        HeaderEdit.insert(0, "X-First", "f"),
        HeaderEdit.insert(99, "X-Last", "l"),
    )
    out = mta.parse_replies(s.complete(result(msg, edits=edits)).send)
    assert out == [
        (b"m", struct.pack("!I", 2) + b"X-Dup\0 TWO\0"),
        (b"m", struct.pack("!I", 1) + b"X-Dup\0 ONE\0"),
        (b"m", struct.pack("!I", 3) + b"X-Dup\0 THREE\0"),
        (b"i", struct.pack("!I", 1) + b"X-First\0 f\0"),
        (b"i", struct.pack("!I", 0x7FFFFFFF) + b"X-Last\0 l\0"),
        (b"c", b""),
    ]


def test_sendmail_insert_in_the_middle_follows_the_default_action(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Session(mta="sendmail")
    msg = eom(s)
    edits = (HeaderEdit.add("X-Ok", "1"), HeaderEdit.insert(2, "X-Mid", "m"))
    out = mta.parse_replies(s.complete(result(msg, edits=edits)).send)
    assert [code for code, _ in out] == [b"y"]
    assert "Sendmail cannot be told to put a field at position 2" in caplog.text


# -- limits: what one connection may make the milter hold --------------------------------------


def test_macro_flood_is_capped_and_tempfails_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Session(limits=Limits(max_macros=50, max_macro_bytes=10_000))
    start(s)
    assert envelope(s, "r@example.net")  # under the limits: RCPT answered CONTINUE
    caplog.clear()
    flood = b"".join(mta.macro(b"C", **{f"{{m{i}}}": "v" * 10}) for i in range(200))
    s.receive(flood)
    # Nothing past the limit is kept...
    assert len(s._conn_macros) + len(s._tx.macros) == 0 and s._macro_bytes == 0
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "macros over the limit" in warnings[0].getMessage()
    # ... and every command that takes a reply is tempfailed, the message included.
    out = mta.parse_replies(s.receive(mta.rcpt("r2@example.net")).send)
    assert out == [
        (b"y", b"451 4.7.0 Too many milter macros on this connection, try again later\0")
    ]
    out = mta.parse_replies(s.receive(b"".join(mta.message_packets(RAW))).send)
    assert [code for code, _ in out] == [b"y"] and out[0][1].startswith(b"451 4.7.0")
    assert s.in_message is None  # nothing to scan


def test_macro_bytes_limit_and_redefinitions_do_not_count_twice() -> None:
    s = Session(limits=Limits(max_macros=10, max_macro_bytes=1000))
    start(s)
    for _ in range(500):  # the same macros, again and again: still two kept
        s.receive(mta.macro(b"C", j="mx.example", v="Postfix 3.7.11"))
    assert s._macro_bytes == len("jmx.examplevPostfix 3.7.11")
    s.receive(mta.macro(b"M", i="X" * 2000))
    assert mta.parse_replies(s.receive(mta.rcpt("r@example.net")).send)[0][0] == b"y"


def test_message_macros_are_released_per_message() -> None:
    s = Session(limits=Limits(max_macros=20))
    start(s)
    s.receive(mta.macro(b"C", j="mx.example"))
    for n in range(50):  # 50 messages on one connection, 5 macros each
        s.receive(mta.macro(b"M", **{f"{{m{i}}}": str(n) for i in range(5)}))
        s.receive(mta.mail("s@example.org"))
        assert mta.parse_replies(s.receive(mta.rcpt("r@example.net")).send) == [(b"c", b"")]
        s.receive(mta.ABORT)


@pytest.mark.parametrize(
    ("limits", "head"),
    [
        (Limits(max_headers=100), b"X-H: v\r\n" * 101),
        (Limits(max_header_bytes=10_000), b"X-Big: " + b"v" * 10_000 + b"\r\n"),
    ],
    ids=["count", "bytes"],
)
def test_header_bomb_is_rejected_without_keeping_it(
    limits: Limits, head: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    s = Session(limits=limits)
    start(s)
    envelope(s, "r@example.net")
    caplog.clear()
    step = s.receive(b"".join(mta.message_packets(head + b"\r\nbody\r\n")))
    assert step.message is None and s._tx.headers == []
    assert mta.parse_replies(step.send) == [(b"y", b"552 5.3.4 Message header too large\0")]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "ABC123" in warnings[0].getMessage()
    # The next message on the connection is judged on its own.
    s.receive(mta.ABORT)
    s.receive(mta.mail("s@example.org"))
    s.receive(mta.rcpt("r@example.net"))
    assert deliver(s).as_bytes() == RAW


def test_header_rules_replace_is_one_chgheader_on_sendmail() -> None:
    # The real header-rules scanner's REPLACE (delete + insert where it was), after
    # an IGNORE has shifted the positions: Sendmail gets one in-place change.
    from mxscan_header_rules import HeaderRules

    rules = "/^X-Spam: / IGNORE\n/^X-Dup: two/ REPLACE X-Dup: TWO\n"
    s = Session(mta="sendmail")
    msg = eom(s, b"X-Spam: a\r\nX-Dup: one\r\nX-Spam: b\r\nX-Dup: two\r\nX-Dup: three\r\n\r\nb\r\n")
    verdict = HeaderRules("t", rules=rules).check(msg)
    out = mta.parse_replies(s.complete(result(msg, edits=verdict.edits)).send)
    assert out == [
        (b"m", struct.pack("!I", 1) + b"X-Spam\0\0"),
        (b"m", struct.pack("!I", 1) + b"X-Spam\0\0"),
        (b"m", struct.pack("!I", 2) + b"X-Dup\0 TWO\0"),
        (b"c", b""),
    ]
    assert (
        msg.apply(verdict.edits).as_bytes()
        == b"X-Dup: one\r\nX-Dup: TWO\r\nX-Dup: three\r\n\r\nb\r\n"
    )


# -- the Postfix wire indexes, against a plain list model ----------------------------------------


def _postfix_model(names: list[str], edits: tuple[HeaderEdit, ...]) -> bytes:
    """The replies for ``edits`` on Postfix, computed by rescanning a plain list for
    every edit (what the milter did before its names got an index): the linear
    version must send the very same bytes."""
    from mxscan.adapters.milter import replies

    current = [n.lower() for n in names]

    def position(name: str, occurrence: int) -> int | None:
        seen = 0
        for at, existing in enumerate(current):
            if existing == name.lower():
                seen += 1
                if seen == occurrence:
                    return at
        return None

    out = b""
    for edit in edits:
        value = b" " + (edit.value or "").encode()
        if edit.kind.value == "add":
            current.append(edit.name.lower())
            out += replies.add_header(edit.name, value)
        elif edit.kind.value == "insert":
            at = min(edit.index or 0, len(current))
            current.insert(at, edit.name.lower())
            out += replies.insert_header(at + 1, edit.name, value)
        else:
            pos = position(edit.name, edit.occurrence or 0)
            if edit.kind.value == "delete":
                if pos is not None:
                    del current[pos]
                    out += replies.delete_header(edit.occurrence or 0, edit.name)
            elif pos is None:
                current.append(edit.name.lower())
                out += replies.add_header(edit.name, value)
            elif edit.occurrence == 1:
                out += replies.insert_header(pos + 1, edit.name, value)
                out += replies.delete_header(2, edit.name)
            else:
                out += replies.change_header(edit.occurrence or 0, edit.name, value)
    return out + replies.continue_()


_hnames = st.sampled_from(["A", "a", "B", "Cc"])
_hedit = st.one_of(
    st.builds(HeaderEdit.add, _hnames, st.sampled_from(["1", "2"])),
    st.builds(HeaderEdit.insert, st.integers(0, 10), _hnames, st.sampled_from(["3"])),
    st.builds(HeaderEdit.change, _hnames, st.integers(1, 4), st.sampled_from(["5"])),
    st.builds(HeaderEdit.delete, _hnames, st.integers(1, 4)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_hnames, min_size=1, max_size=8), st.lists(_hedit, max_size=15))
def test_postfix_replies_match_the_list_model(names: list[str], edits: list[HeaderEdit]) -> None:
    s = Session()
    msg = eom(s, b"".join(f"{n}: v\r\n".encode() for n in names) + b"\r\nb\r\n")
    sent = s.complete(result(msg, edits=tuple(edits))).send
    assert sent == _postfix_model(names, tuple(edits))
