"""``python -m mxscan smtp|lmtp`` as a real subprocess, and a private Postfix set up
with docs/snippets/{smtp,lmtp}-{main,master}.cf: the lines the documentation
shows are the lines the tested Postfix runs with (only the ports differ)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.support.daemons import REPO_ROOT, clamd_unix, spamd_inet
from tests.support.postfix import PostfixInstance, free_port
from tests.support.stderr import StderrLines

READY = "ready (pid "
SNIPPETS = REPO_ROOT / "docs" / "snippets"
FILTER_PORT, NEXT_PORT = "10024", "10025"
#: protocol -> (main.cf lines, master.cf lines) in docs/snippets/.
SNIPPET_FILES = {
    "smtp": ("smtp-main.cf", "smtp-master.cf"),
    "lmtp": ("lmtp-main.cf", "lmtp-master.cf"),
}


def full_config(*, clamd: str | None = None, extra: str = "") -> str:
    """ClamAV and SpamAssassin on the private daemons: a virus or a score of 15
    discards; lenient.example keeps spam (tagged) up to 2000."""
    return f"""
[defaults]
on_error = "tempfail"

[scanner.clamav]
plugin = "clamav"
address = "{clamd or clamd_unix()}"
on_infected = "discard"

[scanner.spamassassin]
plugin = "spamassassin"
address = "{spamd_inet()}"
tag_score = 2.0
spam_score = 5.0
discard_score = 15.0

[[stage]]
run = ["clamav", "spamassassin"]

[policy."example.jp"]
spamassassin.discard_score = 2000.0
{extra}"""


def snippet_main(name: str, filter_port: int) -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in (SNIPPETS / SNIPPET_FILES[name][0]).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    assert FILTER_PORT in settings["content_filter"], "the snippet changed its port"
    settings["content_filter"] = settings["content_filter"].replace(FILTER_PORT, str(filter_port))
    return settings


def snippet_master(name: str, next_port: int) -> list[str]:
    lines = [
        line
        for line in (SNIPPETS / SNIPPET_FILES[name][1]).read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return [line.replace(f"127.0.0.1:{NEXT_PORT} ", f"127.0.0.1:{next_port} ") for line in lines]


def filter_postfix(
    protocol: str, relay_port: int, **kw: object
) -> tuple[PostfixInstance, int, int]:
    """A Postfix whose content_filter is mxscan on a free port; (postfix, filter
    port, re-injection port). For LMTP the re-injection listener comes from the
    SMTP snippet, as docs/smtp.md says."""
    filter_port, next_port = free_port(), free_port()
    master = snippet_master("smtp", next_port)
    if protocol == "lmtp":
        master = snippet_master("lmtp", next_port) + [
            x for x in master if not x.startswith("mxscan ") and "smtp_" not in x
        ]
    overrides = snippet_main(protocol, filter_port)
    overrides.update(kw.pop("main_overrides", {}))  # type: ignore[arg-type]
    postfix = PostfixInstance(
        relay_port=relay_port,
        main_overrides=overrides,
        master_extra=master,
        **kw,  # type: ignore[arg-type]
    )
    return postfix, filter_port, next_port


class FilterProcess:
    """``mxscan smtp|lmtp`` on 127.0.0.1:port, next hop 127.0.0.1:next_port."""

    def __init__(
        self,
        protocol: str,
        config: str,
        directory: Path,
        port: int,
        next_port: int,
        *,
        args: Sequence[str] = (),
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "mxscan.toml"
        self.config_path.write_text(config)
        self.protocol, self.port, self.next_port, self.args = protocol, port, next_port, args
        self.stderr = StderrLines(f"mxscan {protocol}")
        self.lines = self.stderr.lines
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60) -> FilterProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mxscan", self.protocol, "-c", str(self.config_path),
             "-l", f"inet:127.0.0.1:{self.port}", "--next", f"inet:127.0.0.1:{self.next_port}",
             "--max-size", "200M", *self.args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self.stderr.follow(self.proc)
        self.wait_for(READY, timeout)
        return self

    def wait_for(self, text: str, timeout: float = 30) -> str:
        return self.stderr.wait_for(text, timeout)

    def log(self) -> str:
        return self.stderr.text()

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
