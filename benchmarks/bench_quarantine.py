"""What keeping quarantine copies costs the milter, and memory for a 100 MB copy.

Throughput: one private Postfix with one smtpd listener per setup, one ``mxscan
milter`` per setup, 10 KB messages at 16 concurrent SMTP sessions. Every setup runs
clamav then a header rule that discards every message (so each one is a copy to
keep); they differ only in ``[quarantine]``:

* no store - nothing kept (the rule's DISCARD, no ``[quarantine]``);
* sqlite   - every message committed to a SQLite store first;
* postgres - the same into PostgreSQL (when scripts/daemons runs one).

Goals (issue 17): sqlite >= 0.90x no store; postgres >= 0.85x no store.

Memory: a separate process stores one message of 1 MB, then (another process) one of
100 MB, through the engine's quarantine step into SQLite; peak RSS must not grow
with the size.

Environment: MXSCAN_BENCH_QUARANTINE_N (messages per run, default 300),
MXSCAN_BENCH_QUARANTINE_ROUNDS (default 3), MXSCAN_POSTGRES_URL. Needs root (the
private Postfix) and clamd.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.bench_milter import Run, measure, smtp_worker
from tests.support.daemons import clamd_alive
from tests.support.milter import MilterProcess, remove_dir, seed_config, socket_dir
from tests.support.pg import drop_schema, fresh_schema, postgres_url
from tests.support.postfix import PostfixInstance
from tests.support.sink import SMTPSink

REPO = Path(__file__).resolve().parent.parent

CONCURRENCY = 16
RULE = "/^Subject: quarantine-bench/ DISCARD kept by the benchmark\n"


def messages(count: int) -> list[bytes]:
    line = b"Hello Bob, this is a line of a ten kilobyte benchmark message, padded out.\r\n"
    return [
        b"From: alice@example.org\r\nTo: rcpt@example.com\r\n"
        b"Subject: quarantine-bench %d\r\nMessage-ID: <%d.qbench@example.org>\r\n\r\n"
        % (i, i)
        + line * (10 * 1024 // len(line))
        for i in range(count)
    ]


def config(store: str | None) -> dict[str, Any]:
    data = seed_config(spamassassin=False, header_rules=False,
                       extra_stage={"rule": {"plugin": "header-rules", "rules": RULE}})  # fmt: skip
    if store:
        data["quarantine"] = {"store": store}
    return data


MEMORY_PROBE = r"""
import asyncio, resource, sys, tempfile
from mxscan import Action, PolicyRouter, Envelope, Message, Pipeline, Verdict
from mxscan.quarantine import Keeper, QuarantineSettings
from mxscan.quarantine.sqlite import SqliteStore

size, path = int(sys.argv[1]), sys.argv[2]
with tempfile.TemporaryFile() as fp:
    fp.write(b"Subject: big\r\n\r\n")
    line = b"x" * 998 + b"\r\n"
    for _ in range(size // len(line)):
        fp.write(line)
    fp.seek(0)
    message = Message.from_stream(fp, envelope=Envelope(recipients=("r@example.com",)))

class Discard:
    name = "discard"
    async def scan(self, message): return Verdict(Action.DISCARD)
    async def aclose(self): pass

async def run():
    store = SqliteStore(path)
    engine = PolicyRouter(Pipeline([[Discard()]]), keeper=Keeper(store, QuarantineSettings(store=store.url)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = await engine.scan(message)
    assert "quarantined" in result.verdict.status, result.verdict
    await engine.aclose()
    return before

before = asyncio.run(run())
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-quarantine-mem-"))
    try:
        print(f"\n{'message':>10} {'peak RSS before':>16} {'peak RSS after':>15}")
        for size in (1024 * 1024, 100 * 1024 * 1024):
            out = subprocess.run(
                [sys.executable, "-c", MEMORY_PROBE, str(size), str(work / f"{size}.db")],
                capture_output=True, text=True, check=True, cwd=REPO,
            ).stdout.split()  # fmt: skip
            before, after = (int(x) / 1024 for x in out)
            print(f"{size // (1024 * 1024):>7} MB {before:>12.1f} MiB {after:>11.1f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if os.geteuid() != 0:
        raise RuntimeError("the private Postfix needs root")
    if not clamd_alive():
        raise RuntimeError("clamd not answering: run `bash scripts/daemons start`")
    n = int(os.environ.get("MXSCAN_BENCH_QUARANTINE_N", "300"))
    rounds = int(os.environ.get("MXSCAN_BENCH_QUARANTINE_ROUNDS", "3"))
    data = messages(n)
    directory = socket_dir()
    stores: dict[str, str | None] = {"no store": None, "sqlite": f"sqlite:{directory}/q.db"}
    pg = postgres_url()
    schema = fresh_schema()
    if pg:
        stores["postgres"] = f"{pg}&schema={schema}"
    print(f"{n} messages of {len(data[0])} bytes, {CONCURRENCY} sessions, {rounds} rounds, "
          f"cores {os.cpu_count()}; setups: {', '.join(stores)}")  # fmt: skip
    milters: dict[str, MilterProcess] = {}
    sink = SMTPSink().start()
    postfix: PostfixInstance | None = None
    try:
        for name, store in stores.items():
            milters[name] = MilterProcess(
                config(store), directory, name=name.replace(" ", "-")
            ).start()
        postfix = PostfixInstance(
            relay_port=sink.port,
            main_overrides={
                "default_process_limit": "200",
                "smtpd_client_connection_count_limit": "0",
                "smtpd_client_message_rate_limit": "0",
            },
        )
        ports = {
            name: postfix.add_smtpd_listener({"smtpd_milters": m.address})
            for name, m in milters.items()
        }
        postfix.start()
        work: dict[str, Callable[[list[bytes], Run], None]] = {
            name: (lambda share, run, p=port: smtp_worker(p, share, run))
            for name, port in ports.items()
        }
        for w in work.values():  # warm up
            measure(4, data[:16], w)
        runs: dict[str, list[tuple[float, float, dict[int, int]]]] = {w: [] for w in work}
        for i in range(rounds):
            for name in list(work) if i % 2 == 0 else list(reversed(work)):
                runs[name].append(measure(CONCURRENCY, data, work[name]))
        print(f"\n{'setup':<10} {'msg/s':>8} {'median ms':>10}  replies")
        rates = {}
        for name, got in runs.items():
            rates[name] = statistics.median(r[0] for r in got)
            median = statistics.median(r[1] for r in got)
            codes: dict[int, int] = {}
            for r in got:
                for code, count in r[2].items():
                    codes[code] = codes.get(code, 0) + count
            print(f"{name:<10} {rates[name]:>8.1f} {median:>10.1f}  {codes}")
        for name in stores:
            if name != "no store":
                goal = 0.90 if name == "sqlite" else 0.85
                ratio = rates[name] / rates["no store"]
                print(f"{name}/no store = {ratio:.2f} (goal >= {goal:.2f})")
        for name, milter in milters.items():
            print(f"peak RSS of the {name} milter: {milter.kib('VmHWM') / 1024:.1f} MiB")
    finally:
        if postfix is not None:
            postfix.remove()
        for milter in milters.values():
            milter.stop()
        sink.stop()
        remove_dir(directory)
        if pg:
            asyncio.run(drop_schema(pg, schema))
    memory()


if __name__ == "__main__":
    main()
