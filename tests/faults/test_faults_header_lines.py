"""Every header an official plugin writes fits RFC 5322's 998 bytes a line.

Found on real-world mail: spamd's X-Spam-Report joined into one ~1,150-byte
line, which Postfix breaks mid-word. Each plugin here is driven to write its
longest headers - spamd's report (report_safe 0) for a message with many rule
hits, clamav-milter-style headers with a long host name, header-rules'
REPLACE with a long captured Subject - and every line of the result is
measured. The same limit through real Postfix is test_milter_postfix's.
"""

from __future__ import annotations

import pytest

from mxscan import Message, Pipeline
from mxscan_clamav import ClamAV
from mxscan_header_rules import HeaderRules
from mxscan_spamassassin import SpamAssassin
from tests.support.daemons import GTUBE, clamd_unix, eicar_bytes, require_daemon

pytestmark = [pytest.mark.clamd, pytest.mark.spamd, pytest.mark.e2e]

LONG_SUBJECT = " ".join(f"offer{i}" for i in range(300))  # ~2,400 bytes, spaces between


def message() -> bytes:
    return (
        b"From: Alice <alice@example.com>\r\n"
        b"To: Bob <bob@example.net>\r\n"
        b"Subject: " + LONG_SUBJECT.encode() + b"\r\n"
        b"\r\n"
        b"Lots of money, click here now!\r\n" + GTUBE + b"\r\n" + eicar_bytes() + b"\r\n"
    )


async def test_every_official_plugins_headers_fit_in_998_bytes(tagging_spamd: str) -> None:
    require_daemon("clamd")
    rules = "/^Subject: (.*)/ REPLACE Subject: [tagged] $1\n"
    pipeline = Pipeline(
        [
            [
                ClamAV(address=clamd_unix(), on_infected="accept-and-tag", hostname="h" * 1100),
                SpamAssassin(address=tagging_spamd, timeout=60),
            ],
            [HeaderRules("outbound", rules=rules)],
        ]
    )
    try:
        result = await pipeline.run(Message.from_bytes(message()))
    finally:
        await pipeline.aclose()
    names = {e.name.lower() for e in result.edits}
    assert {"x-virus-scanned", "x-virus-status", "x-spam-report", "subject"} <= names
    out = result.message
    for header in out.headers:
        for line in header.raw.split(b"\r\n"):
            assert len(line) <= 998, (header.name, len(line))
    # Folding only: unfolded, the values are what the plugins meant.
    # (a word longer than a line is broken at the limit: unfolded, a space more)
    assert (out.get("X-Virus-Scanned") or "").replace(" ", "").endswith("at" + "h" * 1100)
    assert out.get("Subject") == "[tagged] " + LONG_SUBJECT
    report = next(h for h in out.headers if h.name == "X-Spam-Report")
    assert report.raw.count(b"\r\n") > 2  # spamd's one rule a line
