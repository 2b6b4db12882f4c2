"""The shared corpus (1,000 real-world messages, many malformed) through the
``mxscan milter`` behind Postfix, and through ``mxscan scan --json``.

What "byte-identical apart from edited headers" is compared against: the same
bytes sent to a second smtpd listener of the same Postfix that has no milter.
Postfix itself normalises some input (line endings to CRLF on the wire, its own
Received: header, header_size_limit truncation), so comparing against the input
file would blame mxscan for Postfix's work; comparing against Postfix-without-
mxscan isolates what mxscan changed. Before comparing, both copies drop Postfix's
own first Received: field, the fields Postfix adds to a message that lacks them
(Message-Id:, Date:, ...: they carry the queue id and the time; which ones, is learned
per message from the copy without mxscan, see ``postfix_added``), the test's
X-Corpus-Id tag, and
every X-Spam-* / X-Virus-* field (the headers the seed configuration strips, adds
or rewrites) - in the body too, since the seed's inbound rules also strip them
from MIME parts and attached messages, as Postfix's nested_header_checks would.
Everything else must be equal, byte for byte.

Used by tests/faults/test_faults_corpus.py (a deterministic sample in CI) and
benchmarks/bench_load.py (all 1,000).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.load import Item as _Item
from tests.support.load import Outcome, corpus_files, submit, tag_field
from tests.support.milter import MilterProcess, dump_toml, seed_config, socket_dir
from tests.support.postfix import PostfixInstance
from tests.support.sink import SMTPSink, header_fields

_DROP = re.compile(rb"(?i)(x-corpus-id|x-spam-[^:\s]*|x-virus-[^:\s]*)[ \t]*:")
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")


def _fix_eols(data: bytes) -> bytes:
    """Line endings as smtplib sends them (and Postfix delivers them): CRLF."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def _name(header_field: bytes) -> bytes:
    return header_field.split(b":", 1)[0].strip().lower()


@dataclass(frozen=True)
class PostfixAdded:
    """The header fields Postfix added to one message, learned from its copy without
    mxscan: per field name that the sent header lacks, how many fields of that name
    Postfix's copy has. Derived from Postfix's real output rather than from a
    pattern of what it prints (a Date: pattern once missed the space-padded day of
    the 1st to the 9th of every month)."""

    counts: Mapping[bytes, int]
    #: Every field of the sent message, header and body alike: a field present
    #: byte for byte is the sender's, never Postfix's, and is always compared.
    sent: frozenset[bytes]

    def strip(self, fields: Sequence[bytes]) -> list[bytes]:
        """``fields`` without as many fields of each added name as Postfix added
        (the last ones: Postfix appends them), so a field mxscan itself would
        add under such a name still shows as a difference."""
        budget = dict(self.counts)
        kept: list[bytes] = []
        for f in reversed(fields):
            name = _name(f)
            if budget.get(name, 0) > 0 and f not in self.sent:
                budget[name] -= 1
            else:
                kept.append(f)
        return kept[::-1]


def postfix_added(plain: bytes, sent: bytes) -> PostfixAdded:
    """Learn what Postfix added to ``sent`` from ``plain``, its delivered copy
    without mxscan. The sent header ends, as Postfix ends it, at the first line
    that is neither a field nor a continuation."""
    sent = _fix_eols(sent)
    sent_names: set[bytes] = set()
    for line in sent.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            continue
        if not _HEADER_LINE.match(line):
            break
        sent_names.add(_name(line))
    fields = header_fields(plain.partition(b"\r\n\r\n")[0])
    if fields and fields[0].startswith(b"Received: "):
        fields = fields[1:]
    added = Counter(_name(f) for f in fields if not _DROP.match(f))
    counts = {name: n for name, n in added.items() if name not in sent_names}
    return PostfixAdded(counts, frozenset(header_fields(sent)))


def sample(files: Sequence[Path], every: int) -> list[Path]:
    """Every ``every``-th file of the sorted list (1 = all): deterministic."""
    return list(files[::every])


def normalise(data: bytes, added: PostfixAdded) -> bytes:
    """Drop Postfix's Received: (first field) and the fields it ``added``, the tag,
    X-Spam-*/X-Virus-* fields."""
    head, sep, body = data.partition(b"\r\n\r\n")
    fields = header_fields(head)
    if fields and fields[0].startswith(b"Received: "):
        fields = fields[1:]
    kept = added.strip([f for f in fields if not _DROP.match(f)])
    return b"\r\n".join(kept) + sep + _drop_body_fields(body)


def _drop_body_fields(body: bytes) -> bytes:
    """X-Spam-*/X-Virus-* lines and their continuation lines, wherever they
    stand in the body (applied to both copies alike, so it stays fair)."""
    out: list[bytes] = []
    dropping = False
    for line in body.split(b"\r\n"):
        if dropping and line[:1] in (b" ", b"\t"):
            continue
        dropping = bool(_DROP.match(line))
        if not dropping:
            out.append(line)
    return b"\r\n".join(out)


@dataclass
class CorpusReport:
    messages: int = 0
    delivered_identical: int = 0
    discarded: int = 0
    rejected: int = 0
    differing: list[str] = field(default_factory=list)
    without_verdict: list[str] = field(default_factory=list)
    not_accepted: list[str] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"corpus via Postfix + milter: {self.messages} messages, "
            f"{self.delivered_identical} delivered byte-identical (after normalisation) to "
            f"Postfix without mxscan, {self.discarded} discarded, {self.rejected} rejected, "
            f"{len(self.differing)} differing, {len(self.without_verdict)} without a verdict, "
            f"{len(self.not_accepted)} never accepted; actions {self.actions}; {self.seconds:.1f}s"
        )


def run_corpus_milter(corpus: Path, every: int, concurrency: int = 16) -> CorpusReport:
    files = sample(corpus_files(corpus), every)
    report = CorpusReport(messages=len(files))
    sink = SMTPSink().start()
    milter = MilterProcess(seed_config(), socket_dir(), name="corpus")
    postfix: PostfixInstance | None = None
    start = time.monotonic()
    try:
        milter.start()
        postfix = PostfixInstance(relay_port=sink.port)
        milter_port = postfix.add_smtpd_listener({"smtpd_milters": milter.address})
        postfix.start()
        pf = postfix

        def one(i_path: tuple[int, Path]) -> tuple[str, Outcome, Outcome]:
            i, path = i_path
            raw = path.read_bytes()
            plain = _Item(
                f"c{i:05d}p", "corpus", tag_field(f"X-Corpus-Id: c{i:05d}p\r\n".encode(), raw)
            )
            scanned = _Item(
                f"c{i:05d}m", "corpus", tag_field(f"X-Corpus-Id: c{i:05d}m\r\n".encode(), raw)
            )
            deadline = time.monotonic() + 300
            return (
                str(path),
                submit(pf.smtp_port, plain, deadline),
                submit(milter_port, scanned, deadline),
            )

        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, enumerate(files)))
        deadline = time.monotonic() + 120
        while pf.queue() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1)
        by_tag: dict[str, list[bytes]] = {}
        for d in sink.deliveries:
            m = re.search(rb"X-Corpus-Id: (c\d{5}[pm])", d.data)
            if m:
                by_tag.setdefault(m.group(1).decode(), []).append(d.data)
        log = milter.log()
        verdicts = dict(re.findall(r": ([0-9A-F]{6,}): .* action=(\w+)", log))
        for i, (path, plain, scanned) in enumerate(results):
            if not (200 <= plain.code < 300) or scanned.code == 0 or 400 <= scanned.code < 500:
                report.not_accepted.append(
                    f"{path}: plain {plain.code} milter {scanned.code} {scanned.text}"
                )
                continue
            if 500 <= scanned.code < 600:
                report.rejected += 1
                report.actions["reject"] = report.actions.get("reject", 0) + 1
                continue
            action = verdicts.get(scanned.queue_id or "")
            if action is None:
                report.without_verdict.append(f"{path} ({scanned.queue_id})")
                continue
            report.actions[action] = report.actions.get(action, 0) + 1
            got = by_tag.get(f"c{i:05d}m", [])
            want = by_tag.get(f"c{i:05d}p", [])
            if action == "discard":
                if got:
                    report.differing.append(f"{path}: discarded yet delivered")
                else:
                    report.discarded += 1
                continue
            if len(got) != 1 or len(want) != 1:
                report.differing.append(
                    f"{path}: {len(got)} copies with mxscan, {len(want)} without"
                )
                continue
            added = postfix_added(want[0], files[i].read_bytes())
            if normalise(got[0], added) == normalise(want[0], added):
                report.delivered_identical += 1
            else:
                report.differing.append(f"{path}: bytes differ")
                keep = os.environ.get("MXSCAN_CORPUS_DIFFDIR")
                if keep:  # for a human: both copies, to diff
                    Path(keep).mkdir(parents=True, exist_ok=True)
                    (Path(keep) / f"c{i:05d}.with").write_bytes(got[0])
                    (Path(keep) / f"c{i:05d}.without").write_bytes(want[0])
        report.seconds = time.monotonic() - start
        assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:3000]
        assert milter.proc is not None and milter.proc.poll() is None, "the milter died"
        return report
    finally:
        if postfix is not None:
            postfix.remove()
        milter.stop()
        sink.stop()


@dataclass
class ScanReport:
    messages: int
    records: int
    actions: dict[str, int]
    exit_code: int
    seconds: float
    stderr: str

    def line(self) -> str:
        return (
            f"corpus via `mxscan scan --json`: {self.messages} files, {self.records} verdicts, "
            f"actions {self.actions}, exit {self.exit_code}, {self.seconds:.1f}s"
        )


def run_corpus_scan(
    corpus: Path, every: int, workdir: Path
) -> tuple[ScanReport, list[dict[str, object]]]:
    files = sample(corpus_files(corpus), every)
    config = workdir / "corpus-scan.toml"
    config.write_text(dump_toml(seed_config()))
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mxscan", "scan", "--json", "--no-progress", "-j", "8",
         "-c", str(config), *map(str, files)],
        capture_output=True, timeout=1800,
    )  # fmt: skip
    took = time.monotonic() - start
    records: list[dict[str, object]] = json.loads(proc.stdout) if proc.stdout.strip() else []
    actions: dict[str, int] = {}
    for r in records:
        key = str(r.get("action", "error"))
        actions[key] = actions.get(key, 0) + 1
    report = ScanReport(
        len(files),
        len(records),
        actions,
        proc.returncode,
        took,
        proc.stderr.decode("utf-8", "replace"),
    )
    return report, records
