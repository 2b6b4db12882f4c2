"""Stands in for /usr/sbin/sendmail: records argv and stdin, exits as told.

Usage: python -m tests.support.fake_sendmail OUTDIR [STATUS] [-- sendmail args...]: each run
writes OUTDIR/<n>.json with its argv (after OUTDIR/STATUS) and the bytes read.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path


def main() -> int:
    outdir = Path(sys.argv[1])
    status = int(sys.argv[2])
    data = sys.stdin.buffer.read()
    record = {"argv": sys.argv[3:], "data": base64.b64encode(data).decode()}
    name = f"{time.monotonic_ns()}.json"
    (outdir / name).write_text(json.dumps(record))
    if status:
        print("fake sendmail: refusing on purpose", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
