"""The ``mxscan pipe`` subcommand's arguments.

Even a usage error must end in 75 (Postfix retries; the admin fixes master.cf)
rather than argparse's status 2, which pipe(8) would turn into a bounce. So the
subparser reports its errors through the same status-line path as everything
else.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from mxscan.cliargs import config_arg
from mxscan.service import args as types

from .exitcodes import ExitCode, dsn_line
from .output import write_fd
from .reinject import DEFAULT_SENDMAIL, DEFAULT_TIMEOUT

__all__ = ["add_parser"]


class _PipeArgumentParser(argparse.ArgumentParser):
    """Usage errors and unknown options exit 75 with a ``4.3.5`` status line."""

    def error(self, message: str) -> NoReturn:
        line = dsn_line(ExitCode.TEMPFAIL, "4.3.5", f"mxscan pipe: usage error: {message}")
        write_fd(1, line + "\n")
        sys.exit(int(ExitCode.TEMPFAIL))

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if args is not None:
            args = self._glue_values(list(args))
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def _glue_values(self, args: list[str]) -> list[str]:
        """``-f -x@example.org`` -> ``--sender=-x@example.org``.

        Postfix passes ``${sender}`` and ``${client_helo}`` as separate words, and
        both are chosen by the SMTP client: a value starting with ``-`` must not
        turn into a usage error (a deferral until the message expires).
        """
        takes_value = {
            option: max(action.option_strings, key=len)
            for action in self._actions
            if action.option_strings
            and action.nargs is None
            and action.const is None
            and not isinstance(action, argparse._StoreConstAction)
            for option in action.option_strings
        }
        out: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                out += args[i:]
                break
            if arg in takes_value and i + 1 < len(args):
                out.append(f"{takes_value[arg]}={args[i + 1]}")
                i += 2
                continue
            out.append(arg)
            i += 1
        return out


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "pipe",
        help="run as a Postfix pipe(8) content filter (stdin -> scan -> sendmail)",
        description="Read one message on stdin, scan it, and re-inject it with "
        "`sendmail -G -i -f SENDER -- RECIPIENT...` (or write it with --output). "
        "Recipients whose domains have different [policy] sections get their own verdict "
        "and their own re-injection.",
        epilog="Exit status (sysexits.h, for Postfix's pipe(8)): 0 re-injected or discarded, "
        "69 rejected (the first output line is the 5.x.x bounce text), 75 anything else "
        "(tempfail, scanner error, bad input, re-injection failed): Postfix retries.",
    )
    # Swap the class in place: the subparsers object decides the class, and only
    # this subcommand must never exit with argparse's status 2.
    p.__class__ = _PipeArgumentParser
    config_arg(p)
    p.add_argument(
        "-f",
        "--sender",
        default="",
        metavar="SENDER",
        help="envelope sender, Postfix's ${sender} (empty: the null sender)",
    )
    p.add_argument(
        "recipients",
        nargs="*",
        metavar="RECIPIENT",
        help="envelope recipients, Postfix's ${recipient} (after --)",
    )
    p.add_argument("--queue-id", default="", metavar="ID", help="Postfix's ${queue_id}, for logs")
    p.add_argument("--client-address", default="", metavar="IP", help="${client_address}")
    p.add_argument("--client-name", default="", metavar="NAME", help="${client_hostname}")
    p.add_argument("--helo", default="", metavar="NAME", help="${client_helo}")
    p.add_argument("--sasl-username", default="", metavar="USER", help="${sasl_username}")
    p.add_argument("--sasl-method", default="", metavar="MECH", help="${sasl_method}")
    p.add_argument(
        "--client-protocol",
        default="",
        metavar="PROTO",
        help="${client_protocol} (SMTP, ESMTP, ...). Client facts not given are read "
        "from the Received: line Postfix wrote on top of the message",
    )
    p.add_argument(
        "--sendmail",
        metavar="COMMAND",
        help=f"re-injection command, split like a shell would but never run by one "
        f"(default {' '.join(DEFAULT_SENDMAIL)}); -G -i -f SENDER -- "
        f"RECIPIENT... are appended, -t is refused",
    )
    p.add_argument(
        "--sendmail-timeout",
        type=types.duration,
        default=DEFAULT_TIMEOUT,
        metavar="TIME",
        help=f"give up on sendmail after TIME (default {DEFAULT_TIMEOUT:g}s)",
    )
    quarantine = p.add_mutually_exclusive_group()
    quarantine.add_argument(
        "--quarantine",
        choices=("hold",),
        help="QUARANTINE: re-inject with an X-Mxscan-Hold header that the "
        "re-injection cleanup's header_checks HOLDs "
        "(docs/pipe.md)",
    )
    quarantine.add_argument(
        "--quarantine-to",
        metavar="ADDRESS",
        help="QUARANTINE: re-inject to ADDRESS instead of the recipients",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the final message to FILE ('-' for stdout) instead of "
        "re-injecting; one verdict for all recipients",
    )

    def run(args: argparse.Namespace) -> int:
        from .runner import run as run_pipe

        return run_pipe(args)

    p.set_defaults(func=run)
