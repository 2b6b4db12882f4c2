"""Find the MIME part headers and nested message headers in a body, the way
Postfix's mime_state(3) classifies them.

Postfix checks three header classes with three tables: primary headers
(header_checks), MIME headers - Content-* and MIME-Version anywhere, and every
header of a multipart part (mime_header_checks) - and the headers of an
attached message/rfc822 (nested_header_checks). A rule file moved from Postfix
only means the same thing if the same headers reach the same table.

This is a line-based state machine over the body: boundaries are matched as
Postfix does (``--`` + boundary as a prefix, the innermost match wins and
closes the inner ones), a header block ends at an empty or non-header line.
Each header found carries the byte range of its raw lines in the body, so that
an edit Postfix's cleanup would make there can be made byte-exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

import attrs

from mxscan import header_name_length

__all__ = [
    "MIME_HEADERS",
    "BodyHeader",
    "ContentType",
    "HeaderClass",
    "logical_key",
    "parse_content_type",
    "truncate_key",
    "walk_body",
]

HeaderClass = Literal["MAIN", "MULT", "NEST"]

# header_opts.c: the headers with HDR_OPT_MIME go to mime_header_checks
# wherever they appear, even in the primary header.
MIME_HEADERS = frozenset(
    {
        b"content-description",
        b"content-disposition",
        b"content-id",
        b"content-transfer-encoding",
        b"content-type",
        b"mime-version",
    }
)

_SPECIALS = frozenset(b'()<>@,;:\\"/[]?=')
_WSP = frozenset(b" \t\r\n")


#: Postfix's default header_size_limit (main.cf), in bytes.
HEADER_SIZE_LIMIT = 102400


def truncate_key(key: bytes, limit: int = HEADER_SIZE_LIMIT) -> bytes:
    """The key as Postfix keeps it: once a header holds ``limit`` bytes, further
    continuation lines are dropped (the line that crosses the limit stays whole,
    and a single long line is never cut). ``limit`` 0 keeps everything."""
    if limit <= 0 or len(key) <= limit:
        return key
    size = key.find(b"\n")
    while 0 <= size < limit:
        size = key.find(b"\n", size + 1)
    return key if size < 0 else key[:size]


def logical_key(raw: bytes) -> bytes:
    """The lookup key for one header: Postfix drops the blanks between the
    name and the colon (``Subject :`` is looked up as ``Subject:``)."""
    name_end = header_name_length(raw)
    if name_end == 0:
        return raw
    colon = raw.index(b":", name_end)
    if name_end == colon:
        return raw
    return raw[:name_end] + raw[colon:]


def header_name(key: bytes) -> bytes:
    colon = key.find(b":")
    return key[:colon].rstrip(b" \t").lower() if colon >= 0 else b""


@attrs.frozen
class ContentType:
    type: bytes
    subtype: bytes
    boundary: bytes | None


def _tokens(value: bytes) -> Iterator[tuple[str, bytes]]:
    """RFC 2045 tokens: ("atom"|"q"|special, text); comments skipped."""
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c in _WSP:
            i += 1
        elif c == 0x28:  # comment, nested, with quoted pairs
            depth = 0
            while i < n:
                ch = value[i]
                if ch == 0x5C:
                    i += 2
                    continue
                if ch == 0x28:
                    depth += 1
                elif ch == 0x29:
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        elif c == 0x22:  # quoted string; folding inside is removed
            out = bytearray()
            i += 1
            while i < n:
                ch = value[i]
                if ch == 0x22:
                    i += 1
                    break
                if ch == 0x5C and i + 1 < n:
                    out.append(value[i + 1])
                    i += 2
                    continue
                if ch in _WSP:
                    # Folding inside a quoted string: the whole blank run
                    # around the line break becomes one space.
                    j = i
                    while j < n and value[j] in _WSP:
                        j += 1
                    run = value[i:j]
                    if b"\n" in run or b"\r" in run:
                        out.append(0x20)
                    else:
                        out += run
                    i = j
                    continue
                out.append(ch)
                i += 1
            yield "q", bytes(out)
        elif c in _SPECIALS:
            yield chr(c), bytes([c])
            i += 1
        else:
            start = i
            while i < n and value[i] not in _WSP and value[i] not in _SPECIALS:
                i += 1
            yield "atom", value[start:i]


def parse_content_type(value: bytes) -> ContentType | None:
    """Type, subtype and boundary of a Content-Type value (after the colon)."""
    tokens = list(_tokens(value))
    if len(tokens) < 3 or tokens[0][0] != "atom" or tokens[1][0] != "/" or tokens[2][0] != "atom":
        if tokens and tokens[0][0] == "atom":
            return ContentType(tokens[0][1].lower(), b"", None)
        return None
    ctype, subtype = tokens[0][1].lower(), tokens[2][1].lower()
    boundary = None
    params: list[list[tuple[str, bytes]]] = []
    current: list[tuple[str, bytes]] | None = None
    for tok in tokens[3:]:
        if tok[0] == ";":
            current = []
            params.append(current)
        elif current is not None:
            current.append(tok)
    for param in params:
        if (
            len(param) >= 3
            and param[0][0] == "atom"
            and param[0][1].lower() == b"boundary"
            and param[1][0] == "="
            and param[2][0] in ("atom", "q")
        ):
            boundary = param[2][1]
            break
    return ContentType(ctype, subtype, boundary)


@attrs.frozen
class BodyHeader:
    """A logical header found inside the body."""

    header_class: HeaderClass
    key: bytes  # lookup key: folded lines joined with LF, no final newline
    #: Byte range of the header's raw lines in the body, line endings included.
    start: int = 0
    end: int = 0

    @property
    def is_mime(self) -> bool:
        return header_name(self.key) in MIME_HEADERS


def _push(
    ctype: ContentType | None, stack: list[bytes], digest: list[bool], max_depth: int
) -> None:
    """Postfix pushes a multipart boundary as soon as it reads the
    Content-Type header, so a later Content-Type in the same block does not
    undo it."""
    multipart = ctype is not None and ctype.type == b"multipart" and ctype.boundary
    if multipart and ctype is not None and ctype.boundary and len(stack) < max_depth:
        stack.append(ctype.boundary)
        digest.append(ctype.subtype == b"digest")


def _after_block(last: ContentType | None, seen: bool, digest: list[bool], in_part: bool) -> str:
    """What follows a header block: the body, or a nested message's header.
    A part of a multipart/digest without Content-Type is a message/rfc822."""
    if not seen:
        return "nest" if in_part and digest and digest[-1] else "body"
    if last is not None and last.type == b"message" and last.subtype in (b"rfc822", b"global"):
        return "nest"
    return "body"


def _strip_eol(line: bytes, strip_cr: bool) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
        if strip_cr and line.endswith(b"\r"):
            line = line[:-1]
    return line


def walk_body(
    lines: Iterable[bytes],
    primary_content_types: Iterable[bytes],
    *,
    strip_cr: bool = True,
    max_depth: int = 20,
) -> Iterator[BodyHeader]:
    """Yield the MULT and NEST headers of a body, in order. ``lines`` are the
    body's lines with their line endings; ``primary_content_types`` are the
    values (bytes after the colon) of the primary Content-Type headers."""
    stack: list[bytes] = []
    digest: list[bool] = []
    last: ContentType | None = None
    seen = False
    for value in primary_content_types:
        last = parse_content_type(value)
        seen = True
        _push(last, stack, digest, max_depth)
    state = _after_block(last, seen, digest, False)
    header_class: HeaderClass = "NEST"
    current: bytearray | None = None
    last, seen = None, False
    pos = 0  # offset of the current line in the body
    cur_start = cur_end = 0

    def finish() -> BodyHeader | None:
        nonlocal current, last, seen
        if current is None:
            return None
        key = logical_key(bytes(current))
        current = None
        if header_name(key) == b"content-type":
            colon = key.find(b":")
            last = parse_content_type(key[colon + 1 :])
            seen = True
            _push(last, stack, digest, max_depth)
        return BodyHeader(header_class, key, cur_start, cur_end)

    if state == "nest":
        state = "head"
    for raw_line in lines:
        line_start = pos
        pos += len(raw_line)
        line = _strip_eol(raw_line, strip_cr)
        if state == "head":
            if current is not None and line[:1] in (b" ", b"\t"):
                current += b"\n" + line
                cur_end = pos
                continue
            if line and header_name_length(line):
                done = finish()
                if done is not None:
                    yield done
                current = bytearray(line)
                cur_start, cur_end = line_start, pos
                continue
            done = finish()
            if done is not None:
                yield done
            state = _after_block(last, seen, digest, header_class == "MULT")
            last, seen = None, False
            if state == "nest":
                header_class = "NEST"
                state = "head"
                if not line:
                    continue
                # a nested message whose first line is not a header
                state = "body"
            elif not line:
                continue
            # a non-header line ends the header and is itself body text
        if stack and line[:2] == b"--":
            for depth in range(len(stack) - 1, -1, -1):
                boundary = stack[depth]
                if line[2 : 2 + len(boundary)] == boundary:
                    del stack[depth + 1 :]
                    del digest[depth + 1 :]
                    if line[2 + len(boundary) : 4 + len(boundary)] == b"--":
                        stack.pop()
                        digest.pop()
                        state = "body"
                    else:
                        state = "head"
                        header_class = "MULT"
                        last, seen = None, False
                    break
    if state == "head":
        done = finish()
        if done is not None:
            yield done
