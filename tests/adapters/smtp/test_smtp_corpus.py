"""The shared corpus (every 5th of its 1,000 real-world messages, many malformed)
through Postfix -> `mxscan smtp` -> re-injection -> sink: 0 lost, 0 duplicated,
0 differing bytes.

What the filtered copy is compared with: the same bytes sent to an smtpd
listener of the same Postfix without content_filter (Postfix's own
normalisation is then in both). Before comparing, both drop Postfix's
Received: fields (the filtered copy has one more, from the re-injection), the
Message-Id:/Date: Postfix adds to a message without them, the test's tag and the
X-Spam-*/X-Virus-* fields the scanners add; everything else must be equal.
"""

from __future__ import annotations

import os
import re
import smtplib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.daemons import corpus_dir
from tests.support.sink import header_fields
from tests.support.smtp_stack import Stack

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.e2e,
    pytest.mark.corpus,
    pytest.mark.clamd,
    pytest.mark.spamd,
]

_DROP = re.compile(rb"(?i)(x-corpus-id|x-spam-[^:\s]*|x-virus-[^:\s]*)[ \t]*:")
_POSTFIX_ADDED = re.compile(
    rb"Message-Id: <\d{14}\.[0-9A-F]+@mx\.mxscan\.test>$"
    rb"|Date: \w{3}, {1,2}\d\d? \w{3} \d{4} \d\d:\d\d:\d\d \+0000 \(UTC\)$"
)
_OURS = re.compile(rb"Received: from [^\r\n]*\r\n\tby mx\.mxscan\.test \(Postfix\)")


def normalise(data: bytes) -> bytes:
    head, sep, body = data.partition(b"\r\n\r\n")
    fields = header_fields(head)
    while fields and _OURS.match(fields[0]):
        fields = fields[1:]
    kept = [f for f in fields if not _DROP.match(f) and not _POSTFIX_ADDED.match(f)]
    return b"\r\n".join(kept) + sep + body


def send(port: int, data: bytes) -> tuple[int, str]:
    try:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost", timeout=120) as c:
            c.ehlo("corpus.mxscan.test")
            code, text = c.mail("sender@example.org")
            if code == 250:
                code, text = c.rcpt("rcpt@example.com")
            if code in (250, 251):
                code, text = c.data(data)
    except (smtplib.SMTPException, OSError) as exc:
        return 0, str(exc)
    return code, text.decode("utf-8", "replace")


def _unchecked(entry: object) -> bool:
    """Deferred by mxscan because a scanner could not look at all of it."""
    reasons = getattr(entry, "reasons", ())
    return (
        getattr(entry, "queue_name", "") == "deferred"
        and bool(reasons)
        and all("could not be fully scanned" in r for r in reasons)
    )


def test_corpus_every_fifth_lost_duplicated_differing(stack: Stack) -> None:
    import json

    corpus = corpus_dir()
    with (corpus / "postmap-oracle" / "header_keys.jsonl").open() as fp:
        files = sorted(corpus / json.loads(line)["path"] for line in fp)[::5]

    def one(item: tuple[int, object]) -> tuple[int, tuple[int, str], tuple[int, str]]:
        i, path = item
        raw = path.read_bytes()  # type: ignore[attr-defined]
        plain = send(stack.plain_port, f"X-Corpus-Id: c{i:05d}p\r\n".encode() + raw)
        filtered = send(stack.postfix.smtp_port, f"X-Corpus-Id: c{i:05d}m\r\n".encode() + raw)
        return i, plain, filtered

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, enumerate(files)))
    # A message clamd could not fully scan (its limits, e.g. the corpus's spam
    # with thousands of MIME parameters) is deferred by design (on_limits =
    # tempfail): it stays queued with that reason, is never delivered, and is
    # counted apart. Anything else still queued is a failure.
    deadline = time.monotonic() + 180

    def pending() -> list[object]:
        return [q for q in stack.postfix.queue() if not _unchecked(q)]

    while pending() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1.5)
    assert not pending(), f"mail still queued (deferred by mxscan?): {pending()}"
    unchecked_ids = {q.queue_id for q in stack.postfix.queue() if _unchecked(q)}
    by_tag: dict[str, list[bytes]] = {}
    for d in stack.sink.deliveries:
        m = re.search(rb"X-Corpus-Id: (c\d{5}[pm])", d.data)
        if m:
            by_tag.setdefault(m.group(1).decode(), []).append(d.data)
    qids = {}
    for line in stack.smtp.log().splitlines():
        m = re.search(r": ([0-9A-F]{6,}): .* action=(\w+)", line)
        if m:
            qids[m.group(1)] = m.group(2)
    lost, duplicated, differing, discarded, identical, refused = [], [], [], 0, 0, 0
    unchecked = 0
    for i, plain, filtered in results:
        if plain[0] != 250 or filtered[0] != 250:
            assert plain[0] == filtered[0] or filtered[0] // 100 == plain[0] // 100, (
                i,
                plain,
                filtered,
            )
            refused += 1
            continue
        qid = re.search(r"queued as ([0-9A-F]+)", filtered[1])
        action = qids.get(qid.group(1) if qid else "")
        got, want = by_tag.get(f"c{i:05d}m", []), by_tag.get(f"c{i:05d}p", [])
        if action == "discard":
            assert not got, f"{files[i]} discarded yet delivered"
            discarded += 1
            continue
        if qid and qid.group(1) in unchecked_ids:
            assert not got, f"{files[i]} deferred as not fully scanned yet delivered"
            unchecked += 1
            continue
        if not got:
            lost.append(str(files[i]))
        elif len(got) > 1:
            duplicated.append(str(files[i]))
        elif len(want) == 1 and normalise(got[0]) != normalise(want[0]):
            differing.append(str(files[i]))
            keep = os.environ.get("MXSCAN_CORPUS_DIFFDIR")
            if keep:  # for a human: both copies, to diff
                Path(keep).mkdir(parents=True, exist_ok=True)
                (Path(keep) / f"c{i:05d}.with").write_bytes(got[0])
                (Path(keep) / f"c{i:05d}.without").write_bytes(want[0])
        else:
            identical += 1
    print(f"\nsmtp corpus: {len(files)} messages, {identical} identical, {discarded} discarded, "
          f"{refused} refused by Postfix, {unchecked} deferred as not fully scanned, {len(lost)} lost, {len(duplicated)} duplicated, "
          f"{len(differing)} differing")  # fmt: skip
    assert (lost, duplicated, differing) == ([], [], [])
    assert identical > len(files) // 2
    assert "Traceback" not in stack.smtp.log()
