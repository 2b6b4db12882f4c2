"""The example plugin: its options, its scanning, and mxscan finding it through
the entry point exactly as it finds the official plugins."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mxscan
from mxscan.testing import StaticScanner
from mxscan_example_keyword import Keyword


def message(subject: str, body: bytes) -> mxscan.Message:
    return mxscan.Message.from_bytes(b"Subject: " + subject.encode() + b"\r\n\r\n" + body)


async def test_subject_keyword_rejects_with_the_configured_reply() -> None:
    scanner = Keyword(keywords=["Giveaway"], reply="No giveaways here")
    verdict = await scanner.scan(message("Crypto GIVEAWAY today", b"hello\r\n"))
    assert verdict.action is mxscan.Action.REJECT
    assert verdict.status == "found(giveaway)" and verdict.findings == ("giveaway",)
    assert verdict.smtp_reply == mxscan.SmtpReply(550, "5.7.1", "No giveaways here")


async def test_where_limits_the_search() -> None:
    body_only = Keyword(keywords=["offer"], where="body", action="quarantine")
    assert (await body_only.scan(message("offer", b"nothing\r\n"))).action is mxscan.Action.ACCEPT
    hit = await body_only.scan(message("hi", b"a special OFFER\r\n"))
    assert hit.action is mxscan.Action.QUARANTINE and hit.reply is None
    subject_only = Keyword(keywords=["offer"], where="subject")
    assert (await subject_only.scan(message("hi", b"offer\r\n"))).status == "clean"


async def test_keyword_straddling_two_body_chunks_is_found() -> None:
    body = b"x" * (65536 - 3) + b"giveaway" + b"\r\n"  # chunks() yields 64 KiB pieces
    msg = message("hi", body)
    assert next(len(c) for c in msg.body.chunks()) == 65536
    assert (await Keyword(keywords=["giveaway"]).scan(msg)).status == "found(giveaway)"


async def test_sees_the_subject_an_earlier_stage_rewrote() -> None:
    rewriter = StaticScanner(
        name="rewriter", edits=(mxscan.HeaderEdit.change("Subject", 1, "a giveaway"),)
    )
    pipeline = mxscan.Pipeline([[rewriter], [Keyword(name="keyword", keywords=["giveaway"])]])
    result = await mxscan.PolicyRouter(pipeline).scan(message("hello", b"hi\r\n"))
    assert result.action is mxscan.Action.REJECT and result.verdict.scanner == "keyword"


async def test_the_worse_verdict_of_a_stage_wins() -> None:
    """Scanners in one stage run concurrently; the most severe action decides."""
    stage = [
        Keyword(name="keyword", keywords=["giveaway"], action="quarantine"),
        StaticScanner(name="other"),
    ]
    result = await mxscan.PolicyRouter(mxscan.Pipeline([stage])).scan(message("giveaway", b"x\r\n"))
    assert result.action is mxscan.Action.QUARANTINE
    assert [v.scanner for v in result.verdicts] == ["keyword", "other"]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"keywords": []}, "keywords: expected a non-empty list"),
        ({"keywords": "spam"}, "keywords: expected a non-empty list"),
        ({"keywords": ["ok", ""]}, "every keyword must be a non-empty string"),
        ({"keywords": ["x"], "where": "headers"}, "where: expected one of subject, body, both"),
        ({"keywords": ["x"], "action": "explode"}, "action: expected one of"),
        ({"keywords": ["x"], "reply": 5}, "reply: expected one printable line"),
        ({"keywords": ["x"], "reply": "two\r\nlines"}, "reply: expected one printable line"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], error: str) -> None:
    with pytest.raises(mxscan.ConfigError, match=error):
        Keyword(**options)  # type: ignore[arg-type]


def test_found_through_the_entry_point() -> None:
    info = mxscan.Registry().info("example-keyword")
    assert info.distribution == "mxscan-example-keyword"
    assert info.load() is Keyword


CONFIG = """
[scanner.words]
plugin = "example-keyword"
keywords = ["giveaway"]
action = "discard"
"""


def test_runs_in_a_configured_pipeline() -> None:
    config = mxscan.Config.from_toml(CONFIG)
    clean = mxscan.scan(b"Subject: lunch\r\n\r\nhi\r\n", config=config)
    assert clean.verdict.action is mxscan.Action.ACCEPT
    result = mxscan.scan(b"Subject: big giveaway\r\n\r\nhi\r\n", config=config)
    assert result.verdict.action is mxscan.Action.DISCARD
    assert mxscan.format_result(result, "4QTEST").startswith(
        "4QTEST: words=found(giveaway) action=discard reason=\"keyword 'giveaway' found\" "
    )


def test_config_errors_are_reported_with_file_and_table() -> None:
    with pytest.raises(mxscan.ConfigError, match=r"\[scanner.words\] where: expected one of"):
        mxscan.Config.from_toml(CONFIG + 'where = "nowhere"\n').build()


def test_listed_by_mxscan_plugins() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mxscan", "plugins"], capture_output=True, text=True, check=True
    ).stdout
    assert "example-keyword" in out and "mxscan-example-keyword" in out
