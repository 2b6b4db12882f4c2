"""`mxscan milter` as a process: config errors, serving, SIGHUP reload, SIGTERM stop."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
from pathlib import Path

from tests.support import mta
from tests.support.milter import RULES
from tests.support.milter import cli_run as run
from tests.support.milter import milter_cli as cmd


async def test_bad_config_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[scanner.x\n")
    code, text = await run("--config", str(bad), "--listen", f"unix:{tmp_path}/s.sock")
    assert code == 2
    assert text.startswith("mxscan: error:") and "Traceback" not in text


async def test_bad_listen_address(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text(RULES)
    code, text = await run("--config", str(cfg), "--listen", "tcp:1.2.3.4")
    assert code == 2 and "Traceback" not in text


async def test_socket_path_that_is_a_file(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text(RULES)
    (tmp_path / "file").write_text("x")
    code, text = await run("--config", str(cfg), "--listen", f"unix:{tmp_path}/file")
    assert code == 2 and "not a socket" in text and "Traceback" not in text


async def test_socket_directory_that_does_not_exist_is_the_only_line(tmp_path: Path) -> None:
    """The one error, naming the path; no "drain timeout: 0 scans" before it."""
    cfg = tmp_path / "ok.toml"
    cfg.write_text(RULES)
    sock = tmp_path / "missing" / "milter.sock"
    code, text = await run("--config", str(cfg), "--listen", f"unix:{sock}")
    assert code == 2, text
    assert "drain" not in text and "Traceback" not in text, text
    (line,) = text.splitlines()[-1:]
    assert line.startswith("mxscan: error:") and str(sock.parent) in line, text


class Log:
    """The milter's stderr, read while it runs, so a test can wait for a line: the
    socket exists before privileges are dropped and the signal handlers are
    installed, and a reload finishes some time after SIGHUP is sent."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self.eof = False
        self._changed = asyncio.Event()
        self._task = asyncio.ensure_future(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace"))
            self._changed.set()
        self.eof = True
        self._changed.set()

    def text(self) -> str:
        return "".join(self.lines)

    async def wait_for(self, needle: str, count: int = 1, timeout: float = 60) -> None:
        """Until ``needle`` was logged ``count`` times (the timeout only turns a hang
        into a failure)."""
        try:
            async with asyncio.timeout(timeout):
                while self.text().count(needle) < count:
                    if self.eof:
                        raise AssertionError(f"mxscan exited before {needle!r}:\n{self.text()}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"{needle!r} not logged:\n{self.text()}") from None

    async def close(self) -> str:
        await self._task
        return self.text()


async def message(sock: Path, subject: str) -> list[tuple[bytes, bytes]]:
    client = await mta.MtaClient.open_unix(str(sock))
    try:
        await client.handshake()
        await client.send(mta.mail("s@example.org"), mta.rcpt("r@example.net"))
        await client.read()
        await client.send(*mta.message_packets(f"Subject: {subject}\r\n\r\nx\r\n".encode()))
        return await client.read_until_final()
    finally:
        await client.close()


async def test_serve_reload_and_stop(tmp_path: Path) -> None:
    cfg = tmp_path / "mxscan.toml"
    cfg.write_text(RULES)
    sock = tmp_path / "milter.sock"
    proc = await asyncio.create_subprocess_exec(
        *cmd("--config", str(cfg), "--listen", f"unix:{sock}", "--socket-mode", "0600"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    log = Log(proc.stderr)
    try:
        await log.wait_for("ready (pid ")  # bound, handlers installed: SIGHUP is safe
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert (await message(sock, "discard-me"))[-1] == (b"d", b"")
        assert (await message(sock, "reject-me"))[-1] == (b"c", b"")

        # A good reload changes the rules ...
        cfg.write_text(RULES.replace("discard-me/ DISCARD", "reject-me/ REJECT go away"))
        proc.send_signal(signal.SIGHUP)
        await log.wait_for("configuration reloaded from")
        last = (await message(sock, "reject-me"))[-1]
        assert last[0] == b"y" and b"go away" in last[1]
        # ... a bad one is logged and the running rules stay.
        cfg.write_text("this is not toml [")
        proc.send_signal(signal.SIGHUP)
        await log.wait_for("reload failed, keeping the old configuration")
        assert proc.returncode is None
        assert (await message(sock, "reject-me"))[-1][0] == b"y"

        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        assert proc.returncode == 0
        assert not sock.exists()
        assert "action=discard" in await log.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_limit_options_reach_the_server(tmp_path: Path) -> None:
    cfg = tmp_path / "mxscan.toml"
    cfg.write_text(RULES)
    sock = tmp_path / "milter.sock"
    proc = await asyncio.create_subprocess_exec(
        *cmd("--config", str(cfg), "--listen", f"unix:{sock}", "--max-headers", "3",
             "--max-header-bytes", "1k", "--idle-timeout", "0.5s"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    log = Log(proc.stderr)
    try:
        await log.wait_for("ready (pid ")
        assert (await message(sock, "fine"))[-1] == (b"c", b"")
        client = await mta.MtaClient.open_unix(str(sock))
        await client.handshake()
        await client.send(mta.mail("s@example.org"), mta.rcpt("r@example.net"))
        await client.read()
        await client.send(*mta.message_packets(b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\nx\r\n"))
        assert await client.read_until_final() == [(b"y", b"552 5.3.4 Message header too large\0")]
        # Then silence: the idle timeout closes it.
        assert (await client.read(wait=30))[1].startswith(b"451 4.4.2")
        await client.close()
        await log.wait_for("milter connection idle for 0.5s")
        for bad in (["--max-headers", "0"], ["--max-macro-bytes", "lots"]):
            code, text = await run("--config", str(cfg), "--listen", f"unix:{sock}2", *bad)
            assert code == 2 and "Traceback" not in text and bad[0] in text
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)


async def test_the_descriptor_limit_is_raised_for_max_connections(tmp_path: Path) -> None:
    # A service manager's soft limit is often 1024: 1,000 connections, each with a
    # spool file, would not fit and accept() would fail rather than tempfail.
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    need = 2 * 600 + 64
    expected = need if hard == resource.RLIM_INFINITY else min(need, hard)
    cfg = tmp_path / "mxscan.toml"
    cfg.write_text(RULES)
    sock = tmp_path / "milter.sock"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    proc = await asyncio.create_subprocess_exec(
        *cmd("--config", str(cfg), "--listen", f"unix:{sock}", "--max-connections", "600"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=low_limit,
    )
    assert proc.stderr is not None
    log = Log(proc.stderr)
    try:
        await log.wait_for("ready (pid ")
        limits = Path(f"/proc/{proc.pid}/limits").read_text()  # noqa: ASYNC240
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        assert int(line.split()[3]) == expected
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
