"""The SMTP/LMTP protocol without sockets: bytes in, events out."""

from __future__ import annotations

from mxscan.adapters.smtp.session import Close, Content, MessageEnd, Send, Session
from mxscan.adapters.smtp.xforward import commands, envelope, parse


def session(**kw: object) -> Session:
    kw.setdefault("hostname", "filter.test")
    kw.setdefault("lmtp", False)
    kw.setdefault("max_size", 1000)
    return Session(**kw)  # type: ignore[arg-type]


def feed(s: Session, data: bytes) -> list[object]:
    s.receive(data)
    return list(s.events())


def replies(events: list[object]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Send)]


def codes(events: list[object]) -> list[int]:
    out = []
    for data in replies(events):
        for line in data.split(b"\r\n"):
            if line[3:4] == b" ":
                out.append(int(line[:3]))
    return out


def content(events: list[object]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Content))


def test_pipelined_transaction_with_xforward() -> None:
    s = session()
    ev = feed(
        s,
        b"EHLO mx.test\r\nXFORWARD NAME=client.example ADDR=192.0.2.7 PROTO=ESMTP\r\n"
        b"XFORWARD HELO=helo.example IDENT=4ABC SOURCE=REMOTE\r\n"
        b"MAIL FROM:<a@example.org> SIZE=20 BODY=8BITMIME SMTPUTF8\r\n"
        b"RCPT TO:<b@example.com>\r\nDATA\r\n..x\r\n\xe9\r\n.\r\nQUIT\r\n",
    )
    assert codes(ev) == [250, 250, 250, 250, 250, 354]
    assert b"XFORWARD NAME ADDR" in replies(ev)[0]
    assert content(ev) == b".x\r\n\xe9\r\n"
    end = ev[-1]
    assert isinstance(end, MessageEnd)
    tx = end.transaction
    assert (tx.sender, tx.recipients, tx.body_type, tx.smtputf8) == (
        "a@example.org",
        ["b@example.com"],
        "8BITMIME",
        True,
    )
    env = envelope(tx.sender, tx.recipients, tx.xforward)
    assert (env.client_address, env.client_name, env.helo, env.queue_id) == (
        "192.0.2.7",
        "client.example",
        "helo.example",
        "4ABC",
    )
    # QUIT was pipelined behind the dot: nothing happens until finish().
    after = list(s.finish([b"250 2.0.0 Ok\r\n"]))
    assert codes(after) == [250, 221]
    assert isinstance(after[-1], Close)


def test_xforward_holds_for_one_transaction() -> None:
    s = session()
    feed(s, b"EHLO x\r\nXFORWARD ADDR=192.0.2.7\r\nMAIL FROM:<>\r\nRCPT TO:<b@x>\r\nDATA\r\n.\r\n")
    list(s.finish([b"250 ok\r\n"]))
    ev = feed(s, b"MAIL FROM:<>\r\nRCPT TO:<b@x>\r\nDATA\r\n.\r\n")
    assert isinstance(ev[-1], MessageEnd)
    assert ev[-1].transaction.xforward == {}


def test_unknown_xforward_values_are_not_client_facts() -> None:
    env = envelope("", ["r@x"], parse("NAME=[UNAVAILABLE] ADDR=IPV6:2001:db8::1 HELO=a+2Bb"))
    assert env.client_name is None
    assert env.client_address == "2001:db8::1"
    assert env.helo == "a+b"


def test_xforward_out_only_what_the_next_hop_offers() -> None:
    attrs = parse("NAME=n ADDR=192.0.2.1 IDENT=Q1 SOURCE=LOCAL")
    assert commands(attrs, ["NAME", "ADDR", "HELO"]) == [
        "XFORWARD NAME=n ADDR=192.0.2.1 HELO=[UNAVAILABLE]"
    ]
    assert commands({}, ["NAME"]) == []
    long = {"NAME": "n" * 255, "HELO": "h" * 255, "ADDR": "192.0.2.1"}
    lines = commands(long, ["NAME", "ADDR", "HELO"])
    assert len(lines) == 2 and all(len(x) <= 512 for x in lines)


def test_bad_xforward_is_501() -> None:
    s = session()
    assert codes(feed(s, b"EHLO x\r\nXFORWARD BOGUS=1\r\nXFORWARD NAME=\r\n")) == [250, 501, 501]


def test_size_at_mail_is_552() -> None:
    s = session(max_size=100)
    ev = feed(s, b"EHLO x\r\nMAIL FROM:<a@x> SIZE=101\r\nMAIL FROM:<a@x> SIZE=100\r\n")
    assert codes(ev) == [250, 552, 250]
    assert b"5.3.4" in replies(ev)[1]


def test_oversize_data_is_552_without_holding_it() -> None:
    s = session(max_size=100)
    ev = feed(s, b"EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
    total = b""
    for _ in range(50):
        ev = feed(s, b"x" * 98 + b"\r\n")
        total += content(ev)
        assert not replies(ev)
    assert len(total) == 100
    ev = feed(s, b".\r\nRSET\r\n")
    assert codes(ev) == [552, 250]
    assert not any(isinstance(e, MessageEnd) for e in ev)


def test_lmtp_oversize_answers_each_recipient() -> None:
    s = session(lmtp=True, max_size=10)
    ev = feed(s, b"LHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n"
                 b"0123456789abc\r\n.\r\n")  # fmt: skip
    assert codes(ev) == [250, 250, 250, 250, 354, 552, 552]


def test_lmtp_wants_lhlo_and_smtp_ehlo() -> None:
    assert codes(feed(session(lmtp=True), b"EHLO x\r\n")) == [500]
    assert codes(feed(session(), b"LHLO x\r\n")) == [500]


def test_policy_split_defers_other_policies_at_rcpt() -> None:
    s = session(policy_for=lambda r: r.rpartition("@")[2])
    ev = feed(s, b"EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@one>\r\nRCPT TO:<c@two>\r\n"
                 b"RCPT TO:<d@one>\r\nDATA\r\n.\r\n")  # fmt: skip
    assert codes(ev) == [250, 250, 250, 452, 250, 354]
    assert b"4.5.3" in replies(ev)[3]
    assert ev[-1].transaction.recipients == ["b@one", "d@one"]


def test_lmtp_takes_every_policy() -> None:
    s = session(lmtp=True, policy_for=lambda r: r.rpartition("@")[2])
    ev = feed(s, b"LHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@one>\r\nRCPT TO:<c@two>\r\n")
    assert codes(ev) == [250, 250, 250, 250]


def test_sequence_errors_and_limits() -> None:
    s = session(max_recipients=1)
    ev = feed(s, b"MAIL FROM:<a@x>\r\nEHLO x\r\nRCPT TO:<b@x>\r\nDATA\r\nMAIL FROM:<a@x>\r\n"
                 b"MAIL FROM:<a@x>\r\nDATA\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nRCPT TO:b@x\r\n"
                 b"MAIL FROM:<a@x> NOTIFY=NEVER\r\nVRFY x\r\nFOO\r\n")  # fmt: skip
    assert codes(ev) == [503, 250, 503, 503, 250, 503, 554, 250, 452, 501, 503, 502, 500]


def test_overlong_command_line_is_refused_and_skipped() -> None:
    s = session()
    ev = feed(s, b"EHLO x\r\n" + b"A" * 5000)
    assert codes(ev) == [250, 500]
    ev = feed(s, b"B" * 10 + b"\r\nNOOP\r\n")
    assert codes(ev) == [250]


def test_idle_only_between_transactions() -> None:
    s = session()
    feed(s, b"EHLO x\r\n")
    assert s.idle
    feed(s, b"MAIL FROM:<a@x>\r\n")
    assert not s.idle
    feed(s, b"RSET\r\n")
    assert s.idle


def test_dsn_is_announced_and_its_parameters_kept_as_sent() -> None:
    s = session()
    ev = feed(
        s,
        b"EHLO x\r\nMAIL FROM:<a@x> RET=hdrs ENVID=Q+2BId.1 BODY=8BITMIME\r\n"
        b"RCPT TO:<b@x> NOTIFY=success,DELAY ORCPT=rfc822;Orig+2BB@X.example\r\n"
        b"RCPT TO:<c@x>\r\nRCPT TO:<b@x> NOTIFY=NEVER\r\nDATA\r\n.\r\n",
    )
    assert b"250-DSN\r\n" in replies(ev)[0]
    assert codes(ev) == [250, 250, 250, 250, 250, 354]
    tx = ev[-1].transaction
    assert tx.mail_dsn == ("RET=hdrs", "ENVID=Q+2BId.1")
    assert tx.rcpt_dsn == [
        ("NOTIFY=success,DELAY", "ORCPT=rfc822;Orig+2BB@X.example"),
        (),
        ("NOTIFY=NEVER",),
    ]
    # A recipient group (LMTP policy split) gets each occurrence's own parameters.
    assert tx.dsn_for(("c@x", "b@x", "b@x")) == [
        (),
        ("NOTIFY=success,DELAY", "ORCPT=rfc822;Orig+2BB@X.example"),
        ("NOTIFY=NEVER",),
    ]


def test_bad_dsn_parameters_are_501() -> None:
    s = session()
    bad_mail = [
        b"RET=ALL",
        b"ENVID=a=b",
        b"ENVID=" + b"x" * 101,
        b"ENVID=a+2b",
        b"RET=FULL RET=HDRS",
    ]
    for param in bad_mail:
        ev = feed(s, b"EHLO x\r\nMAIL FROM:<a@x> " + param + b"\r\n")
        assert codes(ev) == [250, 501], param
    bad_rcpt = [b"NOTIFY=NEVER,SUCCESS", b"NOTIFY=SUCCESS,SUCCESS", b"NOTIFY=",
                b"ORCPT=rfc822", b"ORCPT=;a@x", b"ORCPT=rfc822;a\x01b", b"ORCPT=rfc822;\xc3\xa9@x",
                b"NOTIFY=NEVER NOTIFY=NEVER", b"XYZ=1"]  # fmt: skip
    feed(s, b"MAIL FROM:<a@x>\r\n")
    for param in bad_rcpt:
        ev = feed(s, b"RCPT TO:<b@x> " + param + b"\r\n")
        assert codes(ev) == [555 if param == b"XYZ=1" else 501], param
    # With SMTPUTF8, RFC 6533's utf-8 address type may carry raw UTF-8.
    s = session()
    ev = feed(s, b"EHLO x\r\nMAIL FROM:<a@x> SMTPUTF8\r\nRCPT TO:<b@x> ORCPT=utf-8;\xc3\xa9@x\r\n")
    assert codes(ev) == [250, 250, 250]


def test_next_hop_lines_carry_the_dsn_parameters_only_if_it_offers_dsn() -> None:
    from mxscan.adapters.smtp.nexthop import mail_command, rcpt_command

    full = {"8BITMIME": "", "SMTPUTF8": "", "SIZE": "1000", "DSN": ""}
    dsn = ("RET=hdrs", "ENVID=Q+2BId.1")
    assert (
        mail_command("a@x", features=full, size=42, body_type="8BITMIME", smtputf8=True, dsn=dsn)
        == "MAIL FROM:<a@x> BODY=8BITMIME SMTPUTF8 SIZE=42 RET=hdrs ENVID=Q+2BId.1"
    )
    rcpt = ("NOTIFY=success,DELAY", "ORCPT=rfc822;Orig+2BB@X.example")
    assert (
        rcpt_command("b@x", features=full, dsn=rcpt)
        == "RCPT TO:<b@x> NOTIFY=success,DELAY ORCPT=rfc822;Orig+2BB@X.example"
    )
    # No DSN at the next hop: dropped, as Postfix's smtp client does (the server logs it).
    bare = {"SIZE": ""}
    assert (
        mail_command("", features=bare, size=7, body_type="7BIT", dsn=dsn) == "MAIL FROM:<> SIZE=7"
    )
    assert rcpt_command("b@x", features=bare, dsn=rcpt) == "RCPT TO:<b@x>"
