"""Failure modes and protocol details against fake spamds on loopback.

Every way spamd can fail has a defined outcome: ScannerError naming the address
(so the pipeline's on_error applies), never an ACCEPT for a scan that did not
happen and never a raw exception from the client.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator

import attrs
import pytest
from sa_support import CLEAN, Canned, FakeSpamd, free_port, read_request, spam_message, spamd_reply

from mxscan import Action, Message, Pipeline, ScannerError, Step
from mxscan_spamassassin import SpamAssassin

SA_SPAM = (
    b"X-Spam-Checker-Version: SpamAssassin 4.0.1 (2024-03-25) on vm\n"
    b"X-Spam-Flag: YES\n"
    b"X-Spam-Level: **************************************************\n"
    b"X-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE,\n"
    b"\tALL_TRUSTED autolearn=no autolearn_force=no version=4.0.1\n"
    b"From: a@example.com\n\n"
)


@pytest.fixture
async def good() -> AsyncIterator[tuple[FakeSpamd, Canned]]:
    canned = Canned(spamd_reply(1000.0, 5.0, SA_SPAM))
    async with FakeSpamd(canned) as fake:
        yield fake, canned


def message(data: bytes = CLEAN) -> Message:
    return Message.from_bytes(data)


async def test_spamd_down_is_a_scanner_error_naming_the_address() -> None:
    address = f"inet:127.0.0.1:{free_port()}"
    scanner = SpamAssassin(address=address, timeout=5)
    with pytest.raises(ScannerError, match=rf"cannot reach spamd: {address}: .*refused"):
        await scanner.scan(message())


async def test_missing_unix_socket_is_a_scanner_error(unix_path: str) -> None:
    scanner = SpamAssassin(address=f"unix:{unix_path}", timeout=5)
    with pytest.raises(ScannerError, match=rf"unix:{unix_path}: No such file"):
        await scanner.scan(message())


async def test_failover_to_the_next_address(good: tuple[FakeSpamd, Canned]) -> None:
    fake, canned = good
    down = f"inet:127.0.0.1:{free_port()}"
    verdict = await SpamAssassin(address=[down, fake.address], timeout=5).scan(message())
    assert verdict.status == "spam(1000.0)"
    assert len(canned.requests) == 1


async def test_all_addresses_down_lists_each() -> None:
    first, second = (f"inet:127.0.0.1:{free_port()}" for _ in range(2))
    with pytest.raises(ScannerError) as caught:
        await SpamAssassin(address=[first, second], timeout=5).scan(message())
    assert first in str(caught.value)
    assert second in str(caught.value)


async def test_slow_spamd_times_out_as_a_scanner_error(never_answers: FakeSpamd) -> None:
    scanner = SpamAssassin(address=never_answers.address, timeout=2)
    with pytest.raises(ScannerError, match=rf"{never_answers.address} did not answer within 1.9s"):
        await scanner.scan(message())


async def test_slow_spamd_in_the_pipeline_tempfails_naming_the_address(
    never_answers: FakeSpamd,
) -> None:
    # The core passes the same timeout to the plugin and to the step: the
    # plugin's own deadline must fire first so the log names the spamd. 10 s gives
    # it the full 0.5 s lead (5% of 1 s is 50 ms, which a loop stalled on a loaded
    # CI machine can overrun, letting the pipeline's deadline win).
    scanner = SpamAssassin(address=never_answers.address, timeout=10)
    result = await Pipeline([[Step(scanner, timeout=10)]]).run(message())
    assert result.verdict.action is Action.TEMPFAIL
    (verdict,) = result.verdicts
    assert verdict.status == "error(failed)"
    assert f"spamd at {never_answers.address} did not answer" in verdict.reason


async def test_slow_spamd_is_not_retried_on_the_next_address(
    never_answers: FakeSpamd, good: tuple[FakeSpamd, Canned]
) -> None:
    fake, canned = good
    scanner = SpamAssassin(address=[never_answers.address, fake.address], timeout=2)
    with pytest.raises(ScannerError, match="did not answer"):
        await scanner.scan(message())
    assert canned.requests == []


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"HTTP/1.0 200 OK\r\n\r\nhello", "not the SPAMD protocol"),
        (b"", "not the SPAMD protocol"),
        (b"SPAMD/1.5 0 EX_OK\r\nContent-length: 500\r\n\r\nshort", "not the SPAMD protocol"),
        (b"\xff\xfe garbage \x00\r\n\r\n", "not the SPAMD protocol"),
        (b"SPAMD/1.5 0 EX_OK\r\nSpam: maybe ; x / y\r\n\r\n", "not the SPAMD protocol"),
        (b"SPAMD/1.5 76 Bad header line: foo\r\n\r\n", "could not check the message: 76"),
        (b"SPAMD/1.5 0 EX_OK\r\nContent-length: 0\r\n\r\n", "without a Spam: score header"),
    ],
    ids=["http", "empty", "short-body", "binary", "bad-spam-header", "ex-protocol", "no-score"],
)
async def test_garbage_answers_are_scanner_errors(reply: bytes, expected: str) -> None:
    async with FakeSpamd(Canned(reply)) as fake:
        scanner = SpamAssassin(address=fake.address, timeout=5)
        with pytest.raises(ScannerError, match=rf"spamd at {fake.address} .*{expected}"):
            await scanner.scan(message())


async def test_hang_up_mid_request_is_a_scanner_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.transport.abort()

    async with FakeSpamd(handler) as fake:
        big = CLEAN + b"x" * 4_000_000 + b"\r\n"
        scanner = SpamAssassin(address=fake.address, timeout=5, max_size="10MiB")
        with pytest.raises(ScannerError, match=rf"spamd at {fake.address}: connection lost: "):
            await scanner.scan(message(big))


async def test_verdict_from_a_spam_answer(good: tuple[FakeSpamd, Canned]) -> None:
    fake, _ = good
    scanner = SpamAssassin(address=fake.address, timeout=5, discard_score=15)
    verdict = await scanner.scan(message(spam_message(b"X-Spam-Flag: NO\r\n")))
    assert verdict.action is Action.DISCARD
    assert verdict.status == "spam(1000.0)"
    assert verdict.score == 1000.0
    assert verdict.findings == ("GTUBE", "ALL_TRUSTED")
    assert verdict.reason == "score 1000.0 / threshold 5.0, discard_score 15.0"
    assert [str(e) for e in verdict.edits] == [
        "delete X-Spam-Flag[1]",
        "add X-Spam-Checker-Version: SpamAssassin 4.0.1 (2024-03-25) on vm",
        "add X-Spam-Flag: YES",
        "add X-Spam-Level: " + "*" * 50,
        "add X-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE,ALL_TRUSTED"
        " autolearn=no autolearn_force=no version=4.0.1",
    ]


async def test_reject_score_gives_the_configured_reply(good: tuple[FakeSpamd, Canned]) -> None:
    fake, _ = good
    scanner = SpamAssassin(
        address=fake.address, timeout=5, reject_score=20, reject_message="No spam here"
    )
    verdict = await scanner.scan(message())
    assert verdict.action is Action.REJECT
    assert verdict.reply is not None
    assert str(verdict.reply) == "550 5.7.1 No spam here"


async def test_forged_headers_are_not_sent_to_spamd(good: tuple[FakeSpamd, Canned]) -> None:
    fake, canned = good
    await SpamAssassin(address=fake.address, timeout=5).scan(
        message(spam_message(b"X-Spam-Flag: YES\r\nX-Spam-Whatever: 1\r\n"))
    )
    assert b"X-Spam-" not in canned.requests[0]


async def test_user_and_compress_reach_spamd(good: tuple[FakeSpamd, Canned]) -> None:
    fake, canned = good
    scanner = SpamAssassin(address=fake.address, timeout=5, user="bob", compress=True)
    await scanner.scan(message())
    head, _, body = canned.requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HEADERS SPAMC/1.5\r\n")
    assert b"\r\nUser: bob" in head
    assert b"\r\nCompress: zlib" in head
    assert zlib.decompress(body) == CLEAN


async def test_unix_socket_address(unix_path: str) -> None:
    canned = Canned(spamd_reply(-1.0, 5.0, b"X-Spam-Status: No, score=-1.0 required=5.0\n\n"))
    server = await asyncio.start_unix_server(canned, unix_path)
    try:
        verdict = await SpamAssassin(address=f"unix:{unix_path}", timeout=5).scan(message())
    finally:
        server.close()
        await server.wait_closed()
    assert verdict.status == "ham(-1.0)"
    assert canned.requests[0].endswith(CLEAN)


async def test_oversize_accept_never_contacts_spamd_and_logs(
    good: tuple[FakeSpamd, Canned], caplog: pytest.LogCaptureFixture
) -> None:
    fake, canned = good
    scanner = SpamAssassin(address=fake.address, timeout=5, max_size=100)
    with caplog.at_level(logging.WARNING, logger="mxscan.spamassassin"):
        verdict = await scanner.scan(message(spam_message(b"X-Spam-Flag: YES\r\n")))
    assert canned.requests == []
    assert verdict.action is Action.ACCEPT
    assert verdict.status == "skipped(oversize)"
    assert "over max_size 100: not spam-checked" in verdict.reason
    # the sender's forged flag goes even though the message was not checked
    assert [str(e) for e in verdict.edits] == ["delete X-Spam-Flag[1]"]
    assert "not spam-checked" in caplog.text


async def test_truncate_sends_whole_lines_up_to_max_size(good: tuple[FakeSpamd, Canned]) -> None:
    fake, canned = good
    data = CLEAN + b"line of filler text\r\n" * 100
    scanner = SpamAssassin(address=fake.address, timeout=5, max_size=1000, on_oversize="truncate")
    verdict = await scanner.scan(message(data))
    sent = canned.requests[0].partition(b"\r\n\r\n")[2]
    assert len(sent) <= 1000
    assert data.startswith(sent)
    assert sent.endswith(b"\r\n")
    assert len(sent) > 1000 - len(b"line of filler text\r\n")
    assert verdict.status == "spam(1000.0,truncated)"
    assert f"{len(sent)} of {len(data)}: over max_size 1000)" in verdict.reason


async def test_truncate_keeps_the_header_whole_and_cuts_the_body(
    good: tuple[FakeSpamd, Canned],
) -> None:
    fake, canned = good
    head = b"From: a@example.org\r\n" + b"Received: from relay.example.org by mx\r\n" * 40
    data = head + b"\r\n" + b"body line of filler\r\n" * 100
    original = message(data)
    assert len(original.head_bytes()) > 1000
    scanner = SpamAssassin(address=fake.address, timeout=5, max_size=1000, on_oversize="truncate")
    verdict = await scanner.scan(original)
    sent = canned.requests[0].partition(b"\r\n\r\n")[2]
    assert sent == original.head_bytes()  # every header line, not one cut short
    assert verdict.status.endswith(",truncated)")
    # room for a body: the header counts against max_size, the body is cut at a line end
    scanner = SpamAssassin(address=fake.address, timeout=5, max_size=2000, on_oversize="truncate")
    await scanner.scan(original)
    sent = canned.requests[1].partition(b"\r\n\r\n")[2]
    assert sent.startswith(original.head_bytes()) and data.startswith(sent)
    assert sent.endswith(b"filler\r\n") and 2000 - 21 < len(sent) <= 2000


@pytest.mark.parametrize(
    ("choice", "action", "reply"),
    [
        (
            "tempfail",
            Action.TEMPFAIL,
            "451 4.3.4 Message too big for spam checking, try again later",
        ),
        ("reject", Action.REJECT, "552 5.3.4 Message too big for spam checking"),
    ],
)
async def test_oversize_tempfail_and_reject(
    good: tuple[FakeSpamd, Canned], choice: str, action: Action, reply: str
) -> None:
    fake, canned = good
    scanner = SpamAssassin(address=fake.address, timeout=5, max_size=100, on_oversize=choice)
    verdict = await scanner.scan(message())
    assert canned.requests == []
    assert verdict.action is action
    assert verdict.status == "skipped(oversize)"
    assert str(verdict.reply) == reply


async def test_prev_subject_only_when_mxscan_rewrote_the_subject() -> None:
    """A spamd with ``rewrite_header Subject`` sends X-Spam-Prev-Subject; mxscan
    keeps the Subject unless ``subject_tag`` says otherwise, and then only."""
    answer = (
        b"Subject: *****SPAM***** lunch\n"
        b"X-Spam-Prev-Subject: lunch\n"
        b"X-Spam-Flag: YES\n"
        b"X-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE autolearn=no\n\n"
    )
    async with FakeSpamd(Canned(spamd_reply(1000.0, 5.0, answer))) as fake:
        untouched = await SpamAssassin(address=fake.address, timeout=5).scan(message())
        tagged = await SpamAssassin(address=fake.address, timeout=5, subject_tag="[SPAM]").scan(
            message()
        )
    assert [e.name for e in untouched.edits] == ["X-Spam-Flag", "X-Spam-Status"]
    assert [str(e) for e in tagged.edits] == [
        "add X-Spam-Prev-Subject: lunch",
        "add X-Spam-Flag: YES",
        "add X-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE autolearn=no",
        "change Subject[1]: [SPAM] lunch",
    ]


async def test_x_spam_report_keeps_spamassassins_line_breaks() -> None:
    """One rule per line, as spamd folds it (report_safe 0): as one line the
    report of a message with many rule hits runs past 998 bytes."""
    rules = [f"*  0.5 RULE_{i:02d} Description of rule number {i} that hit" for i in range(30)]
    answer = (
        b"X-Spam-Flag: YES\n"
        b"X-Spam-Status: Yes, score=15.0 required=5.0 tests=RULE_00,RULE_01,\n"
        b"\tRULE_02 autolearn=no\n"
        b"X-Spam-Report: \n" + b"".join(b"\t" + r.encode() + b"\n" for r in rules) + b"\n"
    )
    async with FakeSpamd(Canned(spamd_reply(15.0, 5.0, answer))) as fake:
        verdict = await SpamAssassin(address=fake.address, timeout=5).scan(message())
    report = next(e.value for e in verdict.edits if e.name == "X-Spam-Report")
    assert report == "\r\n" + "\r\n".join("\t" + r for r in rules)
    status = next(e.value for e in verdict.edits if e.name == "X-Spam-Status")
    assert status == "Yes, score=15.0 required=5.0 tests=RULE_00,RULE_01,RULE_02 autolearn=no"
    out = message().apply(verdict.edits)
    field = next(h for h in out.headers if h.name == "X-Spam-Report")
    assert field.raw.split(b"\r\n")[:2] == [b"X-Spam-Report: ", b"\t" + rules[0].encode()]
    assert max(len(line) for line in out.head_bytes().split(b"\r\n")) <= 998


async def test_spamd_gets_this_hops_received_line_and_the_message_does_not(
    good: tuple[FakeSpamd, Canned],
) -> None:
    """Behind a milter, Postfix keeps its own Received: line from us: spamd
    gets one built from the envelope in front of the message, the delivered
    message gets only the X-Spam-* edits."""
    from mxscan import Envelope, received_header

    fake, canned = good
    envelope = Envelope(
        sender="alice@example.com",
        recipients=("bob@example.net",),
        client_address="198.51.100.7",
        client_name="mail.example.com",
        helo="mail.example.com",
        queue_id="4XyZ1234",
        receiver="mx.example.net",
    )
    original = message().with_envelope(envelope)
    verdict = await SpamAssassin(address=fake.address, timeout=5).scan(original)
    _, _, sent = canned.requests[0].partition(b"\r\n\r\n")
    trace = received_header(envelope)
    assert trace is not None
    assert sent.startswith(b"Received: from mail.example.com (mail.example.com [198.51.100.7])\r\n")
    assert sent[len(trace.raw) :] == CLEAN
    assert not any(e.name.lower() == "received" for e in verdict.edits)
    delivered = original.apply(verdict.edits).as_bytes()
    assert delivered.startswith(CLEAN.partition(b"\r\n\r\n")[0])
    assert delivered.endswith(CLEAN.partition(b"\r\n\r\n")[2])
    # The pipe adapter's mail already has Postfix's line: nothing is added.
    recorded = attrs.evolve(envelope, received_in_message=True)
    await SpamAssassin(address=fake.address, timeout=5).scan(message().with_envelope(recorded))
    assert canned.requests[1].partition(b"\r\n\r\n")[2] == CLEAN


async def test_max_concurrent_bounds_the_connections_spamd_sees() -> None:
    """Twelve scans at once, max_concurrent = 3: spamd never has more than
    three connections (the rest wait in mxscan, not in spamd's backlog), and
    every scan gets its answer."""
    from mxscan import Config

    open_now = peak = 0
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        try:
            await read_request(reader)
            await release.wait()
            writer.write(spamd_reply(-1.0, 5.0, b"X-Spam-Status: No, score=-1.0\n\n"))
            await writer.drain()
        finally:
            open_now -= 1

    async with FakeSpamd(handler) as fake:
        engine = Config.from_toml(
            f'[scanner.sa]\nplugin = "spamassassin"\naddress = "{fake.address}"\n'
            "max_concurrent = 3\ntimeout = 30\n"
        ).build()
        scans = [asyncio.create_task(engine.scan(message())) for _ in range(12)]
        for _ in range(200):  # until the first three are in
            if fake.connections >= 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # room for a fourth, if the bound let one through
        assert fake.connections == 3
        release.set()
        results = await asyncio.wait_for(asyncio.gather(*scans), 60)
        await engine.aclose()
    assert peak == 3
    assert fake.connections == 12
    assert all(r.verdicts[0].status == "ham(-1.0)" for r in results)


def test_the_default_is_spamds_max_children_default() -> None:
    from mxscan import Pipeline

    (step,) = Pipeline([[SpamAssassin(address="inet:127.0.0.1:1")]]).steps
    assert step.slots is not None and step.slots.size == 5


@pytest.mark.parametrize("on_oversize", ["accept", "truncate"])
async def test_the_received_line_follows_an_mbox_from_line_and_precedes_a_truncated_copy(
    good: tuple[FakeSpamd, Canned], on_oversize: str
) -> None:
    from mxscan import Envelope, received_header

    fake, canned = good
    envelope = Envelope(recipients=("bob@example.net",), client_address="192.0.2.1")
    data = b"From alice@example.com Sat Nov 28 04:00:00 2026\r\n" + CLEAN
    scanner = SpamAssassin(
        address=fake.address, timeout=5, max_size=len(data) - 10, on_oversize=on_oversize
    )
    if on_oversize == "accept":
        scanner.max_size = len(data)  # not oversize: the whole copy
    await scanner.scan(Message.from_bytes(data, envelope=envelope))
    _, _, sent = canned.requests[0].partition(b"\r\n\r\n")
    trace = received_header(envelope)
    assert trace is not None
    mbox = data.partition(b"\r\n")[0]
    assert sent.startswith(mbox + b"\r\n" + trace.raw)
    assert data.startswith(mbox + b"\r\n" + sent[len(mbox) + 2 + len(trace.raw) :])
