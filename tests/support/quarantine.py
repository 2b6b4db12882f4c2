"""Helpers for the quarantine's milter end-to-end tests: a message the test rule
discards, and `mxscan quarantine list` run as a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

#: Discards every message `dropped()` builds, so each one is a copy to keep.
DROP_RULE = "/^Subject:.*drop-me/ DISCARD dropped\n"


def dropped(token: str, body_bytes: int = 2048) -> bytes:
    """A message with ``token`` in Subject and Message-ID, ``body_bytes`` of body."""
    line = b"x" * 76 + b"\r\n"
    return (
        f"From: a@example.org\r\nTo: rcpt@example.com\r\nSubject: drop-me {token}\r\n"
        f"Message-ID: <{token}@example.org>\r\n\r\n".encode()
        + line * (body_bytes // len(line))
    )


def listed(config: Path) -> list[dict[str, Any]]:
    """What another process reads from the store: `quarantine list --json`."""
    proc = subprocess.run(
        [sys.executable, "-m", "mxscan", "quarantine", "list", "--json", "-c", str(config)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return list(json.loads(proc.stdout))
