"""Benchmarks printed by ``nox -s bench``: figures to read, not tests to pass."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: The shared test corpus (MXSCAN_CORPUS, default ../shared/corpus), as the tests find it.
CORPUS = Path(os.environ.get("MXSCAN_CORPUS", REPO.parent / "shared" / "corpus"))
SPAMC_MAX = 500 * 1024  # spamc's default -s: larger messages would not be checked at all


def spamassassin_sample() -> tuple[list[bytes], Path]:
    """The SpamAssassin public corpus sample under MXSCAN_CORPUS (default
    ../shared/corpus), messages under SPAMC_MAX only; empty when it is absent."""
    folder = CORPUS / "spamassassin-publiccorpus-sample"
    files = sorted(p for p in folder.glob("*/*") if p.is_file()) if folder.is_dir() else []
    data = [p.read_bytes() for p in files]
    return [d for d in data if 0 < len(d) < SPAMC_MAX], folder


def sample_messages(count: int, fallback: list[bytes]) -> tuple[list[bytes], str]:
    """``count`` messages cycled from the SpamAssassin sample (``fallback`` when the
    corpus is absent), and a description of where they came from."""
    data, folder = spamassassin_sample()
    source = f"{folder} ({len(data)} messages)"
    if not data:
        data, source = fallback, "built-in messages (corpus not found)"
    return [data[i % len(data)] for i in range(count)], source


def vmhwm_kib(pid: int | str = "self") -> int:
    """Peak RSS (VmHWM) of a live process, in KiB.

    Not ``ru_maxrss``: Linux carries the parent's resident size across fork and
    exec into the child's ``ru_maxrss``, so a child that ``python -m benchmarks``
    starts after an earlier benchmark grew would report that size, not its own.
    """
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1])
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


#: Runs a command with stdin from a file and prints its exit code and peak RSS
#: (wait4). A fresh, small interpreter in between keeps the benchmark process's
#: own size out of the child's ru_maxrss (see vmhwm_kib).
_PEAK_WRAPPER = """
import os, subprocess, sys
with open(sys.argv[1], "rb") as stdin:
    child = subprocess.Popen(sys.argv[2:], stdin=stdin,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def peak_rss_of(argv: list[str], stdin: Path) -> tuple[int, int]:
    """(exit code, peak RSS in KiB) of ``argv`` run to completion on ``stdin``."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _PEAK_WRAPPER, str(stdin), *argv],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    code, kib = out.stdout.split()
    return int(code), int(kib)
