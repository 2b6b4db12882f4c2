"""The only exit statuses ``mxscan pipe`` ever returns, per sysexits.h.

Postfix's pipe(8) maps them: 0 the message is taken care of, 69 (EX_UNAVAILABLE)
bounce, 75 (EX_TEMPFAIL) defer and retry. Any other status would be a guess on
Postfix's side, so the runner's guard folds everything else into 75.

pipe(8) reads the command's output after it exits and, when that output *starts*
with an enhanced status code (``5.7.1 text``), uses that code instead of the exit
status to choose between bounce and defer. So the first line we print must
always agree with the exit status: a ``5.x.x`` line with exit 75 would bounce.
"""

from __future__ import annotations

import enum

from mxscan.verdict import ENHANCED_STATUS

__all__ = ["ExitCode", "dsn_line"]


class ExitCode(enum.IntEnum):
    OK = 0
    UNAVAILABLE = 69  # EX_UNAVAILABLE: Postfix bounces with our 5.x.x text
    TEMPFAIL = 75  # EX_TEMPFAIL: Postfix defers and retries; nothing is lost


# Postfix turns tabs and newlines of the output into spaces and other
# non-printables into "_"; it reads at most one VSTREAM buffer (4096 bytes).
MAX_REPLY = 1000


def dsn_line(code: ExitCode, status: str, text: str) -> str:
    """One output line whose enhanced status class matches the exit status.

    A status of the wrong class (a scanner's 5.x.x reply on a TEMPFAIL) is
    replaced, because Postfix would otherwise bounce a message we meant to
    defer, or defer one we meant to bounce.
    """
    wanted = "5" if code is ExitCode.UNAVAILABLE else "4"
    if not ENHANCED_STATUS.fullmatch(status) or status[0] != wanted:
        status = "5.7.1" if wanted == "5" else "4.3.0"
    text = " ".join(text.split()) or ("rejected" if wanted == "5" else "try again later")
    # No newline: pipe(8) would turn it into a trailing space in the bounce text.
    return f"{status} {text}"[:MAX_REPLY]
