"""``mxscan pipe``: stdin -> scan -> re-inject, with a guard around all of it.

The guard is the point of this module: whatever happens (bad config, garbage or
empty input, a scanner down, sendmail missing, a full disk while spooling, a
bug, SIGTERM from Postfix or an admin), the process ends with 0, 69 or 75 and
prints no traceback, so Postfix either knows the message is taken care of or
keeps it queued and retries. Nothing is re-injected before every recipient
group has a verdict, so a failure never leaves half a delivery behind unless a
later sendmail run fails (then Postfix retries all: a duplicate, never a loss).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import attrs

from mxscan import ConfigError, Envelope, Message, Result
from mxscan.config import Config, load_given_config
from mxscan.logline import format_lines, log_token, setup_logging
from mxscan.router import PolicyRouter

from .exitcodes import ExitCode, dsn_line
from .output import BufferHandler, write_fd
from .plan import Quarantine, plan
from .reinject import DEFAULT_SENDMAIL, ReinjectError, parse_sendmail, reinject
from .trace import trace_facts

__all__ = ["PipeError", "Terminated", "run"]

log = logging.getLogger("mxscan.pipe")


class Terminated(BaseException):
    """SIGTERM (Postfix stopping, an admin): a BaseException so that no
    ``except Exception`` on the way swallows it."""


class PipeError(Exception):
    """An expected failure with its status line (``4.3.5 ...``)."""

    def __init__(self, status: str, text: str) -> None:
        super().__init__(f"{status} {text}")
        self.status = status
        self.text = text


def _on_sigterm(signum: int, frame: types.FrameType | None) -> None:
    raise Terminated(f"signal {signum}")


@contextmanager
def _signals() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _quarantine(args: argparse.Namespace) -> Quarantine | None:
    if args.quarantine_to:
        return Quarantine("address", args.quarantine_to)
    if args.quarantine == "hold":
        return Quarantine("hold")
    return None


def _with_trace(envelope: Envelope, message: Message) -> Envelope:
    """Fields the command line left empty, from Postfix's top Received: line."""
    facts = trace_facts(message.headers)
    fill: dict[str, Any] = {
        field: facts[key]
        for field, key in (
            ("client_address", "address"),
            ("client_name", "name"),
            ("helo", "helo"),
            ("receiver", "receiver"),
            ("protocol", "protocol"),
            ("queue_id", "queue_id"),
        )
        if key in facts and not getattr(envelope, field)
    }
    return attrs.evolve(envelope, **fill) if fill else envelope


def _read(stdin: BinaryIO, envelope: Envelope, config: Config) -> Message:
    try:
        message = Message.from_stream(
            stdin,
            envelope=envelope,
            spool_threshold=config.spool_threshold,
            spool_dir=config.spool_dir,
        )
    except OSError as exc:  # EIO on stdin, ENOSPC while spooling
        raise PipeError("4.3.0", f"mxscan pipe: cannot read the message: {exc}") from None
    if message.size == 0:
        message.close()
        # Postfix never pipes an empty message (it adds its own Received:), so
        # this is a broken invocation: keep the mail queued rather than deliver nothing.
        raise PipeError("4.3.0", "mxscan pipe: empty message on standard input")
    return message


async def _scan(config: Config, message: Message) -> Result:
    engine: PolicyRouter = config.build()
    try:
        return await engine.scan(message)
    finally:
        await engine.aclose()


def _execute(args: argparse.Namespace, config: Config, stdin: BinaryIO) -> tuple[ExitCode, str]:
    if not args.recipients and not args.output:
        raise PipeError("4.3.5", "mxscan pipe: no recipients (usage: -f SENDER -- RECIPIENT...)")
    command = parse_sendmail(args.sendmail) if args.sendmail else DEFAULT_SENDMAIL
    envelope = Envelope(
        sender=args.sender,
        recipients=tuple(args.recipients),
        client_address=args.client_address or None,
        client_name=args.client_name or None,
        helo=args.helo or None,
        queue_id=args.queue_id or None,
        auth_user=args.sasl_username or None,
        protocol=args.client_protocol or None,
        auth_type=args.sasl_method or None,
        # Postfix queued the message with its own Received: line on top: no
        # scanner needs one made up (and a second would be a hop that never was).
        received_in_message=True,
    )
    message = _read(stdin, envelope, config)
    message = message.with_envelope(_with_trace(envelope, message))
    try:
        started = time.monotonic()
        result = asyncio.run(_scan(config, message))
        elapsed = time.monotonic() - started
        for line in format_lines(result, args.queue_id or None, elapsed=elapsed, size=message.size):
            log.info("%s", line)
        if args.output:
            return _write_output(args, result)
        decided = plan(
            result, quarantine=_quarantine(args), queue_id=args.queue_id, recipients=args.recipients
        )
        for note in decided.notes:
            log.warning("%s: %s", log_token(args.queue_id or "NOQUEUE"), note)
        if decided.exit_code is not ExitCode.OK:
            return decided.exit_code, decided.output
        done: list[str] = []
        for delivery in decided.deliveries:
            try:
                reinject(
                    delivery.message,
                    args.sender,
                    delivery.recipients,
                    command=command,
                    timeout=args.sendmail_timeout,
                )
            except ReinjectError as exc:
                if done:
                    log.warning(
                        "%s: already re-injected for %s: Postfix's retry will deliver those twice",
                        log_token(args.queue_id or "NOQUEUE"),
                        ", ".join(done),
                    )
                raise PipeError("4.3.0", f"mxscan pipe: re-injection failed: {exc}") from None
            done += delivery.recipients
            log.info(
                "%s: %s policy=%s to=%s",
                log_token(args.queue_id or "NOQUEUE"),
                "reinjected" if delivery.kind == "deliver" else f"quarantined({delivery.kind})",
                delivery.policy,
                ",".join(delivery.recipients),
            )
        return ExitCode.OK, ""
    finally:
        message.close()


def _write_output(args: argparse.Namespace, result: Result) -> tuple[ExitCode, str]:
    """``--output FILE|-``: the final message instead of re-injection, one verdict
    for all recipients (the most severe group's)."""
    decided = plan(
        _fold(result),
        quarantine=_quarantine(args) or Quarantine("hold"),
        queue_id=args.queue_id,
        recipients=args.recipients or ("-",),
    )
    if decided.exit_code is not ExitCode.OK:
        return decided.exit_code, decided.output
    if not decided.deliveries:
        return ExitCode.OK, ""  # discarded
    message = decided.deliveries[0].message
    try:
        if args.output == "-":
            os.set_blocking(sys.stdout.fileno(), True)
            with open(sys.stdout.fileno(), "wb", closefd=False) as out:
                message.write_to(out)
        else:
            with open(args.output, "wb") as out:
                message.write_to(out)
    except OSError as exc:
        raise PipeError("4.3.0", f"mxscan pipe: cannot write {args.output}: {exc}") from None
    return ExitCode.OK, ""


def _fold(result: Result) -> Result:
    """The split result folded into one: the most severe group's verdict and message."""
    if not result.splits:
        return result
    worst = max(result.splits, key=lambda g: g.action)
    return attrs.evolve(worst, recipients=result.recipients, splits=())


def run(args: argparse.Namespace, stdin: BinaryIO | None = None) -> int:
    """The top-level guard: returns 0, 69 or 75 and nothing else, ever."""
    buffer = BufferHandler()
    logger = logging.getLogger("mxscan")
    logger.addHandler(buffer)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    code, output = ExitCode.TEMPFAIL, dsn_line(ExitCode.TEMPFAIL, "4.3.0", "mxscan pipe failed")
    try:
        with _signals():
            try:
                config = load_given_config(args.config)
                if config.log_target == "syslog":
                    setup_logging(config.log_target, config.log_facility, config.log_level)
                    logger.addHandler(buffer)  # setup_logging replaced the handlers
                else:
                    logger.setLevel(config.log_level.upper())
                code, output = _execute(args, config, stdin or sys.stdin.buffer)
            except ConfigError as exc:
                code = ExitCode.TEMPFAIL
                output = dsn_line(code, "4.3.5", f"mxscan pipe: configuration error: {exc}")
                log.error("%s", output.strip())
            except (PipeError, ValueError) as exc:
                code = ExitCode.TEMPFAIL
                status, text = (
                    (exc.status, exc.text)
                    if isinstance(exc, PipeError)
                    else ("4.3.5", f"mxscan pipe: {exc}")
                )
                output = dsn_line(code, status, text)
                log.error("%s: %s", log_token(args.queue_id or "NOQUEUE"), output.strip())
    except Terminated:
        code = ExitCode.TEMPFAIL
        output = dsn_line(code, "4.3.0", "mxscan pipe: terminated by a signal, try again later")
        log.warning(
            "%s: terminated by SIGTERM; Postfix will retry", log_token(args.queue_id or "NOQUEUE")
        )
    except KeyboardInterrupt:
        code = ExitCode.TEMPFAIL
        output = dsn_line(code, "4.3.0", "mxscan pipe: interrupted, try again later")
    except BaseException as exc:  # the guard: never a traceback, never another status
        code = ExitCode.TEMPFAIL
        output = dsn_line(code, "4.3.0", f"mxscan pipe: internal error: {type(exc).__name__}")
        log.error(
            "%s: internal error: %s: %s",
            log_token(args.queue_id or "NOQUEUE"),
            type(exc).__name__,
            exc,
        )
    finally:
        logger.removeHandler(buffer)
    log_text = buffer.text()
    if code is ExitCode.UNAVAILABLE:
        # A bounce carries only the status line; the sender does not need our log.
        write_fd(1, output)
    else:
        write_fd(1, output + "\n" if output else "")
        write_fd(2, log_text)
    return int(code)
