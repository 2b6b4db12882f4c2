"""The thin I/O layer: one HEADERS request to spamd through aiospamc.

aiospamc's own failure modes are many and raw (a bare ``TimeoutError`` after its
default of 600 s, ``AIOSpamcConnectionFailed``, ``BadResponse``, one exception
class per spamd exit code, plain ``OSError`` when spamd hangs up mid-write).
Everything is turned into one ``ScannerError`` that names the address, so the
pipeline's ``on_error`` decides and the admin's log says which spamd failed.

HEADERS rather than SYMBOLS or REPORT: one round trip gives the score, spamd's
required_score, the rule names (in X-Spam-Status) and SA's headers in SA's own
format, without sending the body back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiospamc.client import Client  # type: ignore[import-untyped]
from aiospamc.connections import (  # type: ignore[import-untyped]
    ConnectionManager,
    TcpConnectionManager,
    Timeout,
    UnixConnectionManager,
)
from aiospamc.exceptions import (  # type: ignore[import-untyped]
    AIOSpamcConnectionFailed,
    BadResponse,
    ClientTimeoutException,
)
from aiospamc.header_values import (  # type: ignore[import-untyped]
    ActionOption,
    MessageClassOption,
    MessageClassValue,
    SetOrRemoveValue,
)
from aiospamc.requests import Request  # type: ignore[import-untyped]
from aiospamc.responses import ResponseException  # type: ignore[import-untyped]

from mxscan import Address, ScannerError, UnixAddress

from .answer import SpamdAnswer

__all__ = ["ask_spamd", "tell_spamd"]


def _why(error: BaseException) -> str:
    """The OS-level cause aiospamc wraps (``Connection refused``, no such file)."""
    cause = error.__cause__ or error.__context__ or error
    number = getattr(cause, "errno", None)
    if isinstance(number, int):
        return os.strerror(number)
    return str(cause) or type(cause).__name__


def _headers_request(data: bytes) -> Any:
    return Request("HEADERS", body=data)


def _tell_request(data: bytes, spam: bool) -> Any:
    """TELL: learn the message as spam or ham into spamd's local (Bayes) database."""
    headers = {
        "Message-class": MessageClassValue(MessageClassOption("spam" if spam else "ham")),
        "Set": SetOrRemoveValue(ActionOption(local=True, remote=False)),
    }
    return Request("TELL", headers=headers, body=data)


async def _send(
    address: Address, request: Any, timeout: float, user: str | None, compress: bool
) -> Any:
    """One request through aiospamc's Client.

    Not through ``aiospamc.headers()``: that frontend builds two default SSL
    contexts per call (loading the system CA store, ~20 ms of blocking CPU
    each) even for plain TCP, which halved throughput in the benchmark.
    """
    limit = Timeout(total=timeout, connection=timeout, response=timeout)
    manager: ConnectionManager
    if isinstance(address, UnixAddress):
        manager = UnixConnectionManager(Path(address.path), timeout=limit)
    else:
        manager = TcpConnectionManager(address.host, address.port, timeout=limit)
    if compress:
        request.headers.compress = "zlib"
    if user:
        request.headers.user = user
    return await Client(manager).request(request)


async def ask_spamd(
    addresses: Sequence[Address],
    data: bytes,
    *,
    timeout: float,
    user: str | None = None,
    compress: bool = False,
) -> tuple[Address, SpamdAnswer]:
    """Ask each address in turn until one answers.

    Only a failure to connect moves on to the next spamd: a spamd that accepted
    the message and then timed out or answered garbage has had its chance, and
    trying the next one could double the time Postfix waits.
    """
    address, response = await _first_answer(
        addresses, lambda: _headers_request(data), timeout, user, compress, "check the message"
    )
    spam = response.headers.spam
    if spam is None:
        raise ScannerError(f"spamd at {address} answered without a Spam: score header")
    return address, SpamdAnswer.from_parts(spam.value, spam.score, spam.threshold, response.body)


async def tell_spamd(
    addresses: Sequence[Address],
    data: bytes,
    *,
    spam: bool,
    timeout: float,
    user: str | None = None,
) -> bool:
    """Teach the first spamd that answers; True when it learned something new
    (``DidSet: local``), False when its database already had the message as that.
    spamd refuses TELL (exit code 77, EX_NOPERM) unless started with --allow-tell."""
    _, response = await _first_answer(
        addresses, lambda: _tell_request(data, spam), timeout, user, False, "learn the message"
    )
    did_set = response.headers.did_set
    return bool(did_set is not None and did_set.local)


async def _first_answer(
    addresses: Sequence[Address],
    request: Any,
    timeout: float,
    user: str | None,
    compress: bool,
    what: str,
) -> tuple[Address, Any]:
    """The first spamd's response to ``request()``; failures as ScannerError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    failures: list[str] = []
    for address in addresses:
        remaining = deadline - loop.time()
        if remaining <= 0:
            failures.append(f"{address}: not tried, the {timeout:g}s timeout was used up")
            continue
        try:
            response = await _send(address, request(), remaining, user, compress)
        except AIOSpamcConnectionFailed as error:
            failures.append(f"{address}: {_why(error)}")
            continue
        except (TimeoutError, ClientTimeoutException) as error:
            raise ScannerError(f"spamd at {address} did not answer within {timeout:g}s") from error
        except BadResponse as error:
            raw = error.args[0] if error.args else b""
            raise ScannerError(
                f"spamd at {address} sent an answer that is not the SPAMD protocol: {raw[:80]!r}"
            ) from error
        except ResponseException as error:
            hint = " (spamd needs --allow-tell)" if error.code == 77 else ""
            raise ScannerError(
                f"spamd at {address} could not {what}: {error.code} {error}{hint}"
            ) from error
        except OSError as error:
            raise ScannerError(f"spamd at {address}: connection lost: {_why(error)}") from error
        except Exception as error:  # aiospamc's parser raises more than it documents
            raise ScannerError(
                f"spamd at {address} sent an unreadable answer: {type(error).__name__}: {error}"
            ) from error
        return address, response
    raise ScannerError("cannot reach spamd: " + "; ".join(failures))
