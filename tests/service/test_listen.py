"""service.listen: binding, permissions, and never removing what is not ours."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from mxscan.addresses import InetAddress, UnixAddress
from mxscan.service.listen import ListenError, SocketPermissions, bind, is_loopback


def test_unix_socket_gets_the_mode_and_is_removed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    listening = bind(UnixAddress(str(path)), SocketPermissions(mode=0o640))
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o640
    listening.close()
    assert not path.exists()


def test_group_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    gid = os.getgid()
    listening = bind(UnixAddress(str(path)), SocketPermissions(group=str(gid)))
    assert os.lstat(path).st_gid == gid
    listening.close()


def test_unknown_owner_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with pytest.raises(ListenError, match="no such user: nosuchuser-mxscan"):
        bind(UnixAddress(str(path)), SocketPermissions(owner="nosuchuser-mxscan"))
    assert not path.exists()


def test_stale_socket_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: a crashed instance's
    listening = bind(UnixAddress(str(path)))
    listening.close()


def test_live_socket_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(path))
    live.listen()
    try:
        with pytest.raises(ListenError, match="in use by another process"):
            bind(UnixAddress(str(path)))
        assert path.exists()
    finally:
        live.close()


def test_regular_file_is_never_removed(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    path.write_text("precious")
    with pytest.raises(ListenError, match="not a socket"):
        bind(UnixAddress(str(path)))
    assert path.read_text() == "precious"


def test_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(target))
    dead.close()
    link = tmp_path / "link.sock"
    link.symlink_to(target)
    with pytest.raises(ListenError, match="not a socket"):
        bind(UnixAddress(str(link)))
    assert link.is_symlink() and target.exists()


def test_close_leaves_a_newer_instances_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    old = bind(UnixAddress(str(path)))
    path.unlink()
    newer = bind(UnixAddress(str(path)))
    old.close()
    assert path.exists()
    newer.close()
    assert not path.exists()


def test_inet_port_zero_reports_the_real_port() -> None:
    listening = bind(InetAddress("127.0.0.1", 0))
    try:
        assert isinstance(listening.address, InetAddress)
        assert listening.address.port > 0
    finally:
        listening.close()


def test_inet_in_use_is_a_clear_error() -> None:
    first = bind(InetAddress("127.0.0.1", 0))
    try:
        assert isinstance(first.address, InetAddress)
        with pytest.raises(ListenError, match="cannot listen on inet:127.0.0.1"):
            bind(first.address)
    finally:
        first.close()


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        (InetAddress("127.0.0.1", 1), True),
        (InetAddress("127.3.4.5", 1), True),
        (InetAddress("::1", 1), True),
        (InetAddress("localhost", 1), True),
        (InetAddress("0.0.0.0", 1), False),
        (InetAddress("192.0.2.1", 1), False),
        (InetAddress("mx.example.org", 1), False),
        (UnixAddress("/run/x.sock"), True),
    ],
)
def test_is_loopback(address: InetAddress | UnixAddress, loopback: bool) -> None:
    assert is_loopback(address) is loopback
