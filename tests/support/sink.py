"""An SMTP sink on 127.0.0.1 that records exactly what it was sent.

Why: end-to-end tests must compare the bytes that leave Postfix (or a filter)
with what went in. aiosmtpd with ``decode_data=False`` hands over the DATA bytes
after only SMTP dot-unstuffing, CRLFs and 8-bit bytes intact. It runs its own
event loop in a daemon thread so synchronous tests and subprocess-driven tests
can use it alike.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class Delivery:
    """One message as the sink received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: str
    received_at: float = field(default_factory=time.time)


def header_fields(head: bytes) -> list[bytes]:
    """A delivered header block (CRLF lines, no blank line) split into fields, each
    with its folded continuation lines: tests compare fields, not lines, because a
    filter may add or drop whole fields."""
    out: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += b"\r\n" + line
        else:
            out.append(line)
    return out


class _SinkSMTP(SMTP):
    # Tests send pathological messages (very long lines); record, don't police.
    line_length_limit = 1 << 20


class _Handler:
    def __init__(self, sink: SMTPSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._sink.data_reply
        if reply is not None:
            return reply
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        peer = session.peer
        self._sink._record(
            Delivery(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=bytes(raw),
                peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
            )
        )
        return "250 2.0.0 Ok: stored by mxscan test sink"


class SMTPSink:
    """Start with ``start()`` (or as a context manager); ``port`` is then bound.

    Set ``data_reply`` (e.g. ``"451 4.3.0 try later"``) to make the sink refuse
    messages, for deferral tests.
    """

    def __init__(self, host: str = "127.0.0.1", data_size_limit: int = 200 * 1024 * 1024) -> None:
        self.host = host
        self.port = 0
        self.data_reply: str | None = None
        self._data_size_limit = data_size_limit
        self._deliveries: list[Delivery] = []
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> SMTPSink:
        if self._thread is not None:
            raise RuntimeError("sink already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        handler = _Handler(self)

        def factory() -> SMTP:
            return _SinkSMTP(
                handler,
                decode_data=False,
                hostname="sink.mxscan.test",
                data_size_limit=self._data_size_limit,
                enable_SMTPUTF8=True,
                loop=loop,
            )

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(factory, host=self.host, port=0)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="mxscan-smtp-sink", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("SMTP sink did not start within 10 s")
        if failure:
            self._thread = None
            raise RuntimeError(f"SMTP sink could not listen on {self.host}: {failure[0]}")
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> SMTPSink:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- records

    def _record(self, delivery: Delivery) -> None:
        with self._cond:
            self._deliveries.append(delivery)
            self._cond.notify_all()

    @property
    def deliveries(self) -> list[Delivery]:
        with self._cond:
            return list(self._deliveries)

    def __iter__(self) -> Iterator[Delivery]:
        return iter(self.deliveries)

    def __len__(self) -> int:
        with self._cond:
            return len(self._deliveries)

    def clear(self) -> None:
        with self._cond:
            self._deliveries.clear()

    def wait_for(self, count: int = 1, timeout: float = 30.0) -> list[Delivery]:
        """Block until at least ``count`` messages arrived; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._deliveries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"SMTP sink on port {self.port}: {len(self._deliveries)} of {count} "
                        f"message(s) arrived within {timeout:g} s"
                    )
                self._cond.wait(left)
            return list(self._deliveries)
