"""``mxscan quarantine ...`` and ``mxscan learn``: find, show, release, delete
and expire kept messages; teach the scanners that can learn.

Output is a table or, with ``--json``, what the store holds. Errors are one line
on stderr and exit status 2; a refused release (already released, next hop said
no) is exit status 1 and the other IDs are still released.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from mxscan.cliargs import config_arg, table
from mxscan.errors import ConfigError
from mxscan.quarantine.record import Record
from mxscan.quarantine.release import ReleaseError, deliver
from mxscan.quarantine.settings import QuarantineSettings, parse_age
from mxscan.quarantine.store import Filter, Store, StoreError, open_store
from mxscan.units import format_size

EXIT_OK, EXIT_REFUSED, EXIT_ERROR = 0, 1, 2


def _common(p: argparse.ArgumentParser) -> None:
    config_arg(p)
    p.add_argument("--store", metavar="URL", help="the store to use instead of [quarantine] store")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = subparsers.add_parser(
        "quarantine",
        help="list, show, release, delete and expire quarantined messages",
        description="Work with the messages kept by [quarantine]: the bytes as received, "
        "the envelope and every scanner's verdict. IDs are those `list` prints.",
        epilog="Exit status: 0 done, 1 a release was refused (already released, or the next "
        "hop said no), 2 bad arguments, configuration or store.",
    )
    sub = q.add_subparsers(dest="quarantine_command", metavar="ACTION")

    ls = sub.add_parser("list", help="list kept messages, oldest first")
    _common(ls)
    ls.add_argument("--since", metavar="AGE", help="kept within AGE (2d, 12h, 30m)")
    ls.add_argument("--sender", help="envelope sender contains TEXT (any case)")
    ls.add_argument("--rcpt", help="a recipient contains TEXT (any case)")
    ls.add_argument("--action", choices=("discard", "reject", "quarantine"),
                    help="the final verdict's action")  # fmt: skip
    ls.add_argument("--min-score", type=float, metavar="N", help="highest score at least N")
    ls.add_argument("--scanner", metavar="NAME", help="decided by, or judged by, scanner NAME")
    ls.add_argument("--limit", type=int, metavar="N", help="at most N messages")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="print one message's record, or its bytes with --raw")
    _common(show)
    show.add_argument("id", metavar="ID")
    show.add_argument("--raw", action="store_true", help="the message bytes as received")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=cmd_show)

    rel = sub.add_parser(
        "release",
        help="re-inject messages with their original envelope",
        description="Send each message, as stored, to its original recipients (or --to) "
        "from its original sender, through [quarantine] release: sendmail:PATH "
        "(`sendmail -G -i -f SENDER -- RCPT...`) or smtp://HOST:PORT (a next hop that does "
        "not scan again). Each release is recorded; releasing again needs --force.",
    )
    _common(rel)
    rel.add_argument("ids", nargs="+", metavar="ID")
    rel.add_argument("--to", action="append", metavar="ADDR",
                     help="deliver to ADDR instead of the recipients (repeat)")  # fmt: skip
    rel.add_argument("--as-ham", action="store_true",
                     help="also teach the scanners that can learn that it is not spam")  # fmt: skip
    rel.add_argument("--force", action="store_true", help="release even if released before")
    rel.set_defaults(func=cmd_release)

    rm = sub.add_parser("delete", help="delete messages for good")
    _common(rm)
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.set_defaults(func=cmd_delete)

    ex = sub.add_parser(
        "expire", help="delete messages older than [quarantine] keep (run daily: contrib/)"
    )
    _common(ex)
    ex.add_argument("--older-than", metavar="AGE", help="instead of [quarantine] keep")
    ex.set_defaults(func=cmd_expire)

    st = sub.add_parser("stats", help="counts, sizes and ages")
    _common(st)
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=cmd_stats)

    init = sub.add_parser(
        "init", help="create the store, or upgrade its schema keeping every message"
    )
    _common(init)
    init.set_defaults(func=cmd_init)
    q.set_defaults(func=lambda args: _usage(q))

    learn = subparsers.add_parser(
        "learn",
        help="teach learning scanners (spamd TELL, ...) that messages are spam or ham",
        description="Give each FILE (or quarantine ID) to every configured scanner that has "
        "a learn() hook. Scanners without one are skipped.",
    )
    _common(learn)
    kind = learn.add_mutually_exclusive_group(required=True)
    kind.add_argument("--spam", action="store_true", help="the messages are spam")
    kind.add_argument("--ham", action="store_true", help="the messages are not spam")
    learn.add_argument("items", nargs="+", metavar="FILE|ID")
    learn.set_defaults(func=cmd_learn)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_ERROR


def _settings(args: argparse.Namespace) -> QuarantineSettings:
    from mxscan.config import load_given_config

    if args.store and not args.config:
        return QuarantineSettings(store=args.store)
    config = load_given_config(args.config)
    if config.quarantine is None:
        if args.store:
            return QuarantineSettings(store=args.store)
        raise ConfigError(f"{config.source}: has no [quarantine] table (or give --store URL)")
    if args.store:
        return QuarantineSettings(
            store=args.store, keep=config.quarantine.keep, release=config.quarantine.release
        )
    return config.quarantine


def _store(url: str) -> Store:
    try:
        return open_store(url)
    except ValueError as exc:
        raise ConfigError(f"--store: {exc}") from None


def _run(args: argparse.Namespace, job: Any) -> int:
    """Run ``job(store, settings)`` with the store open; a store failure is one line."""
    settings = _settings(args)

    async def main() -> int:
        store = _store(settings.store)
        try:
            return int(await job(store, settings))
        finally:
            await store.aclose()

    try:
        return asyncio.run(main())
    except StoreError as exc:
        print(f"mxscan: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _score(record: Record) -> str:
    return "" if record.score is None else f"{record.score:g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:

    table(header, rows, sys.stdout)


def _json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def cmd_list(args: argparse.Namespace) -> int:
    try:
        since = time.time() - parse_age(args.since) if args.since else None
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from None
    query = Filter(
        since=since, sender=args.sender, rcpt=args.rcpt, action=args.action,
        min_score=args.min_score, scanner=args.scanner, limit=args.limit,
    )  # fmt: skip

    async def job(store: Store, settings: QuarantineSettings) -> int:
        records = await store.list(query)
        if args.json:
            _json([r.as_json() for r in records])
            return EXIT_OK
        rows = [
            (
                r.id, _when(r.stored_at), r.action, _score(r), r.scanner, r.sender or "<>",
                ",".join(r.recipients), format_size(r.size) if r.size else "0",
                ",".join(r.findings), "yes" if r.releases else "",
            )
            for r in records
        ]  # fmt: skip
        header = ("ID", "STORED", "ACTION", "SCORE", "SCANNER", "SENDER", "RECIPIENTS", "SIZE",
                  "FINDINGS", "RELEASED")  # fmt: skip
        _table(header, rows)
        return EXIT_OK

    return _run(args, job)


async def _get(store: Store, id: str) -> Record:
    record = await store.get(id)
    if record is None:
        raise ConfigError(f"{id}: no such message in {store.url}")
    return record


def cmd_show(args: argparse.Namespace) -> int:
    async def job(store: Store, settings: QuarantineSettings) -> int:
        record = await _get(store, args.id)
        if args.raw:
            out = sys.stdout.buffer
            async for chunk in store.read(record.id):
                out.write(chunk)
            out.flush()
            return EXIT_OK
        if args.json:
            _json(record.as_json())
            return EXIT_OK
        lines = [
            ("id", record.id), ("stored", _when(record.stored_at)), ("host", record.host),
            ("queue id", record.queue_id or ""), ("sender", record.sender or "<>"),
            ("recipients", ", ".join(record.recipients)),
            ("client", f"{record.client_name or 'unknown'} [{record.client_address or ''}]"),
            ("helo", record.helo or ""), ("size", str(record.size)),
            ("action", record.action), ("score", _score(record)),
            ("decided by", record.scanner), ("reason", record.reason),
            ("released", f"{_when(record.released_at)} to {record.released_to} "
                         f"({record.releases}x)" if record.releases else "no"),
        ]  # fmt: skip
        for key, value in lines:
            print(f"{key + ':':<12} {value}")
        print("verdicts:")
        _table(
            ("  SCANNER", "ACTION", "STATUS", "SCORE", "FINDINGS", "REASON"),
            [
                ("  " + v["scanner"], v["action"], v["status"],
                 "" if v["score"] is None else f"{v['score']:g}", ",".join(v["findings"]),
                 v["reason"])
                for v in record.verdicts
            ],
        )  # fmt: skip
        return EXIT_OK

    return _run(args, job)


def _sync_chunks(store: Store, id: str, loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """The stored chunks for a worker thread, fetched on ``loop`` one at a time."""
    chunks: AsyncIterator[bytes] = store.read(id)
    while True:
        future = asyncio.run_coroutine_threadsafe(_next(chunks), loop)
        chunk = future.result()
        if chunk is None:
            return
        yield chunk


async def _next(chunks: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return None


def cmd_release(args: argparse.Namespace) -> int:
    async def job(store: Store, settings: QuarantineSettings) -> int:
        status = EXIT_OK
        loop = asyncio.get_running_loop()
        for id in args.ids:
            record = await store.get(id)
            if record is None:
                print(f"mxscan: error: {id}: no such message in {store.url}", file=sys.stderr)
                status = EXIT_REFUSED
                continue
            if record.releases and not args.force:
                print(
                    f"mxscan: {id}: already released {_when(record.released_at)} to "
                    f"{record.released_to}: not sent again (use --force)",
                    file=sys.stderr,
                )
                status = EXIT_REFUSED
                continue
            recipients = tuple(args.to) if args.to else record.recipients
            to = ",".join(recipients)
            # Claimed before sending: two admins (or hosts) releasing at once send once.
            if not await store.claim_release(id, to, args.force):
                print(f"mxscan: {id}: released meanwhile by someone else: not sent again "
                      "(use --force)", file=sys.stderr)  # fmt: skip
                status = EXIT_REFUSED
                continue
            try:
                answer = await asyncio.to_thread(
                    deliver, settings.release, record.sender, recipients,
                    _sync_chunks(store, id, loop),
                )  # fmt: skip
            except ReleaseError as exc:
                await store.unclaim_release(record)
                print(f"mxscan: {id}: not released: {exc}", file=sys.stderr)
                status = EXIT_REFUSED
                continue
            await store.mark_released(id, to, settings.release, args.as_ham)
            print(f"{id}: released to {', '.join(recipients)} via {settings.release}: {answer}")
            if args.as_ham:
                status = max(status, await _learn_ids(args, store, [id], spam=False))
        return status

    return _run(args, job)


def cmd_delete(args: argparse.Namespace) -> int:
    async def job(store: Store, settings: QuarantineSettings) -> int:
        deleted = await store.delete(args.ids)
        print(f"deleted {deleted} of {len(args.ids)} messages")
        return EXIT_OK if deleted == len(args.ids) else EXIT_REFUSED

    return _run(args, job)


def cmd_expire(args: argparse.Namespace) -> int:
    async def job(store: Store, settings: QuarantineSettings) -> int:
        try:
            age = parse_age(args.older_than) if args.older_than else settings.keep
        except ValueError as exc:
            raise ConfigError(f"--older-than: {exc}") from None
        deleted = await store.expire(time.time() - age)
        print(f"expired {deleted} messages kept longer than {age:g}s")
        return EXIT_OK

    return _run(args, job)


def cmd_stats(args: argparse.Namespace) -> int:
    async def job(store: Store, settings: QuarantineSettings) -> int:
        stats = await store.stats()
        if args.json:
            _json(stats)
            return EXIT_OK
        by_action = stats["by_action"]
        assert isinstance(by_action, dict)
        rows = [
            ("store", store.url),
            ("schema version", str(stats["schema_version"])),
            ("messages", str(stats["messages"])),
            ("bytes", str(stats["bytes"])),
            ("released", str(stats["released"])),
            *((f"action {k}", str(v)) for k, v in by_action.items()),
            ("oldest", _when(stats["oldest"])),  # type: ignore[arg-type]
            ("newest", _when(stats["newest"])),  # type: ignore[arg-type]
        ]
        _table(("WHAT", "VALUE"), rows)
        return EXIT_OK

    return _run(args, job)


def cmd_init(args: argparse.Namespace) -> int:
    async def job(store: Store, settings: QuarantineSettings) -> int:
        from mxscan.quarantine.store import SCHEMA_VERSION

        before = await store.init()
        if before == SCHEMA_VERSION:
            print(f"{store.url}: schema version {SCHEMA_VERSION}, up to date")
        elif before == 0:
            print(f"{store.url}: created, schema version {SCHEMA_VERSION}")
        else:
            print(f"{store.url}: upgraded schema version {before} -> {SCHEMA_VERSION}")
        return EXIT_OK

    return _run(args, job)


# -- learning ------------------------------------------------------------------


async def _learn_ids(
    args: argparse.Namespace, store: Store | None, items: Sequence[str], spam: bool
) -> int:
    """Teach every scanner with a ``learn`` hook; items are IDs (store given) or files."""
    from mxscan.config import load_given_config
    from mxscan.message import Message

    config = load_given_config(args.config)
    engine = config.build()
    learners = []
    seen: set[int] = set()
    for step in engine.steps:
        hook = getattr(step.scanner, "learn", None)
        if callable(hook) and id(step.scanner) not in seen:
            seen.add(id(step.scanner))
            learners.append((step.name, hook))
    status = EXIT_OK
    try:
        if not learners:
            print("mxscan: no configured scanner can learn", file=sys.stderr)
            return EXIT_REFUSED
        for item in items:
            if store is not None:
                with tempfile.TemporaryFile(dir=config.spool_dir) as spool:
                    async for chunk in store.read(item):
                        spool.write(chunk)
                    spool.seek(0)
                    message = Message.from_stream(spool, spool_dir=config.spool_dir)
            else:
                try:
                    message = Message.from_file(item, spool_dir=config.spool_dir)
                except OSError as exc:
                    print(f"mxscan: error: {item}: cannot read: {exc.strerror}", file=sys.stderr)
                    status = EXIT_REFUSED
                    continue
            try:
                for name, hook in learners:
                    try:
                        said = await hook(message, spam)
                    except Exception as exc:  # a plugin's failure is reported, not raised
                        print(f"mxscan: {item}: {name} did not learn: {exc}", file=sys.stderr)
                        status = EXIT_REFUSED
                    else:
                        # A hook may say what happened ("already learned"): shown as is.
                        note = f" ({said})" if isinstance(said, str) and said else ""
                        print(f"{item}: {name} learned it as {'spam' if spam else 'ham'}{note}")
            finally:
                message.close()
    finally:
        await engine.aclose()
    return status


def cmd_learn(args: argparse.Namespace) -> int:
    spam = bool(args.spam)
    from pathlib import Path

    files = [i for i in args.items if Path(i).exists()]
    ids = [i for i in args.items if i not in files]

    async def main() -> int:
        status = EXIT_OK
        if files:
            status = await _learn_ids(args, None, files, spam)
        if ids:
            settings = _settings(args)
            store = _store(settings.store)
            try:
                for id in ids:
                    await _get(store, id)
                status = max(status, await _learn_ids(args, store, ids, spam))
            finally:
                await store.aclose()
        return status

    try:
        return asyncio.run(main())
    except StoreError as exc:
        print(f"mxscan: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
