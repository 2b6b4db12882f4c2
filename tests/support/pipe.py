"""Run ``python -m mxscan pipe`` as Postfix would, with a fake plugin and sendmail."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.child import child_env, module_argv


@dataclass(frozen=True)
class Sent:
    argv: list[str]
    data: bytes

    @property
    def sender(self) -> str:
        return self.argv[self.argv.index("-f") + 1]

    @property
    def recipients(self) -> list[str]:
        return self.argv[self.argv.index("--") + 1 :]


def install_fake_plugin(site: Path) -> Path:
    """A dist-info with an ``mxscan.scanners`` entry point: importlib.metadata finds
    it on sys.path exactly as it finds a pip-installed plugin."""
    info = site / "mxscan_pipe_fake-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mxscan-pipe-fake\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[mxscan.scanners]\npipe-fake = tests.support.fake_plugin:Fake\n"
        "pipe-broken = tests.support.fake_plugin:broken\n"
    )
    return site


class PipeRunner:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.site = install_fake_plugin(tmp / "site")
        self.outbox = tmp / "outbox"
        self.outbox.mkdir()
        self.config = tmp / "mxscan.toml"
        self.sendmail_status = 0

    def write_config(self, text: str) -> Path:
        self.config.write_text(text)
        return self.config

    def sendmail(self, status: int | None = None) -> str:
        code = self.sendmail_status if status is None else status
        return " ".join(module_argv("fake_sendmail", str(self.outbox), str(code)))

    def env(self) -> dict[str, str]:
        env = child_env(str(self.site))
        env.pop("MXSCAN_CONFIG", None)
        return env

    def argv(self, *args: str, sendmail: bool = True) -> list[str]:
        base = [sys.executable, "-m", "mxscan", "pipe", "--config", str(self.config)]
        if sendmail:
            base += ["--sendmail", self.sendmail()]
        return [*base, *args]

    def run(
        self, message: bytes, *args: str, sendmail: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.argv(*args, sendmail=sendmail),
            input=message,
            capture_output=True,
            env=self.env(),
            timeout=timeout,
            cwd=self.tmp,
        )

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv(*args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env(),
            cwd=self.tmp,
        )

    def sent(self) -> list[Sent]:
        records = []
        for path in sorted(self.outbox.glob("*.json"), key=lambda p: int(p.stem)):
            item = json.loads(path.read_text())
            records.append(Sent(item["argv"], base64.b64decode(item["data"])))
        return records


def fake_config(action: str = "accept", **options: object) -> str:
    """One fake scanner, ``on_error = "tempfail"``."""
    lines = [
        '[defaults]\non_error = "tempfail"\ntimeout = "20s"\n',
        "[scanner.fake]",
        'plugin = "pipe-fake"',
        f'action = "{action}"',
    ]
    for key, value in options.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"
