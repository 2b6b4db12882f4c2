"""Postfix's header_checks action vectors (global/header_body_checks_*.ref):
for mime_test.in, the same headers reach the same table (header_checks,
mime_header_checks, nested_header_checks) and IGNORE, PREPEND, REPLACE, STRIP
and WARN give the same result. Body lines are out of scope (no body_checks)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mxscan import Message
from mxscan_header_rules import HeaderRules
from mxscan_header_rules.mime import logical_key

pytestmark = pytest.mark.corpus

# the maps the Postfix test ran with, as one-rule tables
MAPS = {
    "ignore": ("/^/ IGNORE", "/^/ IGNORE", "/^/ IGNORE"),
    "warn": ("/^/ WARN", "/^/ WARN", "/^/ WARN"),
    "prepend": ("/./ prepend header: head", "/./ prepend header: mime", "/./ prepend header: nest"),
    "replace": ("/./ replace header: head", "/./ replace header: mime", "/./ replace header: nest"),
    "strip": ("/./ strip header line", "/./ strip mime header line", "/./ strip nested header"),
}

_RECORD = re.compile(r"^\d+ (MAIN|MULT|NEST) \d+\t\|(.*)$")
_LOG = re.compile(r"^header_body_checks: test-queueID: (\w+): (header|body) ")


def expected_events(ref: str) -> list[tuple[str, ...]]:
    """Header records, header action logs and prepended lines, in order."""
    events: list[tuple[str, ...]] = []
    lines = ref.splitlines()
    i = 0
    after_header_prepend = False
    while i < len(lines):
        line = lines[i]
        i += 1
        if after_header_prepend:
            events.append(("prepend", line))
            after_header_prepend = False
            continue
        record = _RECORD.match(line)
        if record:
            text = record.group(2)
            while i < len(lines) and lines[i][:1] in (" ", "\t"):
                text += "\n" + lines[i]
                i += 1
            events.append(("record", record.group(1), text))
            continue
        log = _LOG.match(line)
        if log and log.group(2) == "header":
            events.append(("log", line.split("test-queueID: ", 1)[1]))
            after_header_prepend = log.group(1) == "prepend"
    return events


def our_events(message: Message, scanner: HeaderRules) -> list[tuple[str, ...]]:
    _, hits = scanner.evaluate(message)
    events: list[tuple[str, ...]] = []
    for hit in hits:
        key = hit.key.decode()
        shown = key.replace("\n", "?")
        command, text = hit.action.command, hit.action.text
        if command == "WARN":
            events.append(("log", f"warning: header {shown}" + (f": {text}" if text else "")))
            events.append(("record", hit.header_class, key))
        elif command == "PREPEND":
            events.append(("log", f"prepend: header {shown}: {text}"))
            events.append(("prepend", text))
            events.append(("record", hit.header_class, key))
        elif command == "REPLACE":
            events.append(("log", f"replace: header {shown}: {text}"))
            events.append(("record", hit.header_class, text))
        elif command == "STRIP":
            events.append(("log", f"strip: header {shown}: {text}"))
        elif command == "IGNORE":
            pass
        else:
            events.append(("record", hit.header_class, key))
    return events


@pytest.mark.parametrize("case", sorted(MAPS))
def test_header_actions_match_postfix(corpus: Path, case: str) -> None:
    folder = corpus / "postfix-tests" / "global"
    data = (folder / "mime_test.in").read_bytes()
    head, mime, nest = MAPS[case]
    scanner = HeaderRules("t", rules=head + "\n", mime_rules=mime + "\n", nested_rules=nest + "\n")
    message = Message.from_bytes(data)
    ref = (folder / f"header_body_checks_{case}.ref").read_text()
    expected = expected_events(ref)
    assert len(expected) >= 6 or case == "ignore"
    assert our_events(message, scanner) == expected

    # The primary header as mxscan writes it equals Postfix's MAIN records
    # (compared as lookup keys: mxscan keeps "content-type :" byte for byte).
    verdict = scanner.check(message)
    written = [
        logical_key(h.raw.rstrip(b"\r\n").replace(b"\r\n", b"\n")).decode()
        for h in message.apply(verdict.edits).headers
    ]
    main_end = ref.index("HEADER END")
    postfix_main = [
        e[-1]
        for e in expected_events(ref[:main_end])
        if e[0] == "prepend" or (e[0] == "record" and e[1] == "MAIN")
    ]
    assert written == postfix_main
