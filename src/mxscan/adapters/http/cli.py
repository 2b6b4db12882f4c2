"""``mxscan http``: the pipeline as an HTTP scanning API in rspamd's protocol.

Loopback only unless ``--allow-remote`` is given, and then only with a password
(rspamd's ``Password`` request header). Signals as for the milter: SIGTERM/SIGINT
drain, SIGHUP reloads. Every user error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mxscan.addresses import parse_address
from mxscan.cliargs import config_arg
from mxscan.config import Config, load_given_config
from mxscan.errors import ConfigError
from mxscan.service import args as types
from mxscan.service.engines import EngineHolder, EngineLike
from mxscan.service.lifecycle import Reloader, run_until_signalled
from mxscan.service.listen import is_loopback
from mxscan.service.serving import EXIT_ERROR, EXIT_OK, bind_and_serve, run_command
from mxscan.verdict import Action

log = logging.getLogger("mxscan.http")

DEFAULT_LISTEN = "inet:127.0.0.1:11333"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "http",
        help="serve an HTTP scanning API in rspamd's protocol (POST /checkv2)",
        description=(
            "Serve the scanning pipeline over HTTP: rspamd's /checkv2 and /check (for "
            "rspamc, Haraka, Exim's variant=rspamd, OpenSMTPD), /v1/scan (mxscan's own "
            "JSON), /ping and /metrics. Needs mxscan[http]."
        ),
    )
    config_arg(p)
    types.add_listen_option(p, DEFAULT_LISTEN)
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --listen (needs --password-file)")  # fmt: skip
    p.add_argument("--password-file", metavar="FILE",
                   help="require a Password header equal to FILE's first line")  # fmt: skip
    types.add_socket_options(p)
    p.add_argument("--max-size", type=types.size, default=64 * 1024 * 1024, metavar="SIZE",
                   help="refuse bodies over SIZE with 413 (default 64M)")  # fmt: skip
    p.add_argument("--max-connections", type=types.positive_int, default=512, metavar="N",
                   help="connections served at once; more wait (default 512)")  # fmt: skip
    p.add_argument("--max-headers", type=types.positive_int, default=100, metavar="N",
                   help="request headers allowed (default 100)")  # fmt: skip
    p.add_argument("--max-header-bytes", type=types.size, default=16 * 1024, metavar="SIZE",
                   help="size of the request line and headers (default 16K)")  # fmt: skip
    p.add_argument("--header-timeout", type=types.duration, default=10.0, metavar="TIME",
                   help="time a client has to send a request's headers (default 10s)")  # fmt: skip
    p.add_argument("--read-timeout", type=types.duration, default=30.0, metavar="TIME",
                   help="bound on each body read and each write (default 30s)")  # fmt: skip
    p.add_argument("--idle-timeout", type=types.duration, default=60.0, metavar="TIME",
                   help="close a keep-alive connection idle this long (default 60s)")  # fmt: skip
    p.add_argument("--drain-timeout", type=types.duration, default=30.0, metavar="TIME",
                   help="on SIGTERM, wait this long for scans in flight (default 30s)")  # fmt: skip
    p.add_argument("--default-action", choices=("tempfail", "accept", "reject"),
                   default="tempfail",
                   help="answer when the pipeline itself fails (default tempfail: "
                        "rspamd's 'soft reject')")  # fmt: skip
    p.add_argument("--metrics", action="store_true",
                   help="serve GET /metrics for Prometheus (needs mxscan[metrics])")  # fmt: skip
    p.set_defaults(func=run)


def _password(args: argparse.Namespace) -> str | None:
    if not args.password_file:
        return None
    try:
        text = Path(args.password_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--password-file {args.password_file}: {exc}") from None
    password = text.splitlines()[0].strip() if text.strip() else ""
    if not password:
        raise ConfigError(f"--password-file {args.password_file} is empty")
    return password


def _check_remote(args: argparse.Namespace, password: str | None) -> None:
    remote = [a for a in args.listen if not is_loopback(a)]
    if not remote:
        return
    names = ", ".join(str(a) for a in remote)
    if not args.allow_remote:
        raise ConfigError(f"{names} is not a loopback address: add --allow-remote to serve it")
    if password is None:
        raise ConfigError(f"{names}: a non-loopback address needs --password-file")


def run(args: argparse.Namespace) -> int:
    try:
        import h11  # noqa: F401
    except ImportError:
        print("mxscan: error: mxscan http needs h11: pip install 'mxscan[http]'", file=sys.stderr)
        return EXIT_ERROR
    args.listen = args.listen or [parse_address(DEFAULT_LISTEN)]
    checked: list[str | None] = []

    def check() -> None:
        checked.append(_password(args))
        _check_remote(args, checked[0])

    return run_command(args.config, lambda config: _main(args, config, checked[0]), check)


async def _main(args: argparse.Namespace, config: Config, password: str | None) -> int:
    from .server import HttpServer, Limits

    metrics = None
    if args.metrics:
        from mxscan.service.metrics import Metrics

        metrics = Metrics()
    engine = config.build()
    if metrics:
        metrics.track(engine)
    holder: EngineHolder[EngineLike] = EngineHolder(engine)
    server = HttpServer(
        holder,
        limits=Limits(
            max_size=args.max_size,
            max_header_bytes=args.max_header_bytes,
            max_headers=args.max_headers,
            header_timeout=args.header_timeout,
            read_timeout=args.read_timeout,
            idle_timeout=args.idle_timeout,
            max_connections=args.max_connections,
        ),
        password=password,
        default_action=Action.parse(args.default_action),
        spool_threshold=config.spool_threshold,
        spool_dir=config.spool_dir,
        metrics=metrics,
    )
    await bind_and_serve(
        args.listen, types.permissions(args), serve=server.serve, stop=server.stop, user=args.user
    )
    source = config.source
    reloader = Reloader(
        holder,
        lambda: _rebuilt(source, metrics),
        source,
        log,
        on_reload=metrics.reloaded if metrics else None,
    )
    await run_until_signalled(
        log, drain=server.stop, drain_timeout=args.drain_timeout, reload=reloader.start
    )
    return EXIT_OK


def _rebuilt(source: str, metrics: object) -> EngineLike:
    engine = load_given_config(source).build()
    track = getattr(metrics, "track", None)
    if track is not None:
        track(engine)
    return engine
