"""spamd's PING, for mxscan's health probe (``mxscan milter --metrics``).

A probe must cost spamd nothing: PING makes spamd answer ``SPAMD/1.5 0 PONG``
without loading a message or running a rule. It is kept apart from the scan
client (``client.py``, ``spamc.py``) for its own bounds: a one-line answer of at
most 256 bytes and one failure message per cause within a hard deadline; the
codec (``PING_REQUEST``, ``parse_pong``) is sans-I/O. ``config check --connect``
uses it too, one address at a time.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence

from mxscan import Address, ScannerError, open_connection

__all__ = ["PING_REQUEST", "parse_pong", "ping_spamd"]

PING_REQUEST = b"PING SPAMC/1.5\r\n\r\n"
#: spamd's answer line; spamd 4.0 says ``SPAMD/1.5 0 PONG``.
_PONG = re.compile(rb"SPAMD/\d+\.\d+ 0 PONG\r?\n")
#: Longer than any PONG line: a peer that sends more without a newline is not spamd.
_MAX_LINE = 256


def parse_pong(line: bytes) -> None:
    """Accept spamd's PONG line; anything else raises ``ValueError`` naming it."""
    if not _PONG.fullmatch(line):
        raise ValueError(f"answered PING with {line[:80]!r}, not SPAMD/1.x 0 PONG")


async def _ping_one(address: Address, timeout: float) -> None:
    reader, writer = await open_connection(address, timeout=timeout, limit=_MAX_LINE)
    try:
        writer.write(PING_REQUEST)
        await writer.drain()
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            raise ValueError(f"answered PING with a line of over {_MAX_LINE} bytes") from exc
        except asyncio.IncompleteReadError as exc:
            raise ValueError(f"closed the connection after {exc.partial[:80]!r}") from exc
        parse_pong(line)
    finally:
        writer.close()


async def ping_spamd(addresses: Sequence[Address], *, timeout: float) -> None:
    """Raise ``ScannerError`` unless one of ``addresses`` answers PONG in time.

    Tried in order like a scan, within one ``timeout`` for all of them: the probe
    says whether a scan could be done now."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    failures: list[str] = []
    for address in addresses:
        try:
            async with asyncio.timeout_at(deadline):
                await _ping_one(address, timeout)
        except TimeoutError:
            failures.append(f"{address}: no PONG within {timeout:g}s")
        except OSError as exc:
            failures.append(f"{address}: {os.strerror(exc.errno) if exc.errno else exc}")
        except ValueError as exc:
            failures.append(f"{address}: {exc}")
        else:
            return
    raise ScannerError("spamd PING failed: " + "; ".join(failures))
