"""``mxscan smtp`` / ``mxscan lmtp``: the after-queue content filter's subcommands.

Loopback only, like Postfix's own advice for content filters: the listener
trusts its client's XFORWARD, so anyone who can connect could forge the client
facts ``skip_networks`` reads. SIGTERM/SIGINT drain, SIGHUP reloads, every user
error is one line on stderr.
"""

from __future__ import annotations

import argparse
import logging

from mxscan.addresses import Address
from mxscan.cliargs import config_arg
from mxscan.config import Config
from mxscan.errors import ConfigError
from mxscan.service import args as types
from mxscan.service.engines import EngineHolder, EngineLike
from mxscan.service.exporter import Exporter, add_metrics_options
from mxscan.service.lifecycle import serve_until_signalled
from mxscan.service.listen import is_loopback
from mxscan.service.serving import EXIT_OK, bind_and_serve, run_command

log = logging.getLogger("mxscan.smtp")

#: Postfix's own default message_size_limit: set --max-size to main.cf's value.
POSTFIX_SIZE_LIMIT = 10240000
DEFAULTS = {"smtp": "inet:127.0.0.1:10024", "lmtp": "inet:127.0.0.1:10024"}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name in ("smtp", "lmtp"):
        _add(subparsers, name)


def _add(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str) -> None:
    per_rcpt = (
        "one reply per recipient after DATA: each recipient policy gets its own verdict"
        if name == "lmtp"
        else "recipients of another policy than the first are deferred at RCPT (452 4.5.3)"
    )
    p = subparsers.add_parser(
        name,
        help=f"after-queue content filter over {name.upper()} (Postfix content_filter)",
        description=(
            f"Receive queued mail from Postfix's content_filter over {name.upper()}, scan "
            "it and pass it on to --next (a second Postfix smtpd). 250 is answered only "
            "once the next hop answered 250 (or the message was discarded); any failure "
            f"answers 451, so Postfix keeps the mail. {per_rcpt[0].upper()}{per_rcpt[1:]}."
        ),
        epilog=(
            "Passed on to the next hop as received: XFORWARD (the original client), "
            "BODY=8BITMIME, SMTPUTF8 (a next hop without it gets 451: the mail waits) "
            "and the DSN parameters RET=, ENVID=, NOTIFY=, ORCPT= (dropped, and logged "
            "dsn=dropped, if the next hop announces no DSN); SIZE= is the size of what "
            "is sent, edits included. Duplicate window: if mxscan dies after the next "
            "hop's 250 but before Postfix reads mxscan's, Postfix retries and the "
            "message is delivered twice (never lost); only the write of the reply lies "
            "in between. Exit status: 0 after SIGTERM/SIGINT, 2 bad usage or "
            "configuration (one line on stderr)."
        ),
    )
    config_arg(p)
    types.add_listen_option(p, DEFAULTS[name])
    p.add_argument("--next", required=True, type=types.address, metavar="ADDR",
                   help="the re-injection smtpd: inet:HOST:PORT or unix:/path")  # fmt: skip
    p.add_argument("--max-size", type=types.size, default=POSTFIX_SIZE_LIMIT, metavar="SIZE",
                   help="refuse bigger messages with 552, at MAIL (SIZE=) and DATA; set "
                        "it to main.cf's message_size_limit (default 10240000, Postfix's "
                        "default)")  # fmt: skip
    p.add_argument("--max-recipients", type=types.positive_int, default=1000, metavar="N",
                   help="recipients per transaction; more get 452 (default 1000)")  # fmt: skip
    if name == "smtp":
        p.add_argument("--no-split-policies", dest="split_policies", action="store_false",
                       help="accept recipients of different policies in one transaction "
                            "(scanned per policy, the most severe verdict answers)")  # fmt: skip
    p.add_argument("--hostname", default="localhost",
                   help="greeting and EHLO name (default localhost)")  # fmt: skip
    p.add_argument("--timeout", type=types.duration, default=300.0, metavar="TIME",
                   help="bound on each read from Postfix (default 300s)")  # fmt: skip
    p.add_argument("--next-timeout", type=types.duration, default=60.0, metavar="TIME",
                   help="bound on connecting and each command reply of the next hop "
                        "(default 60s)")  # fmt: skip
    p.add_argument("--next-data-timeout", type=types.duration, default=300.0, metavar="TIME",
                   help="bound on the next hop's reply to the message (300s)")  # fmt: skip
    p.add_argument("--next-connections", type=types.positive_int, default=32, metavar="N",
                   help="idle connections to the next hop kept open (default 32)")  # fmt: skip
    types.add_socket_options(p)
    add_metrics_options(p)
    p.add_argument("--drain-timeout", type=types.duration, default=30.0, metavar="TIME",
                   help="on SIGTERM, wait this long for messages in flight (default 30s); "
                        "the rest are cut and Postfix retries them")  # fmt: skip
    p.set_defaults(func=run, protocol=name)


def _check_loopback(addresses: list[Address]) -> None:
    remote = [a for a in addresses if not is_loopback(a)]
    if remote:
        names = ", ".join(str(a) for a in remote)
        raise ConfigError(
            f"{names} is not a loopback address: the filter trusts XFORWARD from its "
            "clients, so it listens on loopback or a unix socket only"
        )


def run(args: argparse.Namespace) -> int:
    args.listen = args.listen or [types.address(DEFAULTS[args.protocol])]
    return run_command(
        args.config, lambda config: _main(args, config), lambda: _check_loopback(args.listen)
    )


async def _main(args: argparse.Namespace, config: Config) -> int:
    from .nexthop import NextHop
    from .server import SmtpServer

    exporter = Exporter(args.metrics, args.probe_interval, log)
    holder: EngineHolder[EngineLike] = EngineHolder(exporter.wrap(config.build()))
    nexthop = NextHop(
        args.next,
        helo=args.hostname,
        timeout=args.next_timeout,
        data_timeout=args.next_data_timeout,
        pool_size=args.next_connections,
    )
    server = SmtpServer(
        holder,
        nexthop,
        lmtp=args.protocol == "lmtp",
        hostname=args.hostname,
        max_size=args.max_size,
        max_recipients=args.max_recipients,
        split_policies=getattr(args, "split_policies", True),
        timeout=args.timeout,
        spool_threshold=config.spool_threshold,
        spool_dir=config.spool_dir,
    )
    try:
        exporter.listen()
    except BaseException:
        await server.stop(0)
        raise
    try:
        await bind_and_serve(
            args.listen, types.permissions(args), serve=server.serve, stop=server.stop,
            user=args.user,
        )  # fmt: skip
    except BaseException:
        exporter.close()
        raise
    await serve_until_signalled(
        log, holder, config.source, stop=server.stop, drain_timeout=args.drain_timeout,
        exporter=exporter,
    )  # fmt: skip
    return EXIT_OK
