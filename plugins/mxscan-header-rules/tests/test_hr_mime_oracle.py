"""The header classifier finds the same logical headers, in the same order,
as Postfix's own MIME parser (postmap -hm, recorded in postmap-oracle/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mxscan.header import header_name_length
from mxscan_header_rules.mime import (
    header_name,
    logical_key,
    truncate_key,
    walk_body,
)

pytestmark = pytest.mark.corpus

KNOWN_DIFFERENT: set[str] = set()


def _split(data: bytes) -> tuple[list[bytes], list[bytes]]:
    """Primary header keys and body lines, as postmap (fed raw) sees them."""
    lines = data.split(b"\n")
    lines = [line + b"\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    keys: list[bytes] = []
    current: bytearray | None = None
    end = len(lines)
    for i, line in enumerate(lines):
        text = line[:-1] if line.endswith(b"\n") else line
        if current is not None and text[:1] in (b" ", b"\t"):
            current += b"\n" + text
            continue
        if text and header_name_length(text):
            if current is not None:
                keys.append(logical_key(bytes(current)))
            current = bytearray(text)
            continue
        end = i
        break
    if current is not None:
        keys.append(logical_key(bytes(current)))
    body = lines[end:]
    if body and body[0] == b"\n":
        body = body[1:]
    return keys, body


def _ascii_prefix(key: str | bytes) -> str:
    """The JSON oracle stores 8-bit bytes lossily: compare up to the first one."""
    text = key if isinstance(key, str) else key.decode("utf-8", "replace")
    out = []
    for ch in text:
        if ord(ch) > 127 or ch == "?":
            break
        out.append(ch)
    return "".join(out)


def test_walker_matches_postfix_mime_parser(corpus: Path) -> None:
    oracle = corpus / "postmap-oracle"
    checked = 0
    failures = []
    for name in ("header_keys.jsonl", "header_keys_mbox_from_stripped.jsonl"):
        with (oracle / name).open() as fp:
            for line in fp:
                record = json.loads(line)
                if record["path"] in KNOWN_DIFFERENT:
                    continue
                data = (corpus / record["path"]).read_bytes()
                if name.startswith("header_keys_mbox"):
                    data = data.split(b"\n", 1)[1] if b"\n" in data else b""
                keys, body = _split(data)
                ctypes = [k.split(b":", 1)[1] for k in keys if header_name(k) == b"content-type"]
                ours = keys + [h.key for h in walk_body(body, ctypes, strip_cr=False)]
                ours = [truncate_key(k) for k in ours]  # Postfix's header_size_limit
                mine = [_ascii_prefix(k) for k in ours]
                theirs = [_ascii_prefix(k) for k in record["header_checks_keys"]]
                checked += 1
                if mine != theirs:
                    failures.append(record["path"])
    assert checked > 1200
    assert not failures, failures[:10]
