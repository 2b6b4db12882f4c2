"""Messages/second and median latency through a private Postfix 3.7, with and without
``mxscan milter``, next to spamd's own throughput (``spamc -c``) on the same messages.

Setups (one Postfix, one smtpd listener per setup, one ``mxscan milter`` process
per milter setup, an aiosmtpd sink behind it):

* no milter - Postfix alone;
* no-op     - mxscan milter with one scanner that returns at once (the milter's cost);
* clamav    - the clamav scanner only;
* clamav+sa - clamav and spamassassin in one stage (concurrently);
* seed      - examples/mxscan.toml as shipped (header rules before and after);
* spamc -c  - spamd alone, one ``spamc -c`` per message.

Each is run with 4 and 16 concurrent SMTP sessions (or spamc processes); a session
sends its share of the messages one transaction after another. Latency is MAIL FROM
to the reply to DATA, i.e. what the sending MTA waits for (the milter runs inside
it). Goals (issue 6): no-op >= 0.5x no milter; clamav+sa >= 0.9x spamc.

Environment: MXSCAN_BENCH_MILTER_N (messages per run, default 200),
MXSCAN_BENCH_MILTER_ROUNDS (runs per figure, alternating setups, default 2), the daemon
addresses as for the tests (MXSCAN_RUN_DIR/env), MXSCAN_CORPUS. Needs root (the
private Postfix), clamd and spamd (``bash scripts/daemons start``).
"""

from __future__ import annotations

import os
import shutil
import smtplib
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import sample_messages
from tests.support.daemons import clamd_alive, parse_address, spamd_alive, spamd_inet
from tests.support.milter import (
    MilterProcess,
    install_slowplugin,
    plain_config,
    remove_dir,
    seed_config,
    socket_dir,
)
from tests.support.postfix import PostfixInstance
from tests.support.sink import SMTPSink

REPO = Path(__file__).resolve().parent.parent

CONCURRENCY = (4, 16)


def load_messages(count: int) -> tuple[list[bytes], str]:
    """Real mail (SpamAssassin public corpus sample) when present, else built-in ham."""
    built = [
        b"From: alice@example.org\r\nTo: rcpt@example.com\r\nSubject: note %d\r\n"
        b"Date: Sat, 28 Nov 2026 04:00:00 +0000\r\nMessage-ID: <%d.bench@example.org>\r\n\r\n"
        % (i, i)
        + b"Hello Bob, this is line %d of a short benchmark message.\r\n" % i * 30
        for i in range(count)
    ]
    return sample_messages(count, built)


class Run:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.codes: dict[int, int] = {}
        self.lock = threading.Lock()

    def record(self, latency: float, code: int) -> None:
        with self.lock:
            self.latencies.append(latency)
            self.codes[code] = self.codes.get(code, 0) + 1


def smtp_worker(port: int, messages: list[bytes], run: Run) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.mxscan.test", timeout=120) as client:
        client.ehlo("bench.mxscan.test")
        for data in messages:
            start = time.perf_counter()
            client.mail("sender@example.org")
            client.rcpt("rcpt@example.com")
            code, _ = client.data(data)
            run.record(time.perf_counter() - start, code)
            if code != 250:
                client.rset()


def spamc_worker(messages: list[bytes], run: Run) -> None:
    addr = parse_address(spamd_inet())
    for data in messages:
        start = time.perf_counter()
        proc = subprocess.run(
            ["spamc", "-c", "-d", addr.host, "-p", str(addr.port), "-t", "120"],
            input=data,
            capture_output=True,
            check=False,
        )
        # spamc -c: exit 0 ham, 1 spam; anything else is an error.
        run.record(time.perf_counter() - start, 250 if proc.returncode in (0, 1) else 451)


def measure(
    concurrency: int, messages: list[bytes], work: Callable[[list[bytes], Run], None]
) -> tuple[float, float, dict[int, int]]:
    shares = [messages[i::concurrency] for i in range(concurrency)]
    run = Run()
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(work, share, run) for share in shares]:
            future.result()
    wall = time.perf_counter() - start
    return len(messages) / wall, statistics.median(run.latencies) * 1000, run.codes


def main() -> None:
    if os.geteuid() != 0:
        raise RuntimeError("the private Postfix needs root")
    if not clamd_alive() or not spamd_alive():
        raise RuntimeError("clamd/spamd not answering: run `bash scripts/daemons start`")
    n = int(os.environ.get("MXSCAN_BENCH_MILTER_N", "200"))
    messages, source = load_messages(n)
    print(f"{n} messages from {source}; concurrency {CONCURRENCY}; cores {os.cpu_count()}")

    site = Path(tempfile.mkdtemp(prefix="bench-milter-site-"))
    install_slowplugin(site)
    configs = {
        "no-op": plain_config({"noop": {"plugin": "sleep", "seconds": 0}}),
        "clamav": seed_config(spamassassin=False, header_rules=False),
        "clamav+sa": seed_config(header_rules=False),
        "seed": seed_config(),
    }
    directory = socket_dir()
    milters: dict[str, MilterProcess] = {}
    sink = SMTPSink().start()
    postfix: PostfixInstance | None = None
    try:
        for name, config in configs.items():
            milters[name] = MilterProcess(
                config, directory, name=name.replace("+", "-"), pythonpath=[site]
            ).start()
        postfix = PostfixInstance(
            relay_port=sink.port,
            main_overrides={
                "default_process_limit": "200",
                "smtpd_client_connection_count_limit": "0",
                "smtpd_client_message_rate_limit": "0",
            },
        )
        ports = {"no milter": postfix.smtp_port}
        for name, milter in milters.items():
            ports[name] = postfix.add_smtpd_listener({"smtpd_milters": milter.address})
        postfix.start()

        for port in ports.values():  # warm up: imports, daemon connections, spamd children
            measure(4, messages[:8], lambda share, run, p=port: smtp_worker(p, share, run))

        rounds = int(os.environ.get("MXSCAN_BENCH_MILTER_ROUNDS", "2"))
        work: dict[str, Callable[[list[bytes], Run], None]] = {
            name: (lambda share, run, p=port: smtp_worker(p, share, run))
            for name, port in ports.items()
        }
        work["spamc -c"] = spamc_worker
        results: dict[tuple[str, int], float] = {}
        print(f"\n{rounds} round(s) per figure, setups alternating; median of the rounds")
        print(f"{'setup':<12} {'sessions':>8} {'msg/s':>8} {'median ms':>10}  replies")
        for concurrency in CONCURRENCY:
            runs: dict[str, list[tuple[float, float, dict[int, int]]]] = {w: [] for w in work}
            for i in range(rounds):
                # Alternate the order so drift (spamd's prefork scaling, other load)
                # hits every setup alike.
                for name in list(work) if i % 2 == 0 else list(reversed(work)):
                    runs[name].append(measure(concurrency, messages, work[name]))
            for name, got in runs.items():
                rate = statistics.median(r[0] for r in got)
                median = statistics.median(r[1] for r in got)
                codes: dict[int, int] = {}
                for r in got:
                    for code, count in r[2].items():
                        codes[code] = codes.get(code, 0) + count
                results[(name, concurrency)] = rate
                print(f"{name:<12} {concurrency:>8} {rate:>8.1f} {median:>10.1f}  {codes}")
        print()
        for concurrency in CONCURRENCY:
            noop = results[("no-op", concurrency)] / results[("no milter", concurrency)]
            sa = results[("clamav+sa", concurrency)] / results[("spamc -c", concurrency)]
            print(
                f"c={concurrency}: no-op/no-milter = {noop:.2f} (goal >= 0.5); "
                f"clamav+sa/spamc = {sa:.2f} (goal >= 0.9)"
            )
        for name, milter in milters.items():
            print(f"peak RSS of the {name} milter: {milter.kib('VmHWM') / 1024:.1f} MiB")
    finally:
        if postfix is not None:
            postfix.remove()
        for milter in milters.values():
            milter.stop()
        sink.stop()
        remove_dir(directory)
        shutil.rmtree(site, ignore_errors=True)


if __name__ == "__main__":
    main()
