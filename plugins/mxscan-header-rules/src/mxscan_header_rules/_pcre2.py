"""ctypes binding to the system PCRE2 library (libpcre2-8).

Postfix's ``pcre:`` tables are compiled by this very library (Debian's
postfix-pcre links libpcre2-8.so.0), so calling it directly gives the same
match, the same capture spans and the same compile error text as Postfix; no
Python regex dialect can promise that. PyPI's ``pcre2`` bundles its own PCRE2
and forces ``PCRE2_ALT_BSUX``/``NEVER_BACKSLASH_C``, which changes what some
patterns mean, and exposes no match limits.

Only the few calls a table needs are bound. ctypes releases the GIL during
each call, so a long match does not stall other threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import weakref
from typing import Any

__all__ = [
    "ANCHORED",
    "CASELESS",
    "DOLLAR_ENDONLY",
    "DOTALL",
    "EXTENDED",
    "MULTILINE",
    "UNGREEDY",
    "Pcre2Error",
    "Pcre2Pattern",
    "Pcre2Unavailable",
    "library_version",
]

CASELESS = 0x00000008
DOLLAR_ENDONLY = 0x00000010
DOTALL = 0x00000020
EXTENDED = 0x00000080
MULTILINE = 0x00000400
UNGREEDY = 0x00040000
ANCHORED = 0x80000000

_INFO_CAPTURECOUNT = 4
_CONFIG_MATCHLIMIT = 4
_CONFIG_DEPTHLIMIT = 7
_CONFIG_VERSION = 11
_ERROR_NOMATCH = -1
_ERROR_JIT_STACKLIMIT = -46
_JIT_COMPLETE = 0x1
_NO_JIT = 0x00002000
_UNSET = (1 << (8 * ctypes.sizeof(ctypes.c_size_t))) - 1

_c_size_p = ctypes.POINTER(ctypes.c_size_t)


class Pcre2Unavailable(RuntimeError):
    """The PCRE2 shared library is not installed."""


class Pcre2Error(Exception):
    """A match that PCRE2 abandoned (match/depth/heap limit, bad subject)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_lib: Any = None
_lock = threading.RLock()


def _load() -> Any:
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        names = [ctypes.util.find_library("pcre2-8"), "libpcre2-8.so.0", "libpcre2-8.dylib"]
        lib = None
        for name in names:
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            raise Pcre2Unavailable(
                "pcre: tables need the PCRE2 library libpcre2-8 "
                "(Debian/Ubuntu package libpcre2-8-0); it was not found"
            )
        vp = ctypes.c_void_p
        lib.pcre2_compile_8.restype = vp
        lib.pcre2_compile_8.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint32,
            ctypes.POINTER(ctypes.c_int),
            _c_size_p,
            vp,
        ]
        lib.pcre2_code_free_8.restype = None
        lib.pcre2_code_free_8.argtypes = [vp]
        lib.pcre2_match_data_create_8.restype = vp
        lib.pcre2_match_data_create_8.argtypes = [ctypes.c_uint32, vp]
        lib.pcre2_match_data_free_8.restype = None
        lib.pcre2_match_data_free_8.argtypes = [vp]
        lib.pcre2_match_8.restype = ctypes.c_int
        lib.pcre2_match_8.argtypes = [
            vp,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
            ctypes.c_uint32,
            vp,
            vp,
        ]
        lib.pcre2_get_ovector_pointer_8.restype = _c_size_p
        lib.pcre2_get_ovector_pointer_8.argtypes = [vp]
        lib.pcre2_pattern_info_8.restype = ctypes.c_int
        lib.pcre2_pattern_info_8.argtypes = [vp, ctypes.c_uint32, vp]
        lib.pcre2_get_error_message_8.restype = ctypes.c_int
        lib.pcre2_get_error_message_8.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        lib.pcre2_match_context_create_8.restype = vp
        lib.pcre2_match_context_create_8.argtypes = [vp]
        lib.pcre2_match_context_free_8.restype = None
        lib.pcre2_match_context_free_8.argtypes = [vp]
        lib.pcre2_set_match_limit_8.restype = ctypes.c_int
        lib.pcre2_set_match_limit_8.argtypes = [vp, ctypes.c_uint32]
        lib.pcre2_set_depth_limit_8.restype = ctypes.c_int
        lib.pcre2_set_depth_limit_8.argtypes = [vp, ctypes.c_uint32]
        lib.pcre2_jit_compile_8.restype = ctypes.c_int
        lib.pcre2_jit_compile_8.argtypes = [vp, ctypes.c_uint32]
        lib.pcre2_config_8.restype = ctypes.c_int
        lib.pcre2_config_8.argtypes = [ctypes.c_uint32, vp]
        _lib = lib
        return lib


def error_message(code: int) -> str:
    lib = _load()
    buf = ctypes.create_string_buffer(256)
    n = lib.pcre2_get_error_message_8(code, buf, 256)
    if n < 0:
        return f"unexpected pcre2 error code {code}"
    return buf.value.decode("ascii", "replace")


def library_version() -> str:
    lib = _load()
    buf = ctypes.create_string_buffer(64)
    lib.pcre2_config_8(_CONFIG_VERSION, buf)
    return buf.value.decode("ascii", "replace")


def default_match_limit() -> int:
    """The library's compiled-in match limit: what Postfix runs with, since it
    passes no match context."""
    lib = _load()
    value = ctypes.c_uint32()
    lib.pcre2_config_8(_CONFIG_MATCHLIMIT, ctypes.byref(value))
    return int(value.value)


class _MatchContext:
    """Owns a pcre2_match_context with the configured limits."""

    def __init__(self, match_limit: int | None, depth_limit: int | None) -> None:
        lib = _load()
        self.ptr = lib.pcre2_match_context_create_8(None)
        if not self.ptr:
            raise MemoryError("pcre2_match_context_create failed")
        if match_limit is not None:
            lib.pcre2_set_match_limit_8(self.ptr, match_limit)
        if depth_limit is not None:
            lib.pcre2_set_depth_limit_8(self.ptr, depth_limit)
        weakref.finalize(self, lib.pcre2_match_context_free_8, self.ptr)


_contexts: dict[tuple[int | None, int | None], _MatchContext] = {}


def _context(match_limit: int | None, depth_limit: int | None) -> _MatchContext | None:
    if match_limit is None and depth_limit is None:
        return None
    key = (match_limit, depth_limit)
    with _lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = _contexts[key] = _MatchContext(match_limit, depth_limit)
    return ctx


class CompileError(Exception):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"error in regex at offset {offset}: {message}")
        self.offset = offset
        self.message = message


class Pcre2Pattern:
    """One compiled pattern. ``search`` is safe to call from several threads:
    each thread gets its own match data block."""

    def __init__(
        self,
        pattern: bytes,
        options: int,
        *,
        match_limit: int | None = None,
        depth_limit: int | None = None,
        jit: bool = True,
    ) -> None:
        lib = _load()
        self._lib = lib
        err = ctypes.c_int()
        off = ctypes.c_size_t()
        # Postfix passes a NUL-terminated string: anything after a NUL is gone.
        pattern = pattern.split(b"\0", 1)[0]
        code = lib.pcre2_compile_8(
            pattern, len(pattern), options, ctypes.byref(err), ctypes.byref(off), None
        )
        if not code:
            raise CompileError(int(off.value), error_message(err.value))
        self._code = code
        weakref.finalize(self, lib.pcre2_code_free_8, code)
        count = ctypes.c_uint32()
        lib.pcre2_pattern_info_8(code, _INFO_CAPTURECOUNT, ctypes.byref(count))
        self.capture_count = int(count.value)
        # JIT gives the same matches as the interpreter Postfix uses, several
        # times faster; a pattern JIT cannot handle runs interpreted.
        self._jit = jit and lib.pcre2_jit_compile_8(code, _JIT_COMPLETE) == 0
        self._ctx = _context(match_limit, depth_limit)
        self._local = threading.local()

    def _match_data(self) -> int:
        md = getattr(self._local, "md", None)
        if md is None:
            md = self._lib.pcre2_match_data_create_8(self.capture_count + 1, None)
            if not md:
                raise MemoryError("pcre2_match_data_create failed")
            weakref.finalize(self._local, self._lib.pcre2_match_data_free_8, md)
            self._local.md = md
        return int(md)

    def _run(self, subject: bytes) -> int | None:
        """The match data holding the match, or ``None`` for no match. Raises
        Pcre2Error when PCRE2 gives up."""
        md = self._match_data()
        ctx = self._ctx.ptr if self._ctx is not None else None
        rc = self._lib.pcre2_match_8(self._code, subject, len(subject), 0, 0, md, ctx)
        if rc == _ERROR_JIT_STACKLIMIT:
            rc = self._lib.pcre2_match_8(self._code, subject, len(subject), 0, _NO_JIT, md, ctx)
        if rc == _ERROR_NOMATCH:
            return None
        if rc < 0:
            raise Pcre2Error(rc, error_message(rc))
        return md

    def search(self, subject: bytes) -> list[tuple[int, int] | None] | None:
        """Spans of group 0..capture_count, ``None`` for an unset group; or
        ``None`` for no match. Raises Pcre2Error when PCRE2 gives up."""
        md = self._run(subject)
        if md is None:
            return None
        ov = self._lib.pcre2_get_ovector_pointer_8(md)
        spans: list[tuple[int, int] | None] = []
        for i in range(self.capture_count + 1):
            start, end = ov[2 * i], ov[2 * i + 1]
            spans.append(None if start == _UNSET else (int(start), int(end)))
        return spans

    def matches(self, subject: bytes) -> bool:
        """Match without collecting spans (the common case: no $number)."""
        return self._run(subject) is not None
