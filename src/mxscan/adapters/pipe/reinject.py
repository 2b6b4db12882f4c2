"""Hand the final message back to Postfix with ``sendmail``.

FILTER_README's simple content filter re-injects with
``sendmail -G -i -f SENDER -- RECIPIENT...``: ``-G`` marks a relayed (not
locally submitted) message, ``-i`` keeps a lone ``.`` line from ending it,
``--`` keeps a recipient starting with ``-`` from becoming an option. Never
``-t``: recipients come from the envelope, never from headers a sender wrote.
The command is an argv list, never a shell line, and the message is streamed
from the (possibly spooled) body so memory does not grow with its size.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from collections.abc import Sequence

from mxscan import Message

__all__ = ["DEFAULT_SENDMAIL", "ReinjectError", "parse_sendmail", "reinject", "sendmail_argv"]

DEFAULT_SENDMAIL: tuple[str, ...] = ("/usr/sbin/sendmail",)
DEFAULT_TIMEOUT = 300.0
_MAX_OUTPUT = 2000


class ReinjectError(Exception):
    """sendmail could not be run or did not take the message: Postfix must retry."""


def parse_sendmail(text: str) -> tuple[str, ...]:
    """``--sendmail "PATH [ARG...]"``: split like a shell would, but never run one.

    ``-t`` is refused (recipients would come from the headers), and so are the
    options this module sets itself.
    """
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise ValueError(f"--sendmail {text!r}: {exc}") from None
    if not argv:
        raise ValueError("--sendmail: empty command")
    for arg in argv[1:]:
        if arg == "-t":
            raise ValueError(
                f"--sendmail {text!r}: -t is never used (recipients come from "
                "the envelope, not from headers)"
            )
        if arg in ("-f", "--", "-G", "-i"):
            raise ValueError(f"--sendmail {text!r}: {arg} is added by mxscan pipe itself")
    return argv


def sendmail_argv(command: Sequence[str], sender: str, recipients: Sequence[str]) -> list[str]:
    if not recipients:
        raise ValueError("re-injection needs at least one recipient")
    return [*command, "-G", "-i", "-f", sender, "--", *recipients]


def reinject(
    message: Message,
    sender: str,
    recipients: Sequence[str],
    *,
    command: Sequence[str] = DEFAULT_SENDMAIL,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Run sendmail with the message on stdin; raise ``ReinjectError`` unless it
    exits 0. Its output goes to a temporary file (not our stdout, which Postfix
    reads as the delivery status text, and not a pipe we would have to drain)."""
    argv = sendmail_argv(command, sender, recipients)
    with tempfile.TemporaryFile() as output:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        except OSError as exc:
            raise ReinjectError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        try:
            assert proc.stdin is not None
            try:
                for chunk in message.chunks():
                    proc.stdin.write(chunk)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # it exited early; its status and output say why
            try:
                status = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise ReinjectError(f"{argv[0]} did not finish within {timeout:g}s") from None
        except BaseException:
            # Killed mid-write, postdrop removes its incomplete queue file: Postfix
            # retries the original, so nothing is lost (at worst a duplicate).
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        if status != 0:
            output.seek(0)
            said = " ".join(output.read(_MAX_OUTPUT).decode("utf-8", "replace").split())
            how = f"exited with status {status}" if status > 0 else f"killed by signal {-status}"
            raise ReinjectError(f"{argv[0]} {how}" + (f": {said}" if said else ""))
