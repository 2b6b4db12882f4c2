"""A private Haraka (npm, installed by scripts/install-haraka) on 127.0.0.1 that asks
``mxscan http`` through haraka-plugin-rspamd and relays to an SMTP sink.

Haraka looks up the client's reverse DNS on every connection unless a plugin
answers the ``lookup_rdns`` hook: a two-line local plugin answers it, so the
tests send no DNS query.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.daemons import daemons_required, run_dir
from tests.support.postfix import free_port

RDNS_PLUGIN = """\
exports.hook_lookup_rdns = function (next) { next(OK, 'localhost') }
"""


def _base() -> Path:
    return Path(os.environ.get("MXSCAN_HARAKA_DIR", str(run_dir() / "haraka")))


def haraka_binary() -> Path:
    base = _base()
    binary = base / "node_modules" / ".bin" / "haraka"
    if not binary.exists() or not (base / "node_modules" / "haraka-plugin-rspamd").is_dir():
        reason = f"Haraka is not installed in {base}: run scripts/install-haraka"
        if daemons_required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    if shutil.which("node") is None:
        pytest.fail("node is missing: run scripts/install-system-deps", pytrace=False)
    return binary


class Haraka:
    def __init__(self, directory: Path, *, rspamd_port: int, sink_port: int) -> None:
        binary = haraka_binary()
        self.port = free_port()
        config = directory / "config"
        (directory / "plugins").mkdir(parents=True)
        # Haraka's shipped defaults (connection.ini...), as `haraka -i` copies them.
        shutil.copytree(_base() / "node_modules" / "Haraka" / "config", config)
        (directory / "plugins" / "mxscan_rdns.js").write_text(RDNS_PLUGIN)
        files = {
            "me": "haraka.mxscan.test",
            "smtp.ini": f"listen=127.0.0.1:{self.port}\nnodes=\n",
            "plugins": "mxscan_rdns\nrcpt_to.in_host_list\nrspamd\nqueue/smtp_forward\n",
            "host_list": "example.com\nexample.net\n",
            "smtp_forward.ini": f"host=127.0.0.1\nport={sink_port}\nenable_tls=false\n",
            "rspamd.ini": (
                f"host=127.0.0.1\nport={rspamd_port}\n"
                "[check]\nlocal_ip=true\nprivate_ip=true\n"
                "[defer]\nerror=true\ntimeout=true\n"
            ),
            "log.ini": "[main]\nlevel=info\n",
        }
        for name, text in files.items():
            (config / name).write_text(text)
        self.log_path = directory / "haraka.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(binary), "-c", str(directory)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
        self._wait_listening(60)

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"Haraka exited: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"Haraka did not listen on {self.port}: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
