"""Load with faults: tagged messages at 32 concurrent SMTP sessions into a private
Postfix with mxscan (as milter, and as pipe filter), while a private clamd is
restarted twice and spamd once; afterwards every message is accounted for exactly
once. N is ``MXSCAN_LOAD_N`` (default 200 for the milter, 60 for the pipe filter:
CI's size); ``nox -s bench`` runs 1,000 / 300 (benchmarks/bench_load.py).
See tests/support/load.py for the accounting rules.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.daemons import require_daemon
from tests.support.faults import figure
from tests.support.load import LoadDaemons, Report, run_milter_load, run_pipe_load

pytestmark = [
    pytest.mark.faults,
    pytest.mark.postfix,
    pytest.mark.clamd,
    pytest.mark.spamd,
    pytest.mark.corpus,
]


def load_n(default: int, scale: float = 1.0) -> int:
    value = os.environ.get("MXSCAN_LOAD_N")
    return max(1, int(int(value) * scale)) if value else default


@pytest.fixture(scope="module")
def daemons() -> Iterator[LoadDaemons]:
    for kind in ("postfix", "clamd", "spamd"):
        require_daemon(kind)
    d = LoadDaemons()
    try:
        yield d.start()
    finally:
        d.stop()


def check(report: Report) -> None:
    figure(report.line())
    figure(f"load[{report.mode}] by kind: {report.kinds}")
    assert not report.problems, "\n".join(report.problems[:20])
    assert report.lost == 0 and report.duplicated == 0
    assert report.delivered + report.discarded + report.rejected == report.sent
    assert report.kinds.get("gtube", {}).keys() <= {"discarded"}, report.kinds
    assert report.kinds.get("eicar", {}).keys() <= {"discarded"}, report.kinds
    assert report.kinds.get("reject", {}).keys() <= {"rejected"}, report.kinds
    assert len(report.restarts) == 3, report.restarts


def test_milter_load_with_daemon_restarts(daemons: LoadDaemons) -> None:
    check(run_milter_load(daemons, load_n(200)))


# ---------------------------------------------------------------- pipe filter


def test_pipe_load_with_daemon_restarts(daemons: LoadDaemons) -> None:
    check(run_pipe_load(daemons, load_n(60, scale=0.3)))
