"""Re-injecting a released message with its original envelope.

Two ways, both streaming the stored bytes chunk by chunk: sendmail(1)
(``-G -i -f SENDER -- RCPTS``, argv only, never a shell) or SMTP to a next hop
that does not scan again (a Postfix listener without the milter, or the
content filter's return port). The bytes go out as stored; SMTP only adds what
the protocol requires (CRLF line ends, dot-stuffing), which the receiver removes.
"""

from __future__ import annotations

import smtplib
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import urlsplit

__all__ = ["ReleaseError", "deliver", "sendmail_argv", "smtp_data"]

DEFAULT_RELEASE = "sendmail:/usr/sbin/sendmail"


class ReleaseError(Exception):
    """The next hop did not take the message."""


def sendmail_argv(sendmail: str, sender: str, recipients: Sequence[str]) -> list[str]:
    """``-G``: not a submission (no header fix-ups); ``-i``: a lone dot is data;
    ``--``: a recipient starting with ``-`` is not an option."""
    if not recipients:
        raise ReleaseError("no recipients to release to")
    return [sendmail, "-G", "-i", "-f", sender, "--", *recipients]  # "" is the null sender


def smtp_data(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The DATA payload for ``chunks``: bare LF -> CRLF, dot-stuffed, ending
    ``CRLF.CRLF``; a line split across chunks is handled (state carried over)."""
    at_line_start = True
    last = b""
    for chunk in chunks:
        if not chunk:
            continue
        out = bytearray()
        for line in chunk.splitlines(keepends=True):
            if at_line_start and line.startswith(b"."):
                out += b"."
            if line.endswith(b"\n"):
                body = line[:-1]
                if body.endswith(b"\r") or (body == b"" and last == b"\r"):
                    out += line
                else:
                    out += body + b"\r\n"
                at_line_start = True
            else:
                out += line
                at_line_start = False
            last = line[-1:]
        yield bytes(out)
    yield b".\r\n" if at_line_start else b"\r\n.\r\n"


def _smtp(url: str, sender: str, recipients: Sequence[str], chunks: Iterable[bytes]) -> str:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 25
    try:
        with smtplib.SMTP(host, port, local_hostname="localhost", timeout=300) as smtp:
            smtp.ehlo()
            code, text = smtp.mail(sender)
            if code != 250:
                raise ReleaseError(
                    f"{url}: MAIL FROM refused: {code} {text.decode(errors='replace')}"
                )
            accepted = 0
            for rcpt in recipients:
                code, text = smtp.rcpt(rcpt)
                if code in (250, 251):
                    accepted += 1
                else:
                    raise ReleaseError(
                        f"{url}: RCPT TO {rcpt} refused: {code} {text.decode(errors='replace')}"
                    )
            code, text = smtp.docmd("DATA")
            if code != 354:
                raise ReleaseError(f"{url}: DATA refused: {code} {text.decode(errors='replace')}")
            for piece in smtp_data(chunks):
                smtp.send(piece)
            code, text = smtp.getreply()
            if code != 250:
                raise ReleaseError(
                    f"{url}: message refused: {code} {text.decode(errors='replace')}"
                )
            return text.decode(errors="replace")
    except (OSError, smtplib.SMTPException) as exc:
        raise ReleaseError(f"{url}: {exc}") from exc


def _sendmail(path: str, sender: str, recipients: Sequence[str], chunks: Iterable[bytes]) -> str:
    argv = sendmail_argv(path, sender, recipients)
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError as exc:
        raise ReleaseError(f"{path}: {exc.strerror or exc}") from exc
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for chunk in chunks:
            proc.stdin.write(chunk)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    output = proc.stdout.read().decode(errors="replace").strip()
    status = proc.wait()
    if status != 0:
        raise ReleaseError(f"{path} exited {status}: {output or 'no output'}")
    return output or "sent"


def deliver(via: str, sender: str, recipients: Sequence[str], chunks: Iterable[bytes]) -> str:
    """Send through ``via`` (``sendmail:PATH`` or ``smtp://HOST:PORT``)."""
    if via.startswith("sendmail:"):
        return _sendmail(via.removeprefix("sendmail:"), sender, recipients, chunks)
    if via.startswith("smtp://"):
        return _smtp(via, sender, recipients, chunks)
    raise ReleaseError(f"release must be sendmail:PATH or smtp://HOST:PORT, not {via!r}")
