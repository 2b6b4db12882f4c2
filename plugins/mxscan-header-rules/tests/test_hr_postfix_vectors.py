"""Postfix's own dict_pcre / dict_regexp test vectors: same lookups, same warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from mxscan_header_rules import parse_table


def _replay(util: Path, kind: str, map_file: str, in_lines: list[str]) -> list[str]:
    data = (util / map_file).read_bytes()
    table = parse_table(data, kind, map_file)  # type: ignore[arg-type]
    out = [f"./dict_open: warning: {w}" for w in table.warnings]
    out.append("owner=untrusted (uid=USER)")
    for line in in_lines:
        command, key = line.split(None, 1)
        assert command == "get"
        out.append(f"> get {key}")
        hit = table.lookup(key.encode())
        out.append(f"{key}: not found" if hit is None else f"{key}={hit.value.decode()}")
    return out


@pytest.mark.corpus
@pytest.mark.parametrize("kind", ["pcre", "regexp"])
def test_dict_vectors(corpus: Path, kind: str) -> None:
    util = corpus / "postfix-tests" / "util"
    inputs = (util / f"dict_{kind}.in").read_text().splitlines()
    got = _replay(util, kind, f"dict_{kind}.map", inputs)
    assert got == (util / f"dict_{kind}.ref").read_text().splitlines()


@pytest.mark.corpus
@pytest.mark.parametrize("kind", ["pcre", "regexp"])
def test_missing_endif(corpus: Path, kind: str) -> None:
    util = corpus / "postfix-tests" / "util"
    got = _replay(util, kind, "miss_endif_re.map", ["get 1.2.3.5"])
    assert got == (util / f"miss_endif_{kind}.ref").read_text().splitlines()


@pytest.mark.corpus
@pytest.mark.parametrize("kind", ["pcre", "regexp"])
def test_inline_table(corpus: Path, kind: str) -> None:
    # pcre:{{/foo/ got foo}}: an inline table is one rule per {...}
    table = parse_table("/foo/ got foo\n", kind)  # type: ignore[arg-type]
    got = []
    for key in ("foo", "bar"):
        got.append(f"> get {key}")
        hit = table.lookup(key.encode())
        got.append(f"{key}: not found" if hit is None else f"{key}={hit.value.decode()}")
    ref = corpus / "postfix-tests" / "util" / f"dict_inline_{kind}.ref"
    assert got == ref.read_text().splitlines()
