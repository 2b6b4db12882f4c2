"""Sans-I/O milter packets: the MTA's bytes framed and decoded into typed events.

No sockets here, in the manner of h11: the server feeds whatever it read, gets back
complete events, and the same code is unit-tested with hand-built packets. Every
malformed input raises ``ProtocolError``; the caller drops the connection, which
makes Postfix apply its ``milter_default_action``.
"""

from __future__ import annotations

import struct

import attrs

from mxscan.adapters.milter.constants import DEFAULT_MAX_PACKET, Command, Family


class ProtocolError(Exception):
    """The MTA sent something these packets cannot be read as; the stream is unusable."""


def _s(raw: bytes) -> str:
    # Macro values and SMTP arguments may carry 8-bit bytes: keep them lossless.
    return raw.decode("utf-8", "surrogateescape")


@attrs.frozen
class OptNeg:
    version: int
    actions: int
    protocol: int


@attrs.frozen
class Macro:
    """Macros the MTA defines for the event ``stage`` (a command byte) that follows."""

    stage: bytes
    macros: dict[str, str]


@attrs.frozen
class Connect:
    hostname: str
    family: Family
    port: int | None
    address: str | None


@attrs.frozen
class Helo:
    name: str


@attrs.frozen
class _EnvelopeCommand:
    """MAIL FROM / RCPT TO: the address, then any ESMTP parameters."""

    args: tuple[str, ...]

    @property
    def address(self) -> str:
        """The address without angle brackets; ``""`` for the null sender."""
        return _strip_brackets(self.args[0]) if self.args else ""


@attrs.frozen
class MailFrom(_EnvelopeCommand):
    pass


@attrs.frozen
class RcptTo(_EnvelopeCommand):
    pass


@attrs.frozen
class Data:
    pass


@attrs.frozen
class Header:
    """One header field; ``value`` is the raw bytes after the colon (LF between folds)."""

    name: str
    value: bytes


@attrs.frozen
class EndOfHeaders:
    pass


@attrs.frozen
class Body:
    chunk: bytes


@attrs.frozen
class EndOfMessage:
    pass


@attrs.frozen
class Abort:
    pass


@attrs.frozen
class Quit:
    pass


@attrs.frozen
class QuitNewConnection:
    pass


@attrs.frozen
class Unknown:
    command: str


Event = (
    OptNeg
    | Macro
    | Connect
    | Helo
    | MailFrom
    | RcptTo
    | Data
    | Header
    | EndOfHeaders
    | Body
    | EndOfMessage
    | Abort
    | Quit
    | QuitNewConnection
    | Unknown
)


def _strip_brackets(addr: str) -> str:
    addr = addr.strip()
    if addr.startswith("<") and addr.endswith(">"):
        return addr[1:-1]
    return addr


class _Fields:
    """Cursor over one packet's payload that raises ProtocolError on truncation."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def cstring(self) -> bytes:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolError(f"{self.what}: string without NUL terminator")
        value = self.data[self.pos : end]
        self.pos = end + 1
        return value

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError(f"{self.what}: truncated packet")
        value = self.data[self.pos : self.pos + n]
        self.pos += n
        return value

    def argv(self) -> tuple[str, ...]:
        out: list[str] = []
        while self.pos < len(self.data):
            out.append(_s(self.cstring()))
        return tuple(out)

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError(f"{self.what}: {len(self.data) - self.pos} stray bytes")


#: Commands without a payload; their events are immutable, so one instance each.
_SIMPLE: dict[Command, Event] = {
    Command.DATA: Data(),
    Command.EOH: EndOfHeaders(),
    Command.ABORT: Abort(),
    Command.QUIT: Quit(),
    Command.QUIT_NC: QuitNewConnection(),
}


def _no_data(cmd: Command, data: bytes) -> None:
    if data:
        raise ProtocolError(f"{cmd.name}: unexpected {len(data)} data bytes")


def decode_packet(cmd_byte: bytes, data: bytes) -> list[Event]:
    """Turn one packet (command byte + payload) into its event(s)."""
    try:
        cmd = Command(cmd_byte)
    except ValueError:
        raise ProtocolError(f"unknown milter command {cmd_byte!r}") from None
    f = _Fields(data, cmd.name)
    if cmd is Command.OPTNEG:
        if len(data) < 12:
            raise ProtocolError("OPTNEG: truncated packet")
        version, actions, protocol = struct.unpack("!III", data[:12])
        return [OptNeg(version, actions, protocol)]
    if cmd is Command.MACRO:
        stage = f.take(1)
        names_values = f.argv()
        macros = dict(zip(names_values[::2], names_values[1::2], strict=False))
        return [Macro(stage, macros)]
    if cmd is Command.CONNECT:
        hostname = _s(f.cstring())
        try:
            family = Family(f.take(1))
        except ValueError:
            raise ProtocolError("CONNECT: unknown address family") from None
        port: int | None = None
        address: str | None = None
        if family is not Family.UNKNOWN:
            (port,) = struct.unpack("!H", f.take(2))
            address = _s(f.cstring())
        f.done()
        return [Connect(hostname, family, port, address)]
    if cmd is Command.HELO:
        name = _s(f.cstring())
        f.done()
        return [Helo(name)]
    if cmd is Command.MAIL:
        return [MailFrom(f.argv())]
    if cmd is Command.RCPT:
        return [RcptTo(f.argv())]
    if cmd is Command.HEADER:
        name = _s(f.cstring())
        value = f.cstring()
        f.done()
        if not name:
            raise ProtocolError("HEADER: empty header name")
        return [Header(name, value)]
    if cmd is Command.BODY:
        return [Body(data)]
    if cmd is Command.BODYEOB:
        # Sendmail may attach a last body chunk to EOB; Postfix sends it separately.
        tail: list[Event] = [Body(data)] if data else []
        return [*tail, EndOfMessage()]
    if cmd is Command.UNKNOWN:
        return [Unknown(_s(data.rstrip(b"\0")))]
    _no_data(cmd, data)
    return [_SIMPLE[cmd]]


class Decoder:
    """Incremental framing: ``feed()`` any slice of the stream, get complete events."""

    def __init__(self, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        self._buf = bytearray()
        self._max_packet = max_packet
        self.consumed = 0
        """Bytes of complete packets decoded so far."""

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete packet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        while len(self._buf) >= 4:
            (length,) = struct.unpack_from("!I", self._buf)
            if length < 1:
                raise ProtocolError("zero-length packet")
            if length > self._max_packet:
                raise ProtocolError(f"packet of {length} bytes exceeds {self._max_packet}")
            if len(self._buf) < 4 + length:
                break
            cmd = bytes(self._buf[4:5])
            payload = bytes(self._buf[5 : 4 + length])
            del self._buf[: 4 + length]
            self.consumed += 4 + length
            events.extend(decode_packet(cmd, payload))
        return events
