"""The clamd wire protocol, without sockets: requests to bytes, replies to results.

Kept free of I/O so every reply clamd can give (and every one it should not) is
tested byte for byte, and so the asyncio client stays a thin loop around it.

Only the ``z`` (NUL-terminated) command form is used: clamd answers each request
with NUL-terminated replies and closes the connection, so a reply is complete
exactly when its NUL has arrived - a missing NUL means a truncated answer, which
is never mistaken for a verdict.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "CHUNK_SIZE",
    "END_OF_STREAM",
    "INSTREAM",
    "MAX_REPLY_SIZE",
    "PING",
    "VERSION",
    "ClamdError",
    "ClamdErrorReply",
    "ClamdProtocolError",
    "ScanResult",
    "StreamLimitExceeded",
    "frame",
    "instream_frames",
    "is_heuristic",
    "is_limit",
    "parse_ping_reply",
    "parse_scan_reply",
    "parse_version_reply",
    "split_replies",
]

CHUNK_SIZE = 64 * 1024
"""Bytes per INSTREAM chunk: clamd's own clients use this size, and it bounds the
memory one scan holds no matter how large the message is."""

INSTREAM = b"zINSTREAM\0"
PING = b"zPING\0"
VERSION = b"zVERSION\0"
END_OF_STREAM = struct.pack("!I", 0)

MAX_REPLY_SIZE = 64 * 1024
"""A real reply is a line; anything longer is a misbehaving peer, not a verdict."""

_MAX_FRAME = 2**32 - 1
# ExtendedDetectionInfo appends "(md5:size)" or "(sha256:size)" to the name.
_DETECTION_INFO = re.compile(r"\([0-9a-fA-F]{32,64}:[0-9]+\)\Z")


class ClamdError(Exception):
    """Anything that keeps clamd from giving a verdict.

    ``address`` is filled in by the client, which knows which clamd answered, so
    the message an admin reads names the daemon to look at.
    """

    def __init__(self, message: str, *, address: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.address = address

    def __str__(self) -> str:
        return f"clamd at {self.address}: {self.message}" if self.address else self.message


class ClamdProtocolError(ClamdError):
    """clamd's answer is not one this client understands (garbage, truncated, none)."""


class ClamdErrorReply(ClamdError):
    """clamd itself answered ``... ERROR``."""

    def __init__(self, text: str, *, address: str | None = None) -> None:
        super().__init__(f"replied {text!r}", address=address)
        self.text = text


class StreamLimitExceeded(ClamdErrorReply):
    """The stream was longer than clamd's ``StreamMaxLength``: it scanned nothing.

    A separate type because it is a property of the message, not of the daemon:
    the scanner maps it to the configured oversize outcome instead of an error.
    """


@dataclass(frozen=True, slots=True)
class ScanResult:
    """clamd's verdict on one stream; no signatures means clean."""

    signatures: tuple[str, ...] = ()

    @property
    def infected(self) -> bool:
        return bool(self.signatures)


def is_heuristic(signature: str) -> bool:
    """Whether a detection is one of clamd's heuristics rather than a signature match.

    clamd names them ``Heuristics.*`` (``Heuristics.Encrypted.Zip``,
    ``Heuristics.Phishing.Email.SpoofedDomain``, ...): they say "suspicious", not
    "this is malware", so admins often want to treat them differently.
    """
    return signature.startswith("Heuristics.")


LIMITS_PREFIX = "Heuristics.Limits.Exceeded."


def is_limit(signature: str) -> bool:
    """Whether a detection says clamd stopped at one of its limits (with
    ``AlertExceedsMax yes``): ``Heuristics.Limits.Exceeded.MaxRecursion``,
    ``.MaxFiles``, ``.MaxFileSize``, ``.MaxScanSize``, ``.MaxScanTime`` and the
    mail parser's ``.EmailHeaders``, ``.EmailHeaderBytes``, ``.EmailLineFoldCnt``,
    ``.EmailMIMEArguments``, ``.EmailMIMEPartsPerMessage`` (clamd 1.4). Not a
    finding: the part past the limit was never looked at."""
    return signature.startswith(LIMITS_PREFIX)


def frame(data: bytes | bytearray | memoryview) -> bytes:
    """One INSTREAM chunk: a 4-byte big-endian length, then the bytes."""
    size = len(data)
    if not 0 < size <= _MAX_FRAME:
        raise ValueError(f"an INSTREAM chunk must hold 1 to {_MAX_FRAME} bytes, got {size}")
    return struct.pack("!I", size) + bytes(data)


def instream_frames(chunks: Iterable[bytes], chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The frames for a whole stream, re-cut to ``chunk_size`` and ending with the
    zero-length terminator.

    Re-cutting matters because a message yields pieces of any size (a header line,
    a 64 KiB body block); sending each as its own frame would cost a syscall and 4
    bytes per header line. Only ``chunk_size`` bytes are buffered at a time.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    pending = bytearray()
    for chunk in chunks:
        if not chunk:
            continue
        if not pending and len(chunk) == chunk_size:
            yield frame(chunk)
            continue
        pending += chunk
        while len(pending) >= chunk_size:
            yield frame(memoryview(pending)[:chunk_size])
            del pending[:chunk_size]
    if pending:
        yield frame(pending)
    yield END_OF_STREAM


def split_replies(data: bytes) -> list[str]:
    """NUL-terminated replies as text; bytes after the last NUL mean a truncated reply."""
    if not data:
        raise ClamdProtocolError("closed the connection without a reply")
    if len(data) > MAX_REPLY_SIZE:
        raise ClamdProtocolError(f"sent a {len(data)}-byte reply, too long to be a clamd reply")
    *complete, rest = data.split(b"\0")
    if rest:
        raise ClamdProtocolError(f"sent a reply without its terminating NUL: {_show(rest)}")
    replies = [part.decode("utf-8", "replace").strip() for part in complete]
    return [reply for reply in replies if reply]


def parse_scan_reply(data: bytes) -> ScanResult:
    """The verdict in everything clamd sent for one zINSTREAM request.

    With ``AllMatchScanning`` clamd sends one ``stream: NAME FOUND`` per match, so
    all replies are read; any ``ERROR`` among them wins, since a partial scan is no
    verdict.
    """
    replies = split_replies(data)
    if not replies:
        raise ClamdProtocolError("sent an empty reply")
    signatures: list[str] = []
    clean = False
    for reply in replies:
        if reply == "ERROR" or reply.endswith(" ERROR"):
            text = reply.removesuffix("ERROR").rstrip()
            if "size limit exceeded" in text:
                raise StreamLimitExceeded(reply)
            raise ClamdErrorReply(reply)
    for reply in replies:
        prefix, sep, status = reply.partition(": ")
        if not sep or prefix != "stream":
            raise ClamdProtocolError(f"sent an unexpected reply: {_show(reply)}")
        if status == "OK":
            clean = True
        elif status.endswith(" FOUND"):
            name = _DETECTION_INFO.sub("", status.removesuffix(" FOUND")).strip()
            if not name:
                raise ClamdProtocolError(f"reported a detection without a name: {reply!r}")
            if name not in signatures:
                signatures.append(name)
        else:
            raise ClamdProtocolError(f"sent an unexpected reply: {_show(reply)}")
    if signatures:
        return ScanResult(tuple(signatures))
    assert clean
    return ScanResult()


def parse_ping_reply(data: bytes) -> None:
    """Succeeds only on ``PONG``: anything else is not a working clamd."""
    replies = split_replies(data)
    if replies != ["PONG"]:
        raise ClamdProtocolError(f"answered PING with {_show(data)}, not PONG")


def parse_version_reply(data: bytes) -> str:
    """``ClamAV 1.4.6/27000/Thu Nov 27 ...`` (the database part is absent without one)."""
    replies = split_replies(data)
    if len(replies) != 1 or not replies[0].startswith("ClamAV "):
        raise ClamdProtocolError(f"answered VERSION with {_show(data)}, not a ClamAV version")
    return replies[0]


def _show(data: bytes | str, limit: int = 80) -> str:
    """A short, printable excerpt of what the peer sent, for error messages."""
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    text = repr(text)
    return text if len(text) <= limit else text[:limit] + "..."
