"""``mxscan smtp`` (after-queue content filter) next to ``mxscan milter`` on the same
private Postfix, with the same ClamAV + SpamAssassin configuration, and the
filter's peak RSS on a 100 MB message.

Throughput: N messages submitted to Postfix by 4 and 16 concurrent clients, one
smtpd listener with ``content_filter = mxscan:[127.0.0.1]:PORT`` (the lines of
docs/snippets/smtp-*.cf; the transport's maxproc is 16) and one with
``smtpd_milters`` = a running ``mxscan milter``; both relay to the same sink.
Messages/second from the first submission to the last delivery at the sink;
latency per message from its submission to its arrival at the sink (p50, p99).
Each client sends its next message only once its previous one has arrived, so
both filters have the same number of messages in flight (an open-loop burst
would measure the after-queue filter's queue, not its latency).
CPU ms/message is the filter process's own utime + stime from /proc/PID/stat over
the run, divided by the messages: the filter alone, not Postfix or the daemons.

The pipe filter is not in this run: its re-injection needs the system sendmail
pointed at the private Postfix (alternate_config_directories in
/etc/postfix/main.cf), which only the pipe adapter's own tests set up;
bench_pipe prints its figures next to the milter's on the same messages.

Memory: the filter's VmHWM after a 10 KB message and after a 100 MB one (spooled
as it arrives, streamed to the next hop); the difference must stay far below
100 MB.

Environment: MXSCAN_BENCH_SCALE multiplies the number of messages (default 1.0).
"""

from __future__ import annotations

import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
from tests.support.sink import SMTPSink

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
SNIPPETS = Path(__file__).resolve().parent.parent / "docs" / "snippets"


class Daemon:
    """``python -m mxscan ARGS`` until ``ready``; ``cpu()`` is its own CPU seconds."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mxscan", *args],
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
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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


def _run(name: str, port: int, sink: SMTPSink, daemon: Daemon, n: int, concurrency: int) -> str:
    """``concurrency`` clients, each sending its next message once its previous one
    reached the sink: the same number of messages in flight for either filter."""
    tokens = [f"bench-{name}-{concurrency}-{i}" for i in range(n)]
    latencies: list[float] = []
    lock = threading.Lock()

    def arrived(token: bytes, deadline: float) -> None:
        while time.monotonic() < deadline:
            if any(token in d.data for d in sink.deliveries):
                return
            time.sleep(0.005)
        raise RuntimeError(f"{name}: {token!r} never arrived")

    def client(share: list[str]) -> None:
        for token in share:
            data = ham_message().replace(b"Lunch", token.encode() + b" ")
            t0 = time.monotonic()
            _send(port, data)
            arrived(token.encode() + b" ", t0 + 300)
            with lock:
                latencies.append(time.monotonic() - t0)

    shares = [tokens[i::concurrency] for i in range(concurrency)]
    cpu0 = daemon.cpu()
    t0 = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, shares))
    elapsed = time.monotonic() - t0
    cpu = daemon.cpu() - cpu0
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    line = (
        f"{name:6s} c={concurrency:<3d} {n / elapsed:7.1f} msg/s  "
        f"p50 {statistics.median(latencies) * 1000:6.0f} ms  p99 {p99 * 1000:6.0f} ms  "
        f"filter CPU {cpu * 1000 / n:5.1f} ms/msg"
    )
    print(line, flush=True)
    return line


def throughput() -> None:
    scale = float(os.environ.get("MXSCAN_BENCH_SCALE", "1.0"))
    n = max(16, int(160 * scale))
    work = Path(tempfile.mkdtemp(prefix="bench-smtp-", dir=run_dir()))
    work.chmod(0o755)
    config = work / "mxscan.toml"
    config.write_text(CONFIG)
    sink = SMTPSink().start()
    filter_port, next_port = free_port(), free_port()
    sock = work / "milter.sock"
    master = [
        x.replace("127.0.0.1:10025 ", f"127.0.0.1:{next_port} ").replace(" 10  ", " 16  ")
        for x in _snippet_lines("smtp-master.cf")
    ]
    main = {}
    for line in _snippet_lines("smtp-main.cf"):
        key, _, value = line.partition("=")
        if key.strip() != "content_filter":  # per listener below
            main[key.strip()] = value.strip().replace("10", "16")
    postfix = PostfixInstance(relay_port=sink.port, master_extra=master, main_overrides=main)
    smtp_port = postfix.add_smtpd_listener({"content_filter": f"mxscan:[127.0.0.1]:{filter_port}"})
    milter_port = postfix.add_smtpd_listener({"smtpd_milters": f"unix:{sock}"})
    smtp = milter = None
    try:
        smtp = Daemon(["smtp", "-c", str(config), "-l", f"inet:127.0.0.1:{filter_port}",
                       "--next", f"inet:127.0.0.1:{next_port}"])  # fmt: skip
        milter = Daemon(["milter", "-c", str(config), "-l", f"unix:{sock}",
                         "--socket-mode", "0666"])  # fmt: skip
        postfix.start()
        print(f"{n} messages per run, ClamAV + SpamAssassin, one private Postfix", flush=True)
        for concurrency in (4, 16):
            _run("milter", milter_port, sink, milter, n, concurrency)
            _run("smtp", smtp_port, sink, smtp, n, concurrency)
    finally:
        for daemon in (smtp, milter):
            if daemon is not None:
                daemon.stop()
        postfix.remove()
        sink.stop()


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


def main() -> None:
    if not (clamd_alive() and spamd_alive()):
        raise RuntimeError("clamd and spamd must run (bash scripts/daemons start)")
    memory()
    throughput()


if __name__ == "__main__":
    main()
