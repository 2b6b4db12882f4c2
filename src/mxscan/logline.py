"""The one log line per message that mail admins grep next to Postfix's lines.

``QUEUEID: clamav=infected(Eicar-Test-Signature) spamassassin=skipped(oversize) action=discard``
(the ``mxscan[PID]:`` prefix comes from the log handler, as with syslog).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from .verdict import Action, Result

__all__ = ["format_result", "setup_logging"]


def _quote(text: str) -> str:
    return text.replace("\n", " ").replace("\r", " ")


def _group_line(result: Result) -> str:
    parts = [f"{v.scanner}={_quote(v.token)}" for v in result.verdicts]
    parts.append(f"action={result.verdict.action}")
    if result.verdict.action is not Action.ACCEPT and result.verdict.reason:
        parts.append(f'reason="{_quote(result.verdict.reason)}"')
    return " ".join(parts)


def format_result(result: Result, queue_id: str | None = None) -> str:
    queue_id = queue_id or result.message.envelope.queue_id or "NOQUEUE"
    if not result.splits:
        return f"{queue_id}: {_group_line(result)}"
    groups = [
        f"policy={g.policy} rcpts={len(g.recipients)} {_group_line(g)}" for g in result.splits
    ]
    return f"{queue_id}: " + "; ".join(groups)


#: Where syslog listens: Linux, then FreeBSD.
SYSLOG_SOCKETS = ("/dev/log", "/var/run/log")


def setup_logging(target: str = "stderr", facility: str = "mail", level: str = "info") -> None:
    """Send the ``mxscan`` logger to stderr or syslog in ``mxscan[PID]: ...`` form.

    Under systemd (``JOURNAL_STREAM`` set) stderr lines carry no prefix: the
    journal adds ``mxscan[PID]:`` itself, and a second one would be noise.
    """
    logger = logging.getLogger("mxscan")
    logger.setLevel(level.upper())
    for old in list(logger.handlers):
        logger.removeHandler(old)
    handler: logging.Handler
    prefix = "mxscan[%(process)d]: "
    socket_path = next((p for p in SYSLOG_SOCKETS if Path(p).exists()), None)
    if target == "syslog" and socket_path is not None:
        handler = logging.handlers.SysLogHandler(
            address=socket_path,
            facility=logging.handlers.SysLogHandler.facility_names[facility],
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
        if os.environ.get("JOURNAL_STREAM"):
            prefix = ""
        if target == "syslog":
            logger.addHandler(handler)
            logger.warning("no syslog socket (%s): logging to stderr", ", ".join(SYSLOG_SOCKETS))
            logger.removeHandler(handler)
    handler.setFormatter(logging.Formatter(prefix + "%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
