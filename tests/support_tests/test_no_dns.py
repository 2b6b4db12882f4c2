"""The resolver guard every test runs under (tests/support/no_dns.py)."""

from __future__ import annotations

import asyncio
import smtplib
import socket

import pytest

from tests.support.no_dns import DNSQueryInTest
from tests.support.sink import SMTPSink


def test_smtplib_without_local_hostname_is_caught() -> None:
    """What the corpus and load tests did: smtplib asks getfqdn() for the EHLO name."""
    with SMTPSink() as sink, pytest.raises(DNSQueryInTest, match="getfqdn"):
        smtplib.SMTP("127.0.0.1", sink.port, timeout=10)


def test_smtplib_with_local_hostname_needs_no_resolver() -> None:
    with SMTPSink() as sink:
        with smtplib.SMTP("127.0.0.1", sink.port, local_hostname="t.mxscan.test") as client:
            client.sendmail("a@example.org", ["b@example.com"], b"Subject: x\r\n\r\nx\r\n")
        (delivery,) = sink.wait_for(1, timeout=10)
    assert delivery.data.endswith(b"\r\nx\r\n")


@pytest.mark.parametrize(
    "lookup",
    [
        lambda: socket.gethostbyname("example.com"),
        lambda: socket.getaddrinfo("localhost", 25),
        lambda: socket.gethostbyaddr("127.0.0.1"),
        lambda: socket.getnameinfo(("127.0.0.1", 25), 0),
        socket.getfqdn,
    ],
)
def test_name_lookups_fail_loudly(lookup: object) -> None:
    with pytest.raises(DNSQueryInTest):
        lookup()  # type: ignore[operator]


def test_numeric_addresses_still_work() -> None:
    assert socket.getaddrinfo("127.0.0.1", 25, type=socket.SOCK_STREAM)[0][4] == ("127.0.0.1", 25)
    assert socket.gethostbyname("127.0.0.1") == "127.0.0.1"
    assert socket.getnameinfo(("127.0.0.1", 25), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)

    async def connect() -> None:
        with SMTPSink() as sink:
            reader, writer = await asyncio.open_connection("127.0.0.1", sink.port)
            assert (await reader.readline()).startswith(b"220 ")
            writer.close()

    asyncio.run(connect())
