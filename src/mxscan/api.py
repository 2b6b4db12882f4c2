"""The function adapter: ``mxscan.scan()`` and ``await mxscan.ascan()``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import selectors
import threading
import time
import weakref
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import attrs

from .body import DEFAULT_SPOOL_THRESHOLD
from .config import DEFAULT_CONFIG, Config, default_config_path, load_config
from .errors import ConfigError
from .holder import EngineHolder
from .message import Envelope, Message
from .pipeline import Pipeline
from .router import PolicyRouter
from .verdict import Result

__all__ = ["DEFAULT_CONFIG", "ascan", "default_config_path", "scan"]

T = TypeVar("T")
MessageSource = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO | Message
ConfigSource = str | os.PathLike[str] | Config | PolicyRouter | Pipeline | None


@attrs.frozen
class _Spool:
    threshold: int = DEFAULT_SPOOL_THRESHOLD
    directory: str | None = None


def _message(data: MessageSource, envelope: Envelope | None, spool: _Spool) -> Message:
    """The message, read with the configuration's ``[spool]`` settings. A message
    created here is not closed after the scan: ``Result.message`` shares its body."""
    if isinstance(data, Message):
        return data if envelope is None else data.with_envelope(envelope)
    if isinstance(data, bytes | bytearray | memoryview):
        return Message.from_bytes(
            data, envelope=envelope, spool_threshold=spool.threshold, spool_dir=spool.directory
        )
    if isinstance(data, str | os.PathLike):
        return Message.from_file(
            data, envelope=envelope, spool_threshold=spool.threshold, spool_dir=spool.directory
        )
    if isinstance(data, io.IOBase) or hasattr(data, "read"):
        return Message.from_stream(
            data, envelope=envelope, spool_threshold=spool.threshold, spool_dir=spool.directory
        )
    raise TypeError(
        f"scan() takes bytes, a path, a binary file or a Message, not {type(data).__name__}"
    )


def _config(config: ConfigSource) -> Config | str | os.PathLike[str] | None:
    """What to build from: a Config, a file's path (built once, see
    ``_PathEngines``), or None for a ready PolicyRouter/Pipeline."""
    if isinstance(config, PolicyRouter | Pipeline):
        return None
    if isinstance(config, Config):
        return config
    if config is None:
        path = default_config_path()
        if not path.exists():
            raise ConfigError(
                f"no configuration given and {path} does not exist "
                "(pass config=..., or set MXSCAN_CONFIG)"
            )
        return path
    if isinstance(config, str | os.PathLike):
        return config
    raise TypeError(
        f"config must be a path, Config, PolicyRouter or Pipeline, not {type(config).__name__}"
    )


async def ascan(
    data: MessageSource, *, envelope: Envelope | None = None, config: ConfigSource = None
) -> Result:
    """Scan one message; the result holds the final verdict, every scanner's
    verdict and the final message (edits applied).

    With a configuration file's path (or none: ``$MXSCAN_CONFIG``), the engine
    built from it is kept for the next call on the same event loop, and rebuilt
    when the file changes; see the API page for the details. A `Config` is
    built (and closed) per call: pass a `PolicyRouter` to reuse one you built.
    """
    parsed = _config(config)
    if parsed is None:
        engine = config if isinstance(config, PolicyRouter) else PolicyRouter(config)  # type: ignore[arg-type]
        return await engine.scan(_message(data, envelope, _Spool()))
    if not isinstance(parsed, Config):
        loaded = await (await _path_engines()).get(parsed)
        async with loaded.holder.use() as engine:
            result = await engine.scan(_message(data, envelope, loaded.spool))
        # The engine this scan retired (its file changed meanwhile) is closed
        # before the call returns: no daemon connection outlives its config.
        await loaded.holder.wait_closed()
        return result
    spool = _Spool(parsed.spool_threshold, parsed.spool_dir)
    engine = parsed.build()
    try:
        return await engine.scan(_message(data, envelope, spool))
    finally:
        await engine.aclose()


#: A file whose last change is this recent may change again within the same
#: timestamp tick (ext4 stamps with a clock of a few ms, some filesystems with
#: seconds): until it is older, its content is compared too (git's "racy
#: clean" rule), so a same-size rewrite in the same tick is not missed.
RACY_NS = 2_000_000_000


def _stamp(path: str) -> tuple[int, ...] | None:
    """What a change to the file changes: device and inode (a file replaced by
    rename, a symlink pointed elsewhere), size, mtime and ctime (which nobody
    can set back, unlike mtime with ``touch -d`` or ``cp -p``)."""
    try:
        st = Path(path).stat()
    except OSError:
        return None  # load_config says why
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _digest(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fp:
            return hashlib.file_digest(fp, "sha256").digest()
    except OSError:
        return None


def _racy(stamp: tuple[int, ...]) -> bool:
    return time.time_ns() - max(stamp[3], stamp[4]) < RACY_NS


@attrs.define(eq=False)
class _Loaded:
    """One configuration file's engine, and what the file looked like when read."""

    holder: EngineHolder[PolicyRouter]
    spool: _Spool
    stamp: tuple[int, ...] | None
    #: The content's hash while the stamp is racy; None once it is not.
    digest: bytes | None

    def unchanged(self, path: str) -> bool:
        stamp = _stamp(path)
        if stamp is None or stamp != self.stamp:
            return False
        if self.digest is None:
            return True
        if _digest(path) != self.digest:
            return False
        if not _racy(stamp):
            self.digest = None  # any later change moves the stamp
        return True


def _key(config: str | os.PathLike[str]) -> str:
    return str(Path(config).absolute())  # symlinks not followed: see _PathEngines


class _PathEngines:
    """The engines built from configuration files, for one event loop.

    Per loop, because an engine's connections and concurrency bounds belong to
    the loop that made them (``scan`` runs one loop per thread, so each thread
    builds its own engine; a forked child, with a new loop, its own too).

    Keyed by the absolute path as given, not its symlink target: when an admin
    points a symlink at a new file, the stamp changes and this engine is
    rebuilt (keying by the target would keep the old target's engine for ever).
    """

    def __init__(self) -> None:
        self.loaded: dict[str, _Loaded] = {}
        #: Held here: the loop's own reference to it is weak.
        self.keeper: AsyncIterator[None] | None = None

    async def get(self, config: str | os.PathLike[str]) -> _Loaded:
        key = _key(config)
        loaded = self.loaded.get(key)
        if loaded is not None and loaded.unchanged(key):
            return loaded
        stamp = _stamp(key)
        digest = _digest(key) if stamp is not None and _racy(stamp) else None
        try:
            parsed = load_config(config)
            engine = parsed.build()
        except Exception:
            # Never a silent scan with the configuration the file no longer
            # says: each call raises until the file loads again, and the old
            # engine closes once its scans end.
            if loaded is not None:
                del self.loaded[key]
                loaded.holder.retire()
                await loaded.holder.wait_closed()
            raise
        if stamp != _stamp(key):
            stamp = None  # changed while read: read it again next time
        spool = _Spool(parsed.spool_threshold, parsed.spool_dir)
        if loaded is None:
            loaded = self.loaded[key] = _Loaded(EngineHolder(engine), spool, stamp, digest)
        else:
            loaded.spool, loaded.stamp, loaded.digest = spool, stamp, digest
            loaded.holder.replace(engine)
            await loaded.holder.wait_closed()
        return loaded

    async def aclose(self) -> None:
        loaded, self.loaded = list(self.loaded.values()), {}
        for entry in loaded:
            await entry.holder.aclose()


_engines_lock = threading.Lock()
_engines: dict[int, tuple[asyncio.AbstractEventLoop, _PathEngines]] = {}


def _after_fork_in_child() -> None:
    # The lock may have been held by another thread at fork. The table is
    # kept: dropping it would finalize the parent's loops' keepers here.
    global _engines_lock
    _engines_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


async def _path_engines() -> _PathEngines:
    """This loop's engines, closed when the loop shuts down.

    Closed through an async generator that lives as long as the loop's
    engines: ``asyncio.run`` (and ``scan``'s own loop, see ``_close_loop``)
    finishes every async generator of the loop with ``shutdown_asyncgens``
    before closing it, and this one's ``finally`` closes the engines then, on
    their own loop. A loop closed without that is dropped from the table the
    next time a loop is added, its engines unclosed (their loop is gone).
    """
    loop = asyncio.get_running_loop()
    with _engines_lock:
        found = _engines.get(id(loop))
        if found is not None and found[0] is loop:
            return found[1]
        for key, (other, _) in list(_engines.items()):
            if other.is_closed():
                del _engines[key]
        engines = _PathEngines()
        _engines[id(loop)] = (loop, engines)
    engines.keeper = _keep(loop, engines)
    await anext(engines.keeper)  # its first step: the loop now knows it
    return engines


async def _keep(loop: asyncio.AbstractEventLoop, engines: _PathEngines) -> AsyncIterator[None]:
    try:
        yield
    finally:
        with _engines_lock:
            if _engines.get(id(loop), (None, None))[1] is engines:
                del _engines[id(loop)]
        await engines.aclose()


#: Seconds a scan interrupted by Ctrl-C gets to finish cancelling.
CANCEL_GRACE = 5.0
#: Seconds the engines of a thread's loop get to close when the thread ends.
CLOSE_GRACE = 5.0


class _ThreadLoop:
    """The event loop ``scan`` runs on in one thread, kept between calls.

    ``asyncio.run()`` per call would build and tear down a loop (selector,
    self-pipe, executor shutdown) for every message, several times the cost of
    the scan itself with fast scanners, and would leave anything a PolicyRouter the
    caller reuses has bound to the first loop (an open connection, a queue) tied
    to a closed one. The loop is never made the thread's current loop, so the
    caller's own asyncio use is unaffected; it is closed when the thread ends.

    A forked child does not use its parent's loop: the epoll set and self-pipe
    would be shared with the parent and the executor's threads are not there
    (``_thread_loop`` makes a new one when the pid changes).
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.close = weakref.finalize(self, _close_loop, self.loop, self.pid)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        task = self.loop.create_task(coro)
        try:
            return self.loop.run_until_complete(task)
        except BaseException:
            # Ctrl-C (or another BaseException) stopped the loop mid-scan: cancel
            # the scan now rather than let it go on during the next call.
            if not task.done():
                # Bounded: an interrupt that landed inside the callback that was
                # to wake the scan can leave it never scheduled again.
                task.cancel()
                with contextlib.suppress(BaseException):
                    self.loop.run_until_complete(asyncio.wait({task}, timeout=CANCEL_GRACE))
            elif not task.cancelled():
                # Raised in the scan itself: it is re-raised here, so mark it
                # seen (asyncio.run does) or asyncio logs "Task exception was
                # never retrieved" when the loop closes.
                task.exception()
            raise


def _close_loop(loop: asyncio.AbstractEventLoop, pid: int) -> None:
    """Close a thread's loop when its thread ends (or at exit).

    In a forked child the loop's epoll set is the parent's: ``loop.close()``
    would unregister the parent's self-pipe from it, and the parent's loop
    would no longer wake for results from threads. So the child first swaps in
    a private selector, and closing then releases only its own descriptors.

    In the thread's own process, the engines built from configuration files
    on this loop are closed first (``_path_engines``), bounded by CLOSE_GRACE;
    not when this runs inside another running loop (a finalizer may), which
    would refuse to run this one.
    """
    mine = os.getpid() == pid and asyncio._get_running_loop() is None
    if mine and not loop.is_running() and not loop.is_closed():
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), CLOSE_GRACE))
    if os.getpid() != pid:
        selector = getattr(loop, "_selector", None)  # a selector loop's (not uvloop)
        if isinstance(selector, selectors.BaseSelector):
            selector.close()  # closes this process's epoll descriptor; no epoll_ctl
            setattr(loop, "_selector", selectors.DefaultSelector())  # noqa: B010
    if not loop.is_running():  # (inherited from a thread that was mid-scan at fork)
        loop.close()


_local = threading.local()


def _thread_loop() -> _ThreadLoop:
    runner: _ThreadLoop | None = getattr(_local, "runner", None)
    if runner is None or runner.pid != os.getpid():
        if runner is not None:
            runner.close()  # inherited over fork: let it go without touching the parent's
        runner = _local.runner = _ThreadLoop()
    return runner


def scan(
    data: MessageSource, *, envelope: Envelope | None = None, config: ConfigSource = None
) -> Result:
    """Blocking [`ascan`][mxscan.ascan] for code without an event loop. Each thread keeps
    one private event loop for its calls (so calling this in a loop is cheap)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _thread_loop().run(ascan(data, envelope=envelope, config=config))
    raise RuntimeError("mxscan.scan() was called inside a running event loop; await ascan()")
