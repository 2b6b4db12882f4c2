"""``mxscan milter``: run the pipeline behind Postfix's ``smtpd_milters``.

Signals: SIGTERM/SIGINT stop accepting and let scans in flight finish (bounded by
``--drain-timeout``); SIGHUP reloads the configuration, keeping the old one when the
new file is bad. Every user error ends in one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging

from mxscan.adapters.milter.server import MilterServer, ensure_fd_room
from mxscan.adapters.milter.session import Limits
from mxscan.addresses import parse_address
from mxscan.cliargs import config_arg
from mxscan.config import Config
from mxscan.service import args as types
from mxscan.service.exporter import Exporter, add_metrics_options
from mxscan.service.lifecycle import serve_until_signalled
from mxscan.service.privileges import check_as_user
from mxscan.service.serving import EXIT_OK, bind_and_serve, run_command
from mxscan.units import format_size

log = logging.getLogger("mxscan.milter")

DEFAULT_LISTEN = "unix:/run/mxscan/milter.sock"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "milter",
        help="run as a Postfix milter (smtpd_milters = unix:/path)",
        description="Serve the scanning pipeline with the Sendmail/Postfix milter protocol.",
    )
    config_arg(p)
    types.add_listen_option(p, DEFAULT_LISTEN)
    types.add_socket_options(p)
    p.add_argument("--drain-timeout", type=types.duration, default=30.0, metavar="TIME",
                   help="on SIGTERM, wait this long for scans in flight (default 30s)")  # fmt: skip
    p.add_argument("--progress-interval", type=types.duration, default=10.0, metavar="TIME",
                   help="keepalive to the MTA this often during a scan (default 10s)")  # fmt: skip
    p.add_argument("--default-action", choices=("tempfail", "accept", "reject"),
                   default="tempfail",
                   help="answer when the pipeline itself fails (default tempfail)")  # fmt: skip
    add_metrics_options(p)
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
    g.add_argument("--max-connections", type=types.positive_int, default=1000, metavar="N",
                   help="connections served at once; past it a new one gets a tempfail "
                        "(default 1000)")  # fmt: skip
    g.add_argument("--listen-backlog", type=types.positive_int, default=None, metavar="N",
                   help="connections the kernel queues before they are accepted "
                        "(default SOMAXCONN)")  # fmt: skip
    g.add_argument("--idle-timeout", type=types.duration, default=600.0, metavar="TIME",
                   help="close a connection silent this long, with a tempfail "
                        "(default 10m; Postfix's smtpd_timeout is 5m)")  # fmt: skip
    g.add_argument("--packet-timeout", type=types.duration, default=60.0, metavar="TIME",
                   help="a packet begun must be whole within this (default 60s)")  # fmt: skip
    g.add_argument("--max-macros", type=types.positive_int, default=d.max_macros, metavar="N",
                   help=f"macros kept per connection (default {d.max_macros})")  # fmt: skip
    g.add_argument("--max-macro-bytes", type=types.size, default=d.max_macro_bytes, metavar="SIZE",
                   help="bytes of macros kept per connection "
                        f"(default {format_size(d.max_macro_bytes)})")  # fmt: skip
    g.add_argument("--max-headers", type=types.positive_int, default=d.max_headers, metavar="N",
                   help="header fields per message; past it 552 5.3.4 "
                        f"(default {d.max_headers})")  # fmt: skip
    g.add_argument("--max-header-bytes", type=types.size, default=d.max_header_bytes,
                   metavar="SIZE", help="bytes of header fields per message; past it 552 "
                   f"5.3.4 (default {format_size(d.max_header_bytes)})")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    return run_command(args.config, lambda config: _main(args, config))


async def _main(args: argparse.Namespace, config: Config) -> int:
    exporter = Exporter(args.metrics, args.probe_interval, log)
    engine = config.build()
    ensure_fd_room(args.max_connections)
    server = MilterServer(
        exporter.wrap(engine),
        progress_interval=args.progress_interval,
        split_policies=args.split_policies,
        default_action=args.default_action,
        spool_threshold=config.spool_threshold,
        spool_dir=config.spool_dir,
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
        exporter.listen()
        await bind_and_serve(
            args.listen or [parse_address(DEFAULT_LISTEN)],
            types.permissions(args),
            serve=server.serve,
            stop=server.stop,
            user=args.user,
            backlog=server.backlog,
        )
        if args.user:
            await check_as_user(config.source, args.user)
    except BaseException:
        await server.stop(0)
        exporter.close()
        raise

    await serve_until_signalled(
        log, server.holder, config.source, stop=server.stop, drain_timeout=args.drain_timeout,
        exporter=exporter,
    )  # fmt: skip
    return EXIT_OK
