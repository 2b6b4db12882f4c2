"""Differential test against the real Postfix: ``postmap -hq`` with pcre: and
regexp: tables over every logical header that Postfix's header_checks sees in
the corpus (postmap-oracle/ lists them), rule by rule and as whole tables.

Agreement must be 100 %: which rule matches and the expanded result text.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mxscan_header_rules import parse_table

pytestmark = [pytest.mark.postfix, pytest.mark.corpus]

END = "@@E"
ACTIONS = [
    "REJECT rejected $1",
    "WARN saw <$1> and <${2}>",
    "IGNORE",
    "PREPEND X-Tag: $(1)",
    "REPLACE X-Replaced: [$2]",
    "DISCARD",
    "HOLD",
    "DUNNO",
    "INFO $$literal $1",
]

# Patterns a header_checks file really contains, plus the PCRE features that
# stdlib re gets wrong (POSIX classes, \Q..\E, \z vs \Z, flags).
PCRE_PATTERNS = [
    r"^Subject:\s*(.*)",
    r"^From:\s*<>",
    r"^X-Spam-Flag:\s+(YES)",
    r"^X\-Spam\-(Level|Status|Checker\-Version):",
    r"^X\-Virus\-(Status|Scanned):\s*(\S*)",
    r'^Content-(Type|Disposition):.*name\s*=\s*"?([^"]*\.(exe|scr|pif|bat|zip))"?',
    r"^Received:.*\[(\d{1,3}(?:\.\d{1,3}){3})\]",
    r"^Message-I[Dd]:\s*<([^@>]+)@([^>]+)>",
    r"[[:upper:]]{12,}",
    r"^([[:alpha:]-]+):[[:space:]]*$",
    r"\Qmulti.part\E|\Qmultipart\E\/(mixed|alternative)",
    r"^(To|Cc):.*@(example|test|zzz)\.(com|org)",
    r"^Date:.*\b(19[0-9]{2}|20[0-9]{2})\b",
    r"[\x80-\xff]+",
    r"=\?(utf-8|iso-8859-1)\?([bq])\?",
    r"\n(\s+)(\S+)",
    r"(\S+)\z",
    r"(\S+)\Z",
    r"(\S+)$",
    r"^(\S+)",
    r"^(?!Received:)(X-[^:]+):",
    r"([\w.+-]+)@([\w-]+\.[\w.-]+)",
    r"^Content-Transfer-Encoding:\s*(base64|quoted-printable|7bit|8bit)",
    r"(?i)^x-mailer:\s*(.{1,20})",
    r"^(?:[^:]*):.*\b(free|money|viagra|offer)\b",
    r"^Return-Path:\s*<(.*)>",
    r"charset=\"?([\w-]+)\"?",
    r"boundary=\"?([^\";]+)",
    r"^MIME-Version:\s*(1\.0)\s*$",
    r"(\r)",
    r"^([^:]{30,}):",
    r"(a+)+b",
    r"(\d+)\s+(\d+)",
    r"^Subject:.*(Re|Fwd?):",
    r"\t(\S+)",
    r"^List-(\w+):\s*<(mailto|https?):",
    r"^(Sender|Reply-To):\s*(.*)",
    r"\bid\s+(\w+)",
    r"(\(.*?\))",
    r"(\(.*\))",
]
PCRE_FLAGS = ["", "i", "m", "s", "x", "A", "E", "U", "ms", "mE", "iU"]

REGEXP_PATTERNS = [
    r"^Subject:[[:space:]]*(.*)",
    r"^From:[[:space:]]*<>",
    r"^X-Spam-Flag:[[:space:]]+(YES)",
    r"^X-Spam-(Level|Status|Checker-Version):",
    r'^Content-(Type|Disposition):.*name[[:space:]]*=[[:space:]]*"?([^"]*\.(exe|scr|pif|bat|zip))"?',
    r"^Received:.*\[([0-9]{1,3}(\.[0-9]{1,3}){3})\]",
    r"^Message-I[Dd]:[[:space:]]*<([^@>]+)@([^>]+)>",
    r"[[:upper:]]{12,}",
    r"^([[:alpha:]-]+):[[:space:]]*$",
    r"^(To|Cc):.*@(example|test|zzz)\.(com|org)",
    r"(a|ab)(c|bcd)",
    r"([^[:space:]]+)$",
    r"^([^[:space:]]+)",
    r"\<(free|money|offer)\>",
    r"(\w+)@(\w+)",
    r"=\?(utf-8|iso-8859-1)\?([bq])\?",
    r"(x*)(x*)$",
    r"^(.*)(.*)$",
    r"\((.*)\)",
    r"^Date:.*(19[0-9][0-9]|20[0-9][0-9])",
]
REGEXP_FLAGS = ["", "i", "m", "mi"]


def _rules(kind: str) -> list[str]:
    patterns = PCRE_PATTERNS if kind == "pcre" else REGEXP_PATTERNS
    flags = PCRE_FLAGS if kind == "pcre" else REGEXP_FLAGS
    rules: list[str] = []
    n = 0
    per_pattern = 6 if kind == "pcre" else len(flags)
    for index, pattern in enumerate(patterns):
        # every flag is used, in rotation, without multiplying the run time
        for flag in (flags[(index + j) % len(flags)] for j in range(per_pattern)):
            if "U" in flag and pattern.startswith(r"(\S+)"):
                flag = flag.replace("U", "")  # quadratic in Postfix: CI time
            body = pattern
            if "x" in flag and kind == "pcre":
                body = f" {pattern} "  # blanks that x must ignore
            action = ACTIONS[n % len(ACTIONS)]
            groups = _groups(kind, pattern)
            if "$2" in action or "${2}" in action:
                need = 2
            elif "$1" in action or "$(1)" in action:
                need = 1
            else:
                need = 0
            if need > groups:
                action = "WARN no groups"
            rules.append(f"/{body}/{flag} {action} R{n}{END}")
            n += 1
    for pattern in patterns[:8]:
        rules.append(f"!/{pattern}/ DUNNO neg R{n}{END}")
        n += 1
    if kind == "regexp":
        rules.append(f"/^Subject/!/Re:/ WARN two R{n}{END}")
    return rules


def _groups(kind: str, pattern: str) -> int:
    table = parse_table(f"/{pattern}/ x\n", kind)  # type: ignore[arg-type]
    rule = table.rules[0]
    return rule.pattern.capture_count  # type: ignore[union-attr]


def _full_table(kind: str) -> str:
    """All rules in one file, with IF/ENDIF blocks, continuation lines and
    comments: tests first-match order and the table syntax."""
    rules = _rules(kind)
    lines = ["# generated rule set"]
    lines.append("if /^(Subject|From|To):/")
    lines.extend(rules[: len(rules) // 4])
    lines.append("endif")
    lines.append("if !/^Received:/")
    lines.append("/^Content-/ WARN content")
    lines.append(f"  continued R-cont{END}")
    lines.append("endif")
    lines.extend(rules)
    return "\n".join(lines) + "\n"


def _keys(corpus: Path) -> list[bytes]:
    keys: list[bytes] = []
    seen: set[bytes] = set()
    oracle = corpus / "postmap-oracle"
    for name in ("header_keys.jsonl", "header_keys_mbox_from_stripped.jsonl"):
        with (oracle / name).open() as fp:
            for line in fp:
                for key in json.loads(line)["header_checks_keys"]:
                    data = key.encode("utf-8", "surrogateescape")
                    # NUL ends a C string; giant headers hit header_size_limit
                    if data in seen or b"\0" in data or len(data) > 30000:
                        continue
                    seen.add(data)
                    keys.append(data)
    return keys


def _chunks(keys: list[bytes], limit: int = 200_000) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    size = 0
    for key in keys:
        if chunk and size + len(key) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(key)
        size += len(key) + 1
    if chunk:
        yield chunk


class Oracle:
    """Runs postmap once per (table, key chunk) and caches the output."""

    def __init__(self, binary: str, conf: Path, workdir: Path, keys: list[bytes]) -> None:
        self.binary = binary
        self.conf = conf
        self.workdir = workdir
        self.chunks = list(_chunks(keys))
        (conf / "main.cf").write_text("header_size_limit = 1000000\n")

    def run(self, kind: str, table_text: str) -> list[bytes]:
        digest = hashlib.sha256(f"{kind}\0{table_text}".encode()).hexdigest()[:20]
        table = self.workdir / f"{digest}.{kind}"
        table.write_text(table_text)
        outputs = []
        for i, chunk in enumerate(self.chunks):
            cache = self.workdir / f"{digest}.{i}.out"
            if cache.exists():
                outputs.append(cache.read_bytes())
                continue
            proc = subprocess.run(
                [self.binary, "-c", str(self.conf), "-hq", "-", f"{kind}:{table}"],
                input=b"\n".join(chunk) + b"\n\n",
                capture_output=True,
                timeout=120,
                check=False,
            )
            assert proc.returncode in (0, 1), proc.stderr.decode(errors="replace")
            cache.write_bytes(proc.stdout)
            outputs.append(proc.stdout)
        return outputs


@pytest.fixture(scope="module")
def oracle(
    corpus: Path, postmap: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Oracle:
    return Oracle(postmap[0], postmap[1], tmp_path_factory.mktemp("postmap-cache"), _keys(corpus))


def _ours(kind: str, table_text: str, chunk: list[bytes]) -> bytes:
    table = parse_table(table_text, kind)  # type: ignore[arg-type]
    out = bytearray()
    for key in chunk:
        hit = table.lookup(key)
        if hit is not None:
            out += key + b"\t" + hit.value + b"\n"
    return bytes(out)


def _first_difference(ours: bytes, theirs: bytes) -> str:
    for a, b in zip(
        ours.split(END.encode() + b"\n"), theirs.split(END.encode() + b"\n"), strict=False
    ):
        if a != b:
            return f"ours:   {a[-300:]!r}\npostfix: {b[-300:]!r}"
    return f"lengths differ: {len(ours)} vs {len(theirs)}"


def _compare(oracle: Oracle, kind: str, tables: list[str]) -> int:
    """Compare each table; returns the number of (key, rule) matches seen."""
    failures: list[str] = []
    hits = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda t: oracle.run(kind, t), tables))
    for table_text, theirs_all in zip(tables, results, strict=True):
        for chunk, theirs in zip(oracle.chunks, theirs_all, strict=True):
            ours = _ours(kind, table_text, chunk)
            hits += theirs.count(b"\n")
            if ours != theirs:
                failures.append(f"{table_text.strip()[:200]}\n{_first_difference(ours, theirs)}")
                break
    assert not failures, f"{len(failures)} tables disagree with postmap:\n" + "\n\n".join(
        failures[:5]
    )
    return hits


@pytest.mark.parametrize("kind", ["pcre", "regexp"])
def test_each_rule_matches_like_postmap(oracle: Oracle, kind: str) -> None:
    rules = _rules(kind)
    assert len(rules) >= (240 if kind == "pcre" else 80)
    hits = _compare(oracle, kind, [rule + "\n" for rule in rules])
    assert hits > 10_000  # the rules really match things


@pytest.mark.parametrize("kind", ["pcre", "regexp"])
def test_whole_table_first_match_like_postmap(oracle: Oracle, kind: str) -> None:
    text = _full_table(kind)
    assert not parse_table(text, kind).warnings  # type: ignore[arg-type]
    hits = _compare(oracle, kind, [text])
    assert hits > 5_000
