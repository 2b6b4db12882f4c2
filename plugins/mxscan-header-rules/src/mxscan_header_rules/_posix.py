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
                _setup_locale(lib)
                _lib = lib
    return _lib


_c_locale: int | None = None


def _setup_locale(lib: Any) -> None:
    """Postfix never calls setlocale(), so its regcomp runs in the "C"
    locale: bytes are bytes. Python switches LC_CTYPE to the environment's
    (often UTF-8), which changes what [^x], . and \\w match on 8-bit
    headers. uselocale() gives just our calls the C locale, per thread."""
    global _c_locale
    try:
        lib.newlocale.restype = ctypes.c_void_p
        lib.newlocale.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p]
        lib.uselocale.restype = ctypes.c_void_p
        lib.uselocale.argtypes = [ctypes.c_void_p]
    except AttributeError:  # no POSIX.1-2008 locales: keep the process locale
        return
    mask = 0x1FBF if platform.system() == "Linux" else 0x3F  # LC_ALL_MASK
    loc = lib.newlocale(mask, b"C", None)
    _c_locale = int(loc) if loc else None


class _CLocale:
    """Context manager: the C locale for this thread's regcomp/regexec."""

    __slots__ = ("_lib", "_old")

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self._old: int | None = None

    def __enter__(self) -> None:
        if _c_locale is not None:
            self._old = self._lib.uselocale(_c_locale)

    def __exit__(self, *_: object) -> None:
        if self._old is not None:
            self._lib.uselocale(self._old)


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
        with _CLocale(lib):
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
            with _CLocale(self._lib):
                rc = self._lib.regexec(self._buf, subject, 0, None, 0)
            if rc == REG_NOMATCH:
                return None
            if rc != 0:
                raise PosixError(rc, self._error(rc))
            return []
        pm = (_RegMatch * nmatch)()
        with _CLocale(self._lib):
            rc = self._lib.regexec(self._buf, subject, nmatch, pm, 0)
        if rc == REG_NOMATCH:
            return None
        if rc != 0:
            raise PosixError(rc, self._error(rc))
        return [None if m.rm_so < 0 else (int(m.rm_so), int(m.rm_eo)) for m in pm]
