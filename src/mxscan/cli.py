"""The ``mxscan`` command: scan files, show the configuration, list plugins, and
run the milter and pipe adapters.

Every failure a user can cause (bad config, unreadable file) ends in one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, assert_never

from . import __version__
from .cliargs import config_arg
from .cliargs import table as _table
from .config import Config, load_given_config
from .errors import ConfigError
from .logline import format_lines, setup_logging
from .message import Envelope, Message
from .pipeline import close_scanners
from .plugins import Registry
from .router import PolicyRouter
from .verdict import Action, Result

EXIT_OK = 0
EXIT_NOT_ACCEPTED = 1
EXIT_ERROR = 2


def exit_status(action: Action) -> int:
    """``mxscan scan``'s status for a final action: 0 only when the mail would
    go through as it is; scripts test ``$?`` and must never read a new action
    as accepted (mypy names this function when Action gains a member)."""
    match action:
        case Action.ACCEPT:
            return EXIT_OK
        case Action.TEMPFAIL | Action.QUARANTINE | Action.DISCARD | Action.REJECT:
            return EXIT_NOT_ACCEPTED
        case _:
            assert_never(action)


#: Adapters that add their own subcommands: module with add_parser(subparsers).
ADAPTER_COMMANDS = (
    "mxscan.adapters.milter.cli",
    "mxscan.adapters.pipe",
    "mxscan.adapters.http.cli",
    "mxscan.adapters.smtp.cli",
    "mxscan.adapters.quarantine.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mxscan",
        description="Scan mail with ClamAV, SpamAssassin, rspamd and header_checks rules "
        "in one pipeline: from files, as a Postfix milter, a pipe(8) filter, an SMTP/LMTP "
        "after-queue filter or an HTTP API in rspamd's protocol; with a quarantine.",
    )
    parser.add_argument("--version", action="version", version=f"mxscan {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    scan = commands.add_parser(
        "scan",
        help="scan message files and print a verdict table",
        description="Scan each FILE (RFC 5322 message, '-' for stdin) through the configured "
        "pipeline and print one line per message: file, final action, each scanner's verdict.",
        epilog="Exit status: 0 every message accepted, 1 at least one was not "
        "(tempfail, quarantine, discard or reject), 2 a file or the configuration could "
        "not be read. A file that cannot be read gets one line on stderr "
        "('mxscan: error: FILE: cannot read: REASON') and an 'error' row; the other "
        "files are still scanned.",
    )
    scan.add_argument("files", nargs="+", metavar="FILE")
    config_arg(scan)
    scan.add_argument("--json", action="store_true", help="print JSON instead of a table")
    scan.add_argument("-f", "--sender", default="", help="envelope sender (default: <>)")
    scan.add_argument(
        "-r", "--rcpt", action="append", default=[], metavar="ADDR",
        help="envelope recipient (repeat; selects [policy.\"domain\"] overrides)",
    )  # fmt: skip
    scan.add_argument("--client-address", help="SMTP client IP address")
    scan.add_argument("--helo", help="SMTP HELO name")
    scan.add_argument("-j", "--jobs", type=int, default=4, help="messages in flight (default 4)")
    scan.add_argument("--no-progress", action="store_true", help="no progress bar on a terminal")
    scan.add_argument("--log", action="store_true", help="also write the per-message log line")
    scan.set_defaults(func=cmd_scan)

    config = commands.add_parser("config", help="check or show the configuration")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION")
    show = config_commands.add_parser(
        "show",
        help="print the effective configuration with defaults and their origins",
        description="Print the effective configuration as TOML: every value, including "
        "plugin defaults, followed by where it came from (file, [defaults] or default).",
    )
    config_arg(show)
    show.set_defaults(func=cmd_config_show)
    check = config_commands.add_parser(
        "check",
        help="validate the configuration and load every plugin; exit 0 if good",
        description="Validate the configuration and load every plugin. Any error, and any "
        "warning a plugin gives while loading (a header_checks line Postfix would skip), "
        "fails the check.",
        epilog="Exit status: 0 good, 2 a problem (each printed on stderr with its file and "
        "line), or with --connect an address that did not answer or failed a plugin's check "
        "(a clamd that does not report its limits).",
    )
    config_arg(check)
    check.add_argument(
        "--connect", action="store_true",
        help="also probe every daemon address (clamd zPING and a file past its MaxRecursion, "
        "spamd PING) and print the answer and latency of each",
    )  # fmt: skip
    check.add_argument(
        "--connect-timeout", type=_seconds, default=10.0, metavar="SECONDS",
        help="how long each probe may take (default 10)",
    )  # fmt: skip
    check.set_defaults(func=cmd_config_check)
    config.set_defaults(func=lambda args: _usage(config))

    plugins = commands.add_parser(
        "plugins", help="list installed scanner plugins with distribution and version"
    )
    plugins.set_defaults(func=cmd_plugins)

    for module_name in ADAPTER_COMMANDS:
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        module.add_parser(commands)
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_ERROR


def _load(args: argparse.Namespace) -> Config:
    return load_given_config(args.config)


def cmd_config_show(args: argparse.Namespace) -> int:
    config = _load(args)
    registry = Registry()
    errors, built = config.problems(registry)
    asyncio.run(close_scanners(built))
    sys.stdout.write(config.render(registry, errors))
    for error in errors.values():
        print(f"mxscan: warning: {error} (marked ERROR above; config check fails on it)",
              file=sys.stderr)  # fmt: skip
    return EXIT_OK


class _Warnings(logging.Handler):
    """Collects the warnings plugins log while they load (a header_checks line
    that ``strict = false`` lets them skip): ``config check`` fails on any."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def cmd_config_check(args: argparse.Namespace) -> int:
    config = _load(args)
    collected = _Warnings()
    loggers = [logging.getLogger(), logging.getLogger("mxscan")]
    for logger in loggers:
        logger.addHandler(collected)
    connect = getattr(args, "connect", False)
    probed: list[tuple[str, str, bool, str, float]] = []
    try:
        asyncio.run(
            _check_build(config, Registry(), probed if connect else None, args.connect_timeout)
        )
    finally:
        for logger in loggers:
            logger.removeHandler(collected)
    failed = 0
    for scanner, address, ok, answer, seconds in probed:
        status = answer if ok else f"FAILED: {answer}"
        print(f"{scanner} {address}: {status} ({seconds * 1000:.1f} ms)")
        failed += not ok
    problems = list(dict.fromkeys(collected.messages))  # once each, in order
    if problems:
        for message in problems:
            print(f"mxscan: error: {message}", file=sys.stderr)
        print(f"mxscan: error: {config.source}: {len(problems)} problem(s) while "
              "loading the scanners (strict = false would start with them)",
              file=sys.stderr)  # fmt: skip
        return EXIT_ERROR
    if failed:
        print(f"mxscan: error: {failed} of {len(probed)} addresses did not answer or "
              "failed a check",
              file=sys.stderr)  # fmt: skip
        return EXIT_ERROR
    print(f"{config.source}: OK ({len(config.scanners)} scanners in {len(config.stages)} stages, "
          f"{len(config.policies)} domain policies)")  # fmt: skip
    return EXIT_OK


async def _check_build(
    config: Config,
    registry: Registry,
    probed: list[tuple[str, str, bool, str, float]] | None = None,
    timeout: float = 10.0,
) -> None:
    engine = config.build(registry)
    try:
        if probed is not None:
            probed += await _probe_all(engine, timeout)
    finally:
        await engine.aclose()


async def _probe_all(
    engine: PolicyRouter, timeout: float
) -> list[tuple[str, str, bool, str, float]]:
    """Each probe a plugin offers (its optional ``probes()``: one per daemon
    address), run concurrently, each timed and bounded by ``timeout``."""
    seen: set[int] = set()
    jobs = []
    for pipeline in (engine.default, *engine.policies.values()):
        for step in pipeline.steps:
            probes = getattr(step.scanner, "probes", None)
            if id(step.scanner) in seen or not callable(probes):
                continue
            seen.add(id(step.scanner))
            jobs += [(step.name, address, probe) for address, probe in probes()]
    if engine.keeper is not None:  # the [quarantine] store answers too
        store = engine.keeper.store

        async def store_probe() -> str:
            stats = await store.stats()
            return f"{stats['messages']} messages, schema version {stats['schema_version']}"

        jobs.append(("quarantine", store.url, store_probe))

    async def one(name: str, address: str, probe: Any) -> tuple[str, str, bool, str, float]:
        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                answer = str(await probe())
        except TimeoutError:
            return name, address, False, f"no answer within {timeout:g}s", time.monotonic() - start
        except Exception as exc:  # down, refused, garbage: the plugin's message says which
            return name, address, False, str(exc) or type(exc).__name__, time.monotonic() - start
        return name, address, True, answer, time.monotonic() - start

    return list(await asyncio.gather(*(one(*job) for job in jobs)))


def cmd_plugins(args: argparse.Namespace) -> int:
    rows = [(p.name, p.distribution, p.version, p.target) for p in Registry()]
    if not rows:
        print("no scanner plugins installed (entry-point group mxscan.scanners)")
        return EXIT_OK
    _table(("PLUGIN", "DISTRIBUTION", "VERSION", "FACTORY"), rows, sys.stdout)
    return EXIT_OK


class _Progress:
    """A one-line progress bar on stderr when it is a terminal."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled and total > 1 and sys.stderr.isatty()

    def step(self) -> None:
        self.done += 1
        if self.enabled:
            width = 30
            filled = width * self.done // self.total
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
            if self.done == self.total:
                sys.stderr.write("\r" + " " * (width + 30) + "\r")
            sys.stderr.flush()


def _verdict_dict(result: Result) -> dict[str, Any]:
    return {
        "action": str(result.verdict.action),
        "reason": result.verdict.reason,
        "policy": result.policy,
        "recipients": list(result.recipients),
        "scanners": [
            {
                "scanner": v.scanner,
                "action": str(v.action),
                "status": v.token,
                "reason": v.reason,
                "score": v.score,
                "findings": list(v.findings),
            }
            for v in result.verdicts
        ],
        "edits": [str(e) for e in result.edits],
        "splits": [_verdict_dict(s) for s in result.splits],
    }


async def _scan_files(
    args: argparse.Namespace, engine: PolicyRouter, config: Config
) -> list[tuple[str, Any]]:
    envelope = Envelope(
        sender=args.sender,
        recipients=tuple(args.rcpt),
        client_address=args.client_address,
        helo=args.helo,
    )
    progress = _Progress(len(args.files), not args.no_progress)
    limit = asyncio.Semaphore(max(1, args.jobs))

    async def one(name: str) -> tuple[str, Any]:
        async with limit:
            try:
                threshold, spool_dir = config.spool_threshold, config.spool_dir
                if name == "-":
                    message = Message.from_stream(
                        sys.stdin.buffer, envelope=envelope,
                        spool_threshold=threshold, spool_dir=spool_dir,
                    )  # fmt: skip
                else:
                    message = Message.from_file(
                        name, envelope=envelope, spool_threshold=threshold, spool_dir=spool_dir
                    )
            except OSError as exc:
                progress.step()
                return name, OSError(exc.strerror or str(exc))
            started = time.monotonic()
            try:
                result = await engine.scan(message)
            finally:
                message.close()
            progress.step()
            if args.log:
                elapsed = time.monotonic() - started
                for line in format_lines(result, name, elapsed=elapsed, size=message.size):
                    logging.getLogger("mxscan").info("%s", line)
            return name, result

    return list(await asyncio.gather(*(one(name) for name in args.files)))


def cmd_scan(args: argparse.Namespace) -> int:
    config = _load(args)
    if args.log:
        setup_logging(config.log_target, config.log_facility, config.log_level)
    engine = config.build()

    async def run() -> list[tuple[str, Any]]:
        try:
            return await _scan_files(args, engine, config)
        finally:
            await engine.aclose()

    outcomes = asyncio.run(run())
    status = EXIT_OK
    rows = []
    records = []
    for name, outcome in outcomes:
        if isinstance(outcome, OSError):
            status = EXIT_ERROR
            # Scripts read stderr for what went wrong; the row keeps the table whole.
            print(f"mxscan: error: {name}: cannot read: {outcome}", file=sys.stderr)
            rows.append((name, "error", f"cannot read: {outcome}"))
            records.append({"file": name, "error": f"cannot read: {outcome}"})
            continue
        if status == EXIT_OK:
            status = exit_status(outcome.verdict.action)
        scanners = " ".join(f"{v.scanner}={v.token}" for v in outcome.verdicts)
        rows.append((name, str(outcome.verdict.action), scanners))
        records.append({"file": name, **_verdict_dict(outcome)})
    if args.json:
        json.dump(records, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _table(("FILE", "ACTION", "VERDICTS"), rows, sys.stdout)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"mxscan: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into head(1) and closed early: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
