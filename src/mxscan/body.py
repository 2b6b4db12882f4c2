"""The message body: in memory when small, in an unlinked temporary file when not.

Memory must not grow with message size, and several scanners read the same body
at the same time (ClamAV and SpamAssassin run concurrently), so reads are
positional (``os.pread``) and never share a file offset.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

__all__ = ["DEFAULT_SPOOL_THRESHOLD", "Body", "BodyBuilder"]

DEFAULT_SPOOL_THRESHOLD = 1024 * 1024
DEFAULT_CHUNK_SIZE = 64 * 1024


class Body:
    """Immutable body bytes, possibly backed by a spool file.

    The spool file is created unlinked (``TemporaryFile``) so that a crash never
    leaves mail on disk; it is closed by [`close`][mxscan.Body.close] or when the object dies.
    """

    __slots__ = ("__weakref__", "_data", "_file", "_size")

    def __init__(self, data: bytes = b"") -> None:
        self._data: bytes | None = bytes(data)
        self._file: BinaryIO | None = None
        self._size = len(data)

    @classmethod
    def _from_file(cls, fp: BinaryIO, size: int) -> Body:
        body = cls.__new__(cls)
        body._data = None
        body._file = fp
        body._size = size
        return body

    @property
    def size(self) -> int:
        return self._size

    @property
    def spooled(self) -> bool:
        """True when the bytes live on disk rather than in memory."""
        return self._file is not None

    def read_at(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0:
            raise ValueError("offset and size must not be negative")
        if self._data is not None:
            return self._data[offset : offset + size]
        if self._file is None:
            raise ValueError("the body's spool file is closed")
        end = min(self._size, offset + size)
        parts = []
        while offset < end:
            piece = os.pread(self._file.fileno(), end - offset, offset)
            if not piece:
                break
            parts.append(piece)
            offset += len(piece)
        return b"".join(parts)

    def chunks(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        if self._data is not None:
            data = self._data
            for start in range(0, len(data), chunk_size):
                yield data[start : start + chunk_size]
            return
        for offset in range(0, self._size, chunk_size):
            yield self.read_at(offset, chunk_size)

    def as_bytes(self) -> bytes:
        """The whole body in memory: convenient, and costly for large mail."""
        if self._data is not None:
            return self._data
        return self.read_at(0, self._size)

    def open(self) -> BinaryIO:
        """An independent, seekable reader; closing it leaves the body intact."""
        return io.BufferedReader(_BodyRaw(self))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        where = "spooled" if self.spooled else "in memory"
        return f"<Body {self._size} bytes {where}>"


class _BodyRaw(io.RawIOBase):
    def __init__(self, body: Body) -> None:
        self._body = body
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._body.read_at(self._pos, len(buffer))
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = self._body.size + offset
        self._pos = max(self._pos, 0)
        return self._pos

    def tell(self) -> int:
        return self._pos


class BodyBuilder:
    """Collects body bytes as they arrive (stdin, milter BODY packets).

    Bytes stay in memory up to ``threshold`` and move to a spool file in
    ``spool_dir`` after that, so a 100 MB message costs one chunk of memory.
    """

    def __init__(
        self, *, threshold: int = DEFAULT_SPOOL_THRESHOLD, spool_dir: str | None = None
    ) -> None:
        self._threshold = threshold
        self._spool_dir = spool_dir
        self._buffer = bytearray()
        self._file: BinaryIO | None = None
        self._size = 0
        self._done = False

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        if self._done:
            raise ValueError("the body is already finished")
        if not data:
            return
        self._size += len(data)
        if self._file is None:
            self._buffer += data
            if len(self._buffer) > self._threshold:
                self._file = tempfile.TemporaryFile(dir=self._spool_dir)  # noqa: SIM115
                self._file.write(self._buffer)
                self._buffer = bytearray()
        else:
            self._file.write(data)

    def finish(self) -> Body:
        self._done = True
        if self._file is None:
            data = bytes(self._buffer)
            self._buffer = bytearray()
            return Body(data)
        self._file.flush()
        body = Body._from_file(self._file, self._size)
        self._file = None
        return body

    def close(self) -> None:
        """Drop everything collected so far (the client went away)."""
        self._done = True
        self._buffer = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None
