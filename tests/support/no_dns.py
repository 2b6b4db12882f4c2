"""No test may send a DNS query: name lookups in the test process fail loudly.

Why: a test must not depend on the host's resolver (none, slow, or logging every
query), and nothing in tests may leave loopback. The usual leak is quiet:
``smtplib.SMTP(host, port)`` without ``local_hostname`` calls ``socket.getfqdn()``,
which asks the resolver for the machine's own name on every connection. While
:func:`install` is in effect (the root conftest.py installs it for every test),
each resolver entry point of :mod:`socket` accepts only numeric addresses (and
``None``), and raises :class:`DNSQueryInTest` for anything else.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

_NAMES = ("getfqdn", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getaddrinfo",
          "getnameinfo")  # fmt: skip
_originals: dict[str, Callable[..., Any]] = {}


class DNSQueryInTest(AssertionError):
    """Not an OSError: code that retries on network errors must not swallow it."""


def _numeric(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _guard(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if name == "getfqdn":
            host = args[0] if args else kwargs.get("name", "")
            if not host:  # the machine's own name: always a resolver query
                raise DNSQueryInTest("socket.getfqdn() asks the resolver (smtplib.SMTP "
                                     "needs local_hostname=...)")  # fmt: skip
        elif name == "getnameinfo":
            host = args[0][0] if args else kwargs["sockaddr"][0]
            flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
            if flags & socket.NI_NUMERICHOST:
                return original(*args, **kwargs)
        else:
            host = args[0] if args else kwargs.get("host", kwargs.get("hostname"))
        if name in ("gethostbyaddr", "getnameinfo") or not _numeric(host):
            raise DNSQueryInTest(f"socket.{name}({host!r}) would ask the resolver")
        return original(*args, **kwargs)

    guarded.__name__ = name
    return guarded


def install() -> None:
    for name in _NAMES:
        if name not in _originals:
            _originals[name] = getattr(socket, name)
            setattr(socket, name, _guard(name, _originals[name]))


def uninstall() -> None:
    for name, original in _originals.items():
        setattr(socket, name, original)
    _originals.clear()
