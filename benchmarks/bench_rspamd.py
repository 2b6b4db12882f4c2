"""Messages/second through a private Postfix 3.7 with clamav + rspamd in mxscan, next
to rspamd's own milter and to clamav + spamassassin in mxscan, and CPU ms per
message of each ``mxscan milter`` process.

Setups (one Postfix, one smtpd listener each, an aiosmtpd sink behind it):

* clamav+rspamd  - ``mxscan milter``: clamav and rspamd in one stage (concurrently),
                   rspamd's ``reject`` mapped to discard, its headers added;
* rspamd milter  - rspamd alone as Postfix's milter: its proxy worker in self-scan
                   mode, with the same clamd behind rspamd's antivirus module (a
                   second private rspamd, started by scripts/daemons with
                   MXSCAN_RSPAMD_MILTER_PORT and MXSCAN_RSPAMD_CLAMD);
* clamav+sa      - ``mxscan milter``: clamav and spamassassin in one stage.

Goals (issue 18): clamav+rspamd >= 0.9x rspamd milter, >= 3x clamav+sa.

Then memory: the plugin alone, in a fresh process, scanning a spooled message of
1 MiB and of 30 MiB against the private rspamd: its peak RSS must not grow with
the message (the body is streamed from the spool file).

Environment: MXSCAN_BENCH_RSPAMD_N (messages per run, default 200),
MXSCAN_BENCH_RSPAMD_ROUNDS (runs per figure, setups alternating, default 2),
MXSCAN_BENCH_RSPAMD_CONCURRENCY (SMTP sessions, default 4). Needs root and the
private clamd, spamd and rspamd (``bash scripts/daemons start``).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_milter import Run, load_messages, measure, smtp_worker
from tests.support.daemons import (
    clamd_alive,
    clamd_unix,
    rspamd_alive,
    rspamd_inet,
    spamd_alive,
)
from tests.support.milter import (
    MilterProcess,
    remove_dir,
    rspamd_seed_config,
    seed_config,
    socket_dir,
)
from tests.support.postfix import PostfixInstance
from tests.support.rspamd import private_rspamd
from tests.support.sink import SMTPSink

REPO = Path(__file__).resolve().parent.parent

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (the milter runs in one, no children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rspamd_config() -> dict[str, object]:
    """clamav + rspamd in one stage, rspamd's headers added (what its milter adds)."""
    data = rspamd_seed_config(add_headers=True)
    data["scanner"] = {k: v for k, v in data["scanner"].items() if k in ("clamav", "rspamd")}
    data["stage"] = [{"run": ["clamav", "rspamd"]}]
    return data


def write_message(path: Path, size: int) -> None:
    """A plain-text message of about ``size`` bytes, written without holding it."""
    line = b"An ordinary line of a long report, nothing to see here, move along.\r\n"
    with path.open("wb") as out:
        out.write(b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: big\r\n\r\n")
        for _ in range(size // len(line)):
            out.write(line)


def rss_child(path: str, address: str) -> None:
    """Child process: parse + scan one message with the plugin; memory as JSON."""
    from mxscan_rspamd import Rspamd

    from benchmarks import vmhwm_kib
    from mxscan import Message

    async def scan() -> str:
        scanner = Rspamd(address=address, timeout=300)
        try:
            return (await scanner.scan(message)).status
        finally:
            await scanner.aclose()

    baseline = vmhwm_kib()
    message = Message.from_file(path)
    start = time.perf_counter()
    status = asyncio.run(scan())
    seconds = time.perf_counter() - start
    print(json.dumps({"baseline_kib": baseline, "peak_kib": vmhwm_kib(), "size": message.size,
                      "spooled": message.body.spooled, "status": status, "scan_s": seconds}))  # fmt: skip


def memory() -> None:
    print("\nplugin alone, one message, fresh process (peak RSS):")
    with tempfile.TemporaryDirectory(prefix="bench-rspamd-mem-") as workdir:
        for mib in (1, 30):
            path = Path(workdir) / f"{mib}.eml"
            write_message(path, mib * 1024 * 1024)
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_rspamd", "--rss-child", str(path),
                 rspamd_inet()],
                capture_output=True, text=True, check=False, cwd=REPO,
            )  # fmt: skip
            if child.returncode:
                raise RuntimeError(f"RSS child failed: {child.stderr.strip()[-500:]}")
            data = json.loads(child.stdout)
            growth = (data["peak_kib"] - data["baseline_kib"]) / 1024
            print(
                f"  {data['size'] / 1048576:5.1f} MiB message (spooled: {data['spooled']}): "
                f"peak RSS {data['peak_kib'] / 1024:.1f} MiB, {growth:.1f} MiB over the "
                f"baseline after imports; rspamd: {data['status']} in {data['scan_s']:.2f}s"
            )


def main() -> None:
    if os.geteuid() != 0:
        raise RuntimeError("the private Postfix needs root")
    if not (clamd_alive() and spamd_alive() and rspamd_alive()):
        raise RuntimeError("clamd/spamd/rspamd not answering: run `bash scripts/daemons start`")
    n = int(os.environ.get("MXSCAN_BENCH_RSPAMD_N", "200"))
    rounds = int(os.environ.get("MXSCAN_BENCH_RSPAMD_ROUNDS", "2"))
    concurrency = int(os.environ.get("MXSCAN_BENCH_RSPAMD_CONCURRENCY", "4"))
    messages, source = load_messages(n)
    print(f"{n} messages from {source}; {concurrency} SMTP sessions; cores {os.cpu_count()}")

    configs = {"clamav+rspamd": rspamd_config(), "clamav+sa": seed_config(header_rules=False)}
    directory = socket_dir()
    milters: dict[str, MilterProcess] = {}
    sink = SMTPSink().start()
    postfix: PostfixInstance | None = None
    try:
        with private_rspamd(milter=True, clamd=clamd_unix().removeprefix("unix:")) as own:
            rspamd_milter = own.milter
            assert rspamd_milter is not None
            for name, config in configs.items():
                milters[name] = MilterProcess(
                    config, directory, name=name.replace("+", "-")
                ).start()
            postfix = PostfixInstance(
                relay_port=sink.port,
                main_overrides={
                    "default_process_limit": "200",
                    "smtpd_client_connection_count_limit": "0",
                    "smtpd_client_message_rate_limit": "0",
                },
            )
            ports = {"rspamd milter": postfix.add_smtpd_listener({"smtpd_milters": rspamd_milter})}
            for name, milter in milters.items():
                ports[name] = postfix.add_smtpd_listener({"smtpd_milters": milter.address})
            postfix.start()
            work: dict[str, Callable[[list[bytes], Run], None]] = {
                name: (lambda share, run, p=port: smtp_worker(p, share, run))
                for name, port in ports.items()
            }
            for job in work.values():  # warm up: imports, connections, spamd children
                measure(concurrency, messages[:8], job)

            print(f"\n{rounds} round(s) per figure, setups alternating; median of the rounds")
            print(
                f"{'setup':<14} {'msg/s':>8} {'median ms':>10} {'mxscan CPU ms/msg':>18}  replies"
            )
            rates: dict[str, float] = {}
            runs: dict[str, list[tuple[float, float, dict[int, int]]]] = {w: [] for w in work}
            cpu: dict[str, list[float]] = {w: [] for w in work}
            for i in range(rounds):
                for name in list(work) if i % 2 == 0 else list(reversed(work)):
                    milter = milters.get(name)
                    before = cpu_seconds(milter.pid) if milter else 0.0
                    runs[name].append(measure(concurrency, messages, work[name]))
                    if milter:
                        cpu[name].append((cpu_seconds(milter.pid) - before) * 1000 / n)
            for name, got in runs.items():
                rates[name] = statistics.median(r[0] for r in got)
                median = statistics.median(r[1] for r in got)
                codes: dict[int, int] = {}
                for r in got:
                    for code, count in r[2].items():
                        codes[code] = codes.get(code, 0) + count
                cpu_ms = f"{statistics.median(cpu[name]):.2f}" if cpu[name] else "-"
                print(f"{name:<14} {rates[name]:>8.1f} {median:>10.1f} {cpu_ms:>18}  {codes}")
            print()
            mine = rates["clamav+rspamd"]
            print(
                f"clamav+rspamd / rspamd milter = {mine / rates['rspamd milter']:.2f} (goal >= 0.9); "
                f"clamav+rspamd / clamav+sa = {mine / rates['clamav+sa']:.2f} (goal >= 3)"
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
    memory()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rss-child"]:
        rss_child(sys.argv[2], sys.argv[3])
    else:
        main()
