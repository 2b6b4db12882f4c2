"""Load with faults: tagged messages at 32 concurrent SMTP sessions into a private
Postfix with mxscan (as milter, and as pipe filter), while a private clamd is
restarted twice and spamd once; afterwards every message is accounted for exactly
once. N is ``MXSCAN_LOAD_N`` (default 200 for the milter, 60 for the pipe filter:
CI's size); ``nox -s bench`` runs 1,000 / 300 (benchmarks/bench_load.py).
See faults_load.py for the accounting rules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from faults_load import REJECT_RULE, LoadDaemons, Report, make_items, postfix_discards, run_load
from faults_support import figure, logged_pipe_postfix, pipe_config
from milter_proc import MilterProcess, seed_config, socket_dir

from tests.support.daemons import corpus_dir, require_daemon
from tests.support.postfix import PostfixInstance
from tests.support.sink import SMTPSink

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


def milter_config(daemons: LoadDaemons) -> dict[str, Any]:
    config = seed_config(
        clamav={"address": daemons.clamd, "timeout": "30s"}, extra_stage={"loadrule": REJECT_RULE}
    )
    config["scanner"]["spamassassin"]["address"] = daemons.spamd
    config["scanner"]["spamassassin"]["timeout"] = "30s"
    return config


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


def run_milter_load(daemons: LoadDaemons, n: int) -> Report:
    items = make_items(n, corpus_dir())
    sink = SMTPSink().start()
    milter = MilterProcess(milter_config(daemons), socket_dir(), name="load")
    postfix: PostfixInstance | None = None
    try:
        milter.start()
        postfix = PostfixInstance(
            relay_port=sink.port, main_overrides={"smtpd_milters": milter.address}
        ).start()
        pf = postfix
        report = run_load("milter", pf, sink, items, daemons, lambda: (postfix_discards(pf), set()))
        assert milter.proc is not None and milter.proc.poll() is None, "the milter died"
        assert "Traceback" not in milter.log()
        for item in items:
            if item.kind == "reject":
                text = report.outcomes[item.id].text
                assert "rejected by the load test rule" in text, text
        return report
    finally:
        if postfix is not None:
            postfix.remove()
        milter.stop()
        sink.stop()


def test_milter_load_with_daemon_restarts(daemons: LoadDaemons) -> None:
    check(run_milter_load(daemons, load_n(200)))


# ---------------------------------------------------------------- pipe filter


def run_pipe_load(daemons: LoadDaemons, n: int) -> Report:
    """The docs' pipe(8) setup (tests/adapters/pipe/pipe_postfix.py), with mxscan's
    stderr (its per-message log line) appended to a file, so discards are counted
    from mxscan's own words: a discarded message leaves no trace in Postfix but
    ``status=sent``, like a delivered one before its re-injection."""
    items = make_items(n, corpus_dir(), seed=10)
    sink = SMTPSink().start()
    try:
        text = pipe_config(clamd=daemons.clamd, spamd=daemons.spamd)
        rule = "/^X-Load-Reject: yes/ REJECT 5.7.1 rejected by the load test rule\n"
        text = text.replace("/^X-Virus-/   IGNORE\n", "/^X-Virus-/   IGNORE\n" + rule, 1)
        assert daemons.spamd in text and "X-Load-Reject" in text

        with logged_pipe_postfix(sink.port, text) as (postfix, log):

            def verdicts() -> tuple[set[str], set[str]]:
                discarded = set(re.findall(r": ([0-9A-F]{6,}): .* action=discard", log.read_text()))
                bounced = set(
                    re.findall(
                        r"([0-9A-F]{6,}): to=<[^>]*>, relay=mxscan, .*status=bounced", postfix.log()
                    )
                )
                return discarded, bounced

            report = run_load("pipe", postfix, sink, items, daemons, verdicts)
            assert "Traceback" not in log.read_text()
            deferred = len(re.findall(r"relay=mxscan, .*status=deferred", postfix.log()))
            figure(f"\nload[pipe]: filter runs deferred by Postfix (exit 75, retried): {deferred}")
        return report
    finally:
        sink.stop()


def test_pipe_load_with_daemon_restarts(daemons: LoadDaemons) -> None:
    check(run_pipe_load(daemons, load_n(60, scale=0.3)))
