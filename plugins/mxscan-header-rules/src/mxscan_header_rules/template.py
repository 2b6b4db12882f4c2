"""Replacement text with ``$1`` / ``${1}`` / ``$(1)``, parsed as Postfix's
mac_parse() does, so a table's right-hand side means the same thing here.

Parsing happens once per table load; expansion per match only copies spans.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

__all__ = ["Template", "parse_template"]

_NAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@attrs.frozen
class Template:
    """Literal byte strings and group numbers, in order."""

    parts: tuple[bytes | int, ...]
    max_sub: int

    @property
    def literal(self) -> bytes | None:
        """The whole text when it needs no expansion."""
        if self.max_sub == 0:
            return b"".join(p for p in self.parts if isinstance(p, bytes))
        return None

    def expand(self, subject: bytes, spans: Sequence[tuple[int, int] | None]) -> bytes:
        out = bytearray()
        for part in self.parts:
            if isinstance(part, bytes):
                out += part
                continue
            span = spans[part] if part < len(spans) else None
            if span is not None and span[1] > span[0]:
                out += subject[span[0] : span[1]]
        return bytes(out)


def _mac_parse(text: bytes, warn: Callable[[str], None]) -> tuple[list[tuple[str, bytes]], bool]:
    """Tokens ("lit"|"var", bytes) and whether mac_parse reported an error."""
    tokens: list[tuple[str, bytes]] = []
    buf = bytearray()
    error = False
    i, n = 0, len(text)
    shown = text.decode("utf-8", "surrogateescape")
    while i < n:
        c = text[i]
        if c != 0x24:  # '$'
            buf.append(c)
            i += 1
            continue
        if i + 1 < n and text[i + 1] == 0x24:
            buf.append(0x24)
            i += 2
            continue
        if buf:
            tokens.append(("lit", bytes(buf)))
            buf.clear()
        i += 1
        if i < n and text[i] in (0x28, 0x7B):  # ( {
            open_c = text[i]
            close_c = 0x29 if open_c == 0x28 else 0x7D
            level = 1
            i += 1
            j = i
            truncated = False
            while level > 0:
                if j >= n:
                    warn(f'truncated macro reference: "{shown}"')
                    truncated = True
                    break
                if text[j] == open_c:
                    level += 1
                if text[j] == close_c:
                    level -= 1
                j += 1
            if truncated:
                error = True
                break
            buf += text[i : j - 1]
            i = j
        else:
            j = i
            while j < n and text[j] in _NAME_CHARS:
                j += 1
            buf += text[i:j]
            i = j
        if not buf:
            warn(f'empty macro name: "{shown}"')
            error = True
            break
        tokens.append(("var", bytes(buf)))
        buf.clear()
    if buf and not error:
        tokens.append(("lit", bytes(buf)))
    return tokens, error


def parse_template(
    text: bytes,
    warn: Callable[[str], None],
    where: Callable[[str], str],
    out_of_range: str = "out of range",
) -> Template | None:
    """Postfix's prescan: numeric indexes >= 1 only. ``None`` (after the
    warnings Postfix prints) when the rule must be skipped. ``where`` adds
    the "pcre map X, line N: " prefix."""
    tokens, error = _mac_parse(text, warn)
    parts: list[bytes | int] = []
    max_sub = 0
    for kind, value in tokens:
        if kind == "lit":
            parts.append(value)
            continue
        name = value.decode("utf-8", "surrogateescape")
        if not value.isdigit():
            warn(where(f'non-numeric replacement index "{name}"'))
            error = True
            continue
        number = int(value)
        if number < 1:
            warn(where(f'{out_of_range} replacement index "{name}"'))
            error = True
            continue
        max_sub = max(max_sub, number)
        parts.append(number)
    if error:
        return None
    return Template(tuple(parts), max_sub)
