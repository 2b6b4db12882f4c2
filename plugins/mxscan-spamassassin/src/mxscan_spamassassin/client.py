"""The thin I/O layer around ``spamc.py``: one request per connection to spamd.

Every failure becomes one ``ScannerError`` that names the address, so the
pipeline's ``on_error`` decides and the admin's log says which spamd failed.

HEADERS rather than SYMBOLS or REPORT: one round trip gives the score, spamd's
required_score, the rule names (in X-Spam-Status) and SA's headers in SA's own
format, without sending the body back.

Why not aiospamc: see docs/dependencies.md (ten transitive packages, a
``typer<0.17`` pin, 90 ms of imports, and errors that needed this module to
translate them anyway).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from mxscan import Address, ScannerError, open_connection

from .answer import SpamdAnswer
from .spamc import ProtocolError, Request, Response, ResponseParser, SpamdError

__all__ = ["ask_spamd", "exchange"]

_READ = 64 * 1024


def _why(error: BaseException) -> str:
    """The OS-level cause (``Connection refused``, ``No such file or directory``)."""
    number = getattr(error, "errno", None)
    if isinstance(number, int):
        return os.strerror(number)
    return str(error) or type(error).__name__


class _ConnectFailed(Exception):
    """Could not connect: the next address may be tried."""


async def exchange(address: Address, request: Request, timeout: float) -> Response:
    """Send ``request`` to spamd at ``address`` and read the whole answer.

    Raises ``_ConnectFailed`` (connect refused, no socket), ``TimeoutError``,
    ``ProtocolError``, ``SpamdError`` or ``OSError`` (connection lost).
    """
    return await _send(address, request.to_bytes(), timeout)


async def _send(address: Address, payload: bytes, timeout: float) -> Response:
    async with asyncio.timeout(timeout):
        try:
            reader, writer = await open_connection(address, timeout=timeout)
        except TimeoutError:
            raise
        except OSError as error:
            raise _ConnectFailed(_why(error)) from error
        try:
            writer.write(payload)
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
    data: bytes,
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
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    failures: list[str] = []
    try:  # encoded (and compressed) once for every address
        payload = Request("HEADERS", data, user=user, compress=compress).to_bytes()
    except ValueError as error:  # a User: that would break the framing
        raise ScannerError(f"cannot ask spamd: {error}") from error
    for address in addresses:
        remaining = deadline - loop.time()
        if remaining <= 0:
            failures.append(f"{address}: not tried, the {timeout:g}s timeout was used up")
            continue
        try:
            response = await _send(address, payload, remaining)
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
            raise ScannerError(
                f"spamd at {address} could not check the message: {error}"
            ) from error
        except OSError as error:
            raise ScannerError(f"spamd at {address}: connection lost: {_why(error)}") from error
        spam = response.spam
        if spam is None:
            raise ScannerError(f"spamd at {address} answered without a Spam: score header")
        return address, SpamdAnswer.from_parts(
            spam.is_spam, spam.score, spam.threshold, response.body
        )
    raise ScannerError("cannot reach spamd: " + "; ".join(failures))
