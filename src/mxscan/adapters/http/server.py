"""The thin asyncio layer: h11 turns bytes into HTTP events, ``request``/``rspamd``/
``native`` turn those into a scan and an answer, and this module moves bytes.

Every connection is bounded: its request head must arrive within
``header_timeout`` and fit ``max_header_bytes``/``max_headers``, each body read
within ``read_timeout``, a body over ``max_size`` is refused (413) as soon as it
is known to be, an idle keep-alive connection closes after ``idle_timeout``, and
at most ``max_connections`` are served at once (the rest wait for a slot, then
get 503). The body streams into a spooled ``BodyBuilder``, so memory stays flat
in message size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import attrs
import h11

from mxscan.body import DEFAULT_SPOOL_THRESHOLD, Body, BodyBuilder
from mxscan.logline import format_lines, log_token
from mxscan.message import Message
from mxscan.service.connections import Connections
from mxscan.service.engines import EngineHolder, EngineLike
from mxscan.service.listen import Listening
from mxscan.service.serving import Listeners
from mxscan.verdict import DEFAULT_REJECT, DEFAULT_TEMPFAIL, Action, Result

from . import native, rspamc, rspamd
from .request import BadRequest, ScanRequest, parse_scan_request

if TYPE_CHECKING:
    from mxscan.service.metrics import Metrics

__all__ = ["HttpServer", "Limits"]

log = logging.getLogger("mxscan.http")

READ_SIZE = 64 * 1024
#: Bytes of answer the kernel has not taken before a write waits for the client.
WRITE_BUFFER = 256 * 1024
SERVER = b"mxscan"
SCAN_PATHS = (b"/checkv2", b"/check", b"/v1/scan")


@attrs.frozen
class Limits:
    max_size: int = 64 * 1024 * 1024
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    read_timeout: float = 30.0
    idle_timeout: float = 60.0
    max_connections: int = 512


class _Refused(Exception):
    """Answer with ``status`` and close the connection (the request cannot go on)."""

    def __init__(self, status: int, text: str, *, close: bool = True) -> None:
        super().__init__(text)
        self.status = status
        self.close = close


class HttpServer:
    def __init__(
        self,
        holder: EngineHolder[EngineLike],
        *,
        limits: Limits | None = None,
        password: str | None = None,
        default_action: Action = Action.TEMPFAIL,
        spool_threshold: int = DEFAULT_SPOOL_THRESHOLD,
        spool_dir: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.holder = holder
        self.limits = limits or Limits()
        self.password = password
        self.default_action = default_action
        self.spool_threshold = spool_threshold
        self.spool_dir = spool_dir
        self.metrics = metrics
        self.messages = 0
        self._listeners = Listeners()
        self._connections = Connections()
        self._slots = asyncio.Semaphore(self.limits.max_connections)

    async def serve(self, listening: Listening) -> None:
        """Accept connections on a socket bound by ``service.listen.bind``."""
        await self._listeners.start(listening, self._accept)
        log.info("http listening on %s", listening.address)

    # -- connections -----------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._connections.track(writer):
            try:
                await self._connection(reader, writer)
            except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
                log.debug("client went away or timed out")
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("unexpected error in http connection")
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Wait for one of the ``max_connections`` slots (503 after header_timeout)."""
        try:
            await asyncio.wait_for(self._slots.acquire(), self.limits.header_timeout)
        except TimeoutError:
            log.warning("too many connections (%d): refusing one", self.limits.max_connections)
            writer.write(_raw_busy())
            await asyncio.wait_for(writer.drain(), self.limits.read_timeout)
            return
        try:
            await self._serve(reader, writer)
        finally:
            self._slots.release()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        try:
            async with asyncio.timeout(self.limits.header_timeout):
                data = await reader.read(READ_SIZE)
        except TimeoutError:
            return
        if not data:
            return
        if rspamc.REQUEST_LINE.match(data):
            await self._legacy(data, reader, writer)
            return
        conn.receive_data(data)
        first = True
        while True:
            try:
                request = await self._request_head(conn, reader, first)
                if request is None:
                    return
                status, content_type, payload = await self._respond(conn, reader, writer, request)
                close = False
            except _Refused as refused:
                status, content_type = refused.status, b"application/json"
                payload = _json({"error": str(refused)})
                close = refused.close
            except h11.RemoteProtocolError as exc:
                status, content_type, close = 400, b"application/json", True
                payload = _json({"error": f"bad request: {exc}"})
            # A body left unread (a refusal before it) cannot be skipped safely: close,
            # and say so in the answer.
            close = close or conn.their_state not in (h11.DONE, h11.IDLE)
            await self._send(conn, writer, status, content_type, payload, close=close)
            if close or conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
            first = False

    async def _request_head(
        self, conn: h11.Connection, reader: asyncio.StreamReader, first: bool
    ) -> h11.Request | None:
        """The next request's head; None when the client closed between requests."""
        fed = len(conn.trailing_data[0])  # pipelined bytes already buffered
        if not first and not fed:
            # Keep-alive: wait up to idle_timeout for the next request's first byte.
            try:
                async with asyncio.timeout(self.limits.idle_timeout):
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                return None
            if not data:
                return None
            conn.receive_data(data)
            fed += len(data)
        event = conn.next_event()
        if event is h11.NEED_DATA:
            # The whole head within header_timeout, however slowly it trickles in.
            async with asyncio.timeout(self.limits.header_timeout):
                while event is h11.NEED_DATA:
                    data = await reader.read(READ_SIZE)
                    conn.receive_data(data)
                    fed += len(data)
                    event = conn.next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        assert isinstance(event, h11.Request)
        # h11 bounds a head that is still incomplete; one that arrived whole in a
        # single read is measured here.
        if fed - len(conn.trailing_data[0]) > self.limits.max_header_bytes:
            raise _Refused(400, f"request head over {self.limits.max_header_bytes} bytes")
        return event

    async def _respond(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
    ) -> tuple[int, bytes, bytes]:
        if len(request.headers) > self.limits.max_headers:
            raise _Refused(400, f"more than {self.limits.max_headers} request headers")
        path = request.target.split(b"?", 1)[0]
        method = request.method
        if path == b"/ping":
            if method != b"GET":
                raise _Refused(405, "use GET for /ping")
            return 200, b"text/plain", b"pong\r\n"
        scan = path in SCAN_PATHS
        if path != b"/metrics" and not scan:
            raise _Refused(404, f"no such endpoint: {path.decode('ascii', 'replace')}")
        try:
            parsed = parse_scan_request(request.headers)
        except BadRequest as exc:
            raise _Refused(400, str(exc)) from None
        self._authorise(parsed)
        if path == b"/metrics":
            if method != b"GET":
                raise _Refused(405, "use GET for /metrics")
            return self._metrics_page()
        if method != b"POST":
            raise _Refused(405, f"use POST for {path.decode()}")
        if conn.they_are_waiting_for_100_continue:
            # curl sends "Expect: 100-continue" for large bodies and waits for this.
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        raw = await self._read_body(conn, reader, request)
        try:
            return 200, b"application/json", _json(await self._scan(path, parsed, raw))
        finally:
            raw.close()

    async def _legacy(
        self, data: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One ``CHECK RSPAMC/1.3`` exchange (Exim), then the connection closes."""
        try:
            reply = await self._legacy_answer(data, reader)
        except BadRequest as exc:
            reply = rspamc.legacy_error(str(exc))
        except _Refused as refused:
            reply = rspamc.legacy_error(str(refused))
        writer.write(reply)
        await asyncio.wait_for(writer.drain(), self.limits.read_timeout)

    async def _legacy_answer(self, data: bytes, reader: asyncio.StreamReader) -> bytes:
        limits = self.limits
        async with asyncio.timeout(limits.header_timeout):
            while (
                parsed := rspamc.parse_legacy_head(data, max_headers=limits.max_headers)
            ) is None:
                if len(data) > limits.max_header_bytes:
                    raise BadRequest(f"request head over {limits.max_header_bytes} bytes")
                more = await reader.read(READ_SIZE)
                if not more:
                    raise ConnectionResetError("client closed the connection mid-head")
                data += more
        head, start = parsed
        if start > limits.max_header_bytes:
            raise BadRequest(f"request head over {limits.max_header_bytes} bytes")
        request = parse_scan_request(head.headers)
        self._authorise(request)
        if head.length > limits.max_size:
            raise BadRequest(f"message over max_size ({limits.max_size} bytes)")
        builder = BodyBuilder(threshold=self.spool_threshold, spool_dir=self.spool_dir)
        try:
            builder.write(data[start : start + head.length])
            while builder.size < head.length:
                more = await asyncio.wait_for(
                    reader.read(min(READ_SIZE, head.length - builder.size)), limits.read_timeout
                )
                if not more:
                    raise ConnectionResetError("client closed the connection mid-body")
                builder.write(more)
        except BaseException:
            builder.close()
            raise
        raw = builder.finish()
        try:
            return rspamc.legacy_reply(await self._scan(b"/checkv2", request, raw))
        finally:
            raw.close()

    def _authorise(self, request: ScanRequest) -> None:
        if self.password is None:
            return
        given = (request.password or "").encode("utf-8")
        if not hmac.compare_digest(given, self.password.encode("utf-8")):
            raise _Refused(401, "wrong or missing Password header", close=False)

    def _metrics_page(self) -> tuple[int, bytes, bytes]:
        if self.metrics is None:
            raise _Refused(404, "metrics are not enabled (mxscan http --metrics)", close=False)
        content_type, page = self.metrics.page()
        return 200, content_type.encode(), page

    async def _read_body(
        self, conn: h11.Connection, reader: asyncio.StreamReader, request: h11.Request
    ) -> Body:
        """The request body, spooled past ``spool_threshold``; 413 as soon as it is
        known to exceed ``max_size`` (from Content-Length, or while it streams)."""
        max_size = self.limits.max_size
        for name, value in request.headers:
            if name == b"content-length" and int(value) > max_size:
                raise _Refused(413, f"message over max_size ({max_size} bytes)")
        builder = BodyBuilder(threshold=self.spool_threshold, spool_dir=self.spool_dir)
        try:
            while True:
                event = await _next_event(conn, reader, self.limits.read_timeout)
                if isinstance(event, h11.Data):
                    if builder.size + len(event.data) > max_size:
                        raise _Refused(413, f"message over max_size ({max_size} bytes)")
                    builder.write(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    return builder.finish()
                elif isinstance(event, h11.ConnectionClosed):
                    raise ConnectionResetError("client closed the connection mid-body")
        except BaseException:
            builder.close()
            raise

    # -- scanning ----------------------------------------------------------------

    async def _scan(self, path: bytes, request: ScanRequest, raw: Body) -> dict[str, Any]:
        start = time.monotonic()
        try:
            message = _message(raw, request, self.spool_threshold, self.spool_dir)
        except OSError as exc:
            log.error("cannot spool the message (%s): default action %s", exc, self.default_action)
            return self._failed(path, time.monotonic() - start)
        try:
            async with self.holder.use() as engine:
                result = await self._run(engine, message, request.policy)
        except _Refused:
            message.close()
            raise
        except Exception as exc:
            message.close()
            if self.metrics:
                self.metrics.failures.inc()
            log.error(
                "%s: scan failed (%s: %s): default action %s",
                log_token(request.envelope.queue_id or "NOQUEUE"),
                type(exc).__name__,
                exc,
                self.default_action,
            )
            return self._failed(path, time.monotonic() - start)
        elapsed = time.monotonic() - start
        try:
            # The core's log line, as the milter and the pipe write it.
            for line in format_lines(result, elapsed=elapsed, size=message.size):
                log.info("%s", line)
            self.messages += 1
            if self.metrics:
                self.metrics.message_size.observe(message.size)
                self.metrics.observe(result, elapsed)
            return self._answer(path, result, elapsed)
        finally:
            result.message.close()
            message.close()

    async def _run(self, engine: EngineLike, message: Message, policy: str | None) -> Result:
        if policy is None:
            return await engine.scan(message)
        pipeline = getattr(engine, "pipeline", None)
        policies = getattr(engine, "policies", {})
        if pipeline is None or (policy != "default" and policy not in policies):
            known = ", ".join(["default", *policies])
            raise _Refused(400, f"unknown Settings-ID {policy!r} (policies: {known})", close=False)
        result: Result = await pipeline(policy).run(message)
        return attrs.evolve(result, policy=policy)

    def _answer(self, path: bytes, result: Result, elapsed: float) -> dict[str, Any]:
        if path == b"/v1/scan":
            return native.result_json(result, elapsed=elapsed)
        if result.body_replaced:
            # rspamd's JSON cannot carry a new body, and the original must never
            # be delivered in its place: the client keeps the message and retries.
            log.warning("a scanner replaced the body, which %s cannot return", path.decode())
            return self._shape(path, self._failed(b"/checkv2", elapsed, Action.TEMPFAIL))
        return self._shape(path, rspamd.rspamd_answer(result, elapsed=elapsed))

    def _failed(self, path: bytes, elapsed: float, action: Action | None = None) -> dict[str, Any]:
        action = self.default_action if action is None else action
        reply = DEFAULT_REJECT if action is Action.REJECT else DEFAULT_TEMPFAIL
        answer = rspamd.error_answer(action, reply, elapsed=elapsed)
        if path == b"/v1/scan":
            return {"action": str(action), "error": "scan failed", "elapsed": answer["time_real"]}
        return self._shape(path, answer)

    @staticmethod
    def _shape(path: bytes, answer: dict[str, Any]) -> dict[str, Any]:
        return rspamd.legacy_answer(answer) if path == b"/check" else answer

    # -- writing -----------------------------------------------------------------

    async def _send(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        content_type: bytes,
        payload: bytes,
        *,
        close: bool,
    ) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # h11 already failed in a way that leaves nothing to answer
        headers = [
            (b"Server", SERVER),
            (b"Content-Type", content_type),
            (b"Content-Length", str(len(payload)).encode()),
        ]
        if close:
            headers.append((b"Connection", b"close"))
        data = conn.send(h11.Response(status_code=status, headers=headers))
        data += conn.send(h11.Data(data=payload)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        writer.write(data)
        if writer.transport.get_write_buffer_size() > WRITE_BUFFER:
            # Only a client that does not read makes this wait: bounded.
            await asyncio.wait_for(writer.drain(), self.limits.read_timeout)

    # -- shutdown ------------------------------------------------------------------

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop accepting, let scans in flight finish (bounded), then close all.
        A second call does nothing: the engines are closed once."""
        await self._listeners.stop(self.holder, self._connections, drain_timeout, log)


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader, timeout: float) -> Any:
    """The next event; each read that has to wait gets ``timeout`` seconds. A body
    that came with its head needs no read at all, and no timer (a timer per event
    cost a tenth of the no-op request time)."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        # asyncio.timeout, not wait_for: on 3.11 wait_for makes a task per call.
        async with asyncio.timeout(timeout):
            data = await reader.read(READ_SIZE)
        conn.receive_data(data)


def _message(raw: Body, request: ScanRequest, threshold: int, spool_dir: str | None) -> Message:
    """The request body as a ``Message``: parsed in memory when small, streamed
    from the spool file when not (memory stays flat)."""
    if not raw.spooled:
        return Message.from_bytes(
            raw.as_bytes(), envelope=request.envelope, spool_threshold=threshold
        )
    with raw.open() as fp:
        return Message.from_stream(
            fp, envelope=request.envelope, spool_threshold=threshold, spool_dir=spool_dir
        )


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _raw_busy() -> bytes:
    body = _json({"error": "too many connections, try again later"})
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nServer: mxscan\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
