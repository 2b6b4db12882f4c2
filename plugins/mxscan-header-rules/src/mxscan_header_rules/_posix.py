"""ctypes binding to the C library's POSIX ``regcomp``/``regexec``.

Postfix's ``regexp:`` tables are compiled by the system's regcomp(3). POSIX
matching is leftmost-longest, it has its own bracket rules and GNU extensions
(``\\w``, ``\\<``, ``\\```); translating that to a Perl-style engine is where
header_checks ports go wrong. Calling the same libc gives the same answer.

The ``regex_t`` layout differs per C library; only the offset of ``re_nsub``
and the size of ``regoff_t`` are needed, and they are known for glibc, musl and
the BSDs/macOS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys
import threading
import weakref
from typing import Any

__all__ = ["REG_EXTENDED", "REG_ICASE", "REG_NEWLINE", "REG_NOSUB", "PosixPattern"]

if sys.platform.startswith("linux") or sys.platform.startswith("gnu"):
    REG_EXTENDED, REG_ICASE, REG_NEWLINE, REG_NOSUB = 1, 2, 4, 8
    REG_NOMATCH = 1
else:  # BSD, macOS
    REG_EXTENDED, REG_ICASE, REG_NOSUB, REG_NEWLINE = 1, 2, 4, 8
    REG_NOMATCH = 1

_REGEX_T_SIZE = 512  # larger than any libc's regex_t


def _layout() -> tuple[type[ctypes._SimpleCData[int]], int]:
    """(regoff_t type, byte offset of re_nsub in regex_t)."""
    system = platform.system()
    if system == "Linux":
        libc_name, _ = platform.libc_ver()
        if libc_name == "glibc":
            # struct re_pattern_buffer: buffer, allocated, used, syntax,
            # fastmap, translate, re_nsub
            return ctypes.c_int, 6 * ctypes.sizeof(ctypes.c_void_p)
        return ctypes.c_long, 0  # musl: size_t re_nsub first
    # BSD/macOS: int re_magic; size_t re_nsub; regoff_t is off_t
    return ctypes.c_int64, ctypes.sizeof(ctypes.c_size_t)


_regoff_t, _NSUB_OFFSET = _layout()


class _RegMatch(ctypes.Structure):
    _fields_ = [("rm_so", _regoff_t), ("rm_eo", _regoff_t)]


_lib: Any = None
_lock = threading.Lock()


def _load() -> Any:
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or None)
                lib.regcomp.restype = ctypes.c_int
                lib.regcomp.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
                lib.regexec.restype = ctypes.c_int
                lib.regexec.argtypes = [
                    ctypes.c_void_p,
                    ctypes.c_char_p,
                    ctypes.c_size_t,
                    ctypes.c_void_p,
                    ctypes.c_int,
                ]
                lib.regerror.restype = ctypes.c_size_t
                lib.regerror.argtypes = [
                    ctypes.c_int,
                    ctypes.c_void_p,
                    ctypes.c_char_p,
                    ctypes.c_size_t,
                ]
                lib.regfree.restype = None
                lib.regfree.argtypes = [ctypes.c_void_p]
                _lib = lib
    return _lib


class PosixError(Exception):
    """regcomp/regexec failed; ``message`` is regerror()'s text."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _free(lib: Any, buf: ctypes.Array[ctypes.c_char]) -> None:
    lib.regfree(buf)


class PosixPattern:
    """A compiled POSIX regex. regexec on one regex_t is thread-safe."""

    def __init__(self, pattern: bytes, cflags: int) -> None:
        lib = _load()
        self._lib = lib
        self._buf = ctypes.create_string_buffer(_REGEX_T_SIZE)
        pattern = pattern.split(b"\0", 1)[0]
        rc = lib.regcomp(self._buf, pattern, cflags)
        if rc != 0:
            raise PosixError(rc, self._error(rc))
        weakref.finalize(self, _free, lib, self._buf)
        self.capture_count = int(ctypes.c_size_t.from_buffer(self._buf, _NSUB_OFFSET).value)

    def _error(self, rc: int) -> str:
        out = ctypes.create_string_buffer(256)
        self._lib.regerror(rc, self._buf, out, 256)
        return out.value.decode("ascii", "replace")

    def search(self, subject: bytes, nmatch: int) -> list[tuple[int, int] | None] | None:
        """Spans of groups 0..nmatch-1 (``None`` when unset), or ``None``."""
        subject = subject.split(b"\0", 1)[0]
        if nmatch <= 0:
            rc = self._lib.regexec(self._buf, subject, 0, None, 0)
            if rc == REG_NOMATCH:
                return None
            if rc != 0:
                raise PosixError(rc, self._error(rc))
            return []
        pm = (_RegMatch * nmatch)()
        rc = self._lib.regexec(self._buf, subject, nmatch, pm, 0)
        if rc == REG_NOMATCH:
            return None
        if rc != 0:
            raise PosixError(rc, self._error(rc))
        return [None if m.rm_so < 0 else (int(m.rm_so), int(m.rm_eo)) for m in pm]
