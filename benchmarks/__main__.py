"""Run every benchmark module (or those named on the command line) and print figures."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

USAGE = """Usage: python -m benchmarks [BENCH ...]

Runs every benchmark module (or the ones named) and prints its figures; a
benchmark whose daemon is missing reports FAILED and the others go on (exit 1).
Daemons: bash scripts/daemons start. Benchmarks:
"""


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    known = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if any(arg in ("-h", "--help") for arg in argv):
        print(USAGE + "".join(f"  {name}\n" for name in known), end="")
        return 0
    unknown = [name for name in argv if name not in known]
    if unknown:
        print(f"benchmarks: no such benchmark: {', '.join(unknown)} "
              f"(known: {', '.join(known)})", file=sys.stderr)  # fmt: skip
        return 2
    names = argv or known
    failed = 0
    from tests.support import no_dns

    no_dns.install()  # like the tests: nothing leaves loopback, not even a DNS query
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        try:
            module.main()
        except Exception as exc:  # a daemon may be missing: report, go on
            failed += 1
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
        print(f"({name} took {time.perf_counter() - start:.1f}s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
