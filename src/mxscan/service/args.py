"""argparse types for the options every long-running adapter shares, so each
subcommand spells ``--socket-mode`` or ``--drain-timeout`` alike."""

from __future__ import annotations

import argparse

from mxscan.addresses import Address, parse_address
from mxscan.units import parse_duration, parse_size

from .listen import SocketPermissions

__all__ = [
    "add_listen_option",
    "add_socket_options",
    "address",
    "duration",
    "octal_mode",
    "permissions",
    "positive_int",
    "size",
]


def octal_mode(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode such as 0660") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not a permission mode")
    return value


def duration(text: str) -> float:
    """A positive duration such as ``30s`` or ``2m``."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 seconds")
    return seconds


def size(text: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 bytes")
    return value


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return int(text)


def address(text: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_listen_option(p: argparse.ArgumentParser, default: str) -> None:
    """``-l/--listen``, repeatable; the adapter fills in ``default`` when none is given
    (argparse's ``append`` would otherwise add to the default instead of replacing it)."""
    p.add_argument(
        "-l", "--listen", action="append", type=address, metavar="ADDR",
        help=f"unix:/path or inet:HOST:PORT (repeatable; default {default})",
    )  # fmt: skip


def add_socket_options(p: argparse.ArgumentParser) -> None:
    """``--socket-mode/-owner/-group`` and ``--user``, worded alike everywhere."""
    p.add_argument("--socket-mode", type=octal_mode, default=0o660, metavar="MODE",
                   help="permissions of a unix socket (default 0660)")  # fmt: skip
    p.add_argument("--socket-owner", metavar="USER", help="owner of a unix socket")
    p.add_argument("--socket-group", metavar="GROUP", help="group of a unix socket")
    p.add_argument("--user", metavar="USER", help="drop privileges to USER after binding")


def permissions(args: argparse.Namespace) -> SocketPermissions:
    """What ``add_socket_options`` asked for."""
    return SocketPermissions(args.socket_mode, args.socket_owner, args.socket_group)
