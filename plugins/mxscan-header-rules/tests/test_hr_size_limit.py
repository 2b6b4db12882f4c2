"""Postfix's header_size_limit: continuation lines past the limit are not matched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mxscan import Action, Message
from mxscan_header_rules import HeaderRules
from mxscan_header_rules.mime import truncate_key

LINE = b"\t" + b"x" * 99


def folded(lines: int, tail: bytes = b"") -> bytes:
    return b"\n".join([b"Subject: start", *([LINE] * lines), *([tail] if tail else [])])


def test_truncate_key_keeps_whole_lines_up_to_the_limit() -> None:
    # Measured with postmap -hq (Postfix 3.7.11, default limit): 14 + 1014 * 101 bytes.
    assert len(truncate_key(folded(2000))) == 102428
    assert truncate_key(folded(10)) == folded(10)
    single = b"Subject: " + b"y" * 150_000
    assert truncate_key(single) == single  # one long line is never cut
    assert truncate_key(folded(2000), 0) == folded(2000)
    assert len(truncate_key(folded(50), 1000)) == 14 + 10 * 101


async def test_text_past_the_limit_is_not_matched() -> None:
    data = folded(2000, b"\tFORBIDDEN") + b"\nTo: a\n\nbody\n"
    rules = "/FORBIDDEN/ DISCARD\n"
    verdict = await HeaderRules(rules=rules).scan(Message.from_bytes(data))
    assert verdict.action is Action.ACCEPT
    verdict = await HeaderRules(rules=rules, header_size_limit=0).scan(Message.from_bytes(data))
    assert verdict.action is Action.DISCARD


def test_bad_header_size_limit() -> None:
    with pytest.raises(ValueError, match="header_size_limit"):
        HeaderRules(rules="/x/ DUNNO\n", header_size_limit=-1)


@pytest.mark.postfix
def test_postmap_agrees_at_the_default_limit(postmap: tuple[str, Path], tmp_path: Path) -> None:
    binary, _ = postmap
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text("")  # Postfix's defaults: header_size_limit = 102400
    table = tmp_path / "t.pcre"
    table.write_text("/FORBIDDEN/ MATCHED\n/^Subject:/ SEEN\n")
    for lines in (1000, 1013, 1014, 1015, 2000):
        message = folded(lines, b"\tFORBIDDEN") + b"\nTo: a\n\nbody\n"
        out = subprocess.run(
            [binary, "-c", str(conf), "-hq", "-", f"pcre:{table}"],
            input=message, capture_output=True, check=True,
        ).stdout  # fmt: skip
        postfix_matched = out.endswith(b"\tMATCHED\n") or b"\tMATCHED\n" in out
        key = truncate_key(folded(lines, b"\tFORBIDDEN"))
        assert (b"FORBIDDEN" in key) == postfix_matched, lines
