"""``mxscan smtp`` / ``mxscan lmtp``: the after-queue content filter's subcommands.

Loopback only, like Postfix's own advice for content filters: the listener
trusts its client's XFORWARD, so anyone who can connect could forge the client
facts ``skip_networks`` reads. SIGTERM/SIGINT drain, SIGHUP reloads, every user
error is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from mxscan.addresses import Address
from mxscan.cliargs import config_arg
from mxscan.config import Config, load_given_config
from mxscan.errors import ConfigError
from mxscan.logline import setup_logging
from mxscan.service import args as types
from mxscan.service.engines import EngineHolder, EngineLike
from mxscan.service.lifecycle import Reloader, run_until_signalled
from mxscan.service.listen import ListenError, is_loopback
from mxscan.service.serving import bind_and_serve

log = logging.getLogger("mxscan.smtp")

EXIT_OK = 0
EXIT_ERROR = 2
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
    p.add_argument("-l", "--listen", action="append", type=types.address, metavar="ADDR",
                   help=f"inet:HOST:PORT or unix:/path (repeatable; {DEFAULTS[name]})")  # fmt: skip
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
    try:
        _check_loopback(args.listen)
        config = load_given_config(args.config)
        setup_logging(config.log_target, config.log_facility, config.log_level)
        return asyncio.run(_main(args, config))
    except (ConfigError, ListenError) as exc:
        print(f"mxscan: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK


async def _main(args: argparse.Namespace, config: Config) -> int:
    from .nexthop import NextHop
    from .server import SmtpServer

    holder: EngineHolder[EngineLike] = EngineHolder(config.build())
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
    await bind_and_serve(
        args.listen, types.permissions(args), serve=server.serve, stop=server.stop, user=args.user
    )
    source = config.source
    reloader = Reloader(holder, lambda: load_given_config(source).build(), source, log)
    await run_until_signalled(
        log, drain=server.stop, drain_timeout=args.drain_timeout, reload=reloader.start
    )
    return EXIT_OK
