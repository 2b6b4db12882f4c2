"""Failure modes and protocol details against fake rspamds on loopback.

Every way rspamd can fail has a defined outcome: ScannerError naming the address
(so the pipeline's on_error applies), never an ACCEPT for a scan that did not
happen.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mxscan_rspamd import Rspamd
from rspamd_support import (
    CLEAN,
    Canned,
    FakeRspamd,
    checkv2,
    free_port,
    http_reply,
    read_request,
)

from mxscan import Action, Envelope, Message, Pipeline, ScannerError, Step


def message(data: bytes = CLEAN, **envelope: object) -> Message:
    return Message.from_bytes(data, envelope=Envelope(**envelope))  # type: ignore[arg-type]


@pytest.fixture
async def good() -> AsyncIterator[tuple[FakeRspamd, Canned]]:
    canned = Canned(http_reply(checkv2()))
    async with FakeRspamd(canned) as fake:
        yield fake, canned


async def test_request_carries_envelope_settings_and_the_exact_message(
    good: tuple[FakeRspamd, Canned],
) -> None:
    fake, canned = good
    scanner = Rspamd(address=fake.address, timeout=5, reject_score=9.5)
    data = CLEAN + b"x" * 200_000  # several chunks
    verdict = await scanner.scan(
        message(data, sender="a@example.com", recipients=["b@example.net", "c@example.net"],
                client_address="192.0.2.1", helo="h.example.com", queue_id="Q1")
    )  # fmt: skip
    await scanner.aclose()
    assert verdict.action is Action.ACCEPT
    ((line, headers, body),) = canned.requests
    assert line == b"POST /checkv2 HTTP/1.1"
    assert body == data
    sent = [(n, v) for n, v in headers if n in ("From", "Rcpt", "Ip", "Helo", "Queue-Id")]
    assert sent == [
        ("From", "a@example.com"),
        ("Rcpt", "b@example.net"),
        ("Rcpt", "c@example.net"),
        ("Ip", "192.0.2.1"),
        ("Helo", "h.example.com"),
        ("Queue-Id", "Q1"),
    ]
    names = {n.lower(): v for n, v in headers}
    assert json.loads(names["settings"]) == {"actions": {"reject": 9.5}}
    # Streamed with its length up front, not chunked (rspamd needs the length).
    assert names["content-length"] == str(len(data))
    assert "transfer-encoding" not in names


async def test_rspamd_down_is_a_scanner_error_naming_every_address() -> None:
    first, second = f"inet:127.0.0.1:{free_port()}", f"inet:127.0.0.1:{free_port()}"
    scanner = Rspamd(address=[first, second], timeout=5)
    with pytest.raises(ScannerError, match=rf"cannot reach rspamd: {first}: .*refused.*{second}"):
        await scanner.scan(message())
    await scanner.aclose()


async def test_failover_to_the_next_address_and_round_robin(
    good: tuple[FakeRspamd, Canned],
) -> None:
    fake, _ = good
    async with FakeRspamd(Canned(http_reply(checkv2()))) as other:
        dead = f"inet:127.0.0.1:{free_port()}"
        scanner = Rspamd(address=[dead, fake.address, other.address], timeout=5)
        for _ in range(6):
            assert (await scanner.scan(message())).action is Action.ACCEPT
        await scanner.aclose()
        # Start addresses rotate dead, fake, other, ...: the dead one's turns
        # fail over to the next one, so fake gets 4 scans and other 2.
        assert (fake.connections, other.connections) == (4, 2)


async def test_a_hung_rspamd_hits_the_timeout_and_the_error_names_it(
    never_answers: FakeRspamd,
) -> None:
    scanner = Rspamd(address=never_answers.address, timeout=1.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ScannerError, match=rf"rspamd at {never_answers.address} did not answer"):
        await scanner.scan(message())
    assert loop.time() - start < 1.0  # inside the pipeline's own step deadline
    await scanner.aclose()


async def test_hung_rspamd_through_the_pipeline_gets_on_error(never_answers: FakeRspamd) -> None:
    scanner = Rspamd(address=never_answers.address, timeout=1.0)
    pipeline = Pipeline([[Step(scanner, timeout=1.0, on_error=Action.TEMPFAIL)]])
    result = await pipeline.run(message())
    assert result.action is Action.TEMPFAIL
    assert never_answers.address in result.verdict.reason
    await pipeline.aclose()


GARBAGE = [
    (b"SPAMD/1.1 0 EX_OK\r\n\r\n", "not HTTP"),
    (http_reply(b"<html>oops</html>"), "unreadable answer: not JSON"),
    (http_reply(b'{"error":"Message is empty"}', "400 Bad Request"), "answered HTTP 400"),
    (http_reply(b"{}"), "unreadable answer: 'action' is None"),
    (b'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"action"', "cut short"),
    (b"", "closed the connection without an answer"),
]


@pytest.mark.parametrize(("reply", "why"), GARBAGE)
async def test_garbage_is_a_scanner_error_with_the_address(reply: bytes, why: str) -> None:
    async with FakeRspamd(Canned(reply)) as fake:
        scanner = Rspamd(address=fake.address, timeout=5)
        with pytest.raises(ScannerError, match=rf"rspamd at {fake.address}.*{why}"):
            await scanner.scan(message())
        await scanner.aclose()


async def test_an_unmapped_action_is_an_error_not_an_accept() -> None:
    async with FakeRspamd(Canned(http_reply(checkv2("quarantine")))) as fake:
        scanner = Rspamd(address=fake.address, timeout=5)
        with pytest.raises(ScannerError, match="action 'quarantine'.* does not map"):
            await scanner.scan(message())
        mapped = Rspamd(address=fake.address, timeout=5, actions={"quarantine": "quarantine"})
        assert (await mapped.scan(message())).action is Action.QUARANTINE
        await scanner.aclose()
        await mapped.aclose()


async def test_an_injected_header_from_rspamd_is_refused() -> None:
    milter = {"add_headers": {"X-Spam-Status": {"value": "No\r\nBcc: x@example.org", "order": -1}}}
    async with FakeRspamd(Canned(http_reply(checkv2(milter=milter)))) as fake:
        scanner = Rspamd(address=fake.address, timeout=5)
        with pytest.raises(ScannerError, match="not a fold"):
            await scanner.scan(message())
        await scanner.aclose()


async def test_a_huge_answer_is_refused_unread() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        for _ in range(200):
            writer.write(b" " * 65536)
            await writer.drain()

    async with FakeRspamd(handler) as fake:
        scanner = Rspamd(address=fake.address, timeout=10)
        with pytest.raises(ScannerError, match="too large"):
            await scanner.scan(message())
        await scanner.aclose()


async def test_soft_reject_is_tempfail_with_rspamds_message() -> None:
    reply = checkv2("soft reject", messages={"smtp_message": "Try again later, greylisted"})
    async with FakeRspamd(Canned(http_reply(reply))) as fake:
        scanner = Rspamd(address=fake.address, timeout=5)
        verdict = await scanner.scan(message())
        await scanner.aclose()
    assert verdict.action is Action.TEMPFAIL
    assert verdict.reply is not None and str(verdict.reply).startswith("451 4.7.1 Try again")
    assert verdict.status == "soft-reject(0.50/15.00)"


async def test_rewrite_subject_changes_the_subject_unless_switched_off() -> None:
    reply = checkv2("rewrite subject", subject="*** SPAM *** lunch")
    async with FakeRspamd(Canned(http_reply(reply))) as fake:
        on = Rspamd(address=fake.address, timeout=5)
        off = Rspamd(address=fake.address, timeout=5, rewrite_subject=False)
        tagged = message().apply((await on.scan(message())).edits)
        untouched = message().apply((await off.scan(message())).edits)
        await on.aclose()
        await off.aclose()
    assert tagged.get("Subject") == "*** SPAM *** lunch"
    assert untouched.get("Subject") == "lunch"


@pytest.mark.parametrize(
    ("on_oversize", "action", "code"),
    [("accept", Action.ACCEPT, None), ("tempfail", Action.TEMPFAIL, 452),
     ("reject", Action.REJECT, 552)],
)  # fmt: skip
async def test_oversize_is_explicit_and_never_sent(
    good: tuple[FakeRspamd, Canned], on_oversize: str, action: Action, code: int | None
) -> None:
    fake, canned = good
    scanner = Rspamd(address=fake.address, max_size=1000, on_oversize=on_oversize)
    verdict = await scanner.scan(message(CLEAN + b"x" * 2000 + b"\r\n"))
    await scanner.aclose()
    assert verdict.action is action
    assert verdict.status == "skipped(oversize)"
    assert "over max_size 1000" in verdict.reason
    assert (verdict.reply.code if verdict.reply else None) == code
    assert canned.requests == []


async def test_learn_posts_to_the_controller_with_the_password(
    good: tuple[FakeRspamd, Canned],
) -> None:
    fake, canned = good
    canned.reply = http_reply(b'{"success":true}')
    scanner = Rspamd(controller=fake.address, password="s3cret", timeout=5)
    assert await scanner.learn(message(), spam=True) == "learned"
    assert await scanner.learn(message(), spam=False) == "learned"
    await scanner.aclose()
    (spam_line, spam_headers, body), (ham_line, _, _) = canned.requests
    assert spam_line == b"POST /learnspam HTTP/1.1" and ham_line == b"POST /learnham HTTP/1.1"
    assert ("Password", "s3cret") in spam_headers
    assert body == CLEAN


async def test_learn_with_a_wrong_password_says_so() -> None:
    reply = http_reply(b'{"error":"Unauthorized"}', "403 Forbidden")
    async with FakeRspamd(Canned(reply)) as fake:
        scanner = Rspamd(controller=fake.address, password="wrong", timeout=5)
        with pytest.raises(
            ScannerError, match=rf"controller at {fake.address} refused the password"
        ):
            await scanner.learn(message(), spam=True)
        await scanner.aclose()


async def test_add_headers_false_keeps_only_rspamds_removals() -> None:
    milter = {
        "add_headers": {"X-Spamd-Result": {"value": "default: False [0.50 / 15.00]", "order": -1}},
        "remove_headers": {"X-Old-Scan": 0},
    }
    async with FakeRspamd(Canned(http_reply(checkv2(milter=milter)))) as fake:
        tagged = Rspamd(address=fake.address, timeout=5)
        quiet = Rspamd(address=fake.address, timeout=5, add_headers=False)
        original = message(CLEAN.replace(b"Subject:", b"X-Old-Scan: 1\r\nSubject:"))
        with_headers = original.apply((await tagged.scan(original)).edits)
        without = original.apply((await quiet.scan(original)).edits)
        await tagged.aclose()
        await quiet.aclose()
    assert with_headers.get_all("X-Spamd-Result") == ["default: False [0.50 / 15.00]"]
    assert without.get_all("X-Spamd-Result") == []
    assert without.get_all("X-Old-Scan") == [] and with_headers.get_all("X-Old-Scan") == []
    assert without.as_bytes() == CLEAN


async def test_a_unix_socket_address_and_failover_from_a_missing_one(tmp_path: Path) -> None:
    canned = Canned(http_reply(checkv2("add header", 7.0)))
    path = tmp_path / "rspamd.sock"
    server = await asyncio.start_unix_server(canned, path=str(path))
    try:
        missing = f"unix:{tmp_path / 'absent.sock'}"
        scanner = Rspamd(address=[missing, f"unix:{path}"], timeout=5)
        verdict = await scanner.scan(message())
        await scanner.aclose()
    finally:
        server.close()
        await server.wait_closed()
    assert verdict.status == "add-header(7.00/15.00)"
    ((line, _, body),) = canned.requests
    assert line == b"POST /checkv2 HTTP/1.1" and body == CLEAN


async def test_a_server_that_keeps_the_connection_open_gets_it_reused() -> None:
    """rspamd 3.4 closes after each answer; a worker or proxy that does not is
    given every request on the one connection, none lost between them."""
    served: list[bytes] = []

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                _, _, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            served.append(body)
            reply = checkv2()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(reply) + reply
            )
            await writer.drain()

    async with FakeRspamd(keep_alive) as fake:
        scanner = Rspamd(address=fake.address, timeout=5)
        for _ in range(3):
            assert (await scanner.scan(message())).action is Action.ACCEPT
        await scanner.aclose()
        assert fake.connections == 1
    assert served == [CLEAN] * 3
