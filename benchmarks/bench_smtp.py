"""``mxscan smtp`` (after-queue content filter) next to ``mxscan milter`` and
``mxscan pipe`` on the same private Postfix, with the same ClamAV + SpamAssassin
configuration, and the filter's peak RSS on a 100 MB message.

Throughput: N messages submitted to Postfix by 4 and 16 concurrent clients. One
Postfix runs three smtpd listeners: ``content_filter = mxscan:[127.0.0.1]:PORT``
(docs/snippets/smtp-*.cf), ``smtpd_milters`` = a running ``mxscan milter``, and
``content_filter = mxscan-pipe:dummy`` (docs/snippets/pipe-*.cf, its service
renamed so it can sit beside the smtp one; ``mxscan pipe`` runs as ``nobody``
from a service install, re-injecting through sendmail/pickup). Each filter
transport gets maxproc 16 and a destination concurrency of 16. All three relay
to the same sink. Messages/second from the first submission to the last
delivery at the sink; latency per message from its submission to its arrival
at the sink (p50, p99), the arrival stamped by the sink itself. Each client
sends its next message only once its previous one has arrived, so every filter
has the same number of messages in flight (an open-loop burst would measure the
after-queue filter's queue, not its latency). A few messages through each path
warm it up first (connections, byte-code); then the filters take turns, in
rounds whose order alternates, so the load of whatever else runs on the machine
falls on all of them alike.

CPU ms/message: for smtp and milter the filter process's own utime + stime from
/proc/PID/stat over the run. For pipe, which is a new process per message, the
children's time (cutime + cstime) of this Postfix's pipe(8) processes: each
``mxscan pipe`` and the sendmail/postdrop it runs (``max_use`` is raised so no
pipe(8) process exits, with its children's time, during a run).

Memory: the filter's VmHWM after a 10 KB message and after a 100 MB one (spooled
as it arrives, streamed to the next hop); the difference must stay far below
100 MB.

Environment: MXSCAN_BENCH_SCALE multiplies the number of messages (default 1.0);
MXSCAN_BENCH_NO_MEMORY=1 skips the 100 MB message;
MXSCAN_BENCH_PROFILE=DIR runs ``mxscan smtp`` under cProfile and prints its top
functions (the profile file stays in DIR).
"""

from __future__ import annotations

import os
import pstats
import re
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import vmhwm_kib
from tests.support.daemons import (
    clamd_alive,
    clamd_unix,
    ham_message,
    run_dir,
    spamd_alive,
    spamd_inet,
)
from tests.support.postfix import PostfixInstance, free_port
from tests.support.sink import Delivery, SMTPSink

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "adapters" / "pipe"))

CONFIG = f"""
[defaults]
on_error = "tempfail"

[scanner.clamav]
plugin = "clamav"
address = "{clamd_unix()}"
on_infected = "discard"

[scanner.spamassassin]
plugin = "spamassassin"
address = "{spamd_inet()}"
tag_score = 2.0
discard_score = 15.0

[[stage]]
run = ["clamav", "spamassassin"]
"""
SNIPPETS = REPO / "docs" / "snippets"
CONCURRENCY = 16  # each filter transport's maxproc and destination concurrency
ROUNDS = 4  # see _compare
TOKEN = re.compile(rb"bench-[a-z0-9]+-\d+-\d+ ")


class Daemon:
    """``python -m mxscan ARGS`` until ``ready``; ``cpu()`` is its own CPU seconds."""

    def __init__(self, args: list[str], *, profile: Path | None = None) -> None:
        wrap = ["-m", "cProfile", "-o", str(profile)] if profile else []
        self.proc = subprocess.Popen(
            [sys.executable, *wrap, "-m", "mxscan", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stderr is not None
        lines = []
        for line in self.proc.stderr:
            lines.append(line)
            if "ready (pid" in line:
                break
        else:
            raise RuntimeError(f"mxscan {args[0]} did not start: {''.join(lines)}")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def cpu(self) -> float:
        return _proc_cpu(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def _proc_cpu(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PipeCpu:
    """CPU seconds of the processes this Postfix's pipe(8) services ran and reaped."""

    def __init__(self, postfix: PostfixInstance) -> None:
        self.postfix = postfix

    def cpu(self) -> dict[int, float]:
        """Children's CPU seconds by pipe(8) process."""
        master = self.postfix.master_pid()
        out = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (entry / "comm").read_text().strip() != "pipe":
                    continue
                fields = _stat(int(entry.name))
            except OSError:
                continue
            if int(fields[1]) == master:
                out[int(entry.name)] = (int(fields[13]) + int(fields[14])) / os.sysconf(
                    "SC_CLK_TCK"
                )
        return out


class TokenSink(SMTPSink):
    """The shared sink, plus the arrival time of each benchmark token, stamped
    when the message is stored (waiting clients are woken, nobody polls)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: dict[bytes, float] = {}
        self._arrived = threading.Condition()

    def _record(self, delivery: Delivery) -> None:
        now = time.monotonic()
        match = TOKEN.search(delivery.data)
        if match:  # not kept in the deliveries list: a run holds thousands
            with self._arrived:
                self.arrivals[match.group()] = now
                self._arrived.notify_all()
        else:
            super()._record(delivery)

    def wait(self, token: bytes, deadline: float) -> float:
        with self._arrived:
            if not self._arrived.wait_for(
                lambda: token in self.arrivals, max(0.0, deadline - time.monotonic())
            ):
                raise RuntimeError(f"{token!r} never arrived")
            return self.arrivals[token]


def _snippet_lines(name: str) -> list[str]:
    text = (SNIPPETS / name).read_text()
    return [x for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#")]


def _send(port: int, data: bytes) -> None:
    for _ in range(20):
        try:
            with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost", timeout=120) as c:
                c.sendmail("sender@example.org", ["rcpt@example.com"], data)
            return
        except (smtplib.SMTPException, OSError):
            time.sleep(0.5)
    raise RuntimeError("could not submit")


class FilterPath:
    """One filter path: its listener port and how to read its filter CPU."""

    def __init__(self, name: str, port: int, cpu: object) -> None:
        self.name, self.port, self._cpu = name, port, cpu

    def cpu_mark(self) -> object:
        if isinstance(self._cpu, Daemon):
            return self._cpu.cpu()
        assert isinstance(self._cpu, PipeCpu)
        return self._cpu.cpu()

    def cpu_since(self, mark: object) -> float:
        now = self.cpu_mark()
        if isinstance(now, float):
            assert isinstance(mark, float)
            return now - mark
        assert isinstance(now, dict) and isinstance(mark, dict)
        return sum(v - mark.get(pid, 0.0) for pid, v in now.items())


@dataclass
class Sample:
    """Runs of one filter at one concurrency, summed over the rounds."""

    messages: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def line(self, name: str, concurrency: int) -> str:
        lat = sorted(self.latencies)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return (
            f"{name:6s} c={concurrency:<3d} {self.rate:7.1f} msg/s  "
            f"p50 {statistics.median(lat) * 1000:6.0f} ms  p99 {p99 * 1000:6.0f} ms  "
            f"filter CPU {self.cpu * 1000 / self.messages:6.1f} ms/msg"
        )

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def _run(path: FilterPath, sink: TokenSink, n: int, concurrency: int, label: str,
         into: Sample) -> None:  # fmt: skip
    """``concurrency`` clients, each sending its next message once its previous one
    reached the sink: the same number of messages in flight for every filter."""
    tokens = [f"bench-{label}-{concurrency}-{i} " for i in range(n)]
    lock = threading.Lock()

    def client(share: list[str]) -> None:
        for token in share:
            data = ham_message().replace(b"Lunch", token.encode())
            t0 = time.monotonic()
            _send(path.port, data)
            arrived = sink.wait(token.encode(), t0 + 300)
            with lock:
                into.latencies.append(arrived - t0)

    shares = [tokens[i::concurrency] for i in range(concurrency)]
    mark = path.cpu_mark()
    t0 = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, shares))
    into.seconds += time.monotonic() - t0
    into.cpu += path.cpu_since(mark)
    into.messages += n


def _concurrency(line: str) -> str:
    """A master.cf line with maxproc 10 (the snippets') given maxproc CONCURRENCY."""
    return line.replace(" 10  ", f" {CONCURRENCY}  ")


def _pipe_setup(postfix: PostfixInstance, work: Path) -> tuple[list[str], dict[str, str]]:
    """docs/snippets/pipe-*.cf for ``mxscan pipe`` as nobody, its service renamed
    ``mxscan-pipe`` and its content_filter left to the listener."""
    from pipe_postfix import mxscan_for_pipe_user, snippet_master_cf, write_world_readable

    config = work / "pipe.toml"
    write_world_readable(config, CONFIG)
    master = snippet_master_cf(mxscan_for_pipe_user(), config, postfix.config_dir)
    master = [_concurrency(x.replace("mxscan    unix", "mxscan-pipe unix", 1)) for x in master]
    main = {}
    for line in _snippet_lines("pipe-main.cf"):
        key, _, value = line.partition("=")
        if key.strip() != "content_filter":
            main[key.strip().replace("mxscan_", "mxscan-pipe_")] = value.strip()
    main["mxscan-pipe_initial_destination_concurrency"] = str(CONCURRENCY)
    main["mxscan-pipe_destination_concurrency_limit"] = str(CONCURRENCY)
    return master, main


def throughput() -> None:
    from pipe_postfix import PipePostfix, alternate_config_directory

    scale = float(os.environ.get("MXSCAN_BENCH_SCALE", "1.0"))
    n = max(16, int(160 * scale))
    profile_dir = os.environ.get("MXSCAN_BENCH_PROFILE")
    profile = Path(profile_dir).resolve() / "smtp.prof" if profile_dir else None
    # Readable by nobody (mxscan pipe reads its configuration here).
    work = Path(tempfile.mkdtemp(prefix="bench-smtp-", dir=run_dir()))
    work.chmod(0o755)
    config = work / "mxscan.toml"
    config.write_text(CONFIG)
    sink = TokenSink().start()
    filter_port, next_port = free_port(), free_port()
    sock = work / "milter.sock"
    master = [
        _concurrency(x.replace("127.0.0.1:10025 ", f"127.0.0.1:{next_port} "))
        for x in _snippet_lines("smtp-master.cf")
    ]
    main = {}
    for line in _snippet_lines("smtp-main.cf"):
        key, _, value = line.partition("=")
        if key.strip() != "content_filter":  # per listener below
            value = value.strip()
            main[key.strip()] = str(CONCURRENCY) if value == "10" else value
    # No pipe(8) (or other) process exits during a run, taking its children's CPU
    # time with it.
    main["max_use"] = "100000"
    postfix = PipePostfix(relay_port=sink.port, master_extra=master, main_overrides=main)
    pipe_master, pipe_main = _pipe_setup(postfix, work)
    postfix.master_extra += pipe_master
    postfix.main_overrides.update(pipe_main)
    postfix.config_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(SNIPPETS / "mxscan-hold.regexp", postfix.config_dir)
    smtp_port = postfix.add_smtpd_listener({"content_filter": f"mxscan:[127.0.0.1]:{filter_port}"})
    milter_port = postfix.add_smtpd_listener({"smtpd_milters": f"unix:{sock}"})
    pipe_port = postfix.add_smtpd_listener({"content_filter": "mxscan-pipe:dummy"})
    smtp = milter = None
    try:
        smtp = Daemon(["smtp", "-c", str(config), "-l", f"inet:127.0.0.1:{filter_port}",
                       "--next", f"inet:127.0.0.1:{next_port}"], profile=profile)  # fmt: skip
        milter = Daemon(["milter", "-c", str(config), "-l", f"unix:{sock}",
                         "--socket-mode", "0666"])  # fmt: skip
        with alternate_config_directory(postfix.config_dir):
            postfix.start()
            paths = [
                FilterPath("milter", milter_port, milter),
                FilterPath("smtp", smtp_port, smtp),
                FilterPath("pipe", pipe_port, PipeCpu(postfix)),
            ]
            _compare(paths, sink, n)
    finally:
        for daemon in (smtp, milter):
            if daemon is not None:
                daemon.stop()
        postfix.remove()
        sink.stop()
        shutil.rmtree(work, ignore_errors=True)
    if profile is not None:
        print(f"\nmxscan smtp under cProfile ({profile}), by own time:")
        pstats.Stats(str(profile)).sort_stats("tottime").print_stats(25)


def _compare(paths: list[FilterPath], sink: TokenSink, n: int) -> None:
    """Each concurrency in ROUNDS rounds of n/ROUNDS messages per filter, the order
    of the filters reversed every round: the load of whatever else runs on the
    machine drifts, and a filter always measured last would carry the drift."""
    for path in paths:
        _run(path, sink, 8, 4, f"warm{path.name}", Sample())
    per_round = max(4, n // ROUNDS)
    print(f"{per_round * ROUNDS} messages per filter and concurrency ({ROUNDS} rounds), "
          f"ClamAV + SpamAssassin, one private Postfix (each filter transport: maxproc "
          f"{CONCURRENCY})", flush=True)  # fmt: skip
    for concurrency in (4, 16):
        samples = {path.name: Sample() for path in paths}
        for round_ in range(ROUNDS):
            for path in paths if round_ % 2 == 0 else paths[::-1]:
                label = f"{path.name}{round_}"
                _run(path, sink, per_round, concurrency, label, samples[path.name])
        for path in paths:
            print(samples[path.name].line(path.name, concurrency), flush=True)
        smtp = samples["smtp"].rate
        vs_milter = smtp / samples["milter"].rate
        vs_pipe = smtp / samples["pipe"].rate
        print(
            f"  c={concurrency}: smtp = {vs_milter:.2f}x milter (goal >= 0.95: "
            f"{'met' if vs_milter >= 0.95 else 'NOT met'}), {vs_pipe:.2f}x pipe "
            f"(goal >= 3: {'met' if vs_pipe >= 3 else 'NOT met'})",
            flush=True,
        )


def memory() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-smtp-mem-", dir=run_dir()))
    config = work / "mxscan.toml"
    config.write_text(CONFIG)
    sink = SMTPSink().start()
    port = free_port()
    daemon = Daemon(["smtp", "-c", str(config), "-l", f"inet:127.0.0.1:{port}",
                     "--next", f"inet:127.0.0.1:{sink.port}", "--max-size", "200M"])  # fmt: skip
    try:
        small = ham_message()
        line = b"z" * 76 + b"\r\n"
        big = small + line * (100 * 1024 * 1024 // len(line))
        _send(port, small)
        after_small = vmhwm_kib(daemon.proc.pid)
        t0 = time.perf_counter()
        _send(port, big)
        seconds = time.perf_counter() - t0
        after_big = vmhwm_kib(daemon.proc.pid)
        assert len(sink.deliveries) == 2 and sink.deliveries[1].data == big
        print(
            f"peak RSS of mxscan smtp: {after_small / 1024:.1f} MiB after a "
            f"{len(small)} byte message, {after_big / 1024:.1f} MiB after a "
            f"{len(big) / 1e6:.0f} MB one (+{(after_big - after_small) / 1024:.1f} MiB; "
            f"relayed byte-identical in {seconds:.1f} s)",
            flush=True,
        )
    finally:
        daemon.stop()
        sink.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if not (clamd_alive() and spamd_alive()):
        raise RuntimeError("clamd and spamd must run (bash scripts/daemons start)")
    if not os.environ.get("MXSCAN_BENCH_NO_MEMORY"):
        memory()
    throughput()


if __name__ == "__main__":
    main()
