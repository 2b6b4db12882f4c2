"""How long ``mxscan milter`` takes to exit on SIGTERM, with and without --metrics.

Issue 19: the metrics endpoint's HTTP thread used to hold every stop up for its
poll interval (0.5 s here, 2.4 s on a loaded machine). The figure is from SIGTERM
to the process's exit, idle (no scan in flight), after one scrape of the endpoint;
median and worst of several runs each.
"""

from __future__ import annotations

import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CONFIG = """
[scanner.rules]
plugin = "header-rules"
rules = '''
/^Subject:.*discard-me/ DISCARD
'''
"""
RUNS = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_time(directory: Path, metrics: bool) -> float:
    port = _free_port()
    args = [sys.executable, "-m", "mxscan", "milter", "-c", str(directory / "c.toml"),
            "--listen", f"unix:{directory}/m.sock"]  # fmt: skip
    if metrics:
        args += ["--metrics", f"inet:127.0.0.1:{port}"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    while b"ready (pid " not in (line := proc.stderr.readline()):
        if not line:
            raise RuntimeError("mxscan milter exited before it was ready")
    if metrics:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            r.read()
    time.sleep(0.3)
    start = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "c.toml").write_text(CONFIG)
        for metrics in (False, True):
            times = [_stop_time(directory, metrics) for _ in range(RUNS)]
            label = "with --metrics   " if metrics else "without --metrics"
            print(f"SIGTERM to exit, {label}: median {statistics.median(times) * 1000:.0f} ms, "
                  f"worst {max(times) * 1000:.0f} ms ({RUNS} runs)")  # fmt: skip


if __name__ == "__main__":
    main()
