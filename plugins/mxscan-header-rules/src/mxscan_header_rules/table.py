"""Postfix ``pcre:`` and ``regexp:`` tables: parsing and lookup.

This follows Postfix's dict_pcre.c / dict_regexp.c rule for rule, because an
admin's existing header_checks file must mean exactly what it meant to
Postfix: the same logical lines (readllines: continuation lines, comments), the
same flag defaults, the same IF/ENDIF handling, and bad lines skipped with the
same warning text and line number. Patterns are compiled once, here; a lookup
only runs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Literal

import attrs

from . import _pcre2, _posix
from .template import Template, parse_template

__all__ = [
    "EndifRule",
    "IfRule",
    "Lookup",
    "MatchRule",
    "Table",
    "TableError",
    "TableKind",
    "load_table",
    "parse_table",
    "read_logical_lines",
    "split_table_name",
]

TableKind = Literal["pcre", "regexp"]
_SPACE = frozenset(b" \t\n\v\f\r")
_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


class TableError(ValueError):
    """A table that cannot be used at all (missing file, strict mode)."""


def _lstrip(data: bytes) -> bytes:
    i = 0
    while i < len(data) and data[i] in _SPACE:
        i += 1
    return data[i:]


def _rstrip(data: bytes) -> bytes:
    i = len(data)
    while i > 0 and data[i - 1] in _SPACE:
        i -= 1
    return data[:i]


def read_logical_lines(
    data: bytes, warn: list[str] | None = None, path: str = ""
) -> Iterator[tuple[int, bytes]]:
    """(first line number, logical line) as Postfix's readllines() joins them:
    a line starting with whitespace continues the previous one (joined with
    no separator), comment and blank lines are dropped without ending a
    logical line."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    buf = bytearray()
    first = 0
    has_null = False
    for number, line in enumerate(lines, start=1):
        stripped = _lstrip(line)
        if not stripped or stripped[0] == 0x23:  # '#'
            continue
        if buf and line[0] in _SPACE:
            buf += line
            has_null = has_null or b"\0" in line
            continue
        if buf:
            if has_null:
                if warn is not None:
                    warn.append(f"{path}, line {first}: null character: skipping this line")
            else:
                yield first, bytes(buf)
        buf = bytearray(line)
        first = number
        has_null = b"\0" in line
    if buf:
        if has_null:
            if warn is not None:
                warn.append(f"{path}, line {first}: null character: skipping this line")
        else:
            yield first, bytes(buf)


_META = frozenset(b".^$*+?()[]{}|\\")
_QUANTIFIERS = frozenset(b"*?{")


def _top_level_alternation(pattern: bytes) -> bool:
    """Whether ``pattern`` may have a ``|`` outside any group (then a literal
    prefix proves nothing). Errs towards True."""
    if b"\\Q" in pattern or b"(?" in pattern or b"(*" in pattern:
        return True
    depth = 0
    i = 0
    in_class = False
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x5C:
            i += 2
            continue
        if in_class:
            in_class = c != 0x5D
        elif c == 0x5B:
            in_class = True
            if i + 1 < n and pattern[i + 1] == 0x5E:
                i += 1
            if i + 1 < n and pattern[i + 1] == 0x5D:
                i += 1
        elif c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
        elif c == 0x7C and depth <= 0:
            return True
        i += 1
    return in_class or depth != 0


def literal_prefix(pattern: bytes, options: int) -> bytes | None:
    """The ASCII text every match must start the subject with, for patterns
    like ``^X-Spam-Flag:\\s+YES`` (lower-cased when the pattern is caseless).

    It lets a lookup skip PCRE2 for rules that cannot match a header - most rules
    of a header_checks file name one header. Only proven cases get a prefix:
    anchored with ``^``, no top-level alternation, no extended syntax, and a
    first character that is not a blank. With ``m``, ``^`` also matches after
    a newline, so such a subject always goes to PCRE2 (see :meth:`_Matcher.run`).
    """
    if not pattern.startswith(b"^") or options & _pcre2.EXTENDED:
        return None
    if _top_level_alternation(pattern):
        return None
    out = bytearray()
    i = 1
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x5C:
            if i + 1 >= n or chr(pattern[i + 1]).isalnum() or pattern[i + 1] >= 0x80:
                break
            literal, step = pattern[i + 1], 2
        elif c in _META:
            break
        else:
            literal, step = c, 1
        if literal >= 0x80 or literal < 0x20:
            break
        following = pattern[i + step] if i + step < n else None
        if following is not None and following in _QUANTIFIERS:
            break  # the character is optional
        out.append(literal)
        if following == 0x2B:  # '+': at least one, maybe more
            break
        i += step
    if not out or out[0] in (0x20, 0x09):
        return None
    return bytes(out).lower() if options & _pcre2.CASELESS else bytes(out)


class _Matcher:
    """One compiled pattern with Postfix's match/error semantics."""

    __slots__ = ("_caseless", "_multiline", "_pcre", "_posix", "_prefix", "nmatch")

    def __init__(
        self,
        pcre: _pcre2.Pcre2Pattern | None,
        posix: _posix.PosixPattern | None,
        nmatch: int,
        prefix: bytes | None = None,
        caseless: bool = False,
        multiline: bool = False,
    ) -> None:
        self._pcre = pcre
        self._posix = posix
        self.nmatch = nmatch
        self._prefix = prefix
        self._caseless = caseless
        self._multiline = multiline

    @property
    def capture_count(self) -> int:
        if self._pcre is not None:
            return self._pcre.capture_count
        assert self._posix is not None
        return self._posix.capture_count

    def run(self, subject: bytes, spans: bool) -> list[tuple[int, int] | None] | bool:
        """Spans (when asked) or a bool; raises _RunError on an engine error."""
        prefix = self._prefix
        if prefix is not None and not (self._multiline and b"\n" in subject):
            head = subject[: len(prefix)]
            if (head.lower() if self._caseless else head) != prefix:
                return False
        try:
            if self._pcre is not None:
                if spans:
                    result = self._pcre.search(subject)
                    return False if result is None else result
                return self._pcre.matches(subject)
            assert self._posix is not None
            result = self._posix.search(subject, self.nmatch if spans else 0)
            if result is None:
                return False
            return result if spans else True
        except _pcre2.Pcre2Error as exc:
            raise _RunError(exc.message) from None
        except _posix.PosixError as exc:
            raise _RunError(exc.message) from None


class _RunError(Exception):
    pass


@attrs.frozen(eq=False)
class MatchRule:
    lineno: int
    pattern: _Matcher
    match: bool
    template: Template
    second: _Matcher | None = None
    second_match: bool = True


@attrs.frozen(eq=False)
class IfRule:
    lineno: int
    pattern: _Matcher
    match: bool
    endif: int | None  # index of the matching ENDIF in Table.rules


@attrs.frozen(eq=False)
class EndifRule:
    lineno: int


Rule = MatchRule | IfRule | EndifRule


@attrs.frozen
class Lookup:
    """A lookup hit: the rule's first line and the expanded right-hand side."""

    lineno: int
    value: bytes


@attrs.frozen(eq=False)
class Table:
    kind: TableKind
    name: str
    rules: tuple[Rule, ...]
    warnings: tuple[str, ...]

    def lookup(self, key: bytes, errors: list[str] | None = None) -> Lookup | None:
        """First matching rule wins. An engine error (e.g. PCRE2's match
        limit on a hostile pattern) counts as "no match" for that rule, with a
        warning, as in Postfix."""
        key = key.split(b"\0", 1)[0]  # Postfix looks up a C string
        rules = self.rules
        i = 0
        n = len(rules)
        while i < n:
            rule = rules[i]
            if isinstance(rule, MatchRule):
                i += 1
                try:
                    need = rule.template.max_sub > 0
                    result = rule.pattern.run(key, need)
                    if (result is not False) != rule.match:
                        continue
                    if (
                        rule.second is not None
                        and (rule.second.run(key, False) is not False) != rule.second_match
                    ):
                        continue
                except _RunError as exc:
                    if errors is not None:
                        errors.append(f"{self.kind} map {self.name}, line {rule.lineno}: {exc}")
                    continue
                literal = rule.template.literal
                if literal is not None:
                    return Lookup(rule.lineno, literal)
                assert isinstance(result, list)
                return Lookup(rule.lineno, rule.template.expand(key, result))
            if isinstance(rule, IfRule):
                try:
                    hit = (rule.pattern.run(key, False) is not False) == rule.match
                except _RunError as exc:
                    if errors is not None:
                        errors.append(f"{self.kind} map {self.name}, line {rule.lineno}: {exc}")
                    hit = False
                if hit:
                    i += 1
                    continue
                if rule.endif is None:
                    return None
                i = rule.endif + 1
                continue
            i += 1
        return None


@attrs.define
class _Pattern:
    regexp: bytes
    options: int
    match: bool


class _Parser:
    def __init__(
        self, kind: TableKind, name: str, match_limit: int | None, depth_limit: int | None
    ) -> None:
        self.kind = kind
        self.name = name
        self.match_limit = match_limit
        self.depth_limit = depth_limit
        self.warnings: list[str] = []
        self.lineno = 0

    def where(self, text: str) -> str:
        return f"{self.kind} map {self.name}, line {self.lineno}: {text}"

    def warn(self, text: str) -> None:
        self.warnings.append(self.where(text))

    def get_pattern(self, line: bytes, pos: int) -> tuple[_Pattern, int] | None:
        match = True
        n = len(line)
        while pos < n and (line[pos] == 0x21 or line[pos] in _SPACE):
            if line[pos] == 0x21:
                match = not match
            pos += 1
        if pos >= n:
            self.warn("no regexp: skipping this rule")
            return None
        delim = line[pos]
        pos += 1
        start = pos
        while pos < n:
            if line[pos] == 0x5C:  # backslash
                if pos + 1 >= n:
                    # dict_pcre runs off the end; dict_regexp stops here and
                    # takes the backslash as the closing delimiter.
                    if self.kind == "pcre":
                        pos = n
                    break
                pos += 1
            elif line[pos] == delim:
                break
            pos += 1
        if pos >= n:
            what = "ignoring this rule" if self.kind == "pcre" else "skipping this rule"
            self.warn(f'no closing regexp delimiter "{chr(delim)}": {what}')
            return None
        regexp = line[start:pos]
        pos += 1
        if self.kind == "pcre":
            options = _pcre2.CASELESS | _pcre2.DOTALL
            flag_bits = {
                ord("i"): _pcre2.CASELESS,
                ord("m"): _pcre2.MULTILINE,
                ord("s"): _pcre2.DOTALL,
                ord("x"): _pcre2.EXTENDED,
                ord("A"): _pcre2.ANCHORED,
                ord("E"): _pcre2.DOLLAR_ENDONLY,
                ord("U"): _pcre2.UNGREEDY,
            }
        else:
            options = _posix.REG_EXTENDED | _posix.REG_ICASE
            flag_bits = {
                ord("i"): _posix.REG_ICASE,
                ord("m"): _posix.REG_NEWLINE,
                ord("x"): _posix.REG_EXTENDED,
            }
        while pos < n and line[pos] not in _SPACE:
            c = line[pos]
            if self.kind == "regexp" and c == 0x21:
                break
            if c in flag_bits:
                options ^= flag_bits[c]
            elif self.kind == "pcre" and c == ord("X"):
                self.warn(f'ignoring obsolete regexp option "{chr(c)}"')
            else:
                self.warn(f'unknown regexp option "{chr(c)}": skipping this rule')
                return None
            pos += 1
        return _Pattern(regexp, options, match), pos

    def compile(self, pattern: _Pattern, nmatch: int = 0, nosub: bool = False) -> _Matcher | None:
        if self.kind == "pcre":
            try:
                compiled = _pcre2.Pcre2Pattern(
                    pattern.regexp,
                    pattern.options,
                    match_limit=self.match_limit,
                    depth_limit=self.depth_limit,
                )
            except _pcre2.CompileError as exc:
                self.warn(str(exc))
                return None
            prefix = literal_prefix(pattern.regexp, pattern.options)
            caseless = bool(pattern.options & _pcre2.CASELESS)
            multiline = bool(pattern.options & _pcre2.MULTILINE)
            return _Matcher(compiled, None, 0, prefix, caseless, multiline)
        options = pattern.options | (_posix.REG_NOSUB if nosub else 0)
        try:
            posix = _posix.PosixPattern(pattern.regexp, options)
        except _posix.PosixError as exc:
            self.warn(exc.message)
            return None
        return _Matcher(None, posix, nmatch)

    def parse_rule(self, line: bytes, nesting: int) -> Rule | None:
        if line[0] not in _ALNUM:
            got = self.get_pattern(line, 0)
            if got is None:
                return None
            first, pos = got
            second: _Pattern | None = None
            if self.kind == "regexp" and pos < len(line) and line[pos] == 0x21:
                got2 = self.get_pattern(line, pos)
                if got2 is None:
                    return None
                second, pos = got2
            rhs = _lstrip(line[pos:])
            if not rhs:
                self.warn("no replacement text: using empty string")
            oor = "out of range" if self.kind == "pcre" else "out-of-range"
            template = parse_template(rhs, self.warnings.append, self.where, oor)
            if template is None:
                self.warn("bad replacement syntax: skipping this rule")
                return None
            if template.max_sub > 0 and not first.match:
                self.warn("$number found in negative match replacement text: skipping this rule")
                return None
            matcher = self.compile(first, template.max_sub + 1, nosub=template.max_sub == 0)
            if matcher is None:
                return None
            if template.max_sub > matcher.capture_count:
                self.warn(
                    f'out of range replacement index "{template.max_sub}": skipping this rule'
                )
                return None
            second_matcher = None
            if second is not None:
                second_matcher = self.compile(second, 0, nosub=True)
                if second_matcher is None:
                    return None
            return MatchRule(
                self.lineno,
                matcher,
                first.match,
                template,
                second_matcher,
                second.match if second is not None else True,
            )
        if line[:2].lower() == b"if" and (len(line) == 2 or line[2] not in _ALNUM):
            pos = 2
            while pos < len(line) and line[pos] in _SPACE:
                pos += 1
            got = self.get_pattern(line, pos)
            if got is None:
                return None
            pattern, pos = got
            extra = _lstrip(line[pos:])
            if extra:
                text = extra.decode("utf-8", "surrogateescape")
                self.warn(f'ignoring extra text after IF statement: "{text}"')
                self.warn("do not prepend whitespace to statements between IF and ENDIF")
            matcher = self.compile(pattern)
            if matcher is None:
                return None
            return IfRule(self.lineno, matcher, pattern.match, None)
        if line[:5].lower() == b"endif" and (len(line) == 5 or line[5] not in _ALNUM):
            if nesting == 0:
                self.warn("ignoring ENDIF without matching IF")
                return None
            if _lstrip(line[5:]):
                self.warn("ignoring extra text after ENDIF")
            return EndifRule(self.lineno)
        self.warn("ignoring unrecognized request")
        return None


def parse_table(
    data: bytes | str,
    kind: TableKind = "pcre",
    name: str = "inline",
    *,
    match_limit: int | None = None,
    depth_limit: int | None = None,
) -> Table:
    """Compile a whole table. Bad rules are skipped and reported in
    ``Table.warnings`` (Postfix's wording, without the program prefix)."""
    if kind not in ("pcre", "regexp"):
        raise TableError(f"unknown table type {kind!r}: use 'pcre' or 'regexp'")
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    parser = _Parser(kind, name, match_limit, depth_limit)
    rules: list[Rule] = []
    stack: list[int] = []
    for lineno, raw in read_logical_lines(data, parser.warnings, name):
        line = _rstrip(raw)
        if not line:
            continue
        parser.lineno = lineno
        rule = parser.parse_rule(line, len(stack))
        if rule is None:
            continue
        if isinstance(rule, IfRule):
            stack.append(len(rules))
        elif isinstance(rule, EndifRule):
            index = stack.pop()
            if_rule = rules[index]
            assert isinstance(if_rule, IfRule)
            rules[index] = attrs.evolve(if_rule, endif=len(rules))
        rules.append(rule)
    while stack:
        index = stack.pop()
        parser.lineno = rules[index].lineno
        parser.warn("IF has no matching ENDIF")
    return Table(kind, name, tuple(rules), tuple(parser.warnings))


def split_table_name(spec: str) -> tuple[TableKind | None, str]:
    """``"pcre:/etc/postfix/x"`` -> ("pcre", "/etc/postfix/x"); a bare path
    gives (None, path)."""
    if spec.startswith("pcre:"):
        return "pcre", spec[5:]
    if spec.startswith("regexp:"):
        return "regexp", spec[7:]
    return None, spec


def load_table(
    spec: str | os.PathLike[str],
    kind: TableKind | None = None,
    *,
    match_limit: int | None = None,
    depth_limit: int | None = None,
) -> Table:
    """Read a table file. ``spec`` may carry Postfix's ``pcre:``/``regexp:``
    prefix; ``kind`` overrides it; the default is pcre."""
    prefix, path = split_table_name(os.fspath(spec))
    chosen: TableKind = kind or prefix or "pcre"
    try:
        with open(path, "rb") as fp:
            data = fp.read()
    except OSError as exc:
        raise TableError(f"cannot read {chosen} table {path}: {exc.strerror or exc}") from None
    return parse_table(data, chosen, path, match_limit=match_limit, depth_limit=depth_limit)


def format_rule_location(table: Table, lineno: int) -> str:
    return f"{table.name}:{lineno}"


def lookup_all(table: Table, keys: Sequence[bytes]) -> list[Lookup | None]:
    """Convenience for tests and the differential harness."""
    return [table.lookup(k) for k in keys]
