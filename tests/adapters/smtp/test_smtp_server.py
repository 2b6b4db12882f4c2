"""The content filter in process, the test sink as its next hop: the hand-over
rule (250 only after the next hop's 250, 451 on every failure), byte-exact relay,
per-recipient LMTP outcomes, connection reuse."""

from __future__ import annotations

import asyncio

import pytest

from mxscan import Action, HeaderEdit, Pipeline, PolicyRouter
from mxscan.testing import FakeEngine
from tests.support.postfix import free_port
from tests.support.scanners import FakeScanner, down
from tests.support.sink import SMTPSink
from tests.support.smtp_rig import Client, serving

MAIL = (
    b"From: a@example.org\r\nSubject: caf\xc3\xa9\r\nMessage-ID: <k@example.org>\r\n\r\n"
    b".leading dot\r\n..two\r\n.\r\n8bit \xe9\xff\r\nend\r\n"
)


@pytest.fixture
def sink():
    s = SMTPSink().start()
    try:
        yield s
    finally:
        s.stop()


def engine(*scanners: FakeScanner, **policies: Pipeline) -> PolicyRouter:
    return PolicyRouter(Pipeline([list(scanners) or [FakeScanner()]]), policies)


async def test_clean_mail_is_relayed_byte_exact_then_250(sink: SMTPSink) -> None:
    async with serving(engine(), sink.port) as (_, port):
        client = await Client.connect(port)
        replies = await client.send(MAIL, "a@example.org", ["b@example.com"])
        await client.close()
    assert replies[-1][0] == 250
    assert b"stored by mxscan test sink" in replies[-1][1]  # the next hop's own 250
    (got,) = sink.deliveries
    assert got.data == MAIL
    assert (got.mail_from, got.rcpt_tos) == ("a@example.org", ("b@example.com",))


async def test_edits_are_applied_and_the_body_untouched(sink: SMTPSink) -> None:
    tagger = FakeScanner("tag", edits=(HeaderEdit.add("X-Scanned", "yes"),))
    async with serving(engine(tagger), sink.port) as (_, port):
        client = await Client.connect(port)
        assert (await client.send(MAIL, "a@x.org", ["b@example.com"]))[-1][0] == 250
        await client.close()
    data = sink.deliveries[0].data
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"X-Scanned: yes" in head
    assert body == MAIL.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    ("scanner", "code", "status"),
    [
        (FakeScanner("av", action=Action.DISCARD), 250, b"2.0.0"),
        (FakeScanner("av", action=Action.REJECT), 550, b"5.7.1"),
        (down(), 451, b"4."),
        (FakeScanner("q", action=Action.QUARANTINE), 451, b"4.3.5"),
    ],
)
async def test_verdicts_that_relay_nothing(
    sink: SMTPSink, scanner: FakeScanner, code: int, status: bytes
) -> None:
    async with serving(engine(scanner), sink.port) as (_, port):
        client = await Client.connect(port)
        reply = (await client.send(MAIL, "a@x.org", ["b@example.com"]))[-1]
        await client.close()
    assert reply[0] == code and reply[1][4:].startswith(status)
    assert sink.deliveries == []


async def test_next_hop_down_is_451() -> None:
    async with serving(engine(), free_port(), next_timeout=2.0) as (_, port):
        client = await Client.connect(port)
        reply = (await client.send(MAIL, "a@x.org", ["b@example.com"]))[-1]
        await client.close()
    assert reply[0] == 451 and b"4.4.2" in reply[1]


async def test_next_hop_tempfail_and_reject_are_passed_on(sink: SMTPSink) -> None:
    async with serving(engine(), sink.port) as (_, port):
        client = await Client.connect(port)
        sink.data_reply = "452 4.3.1 Insufficient system storage"
        assert (await client.send(MAIL, "a@x.org", ["b@example.com"]))[-1][:2] == (
            452,
            b"452 4.3.1 Insufficient system storage\r\n",
        )
        sink.data_reply = "554 5.7.0 no"
        assert (await client.send(MAIL, "a@x.org", ["b@example.com"]))[-1][0] == 554
        await client.close()


async def test_next_hop_silent_is_451(sink: SMTPSink) -> None:
    """A next hop that accepts the connection but never answers: 451 after the timeout."""

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    mute_port = server.sockets[0].getsockname()[1]
    async with serving(engine(), mute_port, next_timeout=0.5) as (_, port):
        client = await Client.connect(port)
        reply = (await client.send(MAIL, "a@x.org", ["b@example.com"]))[-1]
        await client.close()
    server.close()
    assert reply[0] == 451


async def test_connections_to_the_next_hop_are_reused(sink: SMTPSink) -> None:
    async with serving(engine(), sink.port) as (_, port):
        client = await Client.connect(port)
        for _ in range(3):
            assert (await client.send(MAIL, "a@x.org", ["b@example.com"]))[-1][0] == 250
        await client.close()
    peers = {d.peer for d in sink.deliveries}
    assert len(sink.deliveries) == 3 and len(peers) == 1


async def test_lmtp_each_policy_group_gets_its_own_reply_and_copy(sink: SMTPSink) -> None:
    strict = Pipeline([[FakeScanner("spam", action=Action.DISCARD)]])
    reject = Pipeline([[FakeScanner("spam", action=Action.REJECT)]])
    tag = FakeScanner("tag", edits=(HeaderEdit.add("X-Policy", "default"),))
    eng = PolicyRouter(Pipeline([[tag]]), {"strict.example": strict, "reject.example": reject})
    rcpts = ["a@default.example", "b@strict.example", "c@reject.example", "d@default.example"]
    async with serving(eng, sink.port, lmtp=True) as (_, port):
        client = await Client.connect(port)
        replies = await client.send(MAIL, "s@x.org", rcpts, hello=b"LHLO client")
        await client.close()
    data_replies = [code for code, _ in replies[len(rcpts) :]]
    assert data_replies == [250, 250, 550, 250]
    (got,) = sink.deliveries
    assert got.rcpt_tos == ("a@default.example", "d@default.example")
    assert b"X-Policy: default" in got.data


async def test_client_gone_mid_data_relays_nothing(sink: SMTPSink) -> None:
    async with serving(engine(), sink.port) as (_, port):
        client = await Client.connect(port)
        await client.cmd(b"EHLO c")
        await client.cmd(b"MAIL FROM:<a@x>")
        await client.cmd(b"RCPT TO:<b@example.com>")
        await client.cmd(b"DATA")
        client.writer.write(b"Subject: half\r\n\r\nhalf a mess")
        await client.writer.drain()
        client.writer.close()
        await asyncio.sleep(0.3)
    assert sink.deliveries == []


async def test_scan_crash_is_451(sink: SMTPSink) -> None:
    crashing = FakeEngine(crash=RuntimeError("boom"))  # a bug in mxscan, not a scanner error
    async with serving(crashing, sink.port) as (_, port):
        client = await Client.connect(port)
        reply = (await client.send(MAIL, "a@x.org", ["b@example.com"]))[-1]
        await client.close()
    assert reply[0] == 451
    assert sink.deliveries == []


async def test_drain_lets_the_message_in_flight_finish(sink: SMTPSink) -> None:
    slow = FakeScanner("slow", delay=0.5)
    async with serving(engine(slow), sink.port) as (server, port):
        client = await Client.connect(port)
        sending = asyncio.ensure_future(client.send(MAIL, "a@x.org", ["b@example.com"]))
        await asyncio.sleep(0.2)
        await server.stop(5)
        reply = (await sending)[-1]
        assert reply[0] == 250
        assert (await client.reply())[0] == 421
    assert len(sink.deliveries) == 1


async def test_spool_write_failure_is_451(sink: SMTPSink, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The spool moves to a file past the threshold; a spool directory that cannot
    take it (here: gone) answers 451 4.3.1, and nothing is relayed."""
    gone = tmp_path / "gone"
    async with serving(engine(), sink.port, spool_threshold=10, spool_dir=str(gone)) as (_, port):
        client = await Client.connect(port)
        reply = (await client.send(MAIL, "a@x.org", ["b@example.com"]))[-1]
        await client.close()
    assert reply[0] == 451 and b"4.3.1" in reply[1]
    assert sink.deliveries == []


async def test_xforward_fills_the_envelope_the_scanners_see(sink: SMTPSink) -> None:
    seen = FakeScanner("seen")
    async with serving(engine(seen), sink.port) as (_, port):
        client = await Client.connect(port)
        await client.cmd(b"EHLO postfix")
        code, _ = await client.cmd(
            b"XFORWARD NAME=mail.example ADDR=192.0.2.7 HELO=helo.example IDENT=4QABC PROTO=ESMTP SOURCE=REMOTE"
        )
        assert code == 250
        assert (await client.send(MAIL, "a@x.org", ["b@example.com"]))[-1][0] == 250
        await client.close()
    env = seen.seen[0].envelope
    assert (env.client_address, env.client_name, env.helo, env.queue_id) == (
        "192.0.2.7",
        "mail.example",
        "helo.example",
        "4QABC",
    )


async def test_smtp_without_split_gives_the_most_severe_verdict_to_all(sink: SMTPSink) -> None:
    """--no-split-policies: mixed recipients in one SMTP transaction; one reply after
    DATA, so one outcome for all (never a relayed group and then a 451 retry)."""
    strict = Pipeline([[FakeScanner("spam", action=Action.DISCARD)]])
    eng = PolicyRouter(Pipeline([[FakeScanner()]]), {"strict.example": strict})
    async with serving(eng, sink.port, split_policies=False) as (_, port):
        client = await Client.connect(port)
        replies = await client.send(MAIL, "s@x.org", ["a@default.example", "b@strict.example"])
        await client.close()
    assert [c for c, _ in replies] == [250, 250, 250]
    assert b"discarded" in replies[-1][1]
    assert sink.deliveries == []


async def _dsn_transaction(port: int) -> list[tuple[int, bytes]]:
    client = await Client.connect(port)
    assert (await client.cmd(b"EHLO client"))[0] == 250
    out = [
        await client.cmd(b"MAIL FROM:<a@x.org> RET=HDRS ENVID=Id+2B1"),
        await client.cmd(b"RCPT TO:<b@example.com> NOTIFY=SUCCESS ORCPT=rfc822;B+2Bx@example.com"),
        await client.cmd(b"RCPT TO:<c@example.com>"),
        await client.cmd(b"DATA"),
    ]
    client.writer.write(MAIL.replace(b"\n.", b"\n..") + b".\r\n")
    out.append(await client.reply())
    await client.close()
    return out


async def test_dsn_parameters_go_to_a_next_hop_that_offers_dsn() -> None:
    from tests.support.dsn_sink import DsnSink

    sink = DsnSink().start()
    try:
        async with serving(engine(), sink.port) as (_, port):
            replies = await _dsn_transaction(port)
    finally:
        sink.stop()
    assert [c for c, _ in replies] == [250, 250, 250, 354, 250]
    (got,) = sink.deliveries
    assert got.data == MAIL
    assert got.dsn() == (
        ("RET=HDRS", "ENVID=Id+2B1"),
        (("b@example.com", ("NOTIFY=SUCCESS", "ORCPT=rfc822;B+2Bx@example.com")),
         ("c@example.com", ())),
    )  # fmt: skip


async def test_a_next_hop_without_dsn_gets_the_mail_without_the_parameters(
    sink: SMTPSink, caplog: pytest.LogCaptureFixture
) -> None:
    """Postfix's smtp client's rule: the parameters are dropped (aiosmtpd offers no
    DSN and would refuse them with 555); the log line says ``dsn=dropped``."""
    caplog.set_level("INFO", logger="mxscan.smtp")
    async with serving(engine(), sink.port) as (_, port):
        replies = await _dsn_transaction(port)
    assert replies[-1][0] == 250
    (got,) = sink.deliveries
    assert got.data == MAIL and got.rcpt_tos == ("b@example.com", "c@example.com")
    assert any("action=accept" in r.message and "dsn=dropped" in r.message for r in caplog.records)


class PipeliningHop:
    """A next hop that offers PIPELINING and answers MAIL only once MAIL and every
    RCPT have arrived: a client that waited for each reply would time out here.
    ``mail``/``rcpt`` are the codes it answers (the RCPT code for the second one)."""

    def __init__(self, recipients: int, *, mail: int = 250, rcpt: int = 250) -> None:
        self.recipients, self.mail, self.rcpt = recipients, mail, rcpt
        self.commands: list[bytes] = []
        self.messages: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hop ESMTP\r\n")
        while line := await reader.readline():
            self.commands.append(line)
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-hop\r\n250-PIPELINING\r\n250-DSN\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL":
                batch = [await reader.readline() for _ in range(self.recipients)]
                self.commands += batch
                writer.write(b"%d 2.1.0 mail\r\n" % self.mail)
                for i, _ in enumerate(batch):
                    code = 503 if self.mail != 250 else (self.rcpt if i == 1 else 250)
                    writer.write(b"%d rcpt\r\n" % code)
            elif verb == b"DATA":
                writer.write(b"354 go\r\n")
                await writer.drain()
                body = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    body += chunk[1:] if chunk.startswith(b".") else chunk
                self.messages.append(body)
                writer.write(b"250 2.0.0 queued by hop\r\n")
            elif verb == b"RSET":
                writer.write(b"250 reset\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            await writer.drain()
        writer.close()


@pytest.mark.parametrize(
    ("mail", "rcpt", "expect"),
    [(250, 250, 250), (250, 550, 451), (451, 250, 451), (550, 250, 550)],
)
async def test_envelope_is_pipelined_to_a_next_hop_that_offers_it(
    mail: int, rcpt: int, expect: int
) -> None:
    """XFORWARD-less MAIL and both RCPTs in one write; DATA only after the RCPT
    replies, so a refused recipient still stops the hand-over (SMTP mode: all or
    nothing), and a refused MAIL leaves the connection in step (RSET after the
    RCPTs' 503s, then reused)."""
    hop = PipeliningHop(2, mail=mail, rcpt=rcpt)
    server = await asyncio.start_server(hop.serve, "127.0.0.1", 0)
    hop_port = server.sockets[0].getsockname()[1]
    rcpts = ["b@example.com", "c@example.com"]
    async with serving(engine(), hop_port, next_timeout=1.0) as (_, port):
        client = await Client.connect(port)
        first = (await client.send(MAIL, "a@x.org", rcpts))[-1]
        hop.mail, hop.rcpt = 250, 250
        second = (await client.send(MAIL, "a@x.org", rcpts))[-1]
        await client.close()
    server.close()
    assert (first[0], second[0]) == (expect, 250)
    assert hop.messages[-1] == MAIL and len(hop.messages) == (2 if expect == 250 else 1)
    assert sum(c.startswith(b"EHLO") for c in hop.commands) == 1  # one connection, reused
    assert sum(c.startswith(b"DATA") for c in hop.commands) == len(hop.messages)


async def test_smtputf8_mail_waits_for_a_next_hop_that_offers_smtputf8() -> None:
    """Postfix's rule: SMTPUTF8 mail is not downgraded; a next hop without it gets
    nothing, and Postfix a 451 (it keeps the mail)."""
    hop = PipeliningHop(1)  # announces 8BITMIME, no SMTPUTF8
    server = await asyncio.start_server(hop.serve, "127.0.0.1", 0)
    hop_port = server.sockets[0].getsockname()[1]
    async with serving(engine(), hop_port, next_timeout=1.0) as (_, port):
        client = await Client.connect(port)
        assert (await client.cmd(b"EHLO client"))[0] == 250
        assert (await client.cmd(b"MAIL FROM:<a@x.org> SMTPUTF8 BODY=8BITMIME"))[0] == 250
        assert (await client.cmd(b"RCPT TO:<b@example.com>"))[0] == 250
        assert (await client.cmd(b"DATA"))[0] == 354
        client.writer.write(MAIL.replace(b"\n.", b"\n..") + b".\r\n")
        code, text = await client.reply()
        await client.close()
    server.close()
    assert code == 451 and b"4.4.2" in text
    assert hop.messages == [] and not any(c.startswith(b"MAIL") for c in hop.commands)
