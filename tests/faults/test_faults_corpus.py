"""The shared corpus through the milter via Postfix and through ``mxscan scan``:
no crash, no traceback, a verdict for every message, and delivered mail
byte-identical to what Postfix delivers without mxscan, apart from the headers the
configuration edits (see tests/support/corpus.py for exactly what is compared).

CI runs a deterministic sample, every ``MXSCAN_CORPUS_EVERY``-th message of the
sorted list (default 5: 200 of 1,000); ``MXSCAN_CORPUS_EVERY=1`` runs them all, as
``nox -s bench`` does (benchmarks/bench_load.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.corpus import run_corpus_milter, run_corpus_scan
from tests.support.daemons import corpus_dir, require_daemon
from tests.support.faults import figure

pytestmark = [
    pytest.mark.faults,
    pytest.mark.corpus,
    pytest.mark.postfix,
    pytest.mark.clamd,
    pytest.mark.spamd,
]

EVERY = int(os.environ.get("MXSCAN_CORPUS_EVERY", "5"))


@pytest.fixture(autouse=True)
def _daemons() -> None:
    for kind in ("postfix", "clamd", "spamd"):
        require_daemon(kind)


def test_corpus_through_postfix_and_the_milter() -> None:
    report = run_corpus_milter(corpus_dir(), EVERY)
    figure(report.line())
    problems = report.differing + report.without_verdict + report.not_accepted
    assert not problems, "\n".join(problems[:30])
    assert report.delivered_identical + report.discarded + report.rejected == report.messages
    assert report.delivered_identical > report.messages // 2  # the comparison really ran


def test_corpus_through_mxscan_scan(tmp_path: Path) -> None:
    report, records = run_corpus_scan(corpus_dir(), EVERY, tmp_path)
    figure(report.line())
    assert "Traceback" not in report.stderr, report.stderr[-3000:]
    assert report.exit_code in (0, 1), report.stderr[-3000:]  # 1: some not accepted
    assert report.records == report.messages
    errors = [r for r in records if "error" in r or "action" not in r]
    assert not errors, errors[:5]
    assert all(r["scanners"] for r in records)  # every scanner gave its verdict
    assert "tempfail" not in report.actions, report.actions  # healthy daemons: real verdicts
