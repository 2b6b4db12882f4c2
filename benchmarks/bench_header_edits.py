"""Cost of big header-edit batches through the milter's whole CPU path (issue 13).

One message goes through a milter :class:`Session` (packets in), the seed's header
rules (``examples/header_checks``: ``/^X-Spam-Level:/m IGNORE``) in a pipeline, and
back out as replies (``Session.complete``), with no sockets:

* plain 20k  - 20,000 ordinary header fields, no edits;
* plain 40k  - 40,000 ordinary fields, no edits (the same header size as the next);
* 20k + 20k  - 20,000 ordinary fields then 20,000 X-Spam-Level fields: 20,000
  deletions, as a hostile sender can ask for with one message.

Figures are CPU time of the whole process (every thread), the best of 3: wall
time on a shared machine mostly measures the neighbours. Goal (issue 13): "20k +
20k" within 2x "plain 20k"; "plain 40k" has as many fields as "20k + 20k", so the
second ratio is what the 20,000 edits themselves add (measured 1.5-1.7x; the first
2.9-3.3x, since receiving and matching twice the fields alone costs 2x). Before the fix each deletion
rescanned the header list, in the core and in the milter: 4,000 + 4,000 took about
7 s of CPU, 8,000 + 8,000 about 38 s. Also printed: ``Message.apply`` alone for
20,000 deletions forwards (occurrence 1 again and again, the header rules' order)
and backwards (last occurrence down, the ClamAV / SpamAssassin order).

Prints figures, asserts nothing. No daemons needed.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from benchmarks import REPO
from mxscan import HeaderEdit, Message, Pipeline, Step
from mxscan.adapters.milter.session import Limits, Session
from mxscan_header_rules import HeaderRules
from tests.support import mta

N = 20_000
ROUNDS = 3


def packets(head: bytes) -> bytes:
    envelope = mta.optneg() + mta.mail("s@example.org") + mta.rcpt("r@example.net")
    return envelope + b"".join(mta.message_packets(head + b"\r\nbody\r\n"))


def ordinary(count: int) -> bytes:
    return b"".join(b"X-Ordinary-%d: value %d\r\n" % (i, i) for i in range(count))


def through_milter(data: bytes, pipeline: Pipeline) -> tuple[float, float, int]:
    """CPU seconds (this process, every thread: what the issue measured) and wall
    seconds for packets -> message -> pipeline -> replies, and the replies' size."""
    session = Session(limits=Limits(max_headers=10 * N, max_header_bytes=1 << 30))

    async def run() -> tuple[float, float, int]:
        cpu, wall = time.process_time(), time.perf_counter()
        step = session.receive(data)
        assert step.message is not None
        result = await pipeline.run(step.message)
        out = session.complete(result)
        return time.process_time() - cpu, time.perf_counter() - wall, len(out.send)

    return asyncio.run(run())


def best(fn, rounds: int = ROUNDS) -> float:  # type: ignore[no-untyped-def]
    return min(fn() for _ in range(rounds))


def main() -> None:
    rules = HeaderRules(file=str(REPO / "examples" / "header_checks"))
    pipeline = Pipeline([[Step(rules, timeout=600)]])
    cases = {
        "plain 20k": packets(ordinary(N)),
        "plain 40k": packets(ordinary(2 * N)),
        "20k + 20k": packets(ordinary(N) + b"X-Spam-Level: ***\r\n" * N),
    }
    times: dict[str, float] = {}
    for name, data in cases.items():
        runs = [through_milter(data, pipeline) for _ in range(ROUNDS)]
        times[name] = min(cpu for cpu, _, _ in runs)
        print(
            f"{name:10}  CPU {times[name] * 1000:8.1f} ms  (wall median "
            f"{statistics.median(wall for _, wall, _ in runs) * 1000:.1f} ms, replies "
            f"{runs[0][2]} bytes)",
            flush=True,
        )
    print(
        f"20k + 20k / plain 20k = {times['20k + 20k'] / times['plain 20k']:.2f}x (goal <= 2x); "
        f"/ plain 40k = {times['20k + 20k'] / times['plain 40k']:.2f}x"
    )

    message = Message.from_bytes(ordinary(N) + b"X-Spam-Level: ***\r\n" * N + b"\r\nbody\r\n")
    forwards = [HeaderEdit.delete("X-Spam-Level", 1)] * N
    backwards = [HeaderEdit.delete("X-Spam-Level", k) for k in range(N, 0, -1)]
    for name, edits in (("forwards", forwards), ("backwards", backwards)):

        def once(edits: list[HeaderEdit] = edits) -> float:
            start = time.perf_counter()
            message.apply(edits)
            return time.perf_counter() - start

        print(f"Message.apply, {N} deletions {name}: {best(once) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
