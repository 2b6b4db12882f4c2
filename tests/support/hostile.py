"""Messages that hide a payload where scanners stop looking, built at run time.

Each builder takes the payload (EICAR from ``eicar_bytes()``, or ``None`` for a
harmless file of the same size): the same message with and without the virus
must get the same outcome, which shows that the limit decided, not the virus.
Nothing here is written to the repository; the zip bomb is built in a stream
of small writes, so building it costs little memory.
"""

from __future__ import annotations

import base64
import io
import struct
import zipfile
import zlib

from tests.support.daemons import eicar_bytes

__all__ = [
    "HOSTILE",
    "deep_multipart",
    "harmless",
    "many_parts",
    "nested_zips",
    "payload",
    "zip_bomb",
]

_HEAD = (
    b"From: sender@example.org\r\n"
    b"To: rcpt@example.com\r\n"
    b"Date: Wed, 02 Dec 2026 12:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
)


def harmless() -> bytes:
    """A file as long as EICAR that no scanner flags."""
    return b"this file is harmless, and exactly as long as the EICAR test file.\r\n"


def payload(virus: bool) -> bytes:
    return eicar_bytes() if virus else harmless()


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _attachment_message(subject: str, data: bytes, name: str, ctype: str) -> bytes:
    boundary = b"=-outer-="
    return (
        _HEAD
        + b"Subject: " + subject.encode() + b"\r\n"
        + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
        + b"--" + boundary + b"\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
        + b"--" + boundary + b"\r\n"
        + f'Content-Type: {ctype}; name="{name}"\r\n'.encode()
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + _b64(data)
        + b"--" + boundary + b"--\r\n"
    )  # fmt: skip


def nested_zips(virus: bool, levels: int = 20) -> bytes:
    """The payload inside ``levels`` zips, each holding the next (3 KB at 20)."""
    data, name = payload(virus), "file.com"
    for level in range(levels):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(name, data)
        data, name = buf.getvalue(), f"level{levels - level}.zip"
    return _attachment_message(f"{levels} nested zips", data, "archive.zip", "application/zip")


def many_parts(virus: bool, parts: int = 12_000) -> bytes:
    """A multipart/mixed with ``parts`` small text parts, the payload in the last one."""
    boundary = b"=-parts-="
    out = [_HEAD, b"Subject: many parts\r\n"]
    out.append(b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n')
    for number in range(1, parts):
        out.append(b"--" + boundary + b"\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % number)
    out.append(b"--" + boundary + b"\r\n")
    out.append(b'Content-Type: application/octet-stream; name="last.com"\r\n')
    out.append(b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(payload(virus)))
    out.append(b"--" + boundary + b"--\r\n")
    return b"".join(out)


def deep_multipart(virus: bool, depth: int = 30) -> bytes:
    """The payload at multipart nesting ``depth`` (the top-level multipart is 1).
    Built from both ends, so depth 1,000 is a join, not a quadratic copy."""
    opening, closing = [_HEAD, b"Subject: deep multipart\r\n"], []
    for level in range(1, depth + 1):
        boundary = b"=-level-%d-=" % level
        opening.append(b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n')
        opening.append(b"--" + boundary + b"\r\n")
        closing.append(b"\r\n--" + boundary + b"--\r\n")
    opening.append(b'Content-Type: application/octet-stream; name="deep.com"\r\n')
    opening.append(b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(payload(virus)))
    return b"".join(opening) + b"".join(reversed(closing))


def _deflated_zeros(size: int, chunk: int = 1 << 20) -> tuple[bytes, int]:
    """Raw deflate of ``size`` zero bytes and their CRC-32, in 1 MiB steps."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block, out, crc = bytes(chunk), [], 0
    for start in range(0, size, chunk):
        piece = block[: min(chunk, size - start)]
        crc = zlib.crc32(piece, crc)
        out.append(packer.compress(piece))
    out.append(packer.flush())
    return b"".join(out), crc


def _zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip from (name, data, method, crc, size) members, already compressed.
    zipfile cannot write one compressed stream several times; this can."""
    local, central, offset = [], [], 0
    for name, data, method, crc, size in members:
        raw = name.encode()
        fields = struct.pack(
            "<HHHHHIIIHH", 20, 0, method, 0, 0x21, crc, len(data), size, len(raw), 0
        )
        local.append(b"PK\x03\x04" + fields + raw + data)
        central.append(
            b"PK\x01\x02" + struct.pack("<H", 20) + fields
            + struct.pack("<HHHII", 0, 0, 0, 0, offset) + raw
        )  # fmt: skip
        offset += len(local[-1])
    directory = b"".join(central)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                      len(directory), offset, 0)  # fmt: skip
    return b"".join(local) + directory + end


def zip_bomb(virus: bool, members: int = 5, size: int = 200 << 20) -> bytes:
    """A zip of ``members`` files of ``size`` zero bytes each (5 x 200 MiB:
    about 1 GiB inflated from 1 MB), the payload as the last member, after them.
    Each member alone is over clamd's default MaxFileSize (100M), which clamd
    1.4 trims silently; together they are over MaxScanSize (400M)."""
    data, crc = _deflated_zeros(size)
    files = [(f"zeros{n}.bin", data, 8, crc, size) for n in range(1, members + 1)]
    last = payload(virus)  # deflated: clamd must inflate it, not see it in the raw zip
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = packer.compress(last) + packer.flush()
    files.append(("last.com", packed, 8, zlib.crc32(last), len(last)))
    return _attachment_message("zip bomb", _zip(files), "bomb.zip", "application/zip")


#: name -> builder, for the tests that run every hostile message the same way.
HOSTILE = {
    "nested-zips-20": nested_zips,
    "parts-12000": many_parts,
    "depth-30": deep_multipart,
    "depth-1000": lambda virus: deep_multipart(virus, 1000),
    "zip-bomb": zip_bomb,
}
