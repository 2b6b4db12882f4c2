"""Postfix-style socket addresses (``unix:/path``, ``inet:host:port``).

Admins already write these in main.cf (``smtpd_milters``), so every place in
mxscan that names a socket - scanner daemons and adapter listeners - uses the
same syntax and the same parser.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable

import attrs

__all__ = [
    "Address",
    "InetAddress",
    "UnixAddress",
    "open_connection",
    "parse_address",
    "parse_addresses",
]


@attrs.frozen
class UnixAddress:
    """A unix-domain socket path."""

    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}"


@attrs.frozen
class InetAddress:
    """A TCP host and port; IPv6 hosts are written ``inet:[::1]:port``."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"inet:{host}:{self.port}"


Address = UnixAddress | InetAddress


def parse_address(text: str) -> Address:
    """Parse one address; ValueError says which form was expected."""
    if not isinstance(text, str):
        raise ValueError(f"expected an address such as unix:/path or inet:host:port, got {text!r}")
    value = text.strip()
    if value.startswith("unix:"):
        path = value[5:]
        if not path:
            raise ValueError(f"{text!r}: unix: needs a socket path")
        return UnixAddress(path)
    if value.startswith("/"):
        return UnixAddress(value)
    if value.startswith(("inet:", "inet6:")):
        rest = value.split(":", 1)[1]
        if rest.startswith("["):
            host, sep, port_text = rest[1:].partition("]:")
            if not sep:
                raise ValueError(f"{text!r}: expected inet:[v6-address]:port")
        else:
            host, sep, port_text = rest.rpartition(":")
            if not sep:
                raise ValueError(f"{text!r}: expected inet:host:port")
        if not host:
            raise ValueError(f"{text!r}: the host is missing")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
        return InetAddress(host, int(port_text))
    raise ValueError(f"expected an address such as unix:/path or inet:host:port, got {text!r}")


def parse_addresses(value: str | Iterable[str]) -> tuple[Address, ...]:
    """One address or a list of them (several daemons for failover)."""
    items = [value] if isinstance(value, str) else list(value)
    if not items:
        raise ValueError("expected at least one address")
    return tuple(parse_address(item) for item in items)


async def open_connection(
    address: Address, *, timeout: float, limit: int = 2**16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect within ``timeout`` seconds; TCP gets TCP_NODELAY.

    Small request/reply protocols (clamd, spamd, milter) otherwise lose tens of
    milliseconds per exchange to Nagle's algorithm meeting delayed ACKs.
    """
    if isinstance(address, UnixAddress):
        return await asyncio.wait_for(
            asyncio.open_unix_connection(address.path, limit=limit), timeout
        )
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(address.host, address.port, limit=limit), timeout
    )
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer
