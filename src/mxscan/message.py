"""A mail message that comes out byte for byte as it went in.

The header is split the way Postfix's cleanup splits it (see ``header.py``) so
that header rules see what Postfix would have shown them, the body is spooled so
memory stays flat, and ``as_bytes()`` / ``write_to()`` of an unedited message
return the input unchanged - whatever it was, malformed or not.

Defined behaviour for odd input:

* a leading mbox ``From `` line is kept aside in ``mbox_from`` and written back;
  the header starts on the next line (Postfix would treat it as body);
* a line that is neither a header nor a continuation (no colon, or a bad name)
  ends the header and starts the body, with ``separator == b""``, as in Postfix;
* no blank line at all: every line is a header and the body is empty;
* CRLF or LF line endings are kept per line; a bare CR is ordinary data;
* NUL and 8-bit bytes are kept; a NUL or 8-bit byte in a field *name* makes the
  line a non-header, as in Postfix;
* a missing final newline is kept missing.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import io
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs

from .body import DEFAULT_CHUNK_SIZE, DEFAULT_SPOOL_THRESHOLD, Body, BodyBuilder
from .edits import HeaderEdit, apply_edits
from .header import HEADER_BLOCK, HEADER_FIELD, Header, header_name_length

__all__ = ["Envelope", "Message"]

#: A single header line longer than this ends the header: it is kept as body
#: bytes rather than held in memory as one field.
MAX_HEADER_LINE = 8 * 1024 * 1024
_READ = 64 * 1024


def _frozen_macros(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return dict(value or {})


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError("recipients must be a list of addresses, not one string")
    return tuple(value)


@attrs.frozen
class Envelope:
    """SMTP envelope and connection facts; an empty sender is the null sender ``<>``."""

    sender: str = ""
    recipients: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    client_address: str | None = None
    client_name: str | None = None
    helo: str | None = None
    queue_id: str | None = None
    auth_user: str | None = None
    macros: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_macros, hash=False)
    #: The receiving host (Postfix's ``myhostname``, the milter macro ``j``).
    receiver: str | None = None
    #: ``SMTP``, ``ESMTP``, ``ESMTPSA``...; None: ESMTP, plus S/A from the TLS and AUTH facts.
    protocol: str | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    tls_bits: str | None = None
    #: The SASL mechanism the client authenticated with (``PLAIN``).
    auth_type: str | None = None
    #: True when the message already starts with this hop's ``Received:`` line
    #: (a pipe(8) filter gets mail Postfix has queued); False when the MTA keeps
    #: it from us (a milter): then scanners that judge the relay, like
    #: SpamAssassin, are given one built from these facts (``received_header``).
    received_in_message: bool = False


def _line_eol(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return b"\r\n"
    if line.endswith(b"\n"):
        return b"\n"
    return b""


def _split_head(data: bytes) -> tuple[bytes, list[Header], bytes, int]:
    """The in-memory twin of the streaming parser in ``from_stream`` (same
    rules, tested to agree): mbox line, headers, separator, body offset."""
    size = len(data)
    pos = 0
    mbox_from = b""
    if data.startswith(b"From "):
        end = data.find(b"\n")
        end = size - 1 if end < 0 else end
        if end < MAX_HEADER_LINE:
            mbox_from = data[: end + 1]
            pos = end + 1
    # Two regex passes (the header block, then its fields) rather than Python
    # steps per line: parsing is most of the per-message cost of a fast pipeline.
    block = HEADER_BLOCK.match(data, pos)
    end = block.end() if block else pos  # it always matches, if only b""
    fields = HEADER_FIELD.findall(data, pos, end)
    if end - pos > MAX_HEADER_LINE:
        for index, raw in enumerate(fields):
            if len(raw) > MAX_HEADER_LINE:
                # Too long to hold as one field: it and the rest are body bytes.
                fields = fields[:index]
                end = pos + sum(map(len, fields))
                return mbox_from, [Header._parsed(f) for f in fields], b"", end
    headers = [Header._parsed(raw) for raw in fields]
    for separator in (b"\r\n", b"\n"):
        if data.startswith(separator, end):
            return mbox_from, headers, separator, end + len(separator)
    return mbox_from, headers, b"", end


class _LineReader:
    """readline() over a binary stream with a bound on the line kept in memory."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def readline(self) -> tuple[bytes, bool]:
        """One line; the flag is False when the line is longer than MAX_HEADER_LINE
        (then it may be cut short: the rest follows in the stream)."""
        parts: list[bytes] = []
        size = 0
        while True:
            piece = self._stream.readline(_READ)
            if not piece:
                break
            parts.append(piece)
            size += len(piece)
            if piece.endswith(b"\n"):
                break
            if size > MAX_HEADER_LINE:
                return b"".join(parts), False
        # A line read whole may still be over the limit: from_bytes' rule.
        return b"".join(parts), size <= MAX_HEADER_LINE


@attrs.frozen(eq=False)
class Message:
    """Header fields, body and envelope. Frozen: edits give a new message that
    shares the body, so nothing is copied."""

    headers: tuple[Header, ...]
    body: Body
    envelope: Envelope = Envelope()
    mbox_from: bytes = b""
    separator: bytes = b"\r\n"
    _cache: dict[str, Any] = attrs.field(factory=dict, init=False, repr=False)
    #: The input's last header when it had no line end and an edit gave it one
    #: (so a field could follow it); kept across edits so that edits which
    #: cancel out give the input's bytes back, without a line end it never had.
    _bare_last: Header | None = attrs.field(default=None, repr=False, alias="_bare_last")

    # -- construction -----------------------------------------------------

    @classmethod
    def from_bytes(
        cls,
        data: bytes | bytearray | memoryview,
        *,
        envelope: Envelope | None = None,
        spool_threshold: int = DEFAULT_SPOOL_THRESHOLD,
        spool_dir: str | None = None,
    ) -> Message:
        data = bytes(data)
        mbox_from, headers, separator, body_start = _split_head(data)
        if len(data) - body_start > spool_threshold:
            builder = BodyBuilder(threshold=spool_threshold, spool_dir=spool_dir)
            builder.write(data[body_start:])
            body = builder.finish()
        else:
            body = Body(data[body_start:])
        return cls(
            headers=tuple(headers),
            body=body,
            envelope=envelope or Envelope(),
            mbox_from=mbox_from,
            separator=separator,
        )

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        envelope: Envelope | None = None,
        spool_threshold: int = DEFAULT_SPOOL_THRESHOLD,
        spool_dir: str | None = None,
    ) -> Message:
        with Path(path).open("rb") as fp:
            return cls.from_stream(
                fp, envelope=envelope, spool_threshold=spool_threshold, spool_dir=spool_dir
            )

    @classmethod
    def from_stream(
        cls,
        stream: BinaryIO,
        *,
        envelope: Envelope | None = None,
        spool_threshold: int = DEFAULT_SPOOL_THRESHOLD,
        spool_dir: str | None = None,
    ) -> Message:
        """Read a message from a binary stream, holding at most one header line
        and ``spool_threshold`` body bytes in memory."""
        reader = _LineReader(stream)
        headers: list[Header] = []
        mbox_from = b""
        separator = b""
        builder = BodyBuilder(threshold=spool_threshold, spool_dir=spool_dir)
        try:
            pending: list[bytes] | None = None  # the header being collected (may fold)
            pending_size = 0
            first = True
            while True:
                line, whole = reader.readline()
                if not line:
                    break
                if first:
                    first = False
                    if line.startswith(b"From ") and whole:
                        mbox_from = line
                        continue
                if not whole:
                    builder.write(line)
                    break
                if pending is not None and line[:1] in (b" ", b"\t"):
                    # Lines collected in a list: bytes += per line was quadratic
                    # (1.5 MB of folded lines took 13 s).
                    pending.append(line)
                    pending_size += len(line)
                    if pending_size > MAX_HEADER_LINE:
                        builder.write(b"".join(pending))
                        pending = None
                        break
                    continue
                if pending is not None:
                    headers.append(Header._parsed(b"".join(pending)))
                    pending = None
                if line in (b"\r\n", b"\n"):
                    separator = line
                    break
                if header_name_length(line):
                    pending, pending_size = [line], len(line)
                    continue
                builder.write(line)
                break
            if pending is not None:
                headers.append(Header._parsed(b"".join(pending)))
            while True:
                chunk = stream.read(_READ)
                if not chunk:
                    break
                builder.write(chunk)
        except BaseException:
            builder.close()
            raise
        return cls(
            headers=tuple(headers),
            body=builder.finish(),
            envelope=envelope or Envelope(),
            mbox_from=mbox_from,
            separator=separator,
        )

    # -- reading -------------------------------------------------------------

    @property
    def eol(self) -> bytes:
        """The line ending new header lines get: the message's own."""
        if self.separator:
            return self.separator
        for header in self.headers:
            if header.eol:
                return header.eol
        return _line_eol(self.mbox_from) or b"\r\n"

    @property
    def size(self) -> int:
        return (
            len(self.mbox_from)
            + sum(len(h.raw) for h in self.headers)
            + len(self.separator)
            + self.body.size
        )

    def get_all(self, name: str) -> list[str]:
        """Unfolded values of every header called ``name`` (case-insensitive)."""
        lowered = name.lower()
        return [h.value for h in self.headers if h.name.lower() == lowered]

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.get_all(name)
        return values[0] if values else default

    def head_bytes(self) -> bytes:
        """The mbox line, header fields and separator: everything but the body."""
        return self.mbox_from + b"".join(h.raw for h in self.headers) + self.separator

    def chunks(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """The whole message in pieces, for streaming to a daemon or a file."""
        head = self.head_bytes()
        for start in range(0, len(head), chunk_size):
            yield head[start : start + chunk_size]
        yield from self.body.chunks(chunk_size)

    def as_bytes(self) -> bytes:
        return self.head_bytes() + self.body.as_bytes()

    def write_to(self, fp: BinaryIO) -> int:
        """Write the message; returns the number of bytes written."""
        written = 0
        for chunk in self.chunks():
            fp.write(chunk)
            written += len(chunk)
        return written

    def open(self) -> BinaryIO:
        """A file-like reader over the whole message."""
        return io.BufferedReader(_ChunkRaw(self.chunks()))

    @property
    def email(self) -> email.message.EmailMessage:
        """The message parsed by the stdlib ``email`` package, for scanners that
        walk MIME parts. Parsed on first use; never used to write mail out."""
        cached = self._cache.get("email")
        if cached is None:
            with self.open() as fp:
                cached = email.parser.BytesParser(policy=email.policy.default).parse(fp)
            self._cache["email"] = cached
        assert isinstance(cached, email.message.EmailMessage)
        return cached

    # -- changing ------------------------------------------------------------

    def apply(self, edits: Iterable[HeaderEdit]) -> Message:
        """A new message with ``edits`` applied in order; the body is shared."""
        edits = tuple(edits)
        if not edits:
            return self
        bare = self._bare_last
        if bare is None and self.headers and not self.headers[-1].eol:
            bare = self.headers[-1]
        eol = self.eol
        headers = apply_edits(self.headers, edits, eol)
        if bare is not None and headers and headers[-1].raw == bare.raw + eol:
            headers[-1] = bare
        return attrs.evolve(self, headers=tuple(headers), _bare_last=bare)

    def with_envelope(self, envelope: Envelope) -> Message:
        return attrs.evolve(self, envelope=envelope)

    def close(self) -> None:
        """Release the body's spool file now rather than at garbage collection."""
        self.body.close()

    def __repr__(self) -> str:
        return f"<Message {len(self.headers)} headers, {self.body!r}>"


class _ChunkRaw(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
