"""The function adapter: bytes, paths and files in; a Result out."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from mxscan import (
    Action,
    ConfigError,
    Envelope,
    HeaderEdit,
    Message,
    Pipeline,
    PolicyRouter,
    Verdict,
    api,
    ascan,
    scan,
)
from mxscan.testing import FakeEngine, StaticScanner

DATA = b"Subject: hi\r\n\r\nbody\r\n"


def pipeline() -> Pipeline:
    return Pipeline([[StaticScanner(name="tag", edits=(HeaderEdit.add("X-Tag", "1"),))]])


def test_scan_takes_bytes_path_and_file(tmp_path: Path) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(DATA)
    for source in (DATA, bytearray(DATA), path, str(path), io.BytesIO(DATA)):
        result = scan(source, config=pipeline())  # type: ignore[arg-type]
        assert result.action is Action.ACCEPT
        assert result.message.as_bytes() == b"Subject: hi\r\nX-Tag: 1\r\n\r\nbody\r\n"


def test_scan_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        scan(12345, config=pipeline())  # type: ignore[arg-type]


def test_envelope_reaches_scanners() -> None:
    engine = FakeEngine()
    scan(DATA, config=engine, envelope=Envelope(sender="a@example.com"))
    assert engine.messages[0].envelope.sender == "a@example.com"


async def test_ascan_inside_a_loop_and_scan_refuses_it() -> None:
    result = await ascan(DATA, config=pipeline())
    assert result.message.get("X-Tag") == "1"
    with pytest.raises(RuntimeError, match="await ascan"):
        scan(DATA, config=pipeline())


def test_default_config_missing_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MXSCAN_CONFIG", str(tmp_path / "none.toml"))
    with pytest.raises(ConfigError, match="none.toml does not exist"):
        scan(DATA)


def test_spool_settings_of_the_config_are_used(tmp_path: Path, testplugin: Path) -> None:
    """[spool] threshold and directory apply to messages mxscan.scan() reads."""
    spool = tmp_path / "spool"
    spool.mkdir()
    config = tmp_path / "mxscan.toml"
    config.write_text(
        f'[spool]\nthreshold = 100\ndirectory = "{spool}"\n'
        '[scanner.kw]\nplugin = "keyword"\nkeyword = "never-there"\n'
    )
    big = b"Subject: x\r\n\r\n" + b"y" * 1000
    result = scan(big, config=config)
    assert result.message.body.spooled
    spool_file = result.message.body._file  # the unlinked temporary file
    assert spool_file is not None
    assert os.readlink(f"/proc/self/fd/{spool_file.fileno()}").startswith(str(spool))
    small = scan(b"Subject: x\r\n\r\nshort\r\n", config=config)
    assert not small.message.body.spooled
    assert result.message.as_bytes() == big


class LoopRecorder:
    """Records the loop each scan runs on, and whether a scan was cancelled."""

    name = "loops"

    def __init__(self, sleep: float = 0.0, interrupt: bool = False) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.sleep = sleep
        self.interrupt = interrupt
        self.cancelled = 0
        self.finished = 0

    async def scan(self, message: Message) -> Verdict:
        loop = asyncio.get_running_loop()
        self.loops.append(loop)
        if self.interrupt:  # as Ctrl-C does: raised by the loop, outside the scan's task

            def ctrl_c() -> None:
                raise KeyboardInterrupt

            loop.call_soon(ctrl_c)
        try:
            await asyncio.sleep(self.sleep)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return Verdict()

    async def aclose(self) -> None:
        pass


def test_scan_keeps_one_loop_per_thread() -> None:
    recorder = LoopRecorder()
    engine = PolicyRouter(Pipeline([[recorder]]))
    scan(DATA, config=engine)
    scan(DATA, config=engine)
    first, second = recorder.loops
    assert first is second and not first.is_closed()  # a PolicyRouter's loop-bound state survives
    # The caller's own asyncio use is unaffected, and scan() still works after it.
    assert asyncio.run(ascan(DATA, config=engine)).action is Action.ACCEPT
    scan(DATA, config=engine)
    assert recorder.loops[3] is first
    # Another thread gets a loop of its own, closed when the thread ends.
    thread = threading.Thread(target=scan, args=(DATA,), kwargs={"config": engine})
    thread.start()
    thread.join()
    other = recorder.loops[4]
    assert other is not first
    gc.collect()
    assert other.is_closed()


def test_ctrl_c_mid_scan_cancels_the_scan_and_the_next_call_works() -> None:
    interrupted = LoopRecorder(sleep=30, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        scan(DATA, config=Pipeline([[interrupted]]))
    assert (interrupted.cancelled, interrupted.finished) == (1, 0)  # not left to run later
    fine = LoopRecorder(sleep=0.01)
    assert scan(DATA, config=Pipeline([[fine]])).action is Action.ACCEPT
    assert fine.finished == 1 and interrupted.finished == 0


INTERRUPT_SCRIPT = """
from mxscan import Pipeline, scan

class Interrupted:
    name = "interrupted"
    async def scan(self, message):
        raise KeyboardInterrupt  # as Ctrl-C landing while the scan's own code runs
    async def aclose(self):
        pass

try:
    scan(b"Subject: hi\\r\\n\\r\\n", config=Pipeline([[Interrupted()]]))
except KeyboardInterrupt:
    print("interrupted")
# At exit the thread's loop is closed and frees the finished task: asyncio logs
# "Task exception was never retrieved" then if nobody looked at its exception.
"""


def run_script(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,  # a guard against a hang, not a measurement
        check=True,
    )


def test_ctrl_c_inside_the_scan_leaves_no_error_at_exit() -> None:
    done = run_script(INTERRUPT_SCRIPT)
    assert done.stdout == "interrupted\n"
    assert "never retrieved" not in done.stderr


FORK_SCRIPT = """
import asyncio, os, queue, sys, threading
from mxscan import Pipeline, Verdict, scan
from mxscan.pipeline import Step

class ToThread:
    name = "to-thread"
    async def scan(self, message):
        # Woken by a worker thread through the loop's self-pipe and epoll set.
        await asyncio.to_thread(lambda: None)
        return Verdict(status="woken")
    async def aclose(self):
        pass

config = Pipeline([[Step(ToThread(), timeout=600)]])
DATA = b"Subject: hi\\r\\n\\r\\nbody\\r\\n"
jobs, done = queue.Queue(), queue.Queue()

def worker():  # another thread, with a loop of its own, alive across the fork
    while jobs.get():
        done.put(scan(DATA, config=config).verdicts[0].status)

threading.Thread(target=worker, daemon=True).start()
jobs.put(1)
print("thread", done.get(), flush=True)
print("before", scan(DATA, config=config).verdicts[0].status, flush=True)
pid = os.fork()
if pid == 0:
    print("child", scan(DATA, config=config).verdicts[0].status, flush=True)
    sys.exit(0)  # a normal exit: atexit closes what the child holds
os.waitpid(pid, 0)
print("parent", scan(DATA, config=config).verdicts[0].status, flush=True)
jobs.put(1)
print("thread after", done.get(), flush=True)
"""


def test_scan_works_in_a_forked_child_and_after_it_exits() -> None:
    # The child must not use the parent's loop (its epoll set, self-pipe and
    # executor threads are the parent's), nor, exiting, unregister the parent's
    # self-pipe from the epoll set they share.
    out = run_script(FORK_SCRIPT).stdout
    assert out.split("\n") == [
        "thread woken",
        "before woken",
        "child woken",
        "parent woken",
        "thread after woken",
        "",
    ]


class Stubborn(LoopRecorder):
    """Ignores the first cancellation and goes on for a while (bad scanner manners)."""

    async def scan(self, message: Message) -> Verdict:
        try:
            return await super().scan(message)
        except asyncio.CancelledError:
            await asyncio.sleep(1.0)
            self.finished += 1
            return Verdict()


def test_ctrl_c_does_not_wait_forever_for_a_scan_that_ignores_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api, "CANCEL_GRACE", 0.05)
    stubborn = Stubborn(sleep=30, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        scan(DATA, config=Pipeline([[stubborn]]))
    assert (stubborn.cancelled, stubborn.finished) == (1, 0)  # gave up waiting for it
    # The leftover ends during a later call, on the same loop.
    assert scan(DATA, config=Pipeline([[LoopRecorder(sleep=1.5)]])).action is Action.ACCEPT
    assert stubborn.finished == 1


# -- a configuration file's engine is built once, and rebuilt when it changes --


class Gated:
    """A plugin factory for these tests: each instance counts itself, records
    its close, and holds scans while ``gate`` is clear."""

    made: ClassVar[list[Gated]] = []
    gate: ClassVar[asyncio.Event | None] = None
    entered: ClassVar[asyncio.Event | None] = None

    def __init__(self, *, name: str, tag: str = "one") -> None:
        self.name = name
        self.tag = tag
        self.closed = False
        self.scanning = 0
        Gated.made.append(self)

    async def scan(self, message: Message) -> Verdict:
        self.scanning += 1
        if Gated.entered is not None:
            Gated.entered.set()
        if Gated.gate is not None:
            await Gated.gate.wait()
        assert not self.closed, "scanned on a closed engine"
        return Verdict(edits=(HeaderEdit.add("X-Tag", self.tag),))

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> type[Gated]:
    from mxscan import Registry
    from mxscan.config import model

    monkeypatch.setattr(Gated, "made", [])
    monkeypatch.setattr(Gated, "gate", None)
    monkeypatch.setattr(Gated, "entered", None)
    monkeypatch.setattr(model, "Registry", lambda: Registry({"gated": Gated}))
    return Gated


def write_config(path: Path, tag: str) -> None:
    path.write_text(f'[scanner.g]\nplugin = "gated"\ntag = "{tag}"\n')


@pytest.fixture
def path(tmp_path: Path, gated: type[Gated]) -> Path:
    """A configuration file whose scanner tags messages ``one``."""
    config = tmp_path / "mxscan.toml"
    write_config(config, "one")
    return config


def test_config_path_builds_one_engine_for_many_calls(path: Path, gated: type[Gated]) -> None:
    for _ in range(20):
        assert scan(DATA, config=path).message.get("X-Tag") == "one"
    assert scan(DATA, config=str(path)).message.get("X-Tag") == "one"  # same file, str or Path
    assert len(gated.made) == 1 and not gated.made[0].closed


def test_config_path_is_rebuilt_when_the_file_changes_and_the_old_engine_closed(
    tmp_path: Path, path: Path, gated: type[Gated]
) -> None:
    assert scan(DATA, config=path).message.get("X-Tag") == "one"
    write_config(path, "two")  # same size, same inode, same timestamp tick: the racy case
    assert scan(DATA, config=path).message.get("X-Tag") == "two"
    first, second = gated.made
    assert first.closed and not second.closed
    # Replaced by rename (a new inode), as editors and config management do.
    other = tmp_path / "new.toml"
    write_config(other, "six")
    other.replace(path)
    assert scan(DATA, config=path).message.get("X-Tag") == "six"
    assert second.closed and len(gated.made) == 3


def test_a_rewrite_within_one_timestamp_tick_is_seen_by_its_content(
    path: Path, gated: type[Gated], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same size, same inode, and a filesystem clock that did not move between
    the two writes: every stamp is equal, only the content tells."""
    frozen = api._stamp(str(path))
    monkeypatch.setattr(api, "_stamp", lambda p: frozen)
    assert scan(DATA, config=path).message.get("X-Tag") == "one"
    write_config(path, "two")
    assert scan(DATA, config=path).message.get("X-Tag") == "two"
    assert len(gated.made) == 2 and gated.made[0].closed


def test_an_unchanged_file_past_the_racy_window_is_not_read_again(
    path: Path, gated: type[Gated], monkeypatch: pytest.MonkeyPatch
) -> None:
    os.utime(path, ns=(0, 0))  # mtime long ago; ctime is now, so still racy
    monkeypatch.setattr(api, "RACY_NS", 0)  # ... and now it is not
    scan(DATA, config=path)
    reads: list[str] = []
    monkeypatch.setattr(api, "_digest", lambda p: reads.append(p))
    for _ in range(5):
        scan(DATA, config=path)
    assert reads == [] and len(gated.made) == 1


def test_the_retired_engine_closes_only_when_its_scan_in_flight_ends(
    path: Path, gated: type[Gated]
) -> None:

    async def main() -> None:
        gated.gate, gated.entered = asyncio.Event(), asyncio.Event()
        running = asyncio.ensure_future(ascan(DATA, config=path))
        await gated.entered.wait()
        write_config(path, "two")
        gated.gate.set()  # the new engine's scan does not wait
        assert (await ascan(DATA, config=path)).message.get("X-Tag") == "two"
        first = gated.made[0]
        assert not first.closed  # its scan is still running (the gate was set, not yet run)
        assert (await running).message.get("X-Tag") == "one"
        assert first.closed  # closed by the end of its last scan

    asyncio.run(main())
    assert gated.made[1].closed  # asyncio.run's shutdown closed the loop's engine


def test_a_broken_new_file_is_a_config_error_never_the_old_config(
    path: Path, gated: type[Gated]
) -> None:
    scan(DATA, config=path)
    path.write_text('[scanner.g]\nplugin = "gated"\ntag = \n')
    for _ in range(2):  # every call while the file is broken
        with pytest.raises(ConfigError, match="not valid TOML"):
            scan(DATA, config=path)
    assert gated.made[0].closed  # the stale engine is gone, not kept for later
    write_config(path, "two")
    assert scan(DATA, config=path).message.get("X-Tag") == "two"
    path.unlink()  # removed: an error too, not the engine it had
    with pytest.raises(ConfigError, match="no such configuration file"):
        scan(DATA, config=path)
    assert gated.made[1].closed


def test_each_thread_builds_its_own_engine_and_closes_it_when_the_thread_ends(
    path: Path, gated: type[Gated]
) -> None:
    scan(DATA, config=path)
    thread = threading.Thread(target=lambda: [scan(DATA, config=path) for _ in range(3)])
    thread.start()
    thread.join()
    gc.collect()
    mine, theirs = gated.made
    assert theirs.closed and not mine.closed
