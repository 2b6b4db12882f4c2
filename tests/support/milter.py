"""`mxscan milter` as a real subprocess behind a private Postfix, for end-to-end tests
and the milter benchmark.

Why a subprocess: the seed's secondary MX is the shipped CLI with a TOML file, the
real plugins found through entry points, and Postfix talking to its unix socket; a
subprocess also has its own /proc/PID/status, so peak memory (VmHWM) and the uid
after ``--user`` are the milter's alone.

Configurations are built from ``examples/mxscan.toml`` itself (parsed, re-pointed at
the private daemons, written back), so the tests prove the configuration users copy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.daemons import (
    REPO_ROOT,
    clamd_inet,
    clamd_unix,
    rspamd_inet,
    run_dir,
    spamd_inet,
)

EXAMPLES = REPO_ROOT / "examples"
#: Logged once sockets are bound, privileges dropped and signal handlers installed.
READY = "ready (pid "
SLOWPLUGIN_DIST = REPO_ROOT / "tests" / "data" / "mxscan-slowplugin"


# ---------------------------------------------------------------- TOML


def _key(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").isalnum() else f'"{name}"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if "\n" in value:
            return '"""\n' + value.replace("\\", "\\\\").replace('"""', '\\"""') + '"""'
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """Enough TOML writing for mxscan configs: scalars, lists, tables, arrays of tables."""
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for name, value in data.items():
        if isinstance(value, Mapping) or (
            isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value)
        ):
            tables.append((name, value))
        else:
            lines.append(f"{_key(name)} = {_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for name, value in tables:
        path = f"{prefix}{_key(name)}"
        if isinstance(value, list):
            for item in value:
                out += f"\n[[{path}]]\n" + dump_toml(item, prefix=f"{path}.")
        else:
            out += f"\n[{path}]\n" + dump_toml(value, prefix=f"{path}.")
    return out


def seed_config(
    *,
    outbound: bool = True,
    spamassassin: bool = True,
    header_rules: bool = True,
    tag_always: bool = False,
    extra_stage: Mapping[str, Mapping[str, Any]] | None = None,
    clamav: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """examples/mxscan.toml pointed at the private clamd/spamd and the seed's header_checks.

    ``outbound=False`` drops the after-scanning header_checks stage (the scanners'
    headers then reach the recipient); ``tag_always`` removes ``tag_score`` so
    spamd's headers are added to ham too; ``extra_stage`` adds a last stage of
    ``{name: {plugin=..., ...}}``; ``clamav`` overrides clamav options.
    """
    data = tomllib.loads((EXAMPLES / "mxscan.toml").read_text())
    scanners: dict[str, Any] = data["scanner"]
    scanners["clamav"]["address"] = [clamd_unix(), clamd_inet()]
    scanners["clamav"].update(clamav or {})
    scanners["spamassassin"]["address"] = spamd_inet()
    scanners["outbound"]["file"] = str(EXAMPLES / "header_checks")
    if tag_always:
        del scanners["spamassassin"]["tag_score"]
    drop: set[str] = set()
    if not outbound:
        drop.add("outbound")
    if not spamassassin:
        drop.add("spamassassin")
        data.pop("policy", None)
    if not header_rules:
        drop |= {"inbound", "outbound"}
    for name in drop:
        del scanners[name]
    stages = [[n for n in stage["run"] if n not in drop] for stage in data["stage"]]
    if extra_stage:
        scanners.update({k: dict(v) for k, v in extra_stage.items()})
        stages.append(list(extra_stage))
    data["stage"] = [{"run": run} for run in stages if run]
    return data


def rspamd_seed_config(*, outbound: bool = True, add_headers: bool = False) -> dict[str, Any]:
    """``seed_config()`` with rspamd (the private one) in spamassassin's place, as
    docs/rspamd.md's "replacing the seed stack": reject -> discard, and rspamd's
    headers not added (the seed's header_checks knows SpamAssassin's only)."""
    data = seed_config(spamassassin=False, outbound=outbound)
    data["scanner"]["rspamd"] = {
        "plugin": "rspamd",
        "address": rspamd_inet(),
        "actions": {"reject": "discard"},
        "add_headers": add_headers,
    }
    for stage in data["stage"]:
        if "clamav" in stage["run"]:
            stage["run"].append("rspamd")
    return data


def plain_config(scanners: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One stage with the given scanners (e.g. the no-op ``sleep`` plugin)."""
    return {
        "scanner": {k: dict(v) for k, v in scanners.items()},
        "stage": [{"run": list(scanners)}],
    }


# ---------------------------------------------------------------- test plugin


def install_slowplugin(target: Path) -> Path:
    """pip-install tests/data/mxscan-slowplugin into ``target`` (put it on PYTHONPATH)."""
    if not (target / "mxscan_slowplugin").exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
             "--no-build-isolation", "--target", str(target), str(SLOWPLUGIN_DIST)],
            check=True,
        )  # fmt: skip
    return target


# ---------------------------------------------------------------- the process


def socket_dir() -> Path:
    """A fresh directory the postfix user can search (pytest's tmp_path is 0700)."""
    parent = run_dir()
    parent.mkdir(parents=True, exist_ok=True)
    parent.chmod(parent.stat().st_mode | 0o005)
    d = Path(tempfile.mkdtemp(prefix="milter-e2e-", dir=parent))
    d.chmod(0o755)
    return d


def remove_dir(path: Path) -> None:
    """Remove a socket_dir() (configs, logs) unless MXSCAN_KEEP_POSTFIX=1 asks to keep it."""
    if os.environ.get("MXSCAN_KEEP_POSTFIX") != "1":
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def milter_group() -> Iterator[list[MilterProcess]]:
    """A list for the milters a test starts: on exit, whatever the test did, each is
    stopped and its socket_dir() removed (the body of the e2e tests' ``milters``
    fixtures)."""
    started: list[MilterProcess] = []
    try:
        yield started
    finally:
        for milter in started:
            milter.stop()
        for directory in {milter.dir for milter in started}:
            remove_dir(directory)


class MilterProcess:
    """``python -m mxscan milter`` listening on ``unix:<dir>/mxscan.sock`` (group postfix)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        directory: Path,
        *,
        args: Sequence[str] = ("--socket-group", "postfix"),
        pythonpath: Sequence[Path] = (),
        name: str = "mxscan",
        python: str = sys.executable,
    ) -> None:
        #: ``python`` runs ``-m mxscan``: for ``--user``, give one that user can read
        #: (tests.support.service_install.service_venv_python), as a service would.
        self.python = python
        self.dir = directory
        self.sock = directory / f"{name}.sock"
        self.config_path = directory / f"{name}.toml"
        self.config_path.write_text(dump_toml(config))
        self.config_path.chmod(0o644)
        self.log_path = directory / f"{name}.log"
        self.args = list(args)
        self.pythonpath = [str(p) for p in pythonpath]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"unix:{self.sock}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        return [self.python, "-m", "mxscan", "milter", "--config", str(self.config_path),
                "--listen", self.address, *self.args]  # fmt: skip

    def start(self, timeout: float = 60) -> MilterProcess:
        env = dict(os.environ)
        paths = list(self.pythonpath)
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        ready = self.log().count(READY)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                cwd=self.dir,
            )  # fmt: skip
        # Wait for its "ready" line, not for the path: a stale socket may be there, and
        # signals sent before the handlers are installed would kill it.
        deadline = time.monotonic() + timeout
        while self.log().count(READY) <= ready:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"mxscan milter exited {self.proc.returncode} at start:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{self.sock} never appeared:\n{self.log()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (drain), SIGKILL if it lingers; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def status(self) -> dict[str, str]:
        """/proc/PID/status as a dict (VmHWM, VmRSS, Uid, Gid, ...)."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}

    def kib(self, field: str) -> int:
        return int(self.status()[field].split()[0])

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, needle: str, timeout: float = 30, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while self.log().count(needle) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not logged {count}x by mxscan:\n{self.log()}")
            time.sleep(0.05)
        return self.log()

    def __enter__(self) -> MilterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- the command


#: A one-rule configuration (header-rules discards Subject "discard-me"): the
#: smallest real pipeline for tests of the command rather than of scanning.
RULES = """
[scanner.rules]
plugin = "header-rules"
rules = '''
/^Subject:.*discard-me/ DISCARD
'''

[[stage]]
run = ["rules"]
"""


def milter_cli(*args: str) -> list[str]:
    """``python -m mxscan milter ARGS``."""
    return [sys.executable, "-m", "mxscan", "milter", *args]


async def cli_run(*args: str) -> tuple[int, str]:
    """Run ``mxscan milter ARGS`` to its exit (60 s at most): (status, stdout+stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *milter_cli(*args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()
