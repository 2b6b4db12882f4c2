"""Codec units: hand-built packets in, events out; replies out as exact bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxscan.adapters.milter import packets, replies
from mxscan.adapters.milter.constants import Command, Family, MacroStage, ModifyFlag, Protocol
from mxscan.adapters.milter.negotiate import Wants, negotiate, wants_for
from mxscan.adapters.milter.packets import Decoder, ProtocolError


def pkt(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + cmd + data


# What Postfix 3.7 sends with milter_protocol = 6 (milter8.c: my_actions / V6 mask).
POSTFIX_ACTIONS = 0x1FF
POSTFIX_PROTOCOL = 0x1FFFFF


def test_optneg_and_macros() -> None:
    d = Decoder()
    events = d.feed(
        pkt(b"O", struct.pack("!III", 6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL))
        + pkt(b"D", b"C" + b"j\0mx.example\0{client_addr}\x00192.0.2.1\0")
    )
    assert events == [
        packets.OptNeg(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL),
        packets.Macro(b"C", {"j": "mx.example", "{client_addr}": "192.0.2.1"}),
    ]


def test_connect_families() -> None:
    d = Decoder()
    inet = pkt(b"C", b"client.example\0" + b"4" + struct.pack("!H", 25) + b"192.0.2.1\0")
    unix = pkt(b"C", b"localhost\0L" + b"\0\0" + b"/run/x\0")
    unknown = pkt(b"C", b"unknown\0U")
    assert d.feed(inet + unix + unknown) == [
        packets.Connect("client.example", Family.INET, 25, "192.0.2.1"),
        packets.Connect("localhost", Family.UNIX, 0, "/run/x"),
        packets.Connect("unknown", Family.UNKNOWN, None, None),
    ]


def test_envelope_and_content_events() -> None:
    d = Decoder()
    data = (
        pkt(b"H", b"helo.example\0")
        + pkt(b"M", b"<>\0SIZE=100\0")
        + pkt(b"R", b"<a@example.net>\0")
        + pkt(b"T")
        + pkt(b"L", b"Subject\0 hello\n\tworld\0")
        + pkt(b"N")
        + pkt(b"B", b"line\r\n")
        + pkt(b"E")
        + pkt(b"A")
        + pkt(b"K")
        + pkt(b"Q")
        + pkt(b"U", b"XFOO bar\0")
    )
    events = d.feed(data)
    assert events == [
        packets.Helo("helo.example"),
        packets.MailFrom(("<>", "SIZE=100")),
        packets.RcptTo(("<a@example.net>",)),
        packets.Data(),
        packets.Header("Subject", b" hello\n\tworld"),
        packets.EndOfHeaders(),
        packets.Body(b"line\r\n"),
        packets.EndOfMessage(),
        packets.Abort(),
        packets.QuitNewConnection(),
        packets.Quit(),
        packets.Unknown("XFOO bar"),
    ]
    assert events[1].address == "" and events[2].address == "a@example.net"  # type: ignore[union-attr]


def test_eob_with_data_yields_body_then_eom() -> None:
    assert Decoder().feed(pkt(b"E", b"tail")) == [packets.Body(b"tail"), packets.EndOfMessage()]


def test_incremental_feed_byte_by_byte() -> None:
    stream = pkt(b"L", b"X-A\0 1\0") + pkt(b"B", b"x" * 1000) + pkt(b"E")
    d = Decoder()
    out: list[packets.Event] = []
    for i in range(len(stream)):
        out += d.feed(stream[i : i + 1])
    assert out == [packets.Header("X-A", b" 1"), packets.Body(b"x" * 1000), packets.EndOfMessage()]
    assert d.buffered == 0


def test_eight_bit_macro_values_are_lossless() -> None:
    (ev,) = Decoder().feed(pkt(b"M", b"<\xe9@example>\0"))
    assert isinstance(ev, packets.MailFrom)
    assert ev.args[0].encode("utf-8", "surrogateescape") == b"<\xe9@example>"


@pytest.mark.parametrize(
    "raw, match",
    [
        (struct.pack("!I", 0), "zero-length"),
        (struct.pack("!I", 2 * 1024 * 1024) + b"B", "exceeds"),
        (pkt(b"Z"), "unknown milter command"),
        (pkt(b"L", b"Subject\0no-terminator"), "NUL"),
        (pkt(b"L", b"\0value\0"), "empty header name"),
        (pkt(b"C", b"host\0" + b"4" + b"\0"), "truncated"),
        (pkt(b"C", b"host\0X"), "family"),
        (pkt(b"O", b"\0\0\0\6"), "truncated"),
        (pkt(b"T", b"junk"), "unexpected"),
        (pkt(b"H", b"a\0b\0"), "stray"),
    ],
)
def test_bad_input_raises_protocol_error(raw: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        Decoder().feed(raw)


def test_oversized_packet_rejected_before_it_is_buffered() -> None:
    d = Decoder(max_packet=100)
    with pytest.raises(ProtocolError):
        d.feed(struct.pack("!I", 101) + b"B")


@settings(deadline=None)  # a loaded CI machine may pause an example past 200 ms
@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(min_value=1, max_value=50))
def test_body_chunks_round_trip_any_split(chunks: list[bytes], step: int) -> None:
    stream = b"".join(pkt(b"B", c) for c in chunks if c) + pkt(b"E")
    d = Decoder()
    out: list[packets.Event] = []
    for i in range(0, len(stream), step):
        out += d.feed(stream[i : i + step])
    assert out == [packets.Body(c) for c in chunks if c] + [packets.EndOfMessage()]


# -- replies ---------------------------------------------------------------------------


def test_simple_replies_exact_bytes() -> None:
    assert replies.continue_() == b"\0\0\0\1c"
    assert replies.accept() == b"\0\0\0\1a"
    assert replies.reject() == b"\0\0\0\1r"
    assert replies.tempfail() == b"\0\0\0\1t"
    assert replies.discard() == b"\0\0\0\1d"
    assert replies.progress() == b"\0\0\0\1p"
    assert replies.skip() == b"\0\0\0\1s"


def test_reply_code_doubles_percent_and_requires_matching_status() -> None:
    assert replies.reply_code(550, "5.7.1", "100% spam") == pkt(b"y", b"550 5.7.1 100%% spam\0")
    assert replies.reply_code(451, "", "later") == pkt(b"y", b"451 4.7.1 later\0")
    with pytest.raises(ValueError):
        replies.reply_code(250, "2.0.0", "ok")
    with pytest.raises(ValueError):
        replies.reply_code(550, "4.7.1", "mismatch")
    with pytest.raises(ValueError):  # a line break after the status is no status
        replies.reply_code(550, "5.7.1\n", "split")
    with pytest.raises(ValueError):
        replies.reply_code(550, "5.7.1", ["bad\r\ninjection"])


def test_reply_code_multiline() -> None:
    assert replies.reply_code(554, "5.7.0", ["first", "second"]) == pkt(
        b"y", b"554-5.7.0 first\r\n554 5.7.0 second\0"
    )


def test_header_edit_packets() -> None:
    assert replies.add_header("X-A", " v") == pkt(b"h", b"X-A\0 v\0")
    assert replies.insert_header(1, "X-B", " w") == pkt(b"i", b"\0\0\0\1X-B\0 w\0")
    assert replies.change_header(2, "Subject", " s") == pkt(b"m", b"\0\0\0\2Subject\0 s\0")
    assert replies.delete_header(1, "X-Spam-Flag") == pkt(b"m", b"\0\0\0\1X-Spam-Flag\0\0")
    with pytest.raises(ValueError):
        replies.change_header(0, "X", " v")
    with pytest.raises(ValueError):
        replies.add_header("X", "a\0b")


def test_recipient_quarantine_body_packets() -> None:
    assert replies.add_rcpt("<a@b>") == pkt(b"+", b"<a@b>\0")
    assert replies.del_rcpt("<a@b>") == pkt(b"-", b"<a@b>\0")
    assert replies.quarantine("virus") == pkt(b"q", b"virus\0")
    assert replies.replace_body(b"x\r\n") == pkt(b"b", b"x\r\n")


# -- negotiation -----------------------------------------------------------------------


def test_negotiation_against_postfix_offer() -> None:
    n = negotiate(packets.OptNeg(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL))
    assert n.version == 6
    assert n.actions == (
        ModifyFlag.ADDHDRS
        | ModifyFlag.CHGHDRS
        | ModifyFlag.QUARANTINE
        | ModifyFlag.ADDRCPT
        | ModifyFlag.DELRCPT
        | ModifyFlag.SETSYMLIST
    )
    p = n.protocol
    assert p & Protocol.HDR_LEADSPC
    # Steps we do not use are switched off ...
    assert p & Protocol.NODATA and p & Protocol.NOEOH and p & Protocol.NOUNKNOWN
    assert not p & (Protocol.NOCONNECT | Protocol.NOMAIL | Protocol.NORCPT | Protocol.NOBODY)
    assert not p & Protocol.NOHDRS
    # ... and only RCPT (for the policy split) and EOM get an answer.
    assert n.expects_reply(Command.RCPT) and n.expects_reply(Command.BODYEOB)
    for cmd in (Command.CONNECT, Command.HELO, Command.MAIL, Command.HEADER, Command.BODY):
        assert not n.expects_reply(cmd)
    assert not p & Protocol.NR_RCPT
    assert not p & (Protocol.SKIP | Protocol.RCPT_REJ)
    raw = n.encode()
    (length,) = struct.unpack("!I", raw[:4])
    assert raw[4:5] == b"O" and length == len(raw) - 4
    assert struct.unpack("!III", raw[5:17]) == (6, int(n.actions), int(p))
    rest = raw[17:]
    stages = {}
    while rest:
        (stage,) = struct.unpack("!I", rest[:4])
        end = rest.index(b"\0", 4)
        stages[MacroStage(stage)] = rest[4:end].decode().split()
        rest = rest[end + 1 :]
    assert "{client_addr}" in stages[MacroStage.CONNECT]
    assert "i" in stages[MacroStage.EOM] and "{auth_authen}" in stages[MacroStage.ENVFROM]


def test_negotiation_only_requests_what_is_offered() -> None:
    # An old MTA: version 2, no quarantine, no no-reply flags, no SETSYMLIST.
    offer = packets.OptNeg(2, int(ModifyFlag.ADDHDRS | ModifyFlag.CHGHDRS), 0x7F)
    n = negotiate(offer)
    assert n.version == 2
    assert n.actions == ModifyFlag.ADDHDRS | ModifyFlag.CHGHDRS
    assert not n.protocol & ~Protocol(0x7F)
    assert n.macros == {}
    assert not n.leading_space
    # Without NR flags every step must be answered, or the stream desynchronises.
    assert n.expects_reply(Command.HEADER) and n.expects_reply(Command.BODY)
    assert n.protocol & Protocol.NOEOH


def test_negotiation_refuses_ancient_version() -> None:
    with pytest.raises(ProtocolError):
        negotiate(packets.OptNeg(1, 0, 0))


def test_negotiation_can_ask_for_body_replacement() -> None:
    n = negotiate(
        packets.OptNeg(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL),
        Wants(actions=ModifyFlag.ADDHDRS | ModifyFlag.CHGBODY),
    )
    assert n.actions & ModifyFlag.CHGBODY


def test_chgbody_requested_only_when_a_scanner_may_change_the_body() -> None:
    offer = packets.OptNeg(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL)
    assert not negotiate(offer, wants_for(False)).actions & ModifyFlag.CHGBODY
    assert negotiate(offer, wants_for(True)).actions & ModifyFlag.CHGBODY
    # Not offered: never requested, whatever the engine would like.
    no_body = packets.OptNeg(6, POSTFIX_ACTIONS & ~int(ModifyFlag.CHGBODY), POSTFIX_PROTOCOL)
    assert not negotiate(no_body, wants_for(True)).actions & ModifyFlag.CHGBODY
