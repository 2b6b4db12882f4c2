"""The private rspamd from scripts/daemons stays on loopback.

After a scan that makes rspamd resolve names (a client address with no host name
asks for its PTR record, the URL in the body for its domain), every socket the
rspamd processes hold is on loopback: DNS goes to the dead resolver, and no
module has opened a connection anywhere else.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from tests.support.daemons import parse_address, require_daemon, rspamd_inet, run_dir
from tests.support.postfix import process_alive
from tests.support.rspamd import children

pytestmark = pytest.mark.rspamd

MESSAGE = (
    b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: links\r\n\r\n"
    b"See http://www.example.org/offer and mail carol@example.info\r\n"
)


def _rspamd_pids() -> list[int]:
    main = int((run_dir() / "rspamd.pid").read_text().strip())
    return [pid for pid in [main, *children(main)] if process_alive(pid)]


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in (Path("/proc") / str(pid) / "fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue
        if str(target).startswith("socket:["):
            inodes.add(str(target)[len("socket:[") : -1])
    return inodes


def _ipv4(hex_address: str) -> str:
    host, _, port = hex_address.partition(":")
    return f"{socket.inet_ntoa(struct.pack('<I', int(host, 16)))}:{int(port, 16)}"


def _inet_sockets() -> dict[str, tuple[str, str, str]]:
    """inode -> (table, local, remote) for every IPv4 TCP/UDP socket; IPv6 as raw hex."""
    found = {}
    for table in ("tcp", "udp", "tcp6", "udp6"):
        lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if table in ("tcp", "udp"):
                local, remote = _ipv4(local), _ipv4(remote)
            found[inode] = (table, local, remote)
    return found


def _post_checkv2(body: bytes) -> bytes:
    address = parse_address(rspamd_inet())
    request = (
        b"POST /checkv2 HTTP/1.0\r\nIp: 192.0.2.1\r\nFrom: alice@example.com\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    with socket.create_connection((address.host, address.port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_private_rspamd_talks_to_loopback_only() -> None:
    require_daemon("rspamd")
    answer = _post_checkv2(MESSAGE)
    assert answer.startswith(b"HTTP/1.") and b'"action"' in answer
    # The PTR lookup of 192.0.2.1 failed at the dead resolver: rspamd says so.
    assert b"RDNS_DNSFAIL" in answer or b"RDNS_NONE" in answer
    sockets = _inet_sockets()
    seen = 0
    for pid in _rspamd_pids():
        for inode in _socket_inodes(pid):
            if inode not in sockets:
                continue  # a unix socket (control socket, worker pipes)
            table, local, remote = sockets[inode]
            seen += 1
            assert local.startswith(("127.", "0.0.0.0:")), (pid, table, local, remote)
            assert remote.startswith(("127.", "0.0.0.0:")), (pid, table, local, remote)
    assert seen >= 2  # at least the two listening sockets were looked at
