"""The stderr lines of an ``mxscan`` child, read in a thread, so a rig can wait
for a log line (``ready``, a scan's line) without polling or blocking the test."""

from __future__ import annotations

import subprocess
import threading
import time


class StderrLines:
    def __init__(self, what: str) -> None:
        self.what = what  # "mxscan http", for the failure message
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None

    def follow(self, proc: subprocess.Popen[str]) -> None:
        """Start reading a (re)started child's stderr; earlier lines are dropped."""
        with self._cond:
            self.lines.clear()
            self._proc = proc
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """The first line containing ``text``; fails once the child has exited."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                assert self._proc is not None
                if left <= 0 or self._proc.poll() is not None:
                    raise AssertionError(f"no {text!r} from {self.what}: {self.lines}")
                self._cond.wait(min(left, 0.2))

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)
