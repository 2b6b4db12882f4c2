"""The HTTP server with small fake engines: framing, keep-alive, limits, faults."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from mxscan import Action, HeaderEdit, Message, Pipeline, PolicyRouter, Verdict
from mxscan.adapters.http.server import Limits
from mxscan.message import Envelope
from mxscan.verdict import Result
from tests.support.http_rig import exchange, read_response, request, scan_json, serving
from tests.support.scanners import FakeScanner, down

MAIL = b"From: a@example.org\r\nSubject: hi\r\nMessage-ID: <k@example.org>\r\n\r\nhello\r\n"


def engine(*scanners: FakeScanner, **policies: Pipeline) -> PolicyRouter:
    return PolicyRouter(Pipeline([list(scanners)]), policies)


class Recorder:
    """An engine that records the message it got (and can fail or wait)."""

    def __init__(self, fail: BaseException | None = None, delay: float = 0.0) -> None:
        self.messages: list[Message] = []
        self.data: list[bytes] = []
        self.fail = fail
        self.delay = delay
        self.closed = 0

    async def scan(self, message: Message) -> Result:
        self.messages.append(message)
        self.data.append(message.as_bytes())
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        return Result(verdict=Verdict(scanner="rec"), verdicts=(), message=message)

    def policy_for(self, recipient: str) -> str:
        return "default"

    async def aclose(self) -> None:
        self.closed += 1


async def test_checkv2_content_length_and_envelope() -> None:
    rec = Recorder()
    async with serving(rec) as (_, port):
        status, answer = await scan_json(
            port,
            request(
                body=MAIL,
                headers=[("From", "<a@example.org>"), ("Rcpt", "b@example.net"),
                         ("Rcpt", "c@example.net"), ("Ip", "192.0.2.1"), ("Queue-Id", "Q1")],
            ),
        )  # fmt: skip
    assert status == 200
    assert answer["action"] == "no action"
    assert rec.data == [MAIL]  # byte for byte
    env = rec.messages[0].envelope
    assert env == Envelope(
        sender="a@example.org",
        recipients=("b@example.net", "c@example.net"),
        client_address="192.0.2.1",
        queue_id="Q1",
    )


async def test_chunked_body_is_the_same_message() -> None:
    rec = Recorder()
    mail = MAIL + b"x" * 5000 + b"\r\n"
    async with serving(rec) as (_, port):
        status, _ = await scan_json(port, request(body=mail, chunked=True))
    assert status == 200
    assert rec.data == [mail]


async def test_large_body_is_spooled_and_exact() -> None:
    rec = Recorder()
    mail = MAIL + bytes(range(256)) * 12000
    async with serving(rec, spool_threshold=64 * 1024) as (_, port):
        status, _ = await scan_json(port, request(body=mail, chunked=True))
    assert status == 200
    assert rec.data == [mail]
    assert rec.messages[0].body.spooled


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async with serving(engine(FakeScanner("x"))) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(request(body=MAIL))
            status, headers, _body = await read_response(reader)
            assert status == 200
            assert "connection" not in headers
        writer.write(request("/ping", method="GET"))
        assert (await read_response(reader))[2] == b"pong\r\n"
        writer.close()
        assert server.messages == 3


async def test_expect_100_continue_is_answered() -> None:
    rec = Recorder()
    async with serving(rec) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(MAIL)
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 ")
        writer.write(MAIL)
        assert (await read_response(reader))[0] == 200
        writer.close()
    assert rec.data == [MAIL]


async def test_http10_without_keep_alive_closes() -> None:
    async with serving(engine(FakeScanner("x"))) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /checkv2 HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(MAIL) + MAIL)
        status, _, _ = await read_response(reader)
        assert status == 200
        assert await reader.read() == b""
        writer.close()


async def test_ping_and_unknown_paths() -> None:
    async with serving(engine()) as (_, port):
        assert (await exchange(port, request("/ping", method="GET")))[:3:2] == (200, b"pong\r\n")
        assert (await exchange(port, request("/nope", method="GET")))[0] == 404
        assert (await exchange(port, request("/checkv2", method="GET")))[0] == 405


async def test_v1_scan_and_legacy_check() -> None:
    edit = HeaderEdit.add("X-Test", "yes")
    async with serving(engine(FakeScanner("x", action=Action.REJECT, edits=(edit,)))) as (_, port):
        status, native = await scan_json(port, request("/v1/scan", body=MAIL))
        assert status == 200
        assert native["action"] == "reject"
        assert native["verdicts"][0]["edits"] == [{"kind": "add", "name": "X-Test", "value": "yes"}]
        status, legacy = await scan_json(port, request("/check", body=MAIL))
        assert legacy["default"]["action"] == "reject"
        assert legacy["default"]["is_spam"] is True


async def test_settings_id_picks_a_policy() -> None:
    strict = Pipeline([[FakeScanner("strict", action=Action.REJECT)]])
    async with serving(engine(FakeScanner("x"), **{"example.net": strict})) as (_, port):
        status, answer = await scan_json(
            port, request(body=MAIL, headers=[("Settings-ID", "example.net")])
        )
        assert (status, answer["action"]) == (200, "reject")
        status, answer = await scan_json(port, request(body=MAIL))
        assert (status, answer["action"]) == (200, "no action")
        status, answer = await scan_json(
            port, request(body=MAIL, headers=[("Settings-ID", "nosuch")])
        )
        assert status == 400
        assert "unknown Settings-ID" in answer["error"]


# -- bad input -------------------------------------------------------------------


async def test_oversize_content_length_is_413_without_reading() -> None:
    async with serving(Recorder(), limits=Limits(max_size=1000)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert status == 413
        assert headers["connection"] == "close"
        assert b"max_size" in body
        writer.close()


async def test_oversize_chunked_is_413() -> None:
    rec = Recorder()
    async with serving(rec, limits=Limits(max_size=3000)) as (_, port):
        status, _, _ = await exchange(port, request(body=MAIL + b"y" * 5000, chunked=True))
    assert status == 413
    assert rec.messages == []


async def test_bad_header_bytes_are_400() -> None:
    async with serving(Recorder()) as (_, port):
        status, _, body = await exchange(
            port,
            b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nQueue-Id: a\rb\r\nContent-Length: 0\r\n\r\n",
        )
        assert status == 400
        assert b"bad request" in body
        status, _, _body = await exchange(port, b"NOT HTTP AT ALL\r\n\r\n")
        assert status == 400


async def test_too_many_headers_is_400() -> None:
    headers = [(f"X-H{i}", "v") for i in range(20)]
    async with serving(Recorder(), limits=Limits(max_headers=10)) as (_, port):
        status, answer = await scan_json(port, request(body=MAIL, headers=headers))
    assert status == 400
    assert "more than 10" in answer["error"]


async def test_header_block_over_the_limit_is_400() -> None:
    async with serving(Recorder(), limits=Limits(max_header_bytes=2048)) as (_, port):
        status, _, _ = await exchange(port, request(body=MAIL, headers=[("X-Big", "v" * 4000)]))
    assert status == 400


async def test_non_utf8_envelope_header_is_400() -> None:
    async with serving(Recorder()) as (_, port):
        status, _, body = await exchange(
            port, b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nHelo: \xff\r\nContent-Length: 0\r\n\r\n"
        )
    assert status == 400
    assert b"UTF-8" in body


# -- faults ------------------------------------------------------------------------


async def test_client_hangs_up_mid_body() -> None:
    rec = Recorder()
    async with serving(rec) as (server, port):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000
        )
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.2)
        assert rec.messages == []  # nothing scanned, nothing answered
        status, _ = await scan_json(port, request(body=MAIL))  # and the server goes on
        assert status == 200
        assert server.holder.active == 0


async def test_slowloris_head_is_cut_off_at_header_timeout() -> None:
    async with serving(Recorder(), limits=Limits(header_timeout=0.5)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        start = time.monotonic()
        closed_at = None
        for _ in range(40):  # one byte every 0.1 s: never a complete head
            try:
                writer.write(b"X")
                await writer.drain()
            except ConnectionError:
                break
            if reader.at_eof() or (await _eof_within(reader, 0.1)):
                closed_at = time.monotonic() - start
                break
        writer.close()
    assert closed_at is not None, "the server kept a slowloris connection open"
    assert closed_at < 2.0


async def _eof_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(65536), seconds)
    except TimeoutError:
        return False
    return data == b"" or data.startswith(b"HTTP/1.1 ")


async def test_slow_body_is_cut_off_at_read_timeout() -> None:
    async with serving(Recorder(), limits=Limits(read_timeout=0.3)) as (_server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()


async def test_idle_keep_alive_connection_is_closed() -> None:
    async with serving(Recorder(), limits=Limits(idle_timeout=0.3)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(body=MAIL))
        assert (await read_response(reader))[0] == 200
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()


async def test_burst_of_1000_connections_all_answered_within_the_limit() -> None:
    rec = Recorder(delay=0.01)
    peak = 0

    async def one() -> int:
        nonlocal peak
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request(body=MAIL))
            await writer.drain()
            status = (await read_response(reader))[0]
            peak = max(peak, 100 - server._slots._value)
            return status
        finally:
            writer.close()

    async with serving(rec, limits=Limits(max_connections=100, header_timeout=30)) as (
        server,
        port,
    ):
        statuses = await asyncio.gather(*(one() for _ in range(1000)))
        assert server.holder.active == 0
    assert statuses == [200] * 1000
    assert len(rec.messages) == 1000
    assert peak <= 100


async def test_connections_over_the_limit_get_503_after_waiting() -> None:
    async with serving(
        Recorder(delay=1.5), limits=Limits(max_connections=1, header_timeout=0.3)
    ) as (_, port):
        _hog_reader, hog = await asyncio.open_connection("127.0.0.1", port)
        hog.write(request(body=MAIL))  # its scan holds the only slot for 1.5 s
        await asyncio.sleep(0.1)
        status, headers, _body = await exchange(port, request(body=MAIL))
        assert status == 503
        assert headers["connection"] == "close"
        hog.close()


async def test_scanner_down_follows_on_error_tempfail_as_soft_reject() -> None:
    from mxscan import Step

    step = Step(down("clamav"), on_error=Action.TEMPFAIL)
    async with serving(PolicyRouter(Pipeline([[step]]))) as (_, port):
        status, answer = await scan_json(port, request(body=MAIL))
    assert status == 200
    assert answer["action"] == "soft reject"
    assert answer["messages"]["smtp_message"].startswith("4.")
    assert answer["symbols"]["CLAMAV"]["description"].startswith("error(")


async def test_pipeline_failure_gives_the_default_action() -> None:
    async with serving(Recorder(fail=RuntimeError("boom"))) as (_, port):
        status, answer = await scan_json(port, request(body=MAIL))
        assert (status, answer["action"]) == (200, "soft reject")
    async with serving(Recorder(fail=RuntimeError("boom")), default_action=Action.ACCEPT) as (
        _,
        port,
    ):
        status, answer = await scan_json(port, request(body=MAIL))
        assert (status, answer["action"]) == (200, "no action")


async def test_replaced_body_is_never_answered_as_accept() -> None:
    from mxscan.body import Body

    scanner = FakeScanner("rewrite", body=Body(b"new body\r\n"))
    async with serving(engine(scanner)) as (_, port):
        status, answer = await scan_json(port, request(body=MAIL))
        assert (status, answer["action"]) == (200, "soft reject")
        _status, native = await scan_json(port, request("/v1/scan", body=MAIL))
        assert native["body_replaced"] is True


# -- password and metrics -----------------------------------------------------------


async def test_password_is_required_when_set() -> None:
    async with serving(engine(), password="s3cret") as (_, port):
        status, headers, _ = await exchange(port, request(body=MAIL))
        # Refused before its body was read: the connection cannot go on, and says so.
        assert (status, headers["connection"]) == (401, "close")
        bad = request(body=MAIL, headers=[("Password", "wrong")])
        assert (await exchange(port, bad))[0] == 401
        good = request(body=MAIL, headers=[("Password", "s3cret")])
        assert (await exchange(port, good))[0] == 200
        assert (await exchange(port, request("/ping", method="GET")))[0] == 200


async def test_metrics_endpoint() -> None:
    pytest.importorskip("prometheus_client")
    from mxscan.service.metrics import Metrics

    async with serving(engine(FakeScanner("x"))) as (_, port):
        assert (await exchange(port, request("/metrics", method="GET")))[0] == 404
    metrics = Metrics()
    async with serving(engine(FakeScanner("x")), metrics=metrics) as (_, port):
        await scan_json(port, request(body=MAIL))
        status, headers, body = await exchange(port, request("/metrics", method="GET"))
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert b'mxscan_messages_total{action="accept"} 1.0' in body
    assert b"_created" not in body


async def test_drain_lets_a_scan_in_flight_finish() -> None:
    rec = Recorder(delay=0.5)
    async with serving(rec) as (server, port):
        task = asyncio.ensure_future(scan_json(port, request(body=MAIL)))
        await asyncio.sleep(0.2)
        await server.stop(5)
        status, answer = await task
    assert (status, answer["action"]) == (200, "no action")
    assert rec.closed == 1
    _ = json
