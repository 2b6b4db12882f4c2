"""A stand-in for FreeBSD's daemon(8) in tests: detach, run the command with its
stderr in $STUB_LOG, write the supervisor's pid (-P) and the child's (-p), forward
SIGTERM to the child and exit when it does."""

from __future__ import annotations

import getopt
import os
import signal
import subprocess
import sys


def main() -> None:
    opts, command = getopt.getopt(sys.argv[1:], "cfHSrp:P:l:s:T:t:o:m:u:")
    options = dict(opts)
    if os.fork():
        os._exit(0)  # the rc script returns once the supervisor is detached
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # -f: the rc script's caller must not wait on our stdio
        os.dup2(null, fd)
    with open(os.environ["STUB_LOG"], "ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    for flag, pid in (("-P", os.getpid()), ("-p", child.pid)):
        if flag in options:
            with open(options[flag], "w") as f:
                f.write(f"{pid}\n")
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    child.wait()
    os.unlink(options["-P"]) if "-P" in options else None


if __name__ == "__main__":
    main()
