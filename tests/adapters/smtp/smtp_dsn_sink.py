"""An SMTP sink that announces DSN and records the MAIL and RCPT parameters as
they arrived on the wire (case and order kept).

Why not tests/support/sink.SMTPSink: aiosmtpd announces no DSN (so Postfix's
smtp client would send none of RET/ENVID/NOTIFY/ORCPT), upper-cases the
parameters it records and refuses RET/ENVID/NOTIFY/ORCPT with 555. This
subclass keeps the raw argument text, takes the four DSN keywords out before
aiosmtpd's own checks, and hands the rest (SIZE, BODY, SMTPUTF8) to aiosmtpd.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.postfix import free_port

DSN_KEYS = ("RET", "ENVID", "NOTIFY", "ORCPT")


@dataclass(frozen=True)
class DsnDelivery:
    mail_from: str
    mail_params: tuple[str, ...]  # every MAIL parameter token, as sent
    rcpts: tuple[tuple[str, tuple[str, ...]], ...]  # (address, its RCPT tokens)
    data: bytes

    def dsn(self) -> tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]:
        """Only the DSN parameters (SIZE differs with the filter's added headers)."""
        keep = lambda ps: tuple(p for p in ps if p.partition("=")[0].upper() in DSN_KEYS)  # noqa: E731
        return keep(self.mail_params), tuple((a, keep(ps)) for a, ps in self.rcpts)

    def params(self, key: str) -> list[str]:
        return [p for p in self.mail_params if p.partition("=")[0].upper() == key]


def _split(arg: str) -> tuple[str, list[str]]:
    """``FROM:<a> X=1 Y`` -> (``FROM:<a>``, [``X=1``, ``Y``])."""
    head, _, rest = arg.partition(">")
    return head + ">", rest.split()


class _DsnSMTP(SMTP):
    line_length_limit = 1 << 20

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.raw_mail: list[str] = []
        self.raw_rcpts: list[tuple[str, tuple[str, ...]]] = []

    async def smtp_MAIL(self, arg: str | None) -> None:
        if arg is None:
            return await super().smtp_MAIL(arg)
        path, params = _split(arg)
        self.raw_mail, self.raw_rcpts = params, []
        kept = [p for p in params if p.partition("=")[0].upper() not in DSN_KEYS]
        return await super().smtp_MAIL(" ".join([path, *kept]))

    async def smtp_RCPT(self, arg: str | None) -> None:
        if arg is None:
            return await super().smtp_RCPT(arg)
        path, params = _split(arg)
        self.raw_rcpts.append((path.partition("<")[2].rstrip(">"), tuple(params)))
        kept = [p for p in params if p.partition("=")[0].upper() not in DSN_KEYS]
        return await super().smtp_RCPT(" ".join([path, *kept]))


class _Handler:
    def __init__(self, sink: DsnSink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-DSN", responses[-1]]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(server, _DsnSMTP) and isinstance(envelope.original_content, bytes)
        delivery = DsnDelivery(
            envelope.mail_from or "",
            tuple(server.raw_mail),
            tuple(server.raw_rcpts),
            bytes(envelope.original_content),
        )
        with self.sink.lock:
            self.sink.deliveries.append(delivery)
        return "250 2.0.0 Ok: stored by the DSN sink"


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _DsnSMTP(self.handler, decode_data=False, hostname="dsn-sink.mxscan.test",
                        enable_SMTPUTF8=True)  # fmt: skip


class DsnSink:
    def __init__(self) -> None:
        self.port = free_port()
        self.lock = threading.Lock()
        self.deliveries: list[DsnDelivery] = []
        self._controller = _Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> DsnSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def wait_for(self, token: bytes, timeout: float = 60) -> DsnDelivery:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                hits = [d for d in self.deliveries if token in d.data]
            if hits:
                assert len(hits) == 1, f"{len(hits)} deliveries of {token!r}"
                return hits[0]
            time.sleep(0.05)
        raise AssertionError(f"{token!r} did not reach the DSN sink within {timeout:g}s")
