"""`mxscan milter` as a process: config errors, serving, SIGHUP reload, SIGTERM stop."""

# ruff: noqa: ASYNC240  (tests may touch the filesystem synchronously)

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
from pathlib import Path

import milter_mta as mta

RULES = """
[scanner.rules]
plugin = "header-rules"
rules = '''
/^Subject:.*discard-me/ DISCARD
'''

[[stage]]
run = ["rules"]
"""


def cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mxscan", "milter", *args]


async def run(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd(*args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()


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


async def wait_for_socket(path: Path, proc: asyncio.subprocess.Process) -> None:
    for _ in range(200):
        if path.exists():
            return
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


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
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for_socket(sock, proc)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert (await message(sock, "discard-me"))[-1] == (b"d", b"")
        assert (await message(sock, "reject-me"))[-1] == (b"c", b"")

        # A good reload changes the rules ...
        cfg.write_text(RULES.replace("discard-me/ DISCARD", "reject-me/ REJECT go away"))
        proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            last = (await message(sock, "reject-me"))[-1]
            if last[0] == b"y":
                break
            await asyncio.sleep(0.05)
        assert last[0] == b"y" and b"go away" in last[1]
        # ... a bad one is logged and the running rules stay.
        cfg.write_text("this is not toml [")
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert proc.returncode is None
        assert (await message(sock, "reject-me"))[-1][0] == b"y"

        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        assert not sock.exists()
        log = err.decode()
        assert "reload failed, keeping the old configuration" in log
        assert "action=discard" in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
