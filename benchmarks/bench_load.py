"""Load with faults at full size, and the whole corpus, printing the accounts.

* 1,000 tagged messages (corpus sample, GTUBE, EICAR, rule rejects) at 32
  concurrent SMTP sessions into a private Postfix with the mxscan milter, while a
  private clamd (owned by this run) is restarted twice and spamd once; then the
  same with the pipe(8) filter and 300 messages. Printed per run: sent, delivered,
  discarded, rejected, lost (must be 0), duplicated (must be 0), client retries,
  time and rate. The logic is tests/support/load.py, which CI runs with 200
  and 60 messages (tests/faults/test_faults_load.py).
* All 1,000 corpus messages through the milter via Postfix, compared with what
  Postfix delivers without mxscan, and through ``mxscan scan --json`` (CI runs every
  5th; see tests/support/corpus.py for what is compared).

``MXSCAN_LOAD_N`` overrides the 1,000 (the pipe filter gets 30% of it). Needs root,
Postfix, clamd and spamd (``bash scripts/daemons start``) and the corpus.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks import CORPUS
from tests.support.corpus import run_corpus_milter, run_corpus_scan
from tests.support.daemons import clamd_alive, spamd_alive
from tests.support.load import LoadDaemons, Report, run_milter_load, run_pipe_load


def _print(report: Report) -> None:
    print(report.line(), flush=True)
    print(f"load[{report.mode}] by kind: {report.kinds}", flush=True)
    for problem in report.problems[:20]:
        print(f"load[{report.mode}] PROBLEM: {problem}", flush=True)


def main() -> None:
    if not (clamd_alive() and spamd_alive()):
        raise RuntimeError("clamd/spamd are not answering: run `bash scripts/daemons start`")
    n = int(os.environ.get("MXSCAN_LOAD_N", "1000"))
    daemons = LoadDaemons().start()
    try:
        _print(run_milter_load(daemons, n))
        _print(run_pipe_load(daemons, max(1, n * 3 // 10)))
    finally:
        daemons.stop()
    report = run_corpus_milter(CORPUS, every=1)
    print(report.line(), flush=True)
    for problem in (report.differing + report.without_verdict + report.not_accepted)[:20]:
        print(f"corpus PROBLEM: {problem}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        scan, records = run_corpus_scan(CORPUS, 1, Path(tmp))
    print(scan.line(), flush=True)
    bad = [r for r in records if "error" in r or "action" not in r]
    tracebacks = scan.stderr.count("Traceback")
    print(
        f"corpus via mxscan scan: {len(bad)} without a verdict, {tracebacks} tracebacks", flush=True
    )


if __name__ == "__main__":
    main()
