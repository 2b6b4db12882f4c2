"""The per-message log line, in the form admins grep next to Postfix's lines.

Lines are read back with ``logfmtkv`` (a go-logfmt compatible parser, strict
mode), not with a pattern of our own: what a log shipper would make of the line
is what counts.
"""

from __future__ import annotations

import datetime
import logging
import re

import logfmtkv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxscan import Action, Envelope, Message, Pipeline, PolicyRouter, Result, Verdict, format_result
from mxscan.logline import MAX_VALUE, format_lines, log_token, setup_logging
from tests.support.scanners import FakeScanner


def result(*verdicts: Verdict, final: Verdict, envelope: Envelope | None = None) -> Result:
    envelope = envelope or Envelope(queue_id="4BQ2J1234")
    msg = Message.from_bytes(b"S: x\n\n", envelope=envelope)
    return Result(verdict=final, verdicts=verdicts, message=msg)


def parse(line: str) -> tuple[str, dict[str, str]]:
    """The queue id token and the fields; fails on any repeated key."""
    head, sep, rest = line.partition(": ")
    assert sep, line
    assert "\n" not in line and "\r" not in line
    pairs = logfmtkv.parse_pairs(rest, strict=True)
    keys = [p.key for p in pairs]
    assert len(keys) == len(set(keys)), f"repeated key in {line!r}"
    values = {p.key: p.value for p in pairs}
    assert all(isinstance(v, str) for v in values.values()), line
    return head, values  # type: ignore[return-value]


def test_design_md_example_line() -> None:
    clam = Verdict(Action.DISCARD, "clamav", "virus", "infected(Eicar-Signature)")
    spam = Verdict.skipped("oversize", scanner="spamassassin", reason="too big")
    line = format_result(result(clam, spam, final=clam))
    assert line == (
        "4BQ2J1234: clamav=infected(Eicar-Signature) spamassassin=skipped(oversize) "
        "action=discard reason=virus from=<> nrcpt=0 size=6"
    )


def test_every_field_in_postfix_form() -> None:
    raw = b"Message-ID: <abc.123@example.org>\r\nSubject: hi\r\n\r\nbody\r\n"
    envelope = Envelope(
        sender="alice@example.org",
        recipients=("bob@example.net", "<carol@example.net>"),
        client_address="192.0.2.7",
        client_name="mail.example.org",
        queue_id="4Q2mXf0c7Rz9",
    )
    msg = Message.from_bytes(raw, envelope=envelope)
    clam = Verdict(Action.DISCARD, "clamav", "virus found", "infected(Eicar)", findings=("Eicar",))
    spam = Verdict(status="spam(7.3)", scanner="spamassassin", findings=("GTUBE", "NO_RECEIVED"))
    res = Result(verdict=clam, verdicts=(clam, spam), message=msg)
    line = format_result(res, elapsed=0.01234, size=4321)
    assert line == (
        "4Q2mXf0c7Rz9: clamav=infected(Eicar) spamassassin=spam(7.3) action=discard "
        'reason="virus found" from=<alice@example.org> '
        "to=<bob@example.net>,<carol@example.net> nrcpt=2 size=4321 "
        "message-id=<abc.123@example.org> client=mail.example.org[192.0.2.7] "
        "clamav.findings=Eicar spamassassin.findings=GTUBE,NO_RECEIVED elapsed=0.012"
    )
    # Without an explicit size, the message's own; an unnamed client is Postfix's unknown.
    res = Result(
        verdict=spam,
        verdicts=(spam,),
        message=msg.with_envelope(Envelope(client_address="2001:db8::1")),
    )
    _, fields = parse(format_result(res))
    assert fields["size"] == str(len(raw))
    assert fields["client"] == "unknown[2001:db8::1]"
    assert fields["from"] == "<>"


def test_accept_line_has_no_reason_and_noqueue_without_id() -> None:
    ok = Verdict(Action.ACCEPT, "clamav", status="clean")
    final = Verdict(Action.ACCEPT, "mxscan", "accepted by every scanner", "accept")
    res = Result(verdict=final, verdicts=(ok,), message=Message.from_bytes(b""))
    assert format_result(res) == "NOQUEUE: clamav=clean action=accept from=<> nrcpt=0 size=0"


HOSTILE_SUBJECT = 'quote" action=accept clamav=clean x="'


def test_hostile_header_text_cannot_forge_a_field() -> None:
    """Issue 19.1: the Subject ends up in a header-rule reason."""
    reason = f"reject: header Subject: {HOSTILE_SUBJECT} (header_checks:1)"
    rule = Verdict(Action.REJECT, "inbound", reason, "reject(header_checks:1)")
    clam = Verdict(status="clean", scanner="clamav")
    head, fields = parse(format_result(result(rule, clam, final=rule)))
    assert head == "4BQ2J1234"
    assert fields["action"] == "reject"
    assert fields["clamav"] == "clean"
    assert fields["reason"] == reason
    assert "x" not in fields


@pytest.mark.parametrize(
    "text",
    [
        'back\\slash" and "quote',
        "new\nline: 4Q: action=accept",
        "cr\r\nlf",
        "esc\x1b[2J bell\x07 nul\x00 del\x7f c1\x85",
        "unicode line\u2028sep and bidi \u202eevil",
        "tab\there",
        "undecodable \udcff byte",
        "emoji \U0001f600 and non-bmp control \U000e0001",
    ],
)
def test_hostile_text_in_every_field_is_escaped_and_exact(text: str) -> None:
    envelope = Envelope(
        sender=text,
        recipients=(text,),
        client_address=text,
        client_name=text,
        queue_id="Q1",
    )
    raw = b"Message-ID: " + text.encode("utf-8", "surrogateescape") + b"\r\n\r\n"
    msg = Message.from_bytes(raw, envelope=envelope)
    verdict = Verdict(Action.REJECT, "s", reason=text, status=text, findings=(text,))
    res = Result(verdict=verdict, verdicts=(verdict,), message=msg)
    line = format_result(res)
    assert line.isprintable(), repr(line)
    assert line.isascii() or "\U0001f600" in text
    _, fields = parse(line)
    # Lone surrogates (bytes that were not UTF-8) come back as U+FFFD.
    want = text.replace("\udcff", "\ufffd")
    assert fields["s"] == want
    assert fields["reason"] == want
    assert fields["s.findings"] == want
    assert fields["from"] == f"<{want}>"
    assert fields["to"] == f"<{want}>"
    assert fields["client"] == f"{want}[{want}]"
    assert fields["action"] == "reject"
    mid = msg.get("Message-ID")
    assert mid is not None
    assert fields["message-id"] == mid.strip().replace("\udcff", "\ufffd")


def test_hostile_queue_id_stays_one_token() -> None:
    """Issue 13.7: an EOM macro i="QID\\nFORGED...: action=accept" and ESC/BEL bytes."""
    queue_id = 'QID\nFORGED1: action=accept x="\x1b[2J\x07'
    verdict = Verdict(Action.DISCARD, "clamav", "virus", "infected(X)")
    line = format_result(result(verdict, final=verdict, envelope=Envelope(queue_id=queue_id)))
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    head, fields = parse(line)
    assert head == "QID\\x0aFORGED1:\\x20action\\x3daccept\\x20x\\x3d\\x22\\x1b[2J\\x07"
    assert fields["action"] == "discard"
    assert next(iter(fields)) == "clamav"  # nothing before the first real field
    # The escaped token reads back to the exact queue id.
    decoded = re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), head)
    assert decoded == queue_id


def test_plain_queue_ids_and_file_names_are_untouched() -> None:
    for plain in ("4Q2mXf0c7Rz9", "3F2A41C00B", "samples/eicar.eml", "C:mail"):
        assert log_token(plain) == plain
    assert log_token("my mail.eml") == "my\\x20mail.eml"
    assert log_token("\u00e9") == "\\xc3\\xa9"


def test_long_header_text_is_cut() -> None:
    reason = "reject: header Subject: " + "A" * 10_000
    verdict = Verdict(Action.REJECT, "inbound", reason, "reject")
    envelope = Envelope(recipients=tuple(f"user{i}@example.net" for i in range(1000)))
    line = format_result(result(verdict, final=verdict, envelope=envelope))
    _, fields = parse(line)
    assert len(fields["reason"]) == MAX_VALUE
    assert fields["reason"].endswith("...")
    assert reason.startswith(fields["reason"][:-3])
    assert fields["nrcpt"] == "1000"
    listed = fields["to"].split(",")
    assert listed[-1] == "..." and 10 < len(listed) < 1000
    assert listed[:3] == ["<user0@example.net>", "<user1@example.net>", "<user2@example.net>"]
    assert len(line) < 2000


texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(reason=texts, status=texts, sender=texts, queue_id=texts, scanner=texts)
def test_any_text_parses_back_exactly(
    reason: str, status: str, sender: str, queue_id: str, scanner: str
) -> None:
    verdict = Verdict(Action.REJECT, scanner, reason, status or "x")
    envelope = Envelope(sender=f"<{sender}>", queue_id=queue_id or None)
    line = format_result(result(verdict, final=verdict, envelope=envelope))
    head, fields = parse(line)  # one line, no repeated key
    assert head == log_token(queue_id or "NOQUEUE")
    first_key, first_value = next(iter(fields.items()))
    assert first_key == (f"scanner.{scanner}" if scanner in RESERVED else log_token(scanner))
    assert first_value == (status or "x")
    assert fields["action"] == "reject"
    assert fields.get("reason", "") == reason
    assert fields["from"] == f"<{sender}>"


RESERVED = (
    "policy", "action", "reason", "from", "to", "nrcpt", "size", "message-id", "client", "elapsed",
)  # fmt: skip


def test_a_scanner_named_like_a_field_does_not_repeat_it() -> None:
    verdict = Verdict(Action.REJECT, "action", "r", "bad")
    _, fields = parse(format_result(result(verdict, final=verdict)))
    assert fields["scanner.action"] == "bad" and fields["action"] == "reject"


async def test_split_result_is_one_line_per_policy_group() -> None:
    def fn(message: Message) -> Verdict:
        return Verdict(status="x")

    engine = PolicyRouter(
        Pipeline([[FakeScanner("s", fn=fn)]]),
        {"example.net": Pipeline([[FakeScanner("s", action=Action.DISCARD, status="spam")]])},
    )
    msg = Message.from_bytes(
        b"S: x\n\n", envelope=Envelope(recipients=("a@example.net", "b@x.org"), queue_id="Q1")
    )
    lines = format_lines(await engine.scan(msg), elapsed=0.5)
    assert len(lines) == 2
    assert lines[0].startswith("Q1: policy=example.net s=spam action=discard")
    assert lines[1].startswith("Q1: policy=default s=x action=accept")
    head, fields = parse(lines[0])
    assert (head, fields["to"], fields["nrcpt"]) == ("Q1", "<a@example.net>", "1")
    assert parse(lines[1])[1]["to"] == "<b@x.org>"


STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d) mxscan\[(\d+)\]: ")


def test_stderr_lines_carry_a_time_stamp(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    setup_logging("stderr")
    logging.getLogger("mxscan").info("Q1: clamav=clean action=accept")
    err = capsys.readouterr().err
    match = STAMP.match(err)
    assert match, err
    assert err[match.end() :] == "Q1: clamav=clean action=accept\n"
    stamp = datetime.datetime.fromisoformat(match.group(1))
    now = datetime.datetime.now(datetime.UTC)
    assert abs((now - stamp).total_seconds()) < 60


def test_no_prefix_under_journald(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    setup_logging("stderr")
    logging.getLogger("mxscan").info("Q2: action=accept")
    assert capsys.readouterr().err == "Q2: action=accept\n"


def test_any_log_record_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other warnings quote MTA text too (a FILTER target, a recipient): the
    handler escapes control characters in every record, not only the result line."""
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    setup_logging("stderr")
    logging.getLogger("mxscan.x").warning("cannot defer %s", "<a@b>\nQ9: action=accept\x1b")
    assert capsys.readouterr().err == "cannot defer <a@b>\\x0aQ9: action=accept\\x1b\n"
