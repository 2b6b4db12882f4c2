"""``mxscan milter``: run the pipeline behind Postfix's ``smtpd_milters``.

Signals: SIGTERM/SIGINT stop accepting and let scans in flight finish (bounded by
``--drain-timeout``); SIGHUP reloads the configuration, keeping the old one when the
new file is bad. Every user error ends in one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from mxscan.adapters.milter.server import (
    MilterServer,
    ServerError,
    drop_privileges,
    ensure_fd_room,
    unreadable_install_path,
)
from mxscan.adapters.milter.session import Limits
from mxscan.addresses import Address, parse_address
from mxscan.cliargs import config_arg
from mxscan.config import Config, load_given_config
from mxscan.errors import ConfigError
from mxscan.logline import setup_logging
from mxscan.metrics import Metrics, MetricsServer
from mxscan.units import format_size, parse_duration, parse_size

log = logging.getLogger("mxscan.milter")

EXIT_OK = 0
EXIT_ERROR = 2


def _mode(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode such as 0660") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not a permission mode")
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _interval(text: str) -> float:
    seconds = _duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 seconds")
    return seconds


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def _address(text: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "milter",
        help="run as a Postfix milter (smtpd_milters = unix:/path)",
        description="Serve the scanning pipeline with the Sendmail/Postfix milter protocol.",
    )
    config_arg(p)
    p.add_argument(
        "-l", "--listen", action="append", type=_address, metavar="ADDR",
        help="unix:/path or inet:host:port (repeatable; default unix:/run/mxscan/milter.sock)",
    )  # fmt: skip
    p.add_argument("--socket-mode", type=_mode, default=0o660, metavar="MODE",
                   help="permissions of a unix socket (default 0660)")  # fmt: skip
    p.add_argument("--socket-owner", metavar="USER", help="owner of a unix socket")
    p.add_argument("--socket-group", metavar="GROUP",
                   help="group of a unix socket (e.g. postfix)")  # fmt: skip
    p.add_argument("--user", metavar="USER", help="drop privileges to USER after binding")
    p.add_argument("--drain-timeout", type=_duration, default=30.0, metavar="TIME",
                   help="on SIGTERM, wait this long for scans in flight (default 30s)")  # fmt: skip
    p.add_argument("--progress-interval", type=_duration, default=10.0, metavar="TIME",
                   help="keepalive to the MTA this often during a scan (default 10s)")  # fmt: skip
    p.add_argument("--default-action", choices=("tempfail", "accept", "reject"),
                   default="tempfail",
                   help="answer when the pipeline itself fails (default tempfail)")  # fmt: skip
    p.add_argument("--metrics", type=_address, metavar="inet:HOST:PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics "
                        "(needs mxscan[metrics])")  # fmt: skip
    p.add_argument("--probe-interval", type=_interval, default=15.0, metavar="TIME",
                   help="with --metrics: health-probe each scanner whose plugin can "
                        "(clamd and spamd PING) this often (default 15s)")  # fmt: skip
    p.add_argument("--no-split-policies", dest="split_policies", action="store_false",
                   help="accept recipients of differing domain policies together")  # fmt: skip
    p.add_argument("--mta", choices=("auto", "postfix", "sendmail"), default="auto",
                   help="whose header index rules to follow (default auto: from the MTA's "
                        "'v' macro, Postfix if it sends none)")  # fmt: skip
    _limit_args(p)
    p.set_defaults(func=run)


def _limit_args(p: argparse.ArgumentParser) -> None:
    """What one MTA connection may cost; past a limit it gets a tempfail or a reject
    and the milter logs one line (docs/milter.md, "Limits")."""
    d = Limits()
    g = p.add_argument_group(
        "limits", "defaults far above what a real MTA sends; each refusal is logged once"
    )
    g.add_argument("--max-connections", type=_count, default=1000, metavar="N",
                   help="connections served at once; past it a new one gets a tempfail "
                        "(default 1000)")  # fmt: skip
    g.add_argument("--listen-backlog", type=_count, default=None, metavar="N",
                   help="connections the kernel queues before they are accepted "
                        "(default SOMAXCONN)")  # fmt: skip
    g.add_argument("--idle-timeout", type=_interval, default=600.0, metavar="TIME",
                   help="close a connection silent this long, with a tempfail "
                        "(default 10m; Postfix's smtpd_timeout is 5m)")  # fmt: skip
    g.add_argument("--packet-timeout", type=_interval, default=60.0, metavar="TIME",
                   help="a packet begun must be whole within this (default 60s)")  # fmt: skip
    g.add_argument("--max-macros", type=_count, default=d.max_macros, metavar="N",
                   help=f"macros kept per connection (default {d.max_macros})")  # fmt: skip
    g.add_argument("--max-macro-bytes", type=_size, default=d.max_macro_bytes, metavar="SIZE",
                   help="bytes of macros kept per connection "
                        f"(default {format_size(d.max_macro_bytes)})")  # fmt: skip
    g.add_argument("--max-headers", type=_count, default=d.max_headers, metavar="N",
                   help="header fields per message; past it 552 5.3.4 "
                        f"(default {d.max_headers})")  # fmt: skip
    g.add_argument("--max-header-bytes", type=_size, default=d.max_header_bytes,
                   metavar="SIZE", help="bytes of header fields per message; past it 552 "
                   f"5.3.4 (default {format_size(d.max_header_bytes)})")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    try:
        config = load_given_config(args.config)
        setup_logging(config.log_target, config.log_facility, config.log_level)
        return asyncio.run(_main(args, config))
    except (ConfigError, ServerError) as exc:
        print(f"mxscan: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK


async def _check_as_user(config_path: str, user: str) -> None:
    """Load and build the configuration again, now as ``user``: exactly what a
    SIGHUP reload will do. Plugins that ``user`` cannot find or import, tables it
    cannot read, are a start-up error now rather than a reload failing later."""
    try:
        engine = load_given_config(config_path).build()
    except Exception as exc:
        where = unreadable_install_path()
        hint = f"; {user} cannot read {where}: install mxscan where {user} can" if where else ""
        what = str(exc) if config_path in str(exc) else f"{config_path}: {exc}"
        raise ServerError(
            f"as user {user}, the configuration does not load, so no reload could: {what}{hint}"
        ) from None
    await engine.aclose()


async def _main(args: argparse.Namespace, config: Config) -> int:
    metrics = Metrics() if args.metrics else None
    metrics_server: MetricsServer | None = None
    engine = config.build()
    ensure_fd_room(args.max_connections)
    server = MilterServer(
        metrics.instrument(engine) if metrics else engine,
        progress_interval=args.progress_interval,
        split_policies=args.split_policies,
        default_action=args.default_action,
        spool_threshold=config.spool_threshold,
        spool_dir=config.spool_dir,
        socket_mode=args.socket_mode,
        socket_owner=args.socket_owner,
        socket_group=args.socket_group,
        limits=Limits(
            max_macros=args.max_macros,
            max_macro_bytes=args.max_macro_bytes,
            max_headers=args.max_headers,
            max_header_bytes=args.max_header_bytes,
        ),
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        packet_timeout=args.packet_timeout,
        backlog=args.listen_backlog,
        mta=args.mta,
    )
    try:
        for address in args.listen or [parse_address("unix:/run/mxscan/milter.sock")]:
            await server.listen(address)
        if metrics:
            metrics_server = metrics.serve(args.metrics)
            log.info("metrics listening on %s", metrics_server.address)
        if args.user:
            drop_privileges(args.user)
            await _check_as_user(config.source, args.user)
    except BaseException:
        await server.stop(0)
        if metrics_server:
            metrics_server.close()
        raise

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    config_path = config.source
    probes = (
        asyncio.ensure_future(metrics.probe_forever(lambda: server.engine, args.probe_interval))
        if metrics
        else None
    )

    async def reload() -> None:
        try:
            new = load_given_config(config_path).build()
        except Exception as exc:  # a bad file must never take the milter down
            log.error("reload failed, keeping the old configuration: %s", exc)
            if metrics:
                metrics.reloaded(ok=False)
            return
        server.replace_engine(metrics.instrument(new) if metrics else new)
        if metrics:
            metrics.reloaded(ok=True)
        log.info("configuration reloaded from %s", config_path)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload()))
    # Only now is it safe to send mail, SIGHUP or SIGTERM: sockets bound, privileges
    # dropped, handlers installed. Service scripts and tests wait for this line.
    log.info("ready (pid %d)", os.getpid())
    await stop.wait()
    log.info("stopping: draining scans in flight (up to %ss)", args.drain_timeout)
    if probes:
        probes.cancel()
    await server.stop(args.drain_timeout)
    if metrics_server:
        metrics_server.close()
    return EXIT_OK
