"""Core throughput: Message parsing + pipeline with no-op scanners, and memory for
a 100 MB message (which must stay flat: the body is spooled, never held)."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import tempfile
import textwrap
import time

import mxscan
from mxscan import HeaderEdit, Message, Pipeline
from mxscan.testing import StaticScanner

TARGET = 20_000  # msg/s, no-op scanners, one core


def message_10k() -> bytes:
    headers = b"".join(b"X-Header-%02d: value number %d for the benchmark\r\n" % (i, i)
                       for i in range(20))  # fmt: skip
    body = (b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n" * 200)[:10_000]
    return (
        b"From: a@example.com\r\nTo: b@example.net\r\nSubject: bench\r\n" + headers + b"\r\n" + body
    )


def NoOp(name: str, edits: tuple[HeaderEdit, ...] = ()) -> StaticScanner:
    return StaticScanner(name=name, edits=edits, record=False)


async def _rate(pipeline: Pipeline, data: bytes, seconds: float = 2.0) -> float:
    engine = mxscan.PolicyRouter(pipeline)
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            result = await engine.scan(Message.from_bytes(data))
            result.message.as_bytes()
        count += 200
    return count / (time.perf_counter() - start)


def _sync_rate(
    config: Pipeline | mxscan.PolicyRouter | str, data: bytes, seconds: float = 1.0
) -> float:
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        mxscan.scan(data, config=config)
        count += 1
    return count / (time.perf_counter() - start)


#: The same no-op work through a configuration file (header-rules with an
#: empty rule table: a real plugin, no daemon).
CONFIG = """
[scanner.rules]
plugin = "header-rules"
rules = "/^X-Never-There:/ WARN never"
"""


def config_path_rates(data: bytes) -> tuple[float, float]:
    """``mxscan.scan(data, config="path.toml")`` against the same file's PolicyRouter
    passed: the engine built from a path is kept between calls."""
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/mxscan.toml"
        with open(path, "w") as fp:
            fp.write(CONFIG)
        # A file changed in the last 2 s is hashed on every call (api.RACY_NS);
        # a deployed configuration is older than that.
        time.sleep(mxscan.api.RACY_NS / 1e9)
        engine = mxscan.load_config(path).build()
        return _sync_rate(path, data), _sync_rate(engine, data)


PEAK_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import mxscan
    def vmhwm():  # not ru_maxrss, which carries the parent's size over fork+exec
        for row in open("/proc/self/status"):
            if row.startswith("VmHWM:"):
                return int(row.split()[1])
    path = sys.argv[1]
    base = vmhwm()
    class Reader:
        name = "reader"
        async def scan(self, message):
            total = sum(len(c) for c in message.chunks())
            assert total == message.size
            return mxscan.Verdict(edits=[mxscan.HeaderEdit.add("X-Size", str(total))])
        async def aclose(self):
            pass
    result = mxscan.scan(path, config=mxscan.Pipeline([[Reader()]]))
    with open("/dev/null", "wb") as out:
        result.message.write_to(out)
    peak = vmhwm()
    print(base, peak)
    """
)


def peak_rss_kib(size: int) -> tuple[int, int]:
    with tempfile.NamedTemporaryFile(suffix=".eml") as fp:
        fp.write(b"Subject: big\r\n\r\n")
        line = b"x" * 998 + b"\r\n"
        written = 0
        while written < size:
            fp.write(line)
            written += len(line)
        fp.flush()
        out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, fp.name],
                             capture_output=True, text=True, check=True)  # fmt: skip
    base, peak = out.stdout.split()
    return int(base), int(peak)


def main() -> None:
    data = message_10k()
    noop = Pipeline([[NoOp("a"), NoOp("b")], [NoOp("c")]])
    edits = tuple(HeaderEdit.add(f"X-Bench-{i}", "value") for i in range(20))
    editing = Pipeline([[NoOp("editor", edits)]])
    noop_rate = asyncio.run(_rate(noop, data))
    edit_rate = asyncio.run(_rate(editing, data))
    print(f"message size: {len(data)} bytes, {len(Message.from_bytes(data).headers)} headers")
    print(f"PolicyRouter.scan, 3 no-op scanners in 2 stages: {noop_rate:,.0f} msg/s "
          f"(target >= {TARGET:,})")  # fmt: skip
    print(f"PolicyRouter.scan, 20 header edits:              {edit_rate:,.0f} msg/s")
    print(f"mxscan.scan() (blocking, per-thread loop): {_sync_rate(noop, data):,.0f} msg/s")
    by_path, by_engine = config_path_rates(data)
    print(f'mxscan.scan(config="path.toml"):           {by_path:,.0f} msg/s '
          f"(the file's PolicyRouter passed: {by_engine:,.0f} msg/s)")  # fmt: skip
    # A hostile header: one field folded over 20,000 lines (from_stream was quadratic).
    fold = b" " + b"f" * 70 + b"\r\n"
    hostile = b"Subject: folds\r\nX-Folded: start\r\n" + fold * 20_000 + b"\r\nbody\r\n"
    for label, parse in (("from_bytes", Message.from_bytes),
                         ("from_stream", lambda d: Message.from_stream(io.BytesIO(d)))):  # fmt: skip
        start = time.perf_counter()
        parsed = parse(hostile)
        took = time.perf_counter() - start
        assert parsed.as_bytes() == hostile
        print(f"{label}, a {len(hostile) / 1e6:.1f} MB folded header (20,000 lines): "
              f"{took * 1000:.0f} ms")  # fmt: skip
    for size in (1_000_000, 10_000_000, 100_000_000):
        base, peak = peak_rss_kib(size)
        print(f"peak RSS scanning+writing a {size / 1e6:.0f} MB message: {peak / 1024:.1f} MiB "
              f"(interpreter alone {base / 1024:.1f} MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
