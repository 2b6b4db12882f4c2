"""A real rspamd killed (SIGKILL, no goodbye): the pipeline's on_error decides.

A private rspamd of its own (the shared one stays up for the other tests),
started by the same script, with the shared instance's hyperscan cache copied
in so it does not compile again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mxscan_rspamd import Rspamd
from rspamd_support import CLEAN, free_port

from mxscan import Action, Envelope, Message, Pipeline, Step
from tests.support.daemons import REPO_ROOT, run_dir
from tests.support.postfix import process_alive

pytestmark = pytest.mark.rspamd


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.fixture
def own_rspamd(rspamd: str) -> Iterator[tuple[str, Path]]:
    """(address, run dir) of a private rspamd started by scripts/daemons."""
    run = Path(tempfile.mkdtemp(prefix="mxscan-rspamd-test-"))
    run.chmod(0o755)
    shared_db = run_dir() / "rspamd" / "db"
    (run / "rspamd" / "db").mkdir(parents=True)
    for cached in shared_db.glob("*.hs*"):
        shutil.copy(cached, run / "rspamd" / "db")
    port = free_port()
    env = {
        **os.environ,
        "MXSCAN_RUN_DIR": str(run),
        "MXSCAN_RSPAMD_PORT": str(port),
        "MXSCAN_RSPAMD_CONTROLLER_PORT": str(free_port()),
    }
    script = str(REPO_ROOT / "scripts" / "daemons")
    subprocess.run(["bash", script, "start", "rspamd"], env=env, check=True, timeout=240)
    try:
        yield f"inet:127.0.0.1:{port}", run
    finally:
        subprocess.run(["bash", script, "stop", "rspamd"], env=env, check=False, timeout=60)
        shutil.rmtree(run, ignore_errors=True)


async def test_rspamd_killed_gives_on_error(own_rspamd: tuple[str, Path]) -> None:
    address, run = own_rspamd
    message = Message.from_bytes(CLEAN, envelope=Envelope(recipients=["bob@example.net"]))
    scanner = Rspamd(address=address, timeout=10)
    pipeline = Pipeline([[Step(scanner, timeout=10, on_error=Action.TEMPFAIL)]])
    before = await pipeline.run(message)
    assert before.action is Action.ACCEPT
    assert before.verdicts[0].status.startswith("no-action(")

    main = int((run / "rspamd.pid").read_text().strip())
    victims = [main, *_children(main)]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    for pid in victims:
        for _ in range(100):
            if not process_alive(pid):
                break
            await asyncio.sleep(0.05)

    after = await pipeline.run(message)
    await pipeline.aclose()
    assert after.action is Action.TEMPFAIL
    assert f"cannot reach rspamd: {address}" in after.verdicts[0].reason
    assert "refused" in after.verdicts[0].reason
