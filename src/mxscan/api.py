"""The function adapter: ``mxscan.scan()`` and ``await mxscan.ascan()``."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import selectors
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, BinaryIO, TypeVar

import attrs

from .body import DEFAULT_SPOOL_THRESHOLD
from .config import DEFAULT_CONFIG, Config, default_config_path, load_config
from .engine import Engine
from .errors import ConfigError
from .message import Envelope, Message
from .pipeline import Pipeline
from .verdict import Result

__all__ = ["DEFAULT_CONFIG", "ascan", "default_config_path", "scan"]

T = TypeVar("T")
MessageSource = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO | Message
ConfigSource = str | os.PathLike[str] | Config | Engine | Pipeline | None


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


def _config(config: ConfigSource) -> Config | None:
    """The configuration to build from, or None for a ready Engine/Pipeline."""
    if isinstance(config, Engine | Pipeline):
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
        return load_config(path)
    if isinstance(config, str | os.PathLike):
        return load_config(config)
    raise TypeError(
        f"config must be a path, Config, Engine or Pipeline, not {type(config).__name__}"
    )


async def ascan(
    data: MessageSource, *, envelope: Envelope | None = None, config: ConfigSource = None
) -> Result:
    """Scan one message; the result holds the final verdict, every scanner's
    verdict and the final message (edits applied)."""
    parsed = _config(config)
    if parsed is None:
        engine = config if isinstance(config, Engine) else Engine(config)  # type: ignore[arg-type]
        return await engine.scan(_message(data, envelope, _Spool()))
    spool = _Spool(parsed.spool_threshold, parsed.spool_dir)
    engine = parsed.build()
    try:
        return await engine.scan(_message(data, envelope, spool))
    finally:
        await engine.aclose()


#: Seconds a scan interrupted by Ctrl-C gets to finish cancelling.
CANCEL_GRACE = 5.0


class _ThreadLoop:
    """The event loop ``scan`` runs on in one thread, kept between calls.

    ``asyncio.run()`` per call would build and tear down a loop (selector,
    self-pipe, executor shutdown) for every message, several times the cost of
    the scan itself with fast scanners, and would leave anything an Engine the
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
    """
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
