"""Listening sockets named the Postfix way (``unix:/path``, ``inet:host:port``).

A unix socket is created under a tight umask, then given the mode, owner and
group asked for, so it is never reachable by anyone else even for a moment. A
socket left behind by a crashed instance is removed; a live socket, a regular
file or a symlink at that path is never touched. On shutdown only the socket we
created (same inode) is unlinked, never a newer instance's.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import logging
import os
import pwd
import socket
import stat
from pathlib import Path

import attrs

from mxscan.addresses import Address, InetAddress, UnixAddress

__all__ = [
    "BACKLOG",
    "ListenError",
    "Listening",
    "SocketPermissions",
    "bind",
    "is_loopback",
    "lookup_gid",
    "lookup_uid",
]

log = logging.getLogger("mxscan.service")

#: Pending connections the kernel queues: a burst of clients waits there rather
#: than retrying SYNs a second later.
BACKLOG = 1024


class ListenError(Exception):
    """A listener cannot be set up (address in use, not a socket, bad owner...)."""


@attrs.frozen
class SocketPermissions:
    """What a unix socket gets once bound (inet sockets have none)."""

    mode: int = 0o660
    owner: str | None = None
    group: str | None = None


@attrs.define
class Listening:
    """A bound, listening socket; ``close()`` removes a unix socket we own."""

    address: Address
    sock: socket.socket
    inode: int | None = None
    #: What ``listen()`` was given; asyncio's server calls ``listen()`` again
    #: when it starts, so ``start_server`` passes this on (else asyncio's 100).
    backlog: int = BACKLOG

    def close(self) -> None:
        self.sock.close()
        if isinstance(self.address, UnixAddress) and self.inode is not None:
            _unlink_if_ours(self.address.path, self.inode)
            self.inode = None


def is_loopback(address: Address) -> bool:
    """Unix sockets are local; an inet host counts only if it is a loopback address
    literal or ``localhost`` (a name that resolves elsewhere is not trusted)."""
    if isinstance(address, UnixAddress):
        return True
    if address.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.host).is_loopback
    except ValueError:
        return False


def bind(
    address: Address, permissions: SocketPermissions | None = None, backlog: int = BACKLOG
) -> Listening:
    """Bind and listen; every failure is a ``ListenError`` naming the address."""
    if isinstance(address, UnixAddress):
        return _bind_unix(address, permissions or SocketPermissions(), backlog)
    return _bind_inet(address, backlog)


def _bind_inet(address: InetAddress, backlog: int) -> Listening:
    try:
        infos = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {address}: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    host, port = sock.getsockname()[:2]
    return Listening(InetAddress(str(host), int(port)), sock, backlog=backlog)


def _bind_unix(address: UnixAddress, permissions: SocketPermissions, backlog: int) -> Listening:
    path = address.path
    remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        parent = Path(path).parent
        hint = "" if parent.is_dir() else f" (create the directory {parent} first)"
        raise ListenError(f"cannot bind {address}: {exc.strerror or exc}{hint}") from None
    finally:
        os.umask(old_umask)
    try:
        uid = lookup_uid(permissions.owner) if permissions.owner else -1
        gid = lookup_gid(permissions.group) if permissions.group else -1
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
        Path(path).chmod(permissions.mode)
        sock.listen(backlog)
    except (OSError, ListenError) as exc:
        sock.close()
        with contextlib.suppress(OSError):
            Path(path).unlink()
        raise ListenError(f"{address}: {exc}") from None
    sock.setblocking(False)
    return Listening(address, sock, os.lstat(path).st_ino, backlog)


def remove_stale_socket(path: str) -> None:
    """Unlink ``path`` only if it is a socket nobody answers on (``lstat``: a
    symlink is not followed, and it is not a socket, so it stays)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"unix:{path} exists and is not a socket: not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        log.info("removing stale socket unix:%s", path)
        Path(path).unlink()
        return
    finally:
        probe.close()
    raise ListenError(f"unix:{path} is in use by another process")


def _unlink_if_ours(path: str, inode: int) -> None:
    try:
        if os.lstat(path).st_ino == inode:
            Path(path).unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove unix:%s: %s", path, exc.strerror)


def lookup_uid(user: str) -> int:
    try:
        return int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ListenError(f"no such user: {user}") from None


def lookup_gid(group: str) -> int:
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ListenError(f"no such group: {group}") from None
