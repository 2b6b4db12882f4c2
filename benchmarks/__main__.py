"""Run every benchmark module (or those named on the command line) and print figures."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = argv or sorted(
        m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_")
    )
    failed = 0
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
