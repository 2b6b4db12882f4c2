"""The I/O layer: HTTP requests to rspamd's workers with aiohttp.

Why aiohttp (Apache-2.0) rather than httpx (BSD): both stream a request body
from an async iterator and pool keep-alive connections, but aiohttp's HTTP
parser is compiled, and CPU per message is what this plugin is measured on
(benchmarks/bench_rspamd.py); httpx's pure-Python stack (httpcore, h11, anyio)
costs more per request. aiohttp also needs no anyio layer on top of asyncio.

One pooled session per address, made on first use in the running loop (an
aiohttp session belongs to one loop; a new loop gets new sessions). rspamd 3.4's
normal worker answers ``Connection: close``, so in practice each scan opens a
connection; a worker or proxy that keeps connections open gets them reused.

Several addresses: each request starts at the next address in turn and moves
on only when connecting fails. Once rspamd has the message, a failure is
reported, not retried elsewhere: a slow rspamd tried twice would double the time
Postfix waits. Every failure is a ``ScannerError`` naming the address.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

import aiohttp

from mxscan import Address, ScannerError, UnixAddress

from .answer import MAX_ANSWER, AnswerError, RspamdAnswer, parse_answer

__all__ = ["RspamdClient"]

Chunks = Callable[[], Iterable[bytes]]


def _base_url(address: Address) -> str:
    if isinstance(address, UnixAddress):
        return "http://localhost"
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"http://{host}:{address.port}"


def _why(error: BaseException) -> str:
    """``Connection refused`` rather than aiohttp's long wrapper text."""
    cause: BaseException | None = error
    while cause is not None:
        number = getattr(cause, "errno", None)
        if isinstance(number, int) and number:
            return os.strerror(number)
        cause = cause.__cause__ or getattr(cause, "os_error", None)
    return str(error) or type(error).__name__


async def _stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class _Endpoint:
    """One rspamd address and its connection pool."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.url = _base_url(address)
        self.session: aiohttp.ClientSession | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def get(self, connect_timeout: float) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self.session is None or self.loop is not loop or self.session.closed:
            connector: aiohttp.BaseConnector
            if isinstance(self.address, UnixAddress):
                connector = aiohttp.UnixConnector(path=self.address.path, limit=0)
            else:
                connector = aiohttp.TCPConnector(limit=0, use_dns_cache=True)
            self.session = aiohttp.ClientSession(
                connector=connector,
                # No proxy from the environment, no cookies: rspamd is local.
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
            self.loop = loop
        return self.session

    async def close(self) -> None:
        session, self.session = self.session, None
        if session is not None and not session.closed and self.loop is asyncio.get_running_loop():
            await session.close()


class RspamdClient:
    """Talks to one or more rspamd normal workers (and controllers, for learning).

    ``timeout`` bounds a whole request (connecting, failover, sending, waiting);
    ``connect_timeout`` one connection attempt, so a dead address costs at most
    that before the next is tried.
    """

    def __init__(
        self,
        addresses: Sequence[Address],
        *,
        timeout: float,
        connect_timeout: float,
        controller: Sequence[Address] = (),
        password: str | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("rspamd needs at least one address")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.password = password
        self._workers = [_Endpoint(a) for a in addresses]
        self._controllers = [_Endpoint(a) for a in controller]
        self._turn = itertools.count()
        self._controller_turn = itertools.count()

    @property
    def addresses(self) -> tuple[Address, ...]:
        return tuple(endpoint.address for endpoint in self._workers)

    async def aclose(self) -> None:
        for endpoint in (*self._workers, *self._controllers):
            await endpoint.close()

    async def check(
        self, chunks: Chunks, size: int, headers: Sequence[tuple[str, str]]
    ) -> tuple[Address, RspamdAnswer]:
        """POST the message to ``/checkv2``; the body is read from ``chunks()``
        as it is sent (a fresh iterator per attempt), never held whole."""
        address, status, body = await self._post(
            self._workers, self._turn, "/checkv2", chunks, size, headers, "rspamd"
        )
        if status != 200:
            raise ScannerError(f"rspamd at {address} answered HTTP {status}: {body[:120]!r}")
        try:
            return address, parse_answer(body)
        except AnswerError as error:
            raise ScannerError(f"rspamd at {address} sent an unreadable answer: {error}") from None

    async def learn(self, chunks: Chunks, size: int, spam: bool) -> str:
        """POST the message to the controller's ``/learnspam`` or ``/learnham``;
        returns rspamd's word on it (``learned``, ``already learned``)."""
        if not self._controllers:
            raise ScannerError("rspamd: learning needs a controller address")
        headers = [("Password", self.password)] if self.password else []
        path = "/learnspam" if spam else "/learnham"
        address, status, body = await self._post(
            self._controllers, self._controller_turn, path, chunks, size, headers,
            "rspamd controller",
        )  # fmt: skip
        if status in (200, 204):
            return "learned"
        if status == 208 or (status == 404 and b"already learned" in body):
            # rspamd 3.4 says so with a 404 and its reason.
            return "already learned"
        if status in (401, 403):
            raise ScannerError(f"rspamd controller at {address} refused the password ({status})")
        raise ScannerError(
            f"rspamd controller at {address} could not learn the message: HTTP {status}: "
            f"{body[:120]!r}"
        )

    async def _post(
        self,
        endpoints: list[_Endpoint],
        turn: itertools.count[int],
        path: str,
        chunks: Chunks,
        size: int,
        headers: Sequence[tuple[str, str]],
        what: str,
    ) -> tuple[Address, int, bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        count = len(endpoints)
        start = next(turn) % count
        failures: list[str] = []
        request_headers = [*headers, ("Content-Length", str(size))]
        for index in range(count):
            endpoint = endpoints[(start + index) % count]
            remaining = deadline - loop.time()
            if remaining <= 0:
                failures.append(
                    f"{endpoint.address}: not tried, the {self.timeout:g}s were used up"
                )
                continue
            session = endpoint.get(min(self.connect_timeout, remaining))
            try:
                async with asyncio.timeout(remaining):
                    return await self._once(session, endpoint, path, chunks, request_headers)
            except aiohttp.ClientConnectorError as error:
                failures.append(f"{endpoint.address}: {_why(error)}")
            except aiohttp.ServerTimeoutError:  # only sock_connect is set: a connect timeout
                failures.append(
                    f"{endpoint.address}: no connection within {self.connect_timeout:g}s"
                )
            except TimeoutError:
                raise ScannerError(
                    f"{what} at {endpoint.address} did not answer within {self.timeout:g}s"
                ) from None
            except aiohttp.ServerDisconnectedError:
                raise ScannerError(
                    f"{what} at {endpoint.address} closed the connection without an answer"
                ) from None
            except aiohttp.ClientResponseError as error:
                raise ScannerError(
                    f"{what} at {endpoint.address} sent an answer that is not HTTP: {error.message}"
                ) from None
            except aiohttp.ClientPayloadError as error:
                raise ScannerError(
                    f"{what} at {endpoint.address}: answer cut short: {error}"
                ) from None
            except (aiohttp.ClientError, OSError) as error:
                raise ScannerError(f"{what} at {endpoint.address}: {_why(error)}") from None
        raise ScannerError(f"cannot reach {what}: " + "; ".join(failures))

    async def _once(
        self,
        session: aiohttp.ClientSession,
        endpoint: _Endpoint,
        path: str,
        chunks: Chunks,
        headers: list[tuple[str, str]],
    ) -> tuple[Address, int, bytes]:
        async with session.post(
            endpoint.url + path, data=_stream(chunks()), headers=headers, allow_redirects=False
        ) as response:
            body = bytearray()
            while len(body) <= MAX_ANSWER:  # bounded: a hostile server cannot fill memory
                piece = await response.content.read(65536)
                if not piece:
                    break
                body += piece
            return endpoint.address, response.status, bytes(body)
