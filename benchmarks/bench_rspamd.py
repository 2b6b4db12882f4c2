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

Environment: MXSCAN_BENCH_RSPAMD_N (messages per run, default 200),
MXSCAN_BENCH_RSPAMD_ROUNDS (runs per figure, setups alternating, default 2),
MXSCAN_BENCH_RSPAMD_CONCURRENCY (SMTP sessions, default 4). Needs root and the
private clamd, spamd and rspamd (``bash scripts/daemons start``).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.bench_milter import Run, load_messages, measure, smtp_worker
from tests.support.daemons import (
    clamd_alive,
    clamd_unix,
    rspamd_alive,
    rspamd_inet,
    run_dir,
    spamd_alive,
)
from tests.support.postfix import PostfixInstance
from tests.support.sink import SMTPSink

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "adapters" / "milter"))

from milter_proc import MilterProcess, remove_dir, seed_config, socket_dir  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (the milter runs in one, no children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def rspamd_own_milter() -> Iterator[str]:
    """A second private rspamd whose proxy worker is the milter; yields its address."""
    run = Path(tempfile.mkdtemp(prefix="bench-rspamd-"))
    run.chmod(0o755)
    (run / "rspamd" / "db").mkdir(parents=True)
    for cached in (run_dir() / "rspamd" / "db").glob("*.hs*"):  # no second compile
        shutil.copy(cached, run / "rspamd" / "db")
    port = _free_port()
    env = {
        **os.environ,
        "MXSCAN_RUN_DIR": str(run),
        "MXSCAN_RSPAMD_PORT": str(_free_port()),
        "MXSCAN_RSPAMD_CONTROLLER_PORT": str(_free_port()),
        "MXSCAN_RSPAMD_MILTER_PORT": str(port),
        "MXSCAN_RSPAMD_CLAMD": clamd_unix().removeprefix("unix:"),
    }
    script = str(REPO / "scripts" / "daemons")
    try:
        subprocess.run(["bash", script, "start", "rspamd"], env=env, check=True, timeout=300)
        yield f"inet:127.0.0.1:{port}"
    finally:
        subprocess.run(["bash", script, "stop", "rspamd"], env=env, check=False, timeout=120)
        shutil.rmtree(run, ignore_errors=True)


def rspamd_config() -> dict[str, object]:
    data = seed_config(spamassassin=False, header_rules=False)
    scanners = data["scanner"]
    assert isinstance(scanners, dict)
    scanners["rspamd"] = {
        "plugin": "rspamd",
        "address": rspamd_inet(),
        "actions": {"reject": "discard"},
    }
    data["stage"] = [{"run": ["clamav", "rspamd"]}]
    return data


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
        with rspamd_own_milter() as rspamd_milter:
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


if __name__ == "__main__":
    main()
