"""Helpers of the fault tests: a misbehaving daemon process, process probes, SMTP.

Why raw SMTP here rather than PostfixInstance.send: a fault test needs the reply
the client saw at every step (4xx at DATA means the client keeps the message; a
connection drop mid-DATA is itself a fault under test).
"""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.child import child_env, module_argv
from tests.support.daemons import clamd_inet, require_daemon, spamd_inet
from tests.support.postfix import free_port

if TYPE_CHECKING:
    from tests.support.pipe_postfix import PipePostfix


#: Figures to show in the pytest summary (CI's log), not only with -s.
FIGURES: list[str] = []


def figure(line: str) -> None:
    """Print a measured figure and keep it for the end-of-run summary."""
    line = line.strip("\n")
    print("\n" + line)
    FIGURES.append(line)


class FaultProxy:
    """``tests.support.proxy`` on 127.0.0.1:port in front of ``upstream``; mode switchable
    by restarting it (the port stays the same, so mxscan's config does not change)."""

    def __init__(self, upstream: str, port: int | None = None) -> None:
        self.upstream = upstream
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.mode: str | None = None

    @property
    def address(self) -> str:
        """mxscan's (Postfix-style) address of the proxy."""
        return f"inet:127.0.0.1:{self.port}"

    def start(self, mode: str = "pass") -> FaultProxy:
        self.stop()
        self.proc = subprocess.Popen(
            module_argv("proxy", f"127.0.0.1:{self.port}", self.upstream, mode),
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == b"READY", f"fault proxy did not start: {line!r}"
        self.mode = mode
        return self

    def wait_got(self, timeout: float = 30) -> None:
        """Block until a request reached the proxy (mode ``stall``)."""
        assert self.proc is not None and self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        deadline = time.monotonic() + timeout
        buf = b""
        while b"GOT" not in buf:
            assert time.monotonic() < deadline, "no request reached the fault proxy"
            chunk = self.proc.stdout.read()
            if chunk:
                buf += chunk
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: the daemon dies with connections open."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            self.kill()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None
            self.mode = None


@contextmanager
def scanner_proxies() -> Iterator[dict[str, FaultProxy]]:
    """A proxy in front of the test clamd (clamd_inet()) and one in front of spamd,
    keyed by mxscan's scanner name, started in mode ``pass``; stopped on exit.
    Skips (fails under MXSCAN_REQUIRE_DAEMONS=1) when a daemon they front is absent."""
    for kind in ("clamd-inet", "spamd"):
        require_daemon(kind)
    proxies = {
        "clamav": FaultProxy(clamd_inet().removeprefix("inet:")),
        "spamassassin": FaultProxy(spamd_inet().removeprefix("inet:")),
    }
    try:
        for proxy in proxies.values():
            proxy.start("pass")
        yield proxies
    finally:
        for proxy in proxies.values():
            proxy.stop()


# ---------------------------------------------------------------- /proc probes


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pid: int) -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return sorted(out)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


# ---------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class Reply:
    code: int
    text: str


def smtp_send(
    port: int,
    message: bytes,
    *,
    sender: str = "sender@example.org",
    recipients: tuple[str, ...] = ("rcpt@example.com",),
    timeout: float = 120,
) -> Reply:
    """One SMTP transaction; the reply to DATA (or to the command that refused)."""
    with smtplib.SMTP(
        "127.0.0.1", port, local_hostname="client.mxscan.test", timeout=timeout
    ) as client:
        client.ehlo("client.mxscan.test")
        code, text = client.mail(sender)
        if code != 250:
            return Reply(code, text.decode("utf-8", "replace"))
        for rcpt in recipients:
            code, text = client.rcpt(rcpt)
            if code not in (250, 251):
                return Reply(code, text.decode("utf-8", "replace"))
        code, text = client.data(message)
    return Reply(code, text.decode("utf-8", "replace"))


class LogCursor:
    """New lines of a growing log file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new(self) -> list[str]:
        try:
            with self.path.open("rb") as fp:
                fp.seek(self.offset)
                data = fp.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        return data[:end].decode("utf-8", "replace").splitlines()

    def wait(self, needle: str, timeout: float = 30) -> Iterator[str]:
        """Lines read until one contains ``needle`` (AssertionError on timeout)."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            lines = self.new()
            seen += lines
            if any(needle in line for line in lines):
                return iter(seen)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{needle!r} not logged in {timeout:g}s; got:\n" + "\n".join(seen)
                )
            time.sleep(0.05)


# ---------------------------------------------------------------- pipe(8) setup


def pipe_config(*, clamd: str, spamd: str) -> str:
    """The pipe tests' mxscan.toml (pipe_postfix.mxscan_config) with these daemon addresses."""
    from tests.support.pipe_postfix import mxscan_config

    text = mxscan_config(clamd=clamd)
    old = f'address = "{spamd_inet()}"'
    assert old in text, old
    return text.replace(old, f'address = "{spamd}"')


@contextmanager
def logged_pipe_postfix(relay_port: int, config_text: str) -> Iterator[tuple[PipePostfix, Path]]:
    """The docs' pipe(8) setup (tests/support/pipe_postfix.py) with mxscan.toml
    holding ``config_text``, started; yields it and the file that ``mxscan pipe``'s
    stderr (its per-message log line) is appended to. Removed on exit."""
    import shutil

    from tests.support.pipe_postfix import (
        SNIPPETS,
        PipePostfix,
        alternate_config_directory,
        mxscan_for_pipe_user,
        snippet_main_cf,
        snippet_master_cf,
        write_mxscan_config,
    )

    mxscan = mxscan_for_pipe_user()
    postfix = PipePostfix(relay_port=relay_port, main_overrides=snippet_main_cf())
    postfix.config_dir.mkdir(parents=True, exist_ok=True)
    log = postfix.dir / "mxscan-pipe.log"
    log.touch()
    log.chmod(0o666)
    wrapper = postfix.dir / "mxscan-logged"
    wrapper.write_text(f'#!/bin/sh\nexec {mxscan} "$@" 2>>{log}\n')
    wrapper.chmod(0o755)
    config = postfix.dir / "mxscan.toml"
    write_mxscan_config(config, config_text)
    postfix.master_extra = snippet_master_cf(str(wrapper), config, postfix.config_dir)
    shutil.copy(SNIPPETS / "mxscan-hold.regexp", postfix.config_dir)
    with alternate_config_directory(postfix.config_dir):
        try:
            postfix.start()
            yield postfix, log
        finally:
            postfix.remove()
