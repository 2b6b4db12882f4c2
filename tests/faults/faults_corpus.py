"""The shared corpus (1,000 real-world messages, many malformed) through the
``mxscan milter`` behind Postfix, and through ``mxscan scan --json``.

What "byte-identical apart from edited headers" is compared against: the same
bytes sent to a second smtpd listener of the same Postfix that has no milter.
Postfix itself normalises some input (line endings to CRLF on the wire, its own
Received: header, header_size_limit truncation), so comparing against the input
file would blame mxscan for Postfix's work; comparing against Postfix-without-
mxscan isolates what mxscan changed. Before comparing, both copies drop Postfix's
own first Received: field, the Message-Id:/Date: fields Postfix adds to a message
without them (they carry the queue id and time), the test's X-Corpus-Id tag, and
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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from faults_load import Item as _Item
from faults_load import Outcome, corpus_files, submit, tag_field
from milter_proc import MilterProcess, dump_toml, seed_config, socket_dir

from tests.support.postfix import PostfixInstance
from tests.support.sink import SMTPSink, header_fields

_DROP = re.compile(rb"(?i)(x-corpus-id|x-spam-[^:\s]*|x-virus-[^:\s]*)[ \t]*:")
# What Postfix adds to a message that lacks them (with the queue id or the time in it).
_POSTFIX_ADDED = re.compile(
    rb"Message-Id: <\d{14}\.[0-9A-F]+@mx\.mxscan\.test>$"
    rb"|Date: \w{3}, \d\d? \w{3} \d{4} \d\d:\d\d:\d\d \+0000 \(UTC\)$"
)


def sample(files: Sequence[Path], every: int) -> list[Path]:
    """Every ``every``-th file of the sorted list (1 = all): deterministic."""
    return list(files[::every])


def normalise(data: bytes) -> bytes:
    """Drop Postfix's Received: (first field), the tag, X-Spam-*/X-Virus-* fields."""
    head, sep, body = data.partition(b"\r\n\r\n")
    fields = header_fields(head)
    if fields and fields[0].startswith(b"Received: "):
        fields = fields[1:]
    kept = [f for f in fields if not _DROP.match(f) and not _POSTFIX_ADDED.match(f)]
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
            if normalise(got[0]) == normalise(want[0]):
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
