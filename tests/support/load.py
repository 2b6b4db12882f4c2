"""The load run shared by tests/faults/test_faults_load.py (CI, small N) and
benchmarks/bench_load.py (full N): many tagged messages at 32 concurrent SMTP
sessions into a private Postfix with mxscan (milter or pipe filter) while the
scanning daemons are restarted, then an account of every message.

Why the test owns its daemons: restarting the shared private clamd/spamd would
break other tests running at the same time, so ``LoadDaemons`` starts a second
pair (own run directory and ports) with scripts/daemons.

Accounting: every message carries ``X-Load-Id: <id>`` (ids are fixed-width, so
none is a prefix of another). The SMTP client behaves like an MTA: on 4xx or a
dropped connection it retries; its final reply is recorded. When the queue has
drained, each id is exactly one of: delivered (one copy at the sink), discarded
(a discard verdict recorded by Postfix or mxscan for the queue id it was accepted
as), or rejected (the client saw 5xx with a reason, or for the pipe filter the
sender got the bounce). Anything else is lost or duplicated, and counted.
"""

from __future__ import annotations

import json
import os
import random
import re
import smtplib
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

from tests.support.daemons import REPO_ROOT, corpus_dir, eicar_message, gtube_message
from tests.support.faults import figure, logged_pipe_postfix, pipe_config
from tests.support.milter import MilterProcess, seed_config, socket_dir
from tests.support.postfix import PostfixInstance, free_port
from tests.support.sink import SMTPSink

CONCURRENCY = 32


# ---------------------------------------------------------------- daemons


class LoadDaemons:
    """A second private clamd + spamd (scripts/daemons) that only the load run uses."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mxscan-load-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.clamd_port = free_port()
        self.spamd_port = free_port()
        self.restarts: list[tuple[str, float, float]] = []  # kind, started, took

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MXSCAN_RUN_DIR": str(self.dir),
            "MXSCAN_CLAMD_PORT": str(self.clamd_port),
            "MXSCAN_SPAMD_PORT": str(self.spamd_port),
        }

    def _run(self, *args: str) -> None:
        proc = subprocess.run(
            ["bash", str(REPO_ROOT / "scripts" / "daemons"), *args],
            env=self.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(
                f"scripts/daemons {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}"
            )

    @property
    def clamd(self) -> str:
        return f"inet:127.0.0.1:{self.clamd_port}"

    @property
    def spamd(self) -> str:
        return f"inet:127.0.0.1:{self.spamd_port}"

    #: Only these: ``start`` alone means every daemon the script knows (rspamd,
    #: PostgreSQL too), on their default ports, which the shared ones hold.
    KINDS = ("clamd", "spamd")

    def start(self) -> LoadDaemons:
        for kind in self.KINDS:
            self._run("start", kind)
        return self

    def restart(self, kind: str) -> None:
        start = time.monotonic()
        self._run("restart", kind)
        self.restarts.append((kind, start, time.monotonic() - start))

    def stop(self) -> None:
        try:
            for kind in self.KINDS:
                self._run("stop", kind)
        finally:
            subprocess.run(["rm", "-rf", str(self.dir)], check=False)


# ---------------------------------------------------------------- messages


@dataclass(frozen=True)
class Item:
    id: str
    kind: str  # corpus, gtube, eicar, reject
    data: bytes
    source: str = ""


def corpus_files(corpus: Path) -> list[Path]:
    """The corpus's 1,000 messages, in the order of its postmap oracle."""
    with (corpus / "postmap-oracle" / "header_keys.jsonl").open() as fp:
        return sorted(corpus / json.loads(line)["path"] for line in fp)


def tag_field(field: bytes, data: bytes) -> bytes:
    """``data`` with the header field ``field`` (one line with its CRLF) added
    first, but after a leading mbox ``From `` line: Postfix turns that line into
    ``X-Mailbox-Line:`` only while it is first, and a field before it would end
    the header there, making the whole original message the body of a new one
    (clamd then counts every level of it twice over: torture.eml goes past
    MaxRecursion)."""
    if data.startswith(b"From "):
        first, newline, rest = data.partition(b"\n")
        return first + newline + field + rest
    return field + data


def _tag(item_id: str, data: bytes) -> bytes:
    return tag_field(f"X-Load-Id: {item_id}\r\n".encode(), data)


def make_items(n: int, corpus: Path, seed: int = 9) -> list[Item]:
    """``n`` messages: ~5% GTUBE, ~5% EICAR, ~3% rejected by a rule, the rest from
    the corpus (a deterministic sample, cycling when n exceeds it)."""
    files = corpus_files(corpus)
    rng = random.Random(seed)
    rng.shuffle(files)
    run = f"{os.getpid() % 100000:05d}{int(time.time()) % 100000:05d}"
    items = []
    for i in range(n):
        item_id = f"L{run}-{i:06d}"
        slot = i % 40
        if slot in (3, 23):
            data = gtube_message().replace(b"<gtube@", f"<{item_id}@".encode())
            items.append(Item(item_id, "gtube", _tag(item_id, data)))
        elif slot in (13, 33):
            items.append(Item(item_id, "eicar", _tag(item_id, eicar_message("base64"))))
        elif slot == 7:
            data = _tag(item_id, b"X-Load-Reject: yes\r\n" + ham(item_id))
            items.append(Item(item_id, "reject", data))
        else:
            path = files[i % len(files)]
            items.append(Item(item_id, "corpus", _tag(item_id, path.read_bytes()), str(path)))
    return items


def ham(token: str) -> bytes:
    return (
        b"From: Alice <alice@example.org>\r\nTo: rcpt@example.com\r\n"
        + f"Subject: load {token}\r\nDate: {formatdate()}\r\n".encode()
        + f"Message-ID: <{token}@example.org>\r\n\r\nHello.\r\n".encode()
    )


REJECT_RULE = {
    "plugin": "header-rules",
    "rules": "/^X-Load-Reject: yes/ REJECT 5.7.1 rejected by the load test rule\n",
}


# ---------------------------------------------------------------- sending


@dataclass
class Outcome:
    code: int = 0
    text: str = ""
    queue_id: str | None = None
    attempts: int = 0
    tempfails: int = 0
    drops: int = 0


_QUEUED = re.compile(r"queued as ([0-9A-Za-z]+)")


def submit(port: int, item: Item, deadline: float) -> Outcome:
    """Send like an MTA would: retry on 4xx and on a dropped connection."""
    out = Outcome()
    while True:
        out.attempts += 1
        try:
            with smtplib.SMTP(
                "127.0.0.1", port, local_hostname="load.mxscan.test", timeout=300
            ) as client:
                client.ehlo("load.mxscan.test")
                code, text = client.mail("sender@example.org")
                if code == 250:
                    code, text = client.rcpt("rcpt@example.com")
                if code in (250, 251):
                    code, text = client.data(item.data)
            out.code, out.text = code, text.decode("utf-8", "replace")
        except (smtplib.SMTPException, OSError) as exc:
            out.drops += 1
            out.code, out.text = 0, f"{type(exc).__name__}: {exc}"
        if 200 <= out.code < 300:
            match = _QUEUED.search(out.text)
            out.queue_id = match.group(1) if match else None
            return out
        if 500 <= out.code < 600 or time.monotonic() > deadline:
            return out
        if 400 <= out.code < 500:
            out.tempfails += 1
        time.sleep(0.5 + random.random())


# ---------------------------------------------------------------- accounting


@dataclass
class Report:
    mode: str
    sent: int = 0
    delivered: int = 0
    discarded: int = 0
    rejected: int = 0
    lost: int = 0
    duplicated: int = 0
    tempfails: int = 0
    drops: int = 0
    seconds: float = 0.0
    restarts: list[tuple[str, float, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    kinds: dict[str, dict[str, int]] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict, repr=False)

    def line(self) -> str:
        restarts = ", ".join(f"{k} at {at:.0f}s ({took:.1f}s)" for k, at, took in self.restarts)
        return (
            f"load[{self.mode}]: sent={self.sent} delivered={self.delivered} "
            f"discarded={self.discarded} rejected={self.rejected} lost={self.lost} "
            f"duplicated={self.duplicated} | client retries after 4xx={self.tempfails}, "
            f"after dropped connections={self.drops}; {self.seconds:.1f}s, "
            f"{self.sent / max(self.seconds, 1e-9):.1f} msg/s at {CONCURRENCY} sessions; "
            f"restarts: {restarts or 'none'}"
        )


def account(
    mode: str,
    items: Sequence[Item],
    outcomes: dict[str, Outcome],
    sink: SMTPSink,
    discarded_qids: set[str],
    bounced_qids: set[str],
) -> Report:
    report = Report(mode, sent=len(items), outcomes=outcomes)
    deliveries = sink.deliveries
    copies: dict[str, int] = {}
    bounces: dict[str, int] = {}
    pattern = re.compile(rb"X-Load-Id: (L\d{10}-\d{6})")
    for d in deliveries:
        ids = set(pattern.findall(d.data))
        for found in ids:
            key = found.decode()
            if d.mail_from in ("", "<>"):
                bounces[key] = bounces.get(key, 0) + 1
            else:
                copies[key] = copies.get(key, 0) + 1
    for item in items:
        out = outcomes[item.id]
        report.tempfails += out.tempfails
        report.drops += out.drops
        n = copies.get(item.id, 0)
        accepted = 200 <= out.code < 300
        discarded = accepted and out.queue_id in discarded_qids
        bounced = accepted and out.queue_id in bounced_qids and bounces.get(item.id, 0) == 1
        if 500 <= out.code < 600:
            state = "rejected" if n == 0 else "duplicated"
        elif not accepted:
            state = "lost"  # never accepted within the deadline
        elif n > 1 or (n == 1 and (discarded or bounced)):
            state = "duplicated"
        elif n == 1:
            state = "delivered"
        elif discarded:
            state = "discarded"
        elif bounced:
            state = "rejected"
        else:
            state = "lost"
        if state in ("lost", "duplicated"):
            report.problems.append(f"{state}: {item.id} {item.kind} {item.source} {out}")
        setattr(report, state, getattr(report, state) + 1)
        per_kind = report.kinds.setdefault(item.kind, {})
        per_kind[state] = per_kind.get(state, 0) + 1
    return report


def run_load(
    mode: str,
    postfix: PostfixInstance,
    sink: SMTPSink,
    items: Sequence[Item],
    daemons: LoadDaemons,
    verdicts: Callable[[], tuple[set[str], set[str]]],
    *,
    deadline_s: float = 900,
    concurrency: int = CONCURRENCY,
) -> Report:
    """Send everything at ``concurrency`` sessions, restarting clamd at 25% and 75%
    of the way and spamd at 50%; wait for the queue to drain; account.
    ``verdicts()`` returns (discarded queue ids, bounced queue ids) at the end."""
    outcomes: dict[str, Outcome] = {}
    daemons.restarts.clear()
    done = threading.Semaphore(0)
    start = time.monotonic()
    deadline = start + deadline_s
    lock = threading.Lock()
    finished = [0]

    def one(item: Item) -> None:
        outcomes[item.id] = submit(postfix.smtp_port, item, deadline)
        with lock:
            finished[0] += 1
        done.release()

    def chaos() -> None:
        for fraction, kind in ((0.25, "clamd"), (0.5, "spamd"), (0.75, "clamd")):
            while finished[0] < fraction * len(items):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)
            daemons.restart(kind)

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, items))
    chaos_thread.join(timeout=max(1, deadline - time.monotonic()))
    # Drain: everything Postfix accepted leaves its queue (deferred mail is retried).
    while postfix.queue():
        if time.monotonic() > deadline:
            break
        postfix.flush()
        time.sleep(1)
    time.sleep(2)  # a duplicate would arrive right behind the last copy
    discarded, bounced = verdicts()
    report = account(mode, items, outcomes, sink, discarded, bounced)
    report.seconds = time.monotonic() - start
    report.restarts = [(k, at - start, took) for k, at, took in daemons.restarts]
    left = postfix.queue()
    if left:
        report.problems.append(f"queue not drained: {left[:5]}")
    return report


def postfix_discards(postfix: PostfixInstance) -> set[str]:
    """Queue ids Postfix discarded on the milter's word."""
    return set(re.findall(r"([0-9A-F]{6,}): milter-discard:", postfix.log()))


# ---------------------------------------------------------------- the two runs


def milter_config(daemons: LoadDaemons) -> dict[str, Any]:
    config = seed_config(
        clamav={"address": daemons.clamd, "timeout": "30s"}, extra_stage={"loadrule": REJECT_RULE}
    )
    config["scanner"]["spamassassin"]["address"] = daemons.spamd
    config["scanner"]["spamassassin"]["timeout"] = "30s"
    return config


def run_milter_load(daemons: LoadDaemons, n: int) -> Report:
    items = make_items(n, corpus_dir())
    sink = SMTPSink().start()
    milter = MilterProcess(milter_config(daemons), socket_dir(), name="load")
    postfix: PostfixInstance | None = None
    try:
        milter.start()
        postfix = PostfixInstance(
            relay_port=sink.port, main_overrides={"smtpd_milters": milter.address}
        ).start()
        pf = postfix
        report = run_load("milter", pf, sink, items, daemons, lambda: (postfix_discards(pf), set()))
        assert milter.proc is not None and milter.proc.poll() is None, "the milter died"
        assert "Traceback" not in milter.log()
        for item in items:
            if item.kind == "reject":
                text = report.outcomes[item.id].text
                assert "rejected by the load test rule" in text, text
        return report
    finally:
        if postfix is not None:
            postfix.remove()
        milter.stop()
        sink.stop()


def run_pipe_load(daemons: LoadDaemons, n: int) -> Report:
    """The docs' pipe(8) setup (tests/support/pipe_postfix.py), with mxscan's
    stderr (its per-message log line) appended to a file, so discards are counted
    from mxscan's own words: a discarded message leaves no trace in Postfix but
    ``status=sent``, like a delivered one before its re-injection."""
    items = make_items(n, corpus_dir(), seed=10)
    sink = SMTPSink().start()
    try:
        text = pipe_config(clamd=daemons.clamd, spamd=daemons.spamd)
        rule = "/^X-Load-Reject: yes/ REJECT 5.7.1 rejected by the load test rule\n"
        text = text.replace("/^X-Virus-/   IGNORE\n", "/^X-Virus-/   IGNORE\n" + rule, 1)
        assert daemons.spamd in text and "X-Load-Reject" in text

        with logged_pipe_postfix(sink.port, text) as (postfix, log):

            def verdicts() -> tuple[set[str], set[str]]:
                discarded = set(re.findall(r": ([0-9A-F]{6,}): .* action=discard", log.read_text()))
                bounced = set(
                    re.findall(
                        r"([0-9A-F]{6,}): to=<[^>]*>, relay=mxscan, .*status=bounced", postfix.log()
                    )
                )
                return discarded, bounced

            report = run_load("pipe", postfix, sink, items, daemons, verdicts)
            assert "Traceback" not in log.read_text()
            deferred = len(re.findall(r"relay=mxscan, .*status=deferred", postfix.log()))
            figure(f"\nload[pipe]: filter runs deferred by Postfix (exit 75, retried): {deferred}")
        return report
    finally:
        sink.stop()
