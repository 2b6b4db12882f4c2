"""The ``header-rules`` scanner: Postfix header_checks inside the pipeline.

Postfix runs header_checks in cleanup before any milter, so its rules never
see the headers that ClamAV or SpamAssassin add. As a pipeline stage the same
file runs wherever the admin puts it: before the scanners (strip what the
sender forged) or after them (act on the scanners' own headers).

Headers are checked one logical header at a time, in message order, the first
matching rule of a table wins, and the three Postfix header classes go to
their own tables (header_checks, mime_header_checks, nested_header_checks),
which default to the main table exactly as in Postfix.

IGNORE, STRIP, REPLACE and PREPEND on a MIME-part or attached-message header
are made inside the body, as Postfix's cleanup makes them: the scanner returns
a new body (``Verdict.body``) where only the matched header's raw lines changed
and every other byte is copied through, streamed for big bodies.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from typing import Any, Literal

import attrs

from mxscan import (
    Action,
    Body,
    BodyBuilder,
    ConfigError,
    HeaderEdit,
    InvalidHeader,
    Message,
    Route,
    SmtpReply,
    Verdict,
    options,
)

from . import _pcre2
from .actions import (
    KNOWN_COMMANDS,
    ParsedAction,
    parse_action,
    parse_header_text,
    reject_reply,
)
from .mime import (
    HEADER_SIZE_LIMIT,
    MIME_HEADERS,
    BodyHeader,
    HeaderClass,
    header_name,
    logical_key,
    parse_content_type,
    truncate_key,
    walk_body,
)
from .table import Lookup, MatchRule, Table, TableError, TableKind, load_table, parse_table

__all__ = ["HeaderRules", "RuleHit"]

log = logging.getLogger("mxscan.header_rules")

Scope = Literal["header", "mime", "nested"]


def _has_parts(content_type: bytes) -> bool:
    parsed = parse_content_type(content_type)
    return parsed is not None and parsed.type in (b"multipart", b"message")


_SCOPE_MAP = {
    "header": "header_checks",
    "mime": "mime_header_checks",
    "nested": "nested_header_checks",
}


@attrs.frozen
class RuleHit:
    """One header that matched a rule, for logs and tests."""

    scope: Scope
    header_class: HeaderClass  # MAIN, MULT or NEST, as Postfix's mime_state says
    key: bytes
    location: str  # "table:line"
    action: ParsedAction
    applied: bool = True  # False: the action could not be carried out


def _primary_key(raw: bytes) -> bytes:
    """Header.logical as bytes: folded lines joined by LF, no final newline;
    the blanks before the colon removed as Postfix does."""
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    return logical_key(raw.replace(b"\r\n", b"\n"))


#: Actions that change the header they match.
_EDITING = frozenset({"IGNORE", "STRIP", "REPLACE", "PREPEND"})

_COPY_CHUNK = 64 * 1024


@attrs.frozen
class _BodyEdit:
    """Replace body bytes [start, end) with ``text`` (PREPEND: start == end)."""

    start: int
    end: int
    text: bytes


def _may_edit(table: Table | None) -> bool:
    """Whether a rule of ``table`` may answer with an editing action. A
    command built from ``$n`` cannot be known in advance: count it."""
    if table is None:
        return False
    for rule in table.rules:
        if not isinstance(rule, MatchRule):
            continue
        parts = rule.template.parts
        first = parts[0] if parts else b""
        if isinstance(first, int):
            return True
        if len(parts) > 1 and not any(c in b" \t" for c in first):
            return True  # the command word continues into a substitution
        if parse_action(first).command in _EDITING:
            return True
    return False


def _known_action(rule: MatchRule) -> ParsedAction | None:
    """The rule's action when the template fixes it (no ``$n`` in the command
    word, nor in the text of a command that needs its text at load time)."""
    parts = rule.template.parts
    first = parts[0] if parts else b""
    if isinstance(first, int):
        return None
    if len(parts) > 1 and not any(c in b" \t" for c in first):
        return None
    if len(parts) > 1:
        return ParsedAction(parse_action(first).command, "$")  # text from the match
    return parse_action(first)


def _lint_actions(table: Table, map_class: str) -> list[str]:
    """Rules whose action can never be carried out: Postfix loads them and
    only says so at scan time, for every message; here they are found at load
    time, named by file and line, so ``mxscan config check`` can refuse them."""
    found: list[str] = []
    for rule in table.rules:
        if not isinstance(rule, MatchRule):
            continue
        act = _known_action(rule)
        if act is None:
            continue
        cmd, text = act.command, act.text
        where = f"{table.kind} map {table.name}, line {rule.lineno}"
        problem = None
        if cmd not in KNOWN_COMMANDS:
            problem = f"unknown command in {map_class} map: {cmd or '(none)'}"
        elif cmd in ("REDIRECT", "BCC", "FILTER") and not text:
            problem = f"missing {cmd} command argument in {map_class} map"
        elif cmd in ("REPLACE", "PREPEND") and not text:
            problem = f"{cmd} action without text in {map_class} map"
        elif cmd in ("REPLACE", "PREPEND") and text != "$" and parse_header_text(text) is None:
            problem = (
                f'bad {cmd} header text "{text}" in {map_class} map -- '
                'need "headername: headervalue"'
            )
        if problem is not None:
            found.append(f"{where}: {problem}: this rule never acts")
    return found


def _rebuild(body: Body, edits: list[_BodyEdit]) -> Body:
    """The body with ``edits`` (in order, not overlapping) made; every other
    byte copied through in chunks, so a big body never sits in memory."""
    builder = BodyBuilder()
    try:
        pos = 0
        for edit in edits:
            _copy(body, builder, pos, edit.start)
            builder.write(edit.text)
            pos = edit.end
        _copy(body, builder, pos, body.size)
        return builder.finish()
    except BaseException:
        builder.close()
        raise


def _copy(body: Body, builder: BodyBuilder, start: int, end: int) -> None:
    while start < end:
        chunk = body.read_at(start, min(_COPY_CHUNK, end - start))
        if not chunk:
            break
        builder.write(chunk)
        start += len(chunk)


def _eol(body: Body, end: int) -> bytes:
    """The line ending the body itself uses where the header ends."""
    tail = body.read_at(max(end - 2, 0), min(end, 2))
    if tail.endswith(b"\r\n"):
        return b"\r\n"
    if tail.endswith(b"\n"):
        return b"\n"
    # The header is the body's last line, without a line ending.
    return b""


def _show(key: bytes) -> str:
    """A header for a log line: at most 200 characters, newlines as Postfix
    prints them."""
    text = key[:200].decode("utf-8", "replace")
    return text.replace("\n", "?").replace("\r", "?")


class _Shown:
    """The header as a log line shows it, made only if a line is written (most hits
    are IGNOREs that log nothing: 20,000 of them made 20,000 strings)."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def __str__(self) -> str:
        return _show(self.key)


class _Evaluation:
    """Mutable state while one message is checked."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self.offset = 0
        # Per lower-cased name, how many fields of the edited header come before the
        # one being checked; ``current`` is that one's name, None once deleted.
        # (Counting over a list each time was quadratic: 20,000 IGNOREd fields
        # took minutes.)
        self.before: dict[str, int] = {}
        self.current: str | None = None
        self.edits: list[HeaderEdit] = []
        self.hits: list[RuleHit] = []
        self.notes: list[str] = []
        self.action = Action.ACCEPT
        self.final: str | None = None
        self.reply: SmtpReply | None = None
        self.routes: list[Route] = []
        self.stopped = False  # PASS, REJECT or DISCARD: no further rules
        self.errors: list[str] = []
        self.body_edits: list[_BodyEdit] = []

    def passed(self) -> None:
        if self.current is not None:
            self.before[self.current] = self.before.get(self.current, 0) + 1
            self.current = None

    def occurrence(self) -> int:
        """The checked field's occurrence among the fields called like it."""
        assert self.current is not None
        return self.before.get(self.current, 0) + 1

    def inserted_before(self, name: str) -> None:
        lowered = name.lower()
        self.before[lowered] = self.before.get(lowered, 0) + 1


@options.check('a path, optionally prefixed `pcre:` or `regexp:` (`""`: off)')
def _path(option: str, value: object) -> str | os.PathLike[str] | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"{option}: expected a path, got {value!r}")
    return value


_rules = options.optional(options.text)
_CLASS_DOC = (
    'the `{0}` table; unset = the main table (Postfix\'s default `$header_checks`), `""`: off'
)


class HeaderRulesOptions(options.Options):
    """The options of ``[scanner.NAME]`` with ``plugin = "header-rules"`` (docs/header-rules.md)."""

    file = options.Option(
        _path,
        None,
        "path of the table; a `pcre:` or `regexp:` prefix chooses the syntax, as in `main.cf`",
        path=True,
    )
    rules = options.Option(
        _rules, None, "the table inline (TOML multi-line string); give `file` or `rules`, not both"
    )
    type = options.Option(
        options.optional(options.choices("pcre", "regexp")),
        None,
        "the syntax when the path has no prefix, or of inline rules (unset: `pcre`)",
    )
    mime_file = options.Option(_path, None, _CLASS_DOC.format("mime_header_checks"), path=True)
    mime_rules = options.Option(_rules, None, _CLASS_DOC.format("mime_header_checks"))
    nested_file = options.Option(_path, None, _CLASS_DOC.format("nested_header_checks"), path=True)
    nested_rules = options.Option(_rules, None, _CLASS_DOC.format("nested_header_checks"))
    strict = options.Option(
        options.flag,
        True,
        "refuse a table with a line Postfix would skip or that can never act, naming file "
        "and line; `false` loads it as Postfix does, skipping the line with a warning",
    )
    match_limit = options.Option(
        options.optional(options.whole(1)),
        None,
        "PCRE2 match limit against hostile patterns (unset: the library's, as in Postfix)",
    )
    depth_limit = options.Option(
        options.optional(options.whole(1)),
        None,
        "PCRE2 depth limit against hostile patterns (unset: the library's, as in Postfix)",
    )
    header_size_limit = options.Option(
        options.whole(0),
        HEADER_SIZE_LIMIT,
        "as Postfix's `main.cf` setting: continuation lines of a header past this many bytes "
        "are not matched (0: no limit)",
    )
    timeout = options.Option(
        options.optional(options.duration),
        None,
        "not set here: the core passes the scanner's `timeout`, which bounds a slow match",
    )


class HeaderRules:
    """Apply Postfix pcre:/regexp: header_checks tables to a message.

    Options (TOML keys of ``[scanner.NAME]``) are declared in
    ``HeaderRulesOptions``, each with its check, default and meaning;
    docs/header-rules.md explains them.
    """

    #: The declaration of every option, read by the core (``mxscan.options``):
    #: checking, defaults, ``config show``, and the path options (``file``,
    #: ``mime_file``, ``nested_file``), which resolve against the configuration
    #: file's directory (a ``pcre:``/``regexp:`` prefix stays in front).
    options_class = HeaderRulesOptions

    def __init__(self, name: str = "header-rules", **values: object) -> None:
        self.name = name
        # Error texts name the option only: the core puts the file and
        # [scanner.NAME] in front, as for every plugin (mxscan.options).
        opts = HeaderRulesOptions.parse(values)
        self._size_limit = opts.header_size_limit
        self._kind: TableKind | None = opts.type  # type: ignore[assignment]
        self._strict = opts.strict
        self._limits = {"match_limit": opts.match_limit, "depth_limit": opts.depth_limit}
        self._timeout = opts.timeout
        main = self._table("", opts.file, opts.rules, required=True)
        assert main is not None
        self.table: Table = main
        self.mime_table = self._table("mime_", opts.mime_file, opts.mime_rules, default=main)
        self.nested_table = self._table(
            "nested_", opts.nested_file, opts.nested_rules, default=main
        )
        #: Read by the engine: a milter asks the MTA for the right to replace
        #: the body only when a body-header rule may edit.
        self.changes_body = _may_edit(self.mime_table) or _may_edit(self.nested_table)

    # -- loading ---------------------------------------------------------

    def _table(
        self,
        prefix: str,
        file: str | os.PathLike[str] | None,
        rules: str | None,
        *,
        required: bool = False,
        default: Table | None = None,
    ) -> Table | None:
        if file is not None and rules is not None:
            raise ConfigError(f"give {prefix}file or {prefix}rules, not both")
        if file is None and rules is None:
            if required:
                raise ConfigError("needs 'file' (a header_checks table) or 'rules'")
            return default
        try:
            if file is not None:
                if not isinstance(file, str | os.PathLike):
                    raise ConfigError(f"{prefix}file: expected a path, got {file!r}")
                if os.fspath(file) == "":
                    return None
                table = load_table(file, self._kind, **self._limits)
            else:
                if not isinstance(rules, str):
                    raise ConfigError(f"{prefix}rules: expected a string, got {rules!r}")
                if rules.strip() == "" and not required:
                    return None
                table = parse_table(
                    rules,
                    self._kind or "pcre",
                    f"{self.name}.{prefix}rules",
                    **self._limits,
                )
        except (TableError, _pcre2.Pcre2Unavailable) as exc:
            raise ConfigError(str(exc)) from None
        map_class = {"": "header_checks", "mime_": "mime_header_checks"}.get(
            prefix, "nested_header_checks"
        )
        warnings = [*table.warnings, *_lint_actions(table, map_class)]
        if warnings:
            if self._strict:
                listed = "\n  ".join(warnings)
                raise ConfigError(
                    f"bad lines in {table.name} (set strict = false to skip them as "
                    f"Postfix does):\n  {listed}"
                )
            for warning in warnings:
                log.warning("%s", warning)
        return table

    # -- scanning --------------------------------------------------------

    async def scan(self, message: Message) -> Verdict:
        # A big table on many headers is CPU work: keep the event loop (and
        # the other connections of a milter) running meanwhile. The engines
        # release the GIL while they match.
        return await asyncio.to_thread(self.check, message)

    async def aclose(self) -> None:
        return None

    def check(self, message: Message) -> Verdict:
        """The synchronous core of :meth:`scan`."""
        return self.evaluate(message)[0]

    def evaluate(self, message: Message) -> tuple[Verdict, list[RuleHit]]:
        """The verdict and every rule hit, in message order."""
        ev = _Evaluation(message)
        for index, header in enumerate(message.headers):
            if ev.stopped:
                break
            key = truncate_key(_primary_key(header.raw), self._size_limit)
            name = header_name(key)
            # (A parsed field name is printable ASCII.)
            ev.current = name.decode("ascii", "replace")
            is_mime = name in MIME_HEADERS
            table = self.mime_table if is_mime else self.table
            if table is not None:
                hit = table.lookup(key, ev.errors)
                if hit is not None:
                    scope: Scope = "mime" if is_mime else "header"
                    self._apply(ev, scope, "MAIN", table, hit, key, index)
            ev.passed()
        if not ev.stopped and (self.mime_table is not None or self.nested_table is not None):
            self._check_body(ev, message)
        for error in ev.errors:
            log.warning("%s", error)
        return self._verdict(ev), ev.hits

    def _body_lines(self, message: Message) -> Iterator[bytes]:
        with message.body.open() as fp:
            yield from fp

    def _check_body(self, ev: _Evaluation, message: Message) -> None:
        ctypes = [
            _primary_key(h.raw).split(b":", 1)[1]
            for h in message.headers
            if h.name.lower() == "content-type"
        ]
        if not any(_has_parts(value) for value in ctypes):
            return  # a single-part body has no headers to find: skip reading it
        for found in walk_body(self._body_lines(message), ctypes):
            if ev.stopped:
                return
            scope: Scope
            if found.is_mime or found.header_class == "MULT":
                table, scope = self.mime_table, "mime"
            else:
                table, scope = self.nested_table, "nested"
            if table is None:
                continue
            key = truncate_key(found.key, self._size_limit)
            hit = table.lookup(key, ev.errors)
            if hit is not None:
                self._apply(ev, scope, found.header_class, table, hit, key, None, found)

    def _apply(
        self,
        ev: _Evaluation,
        scope: Scope,
        header_class: HeaderClass,
        table: Table,
        hit: Lookup,
        key: bytes,
        index: int | None,
        found: BodyHeader | None = None,
    ) -> None:
        act = parse_action(hit.value)
        where = f"{table.name}:{hit.lineno}"
        cmd, text = act.command, act.text
        shown = _Shown(key)
        queue = ev.message.envelope.queue_id or "NOQUEUE"
        map_class = _SCOPE_MAP[scope]
        applied = True

        def note(what: str) -> None:
            ev.notes.append(f"{what}: header {shown} ({where})")

        if cmd in _EDITING and found is not None:
            applied = self._body_edit(ev, cmd, text, found, f"{map_class} map ({where})")
            if applied and cmd != "IGNORE":
                note(cmd.lower())
        elif cmd == "REJECT":
            ev.reply = reject_reply(text)
            ev.action = Action.REJECT
            ev.final = "reject"
            ev.stopped = True
            note("reject")
        elif cmd == "DISCARD":
            ev.action = Action.DISCARD
            ev.final = "discard"
            ev.stopped = True
            note("discard")
        elif cmd == "HOLD":
            if ev.action < Action.QUARANTINE:
                ev.action = Action.QUARANTINE
                ev.final = ev.final or "hold"
            note("hold")
        elif cmd in ("REDIRECT", "BCC", "FILTER"):
            if not text:
                log.warning(
                    "%s: missing %s command argument in %s map (%s)", queue, cmd, map_class, where
                )
                applied = False
            else:
                kind: Literal["redirect", "bcc", "filter"] = cmd.lower()  # type: ignore[assignment]
                if kind != "bcc":
                    ev.routes = [r for r in ev.routes if r.kind != kind]
                ev.routes.append(Route(kind, text))
                note(f"{cmd.lower()} {text}")
        elif cmd in ("WARN", "INFO"):
            level = logging.WARNING if cmd == "WARN" else logging.INFO
            log.log(
                level,
                "%s: %s: header %s; from=<%s> to=<%s>: %s",
                queue,
                "warning" if cmd == "WARN" else "info",
                shown,
                ev.message.envelope.sender,
                ",".join(ev.message.envelope.recipients) or "unknown",
                text or "content matched",
            )
            note(cmd.lower())
        elif cmd in ("DUNNO", "OK"):
            pass
        elif cmd == "PASS":
            ev.stopped = True
            note("pass")
        elif cmd in ("IGNORE", "STRIP"):
            assert index is not None
            name = ev.message.headers[index].name
            ev.edits.append(HeaderEdit.delete(name, ev.occurrence()))
            ev.current = None
            ev.offset -= 1
            if cmd == "STRIP":
                note("strip")
        elif cmd in ("REPLACE", "PREPEND"):
            assert index is not None
            applied = self._replace_or_prepend(ev, cmd, text, index, f"{map_class} map ({where})")
            if applied:
                note(cmd.lower())
        else:
            log.warning("%s: unknown command in %s map: %s (%s)", queue, map_class, cmd, where)
            applied = False
        ev.hits.append(RuleHit(scope, header_class, key, where, act, applied))

    def _body_edit(
        self, ev: _Evaluation, cmd: str, text: str, found: BodyHeader, map_class: str
    ) -> bool:
        body = ev.message.body
        if cmd in ("IGNORE", "STRIP"):
            ev.body_edits.append(_BodyEdit(found.start, found.end, b""))
            return True
        if not text:
            log.warning("%s action without text in %s", cmd, map_class)
            return False
        if "\r" in text or "\n" in text or parse_header_text(text) is None:
            log.warning(
                'bad %s header text "%s" in %s -- need "headername: headervalue"',
                cmd,
                _show(text.encode("utf-8", "surrogateescape")),
                map_class,
            )
            return False
        raw = text.encode("utf-8", "surrogateescape")
        eol = _eol(body, found.end)
        if cmd == "PREPEND":
            # The inserted line needs an ending even before a last line that
            # has none: take the previous line's.
            eol = eol or _eol(body, found.start) or b"\r\n"
            ev.body_edits.append(_BodyEdit(found.start, found.start, raw + eol))
        else:
            ev.body_edits.append(_BodyEdit(found.start, found.end, raw + eol))
        return True

    def _replace_or_prepend(
        self, ev: _Evaluation, cmd: str, text: str, index: int, map_class: str
    ) -> bool:
        if not text:
            log.warning("%s action without text in %s", cmd, map_class)
            return False
        parsed = parse_header_text(text)
        if parsed is None:
            log.warning(
                'bad %s header text "%s" in %s -- need "headername: headervalue"',
                cmd,
                text,
                map_class,
            )
            return False
        new_name, new_value = parsed
        pos = index + ev.offset
        try:
            if cmd == "PREPEND":
                edit = HeaderEdit.insert(pos, new_name, new_value)
                ev.edits.append(edit)
                ev.inserted_before(new_name)
                ev.offset += 1
                return True
            old_name = ev.message.headers[index].name
            insert = HeaderEdit.insert(pos, new_name, new_value)
            delete = HeaderEdit.delete(old_name, ev.occurrence())
        except (InvalidHeader, ValueError) as exc:
            # e.g. $1 copied a line break out of a folded header
            log.warning("refusing %s text in %s: %s", cmd, map_class, exc)
            return False
        ev.edits.append(delete)
        ev.edits.append(insert)
        ev.current = new_name.lower()
        return True

    def _verdict(self, ev: _Evaluation) -> Verdict:
        findings = tuple(h.location for h in ev.hits)
        if ev.final is not None:
            commands = _FINAL_OF[ev.final]
            last = next(h for h in reversed(ev.hits) if h.action.command in commands)
            status = f"{ev.final}({last.location})"
        elif ev.edits or ev.body_edits:
            status = f"edited({len(ev.edits) + len(ev.body_edits)})"
        elif ev.hits:
            status = f"matched({len(ev.hits)})"
        else:
            status = "clean"
        reason = "; ".join(ev.notes)
        if ev.errors:
            reason = "; ".join([*ev.notes, *ev.errors])
        # Passed through a dict: attrs' tuple converters confuse mypy.
        fields: dict[str, Any] = {
            "action": ev.action,
            "scanner": self.name,
            "reason": reason,
            "status": status,
            "findings": findings,
            "edits": tuple(ev.edits),
            "reply": ev.reply,
            "routes": tuple(ev.routes),
        }
        if ev.body_edits and ev.action < Action.DISCARD:
            # A message that is refused or dropped needs no new body.
            fields["body"] = _rebuild(ev.message.body, ev.body_edits)
        return Verdict(**fields)

    def __repr__(self) -> str:
        count = len(self.table.rules)
        return f"HeaderRules(name={self.name!r}, table={self.table.name!r}, rules={count})"


_FINAL_OF: dict[str, tuple[str, ...]] = {
    "reject": ("REJECT",),
    "discard": ("DISCARD",),
    "hold": ("HOLD",),
}
