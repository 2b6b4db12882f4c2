"""The thin I/O layer around ``spamc.py``: one request per connection to spamd.

Every failure becomes one ``ScannerError`` that names the address, so the
pipeline's ``on_error`` decides and the admin's log says which spamd failed.

HEADERS rather than SYMBOLS or REPORT: one round trip gives the score, spamd's
required_score, the rule names (in X-Spam-Status) and SA's headers in SA's own
format, without sending the body back.

The message is streamed: its header (with the trace line in front) is held,
the body is read from its spool chunk by chunk as spamd takes it, and the
``Content-length`` is computed up front (for ``compress``, by compressing
once to count and again to send: zlib is deterministic), so the plugin's
memory does not grow with the message.

Why not aiospamc: see docs/dependencies.md (ten transitive packages, a
``typer<0.17`` pin, 90 ms of imports, and errors that needed this module to
translate them anyway).
"""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs

from mxscan import Address, Body, ScannerError, open_connection

from .answer import SpamdAnswer
from .spamc import ProtocolError, Request, Response, ResponseParser, SpamdError

__all__ = ["Content", "ask_spamd", "exchange", "tell_spamd"]

_READ = 64 * 1024


def _why(error: BaseException) -> str:
    """The OS-level cause (``Connection refused``, ``No such file or directory``)."""
    number = getattr(error, "errno", None)
    if isinstance(number, int):
        return os.strerror(number)
    return str(error) or type(error).__name__


class _ConnectFailed(Exception):
    """Could not connect: the next address may be tried."""


@attrs.frozen
class Content:
    """The message spamd checks: ``prefix`` held in memory (an mbox From
    line, this hop's Received: line, the header; or a whole small message),
    then ``body`` streamed from its spool."""

    prefix: bytes
    body: Body | None = None

    @property
    def size(self) -> int:
        return len(self.prefix) + (self.body.size if self.body is not None else 0)

    def chunks(self) -> Iterator[bytes]:
        if self.prefix:
            yield self.prefix
        if self.body is not None:
            yield from self.body.chunks()


def _deflate(chunks: Iterable[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj()
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def _framed(request: Request, content: Content) -> tuple[bytes, Callable[[], Iterator[bytes]]]:
    """The request head and a fresh iterator of the body as sent (one per
    address tried)."""
    if not request.compress:
        return request.head(content.size), content.chunks
    length = sum(len(piece) for piece in _deflate(content.chunks()))
    return request.head(length), lambda: _deflate(content.chunks())


async def exchange(address: Address, request: Request, timeout: float) -> Response:
    """Send ``request`` to spamd at ``address`` and read the whole answer.

    Raises ``_ConnectFailed`` (connect refused, no socket), ``TimeoutError``,
    ``ProtocolError``, ``SpamdError`` or ``OSError`` (connection lost).
    """
    return await _send(address, request.to_bytes(), lambda: iter(()), timeout)


async def _send(
    address: Address, head: bytes, body: Callable[[], Iterator[bytes]], timeout: float
) -> Response:
    async with asyncio.timeout(timeout):
        try:
            reader, writer = await open_connection(address, timeout=timeout)
        except TimeoutError:
            raise
        except OSError as error:
            raise _ConnectFailed(_why(error)) from error
        try:
            writer.write(head)
            for chunk in body():
                writer.write(chunk)
                await writer.drain()  # spamd reads as we send: at most a chunk held
            # Half-close, as spamc does: spamd reads the message by lines, and
            # waits for the end of one without a final newline until EOF.
            if writer.can_write_eof():
                writer.write_eof()
            await writer.drain()
            parser = ResponseParser()
            while True:
                data = await reader.read(_READ)
                if not data:
                    return parser.eof()
                response = parser.feed(data)
                if response is not None:
                    return response
        finally:
            writer.close()


async def ask_spamd(
    addresses: Sequence[Address],
    data: bytes | Content,
    *,
    timeout: float,
    user: str | None = None,
    compress: bool = False,
) -> tuple[Address, SpamdAnswer]:
    """Ask each address in turn until one answers HEADERS.

    Only a failure to connect moves on to the next spamd: a spamd that accepted
    the message and then timed out or answered garbage has had its chance, and
    trying the next one could double the time Postfix waits.
    """
    content = data if isinstance(data, Content) else Content(data)
    try:  # framed (and its compressed length counted) once for every address
        head, body = _framed(Request("HEADERS", user=user, compress=compress), content)
    except ValueError as error:  # a User: that would break the framing
        raise ScannerError(f"cannot ask spamd: {error}") from error
    address, response = await _first_answer(addresses, head, body, timeout, "check the message")
    spam = response.spam
    if spam is None:
        raise ScannerError(f"spamd at {address} answered without a Spam: score header")
    return address, SpamdAnswer.from_parts(spam.is_spam, spam.score, spam.threshold, response.body)


async def tell_spamd(
    addresses: Sequence[Address],
    data: bytes | Content,
    *,
    spam: bool,
    timeout: float,
    user: str | None = None,
) -> bool:
    """TELL the first spamd that answers that ``data`` is spam or ham (its local
    Bayes database); True when it learned something new (``DidSet: local``), False
    when it already had the message as that. spamd refuses TELL (code 77,
    EX_NOPERM) unless started with --allow-tell."""
    content = data if isinstance(data, Content) else Content(data)
    headers = {"Message-class": "spam" if spam else "ham", "Set": "local"}
    try:
        head, body = _framed(Request("TELL", user=user, headers=headers), content)
    except ValueError as error:
        raise ScannerError(f"cannot tell spamd: {error}") from error
    _, response = await _first_answer(addresses, head, body, timeout, "learn the message")
    return "local" in response.headers.get("didset", "")


async def _first_answer(
    addresses: Sequence[Address],
    head: bytes,
    body: Callable[[], Iterator[bytes]],
    timeout: float,
    what: str,
) -> tuple[Address, Response]:
    """The first spamd's answer to the request, trying the next only when one
    cannot be reached; every failure a ScannerError that names the address."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    failures: list[str] = []
    for address in addresses:
        remaining = deadline - loop.time()
        if remaining <= 0:
            failures.append(f"{address}: not tried, the {timeout:g}s timeout was used up")
            continue
        try:
            return address, await _send(address, head, body, remaining)
        except _ConnectFailed as error:
            failures.append(f"{address}: {error}")
            continue
        except TimeoutError as error:
            raise ScannerError(f"spamd at {address} did not answer within {timeout:g}s") from error
        except ProtocolError as error:
            raise ScannerError(
                f"spamd at {address} sent an answer that is not the SPAMD protocol: {error}"
            ) from error
        except SpamdError as error:
            hint = " (spamd needs --allow-tell)" if error.code == 77 else ""
            raise ScannerError(f"spamd at {address} could not {what}: {error}{hint}") from error
        except OSError as error:
            raise ScannerError(f"spamd at {address}: connection lost: {_why(error)}") from error
    raise ScannerError("cannot reach spamd: " + "; ".join(failures))
