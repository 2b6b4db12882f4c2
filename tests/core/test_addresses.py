from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mxscan import InetAddress, UnixAddress, open_connection, parse_address, parse_addresses


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("unix:/run/clamav/clamd.ctl", UnixAddress("/run/clamav/clamd.ctl")),
        ("/run/x.sock", UnixAddress("/run/x.sock")),
        ("inet:127.0.0.1:3310", InetAddress("127.0.0.1", 3310)),
        ("inet:localhost:783", InetAddress("localhost", 783)),
        ("inet:[::1]:783", InetAddress("::1", 783)),
    ],
)
def test_parse_address(text: str, address: object) -> None:
    assert parse_address(text) == address
    assert parse_address(str(address)) == address


@pytest.mark.parametrize(
    "bad", ["", "unix:", "inet:127.0.0.1", "inet::80", "inet:h:0", "inet:h:99999", "tcp:h:1", "h:1"]
)
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_address(bad)


def test_parse_addresses_list() -> None:
    assert len(parse_addresses(["unix:/a", "inet:127.0.0.1:1"])) == 2
    assert parse_addresses("unix:/a") == (UnixAddress("/a"),)
    with pytest.raises(ValueError):
        parse_addresses([])


async def test_open_connection_unix_and_tcp(tmp_path: Path) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    unix = await asyncio.start_unix_server(echo, path=str(tmp_path / "s"))
    tcp = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    for address in (UnixAddress(str(tmp_path / "s")), InetAddress("127.0.0.1", port)):
        reader, writer = await open_connection(address, timeout=2)
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        writer.close()
    unix.close()
    tcp.close()


async def test_open_connection_refused_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        await open_connection(UnixAddress(str(tmp_path / "nothing")), timeout=1)
