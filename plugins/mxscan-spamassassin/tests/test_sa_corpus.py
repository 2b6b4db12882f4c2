"""Differential test: the plugin reads spamd exactly as spamc does.

For every SpamAssassin t/data message (real ham, spam, broken MIME, CJK, a
1-byte file), the plugin's score and rule names must equal what ``spamc -c`` and
``spamc -y`` get from the same spamd for the same bytes. This exercises the
parsing of long, folded ``tests=`` lists on real output.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sa_support import spamc

from mxscan import Message
from mxscan_spamassassin import SpamAssassin
from mxscan_spamassassin.edits import forged_removals
from tests.support.daemons import corpus_dir, daemons_required

pytestmark = [pytest.mark.spamd, pytest.mark.corpus]


def corpus_files() -> list[Path]:
    folder = corpus_dir("spamassassin-tdata")
    return sorted(
        p for sub in ("nice", "spam", "samples") for p in (folder / sub).rglob("*") if p.is_file()
    )


async def test_plugin_agrees_with_spamc_on_the_sa_test_corpus(spamd: str) -> None:
    if shutil.which("spamc") is None:
        why = "spamc not installed (Debian package spamc)"
        if daemons_required():
            pytest.fail(why)
        pytest.skip(why)
    files = corpus_files()
    assert len(files) > 100
    scanner = SpamAssassin(address=spamd, timeout=60, max_size="10MiB")
    gate = asyncio.Semaphore(4)
    mismatches: list[str] = []
    gtube = 0

    async def check(path: Path) -> None:
        nonlocal gtube
        message = Message.from_bytes(await asyncio.to_thread(path.read_bytes))
        sent = message.apply(forged_removals(message.headers)).as_bytes()
        async with gate:
            verdict = await scanner.scan(message)
            score = await asyncio.to_thread(spamc, spamd, "-c", data=sent)
            rules = await asyncio.to_thread(spamc, spamd, "-y", data=sent)
        expected_rules = {r for r in rules.split(",") if r}
        expected_score = float(score.split("/")[0])
        if set(verdict.findings) != expected_rules or verdict.score != expected_score:
            mismatches.append(
                f"{path.name}: plugin {verdict.score} {sorted(verdict.findings)}"
                f" / spamc {expected_score} {sorted(expected_rules)}"
            )
        if "GTUBE" in verdict.findings:
            gtube += 1
            assert verdict.status.startswith("spam("), path

    await asyncio.gather(*(check(p) for p in files))
    assert mismatches == []
    assert gtube >= 3
