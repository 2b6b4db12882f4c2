"""``python -m mxscan http`` as a real subprocess on 127.0.0.1, for the end-to-end
tests with real clients (rspamc, Haraka) and the benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.support.daemons import clamd_unix, spamd_inet
from tests.support.postfix import free_port
from tests.support.stderr import StderrLines

READY = "ready (pid "


def full_config() -> str:
    """ClamAV and SpamAssassin against the private daemons, with actions a client can
    see: a virus or a score of 15 is rejected."""
    return f"""
[scanner.clamav]
plugin = "clamav"
address = "{clamd_unix()}"
on_infected = "reject"

[scanner.spamassassin]
plugin = "spamassassin"
address = "{spamd_inet()}"
reject_score = 15.0

[[stage]]
run = ["clamav", "spamassassin"]
"""


class HttpProcess:
    """Started by the constructor; ``port`` is where it listens once ``ready``."""

    def __init__(
        self,
        config: str,
        directory: Path,
        *,
        args: Sequence[str] = (),
        timeout: float = 30,
        prefix: Sequence[str] = (),
        pythonpath: Sequence[Path] = (),
    ) -> None:
        """``prefix``: a command to run it under (the benchmark's ``taskset``);
        ``pythonpath``: extra plugin directories (the benchmark's no-op scanner)."""
        self.dir = directory
        self.config_path = directory / "mxscan.toml"
        self.config_path.write_text(config)
        self.port = free_port()
        self.stderr = StderrLines("mxscan http")
        self.lines = self.stderr.lines
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        paths = [str(p) for p in pythonpath]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(paths)
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "mxscan", "http", "-c", str(self.config_path),
             "-l", f"inet:127.0.0.1:{self.port}", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )  # fmt: skip
        self.stderr.follow(self.proc)
        self.wait_for(READY, timeout)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        return self.stderr.wait_for(text, timeout)

    def log(self) -> str:
        return self.stderr.text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
