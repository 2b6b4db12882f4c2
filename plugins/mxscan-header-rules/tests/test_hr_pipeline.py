"""The seed's header_checks file, unchanged, as a pipeline stage after a
scanner: the outcome the seed's author could not get from Postfix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mxscan import Action, HeaderEdit, Message, Pipeline, Verdict
from mxscan_header_rules import HeaderRules

SEED = r"""/^From:\s*<>/m                  DISCARD
/^X\-Spam\-Flag:\s+YES/m        DISCARD
/^X\-Virus\-Status:\s+Yes/m     DISCARD
/^X\-Spam\-Level:/m             IGNORE
/^X\-Spam\-Checker\-Version:/m  IGNORE
/^X\-Spam\-Status:\s+No/m       IGNORE
/^X\-Virus\-Scanned:/m          IGNORE
/^X\-Virus\-Status:\s+Clean/m   IGNORE
"""

MAIL = (
    b"Received: from client (client [192.0.2.1])\r\n\tby mx.example.net\r\n"
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: hello\r\n"
    b"Message-ID: <1@example.org>\r\n"
    b"\r\n"
    b"Hello Bob.\r\n"
)


class AddHeaders:
    """A stand-in for the SpamAssassin stage: adds the headers it was given."""

    def __init__(self, name: str, *headers: tuple[str, str]) -> None:
        self.name = name
        self.headers = headers

    async def scan(self, message: Message) -> Verdict:
        edits = [HeaderEdit.add(n, v) for n, v in self.headers]
        fields: dict[str, Any] = {"edits": edits, "status": "tagged"}
        return Verdict(**fields)

    async def aclose(self) -> None:
        return None


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    path = tmp_path / "header_checks"
    path.write_text(SEED)
    return path


async def test_spam_flag_added_by_scanner_discards(seed_file: Path) -> None:
    rules = HeaderRules("outbound", file=f"pcre:{seed_file}")
    pipeline = Pipeline([[AddHeaders("spamassassin", ("X-Spam-Flag", "YES"))], [rules]])
    result = await pipeline.run(Message.from_bytes(MAIL))
    assert result.action is Action.DISCARD
    final = next(v for v in result.verdicts if v.scanner == "outbound")
    assert final.findings == (f"{seed_file}:2",)
    assert final.status == f"discard({seed_file}:2)"


async def test_spam_status_no_added_by_scanner_is_stripped(seed_file: Path) -> None:
    rules = HeaderRules("outbound", file=str(seed_file))
    status = "No, score=0.1 required=5.0 tests=NONE autolearn=ham\r\n\tversion=4.0.1"
    status = status.replace("\r\n", "")
    pipeline = Pipeline(
        [
            [
                AddHeaders(
                    "spamassassin",
                    ("X-Spam-Status", status),
                    ("X-Spam-Level", ""),
                    ("X-Spam-Checker-Version", "SpamAssassin 4.0.1"),
                )
            ],
            [rules],
        ]
    )
    result = await pipeline.run(Message.from_bytes(MAIL))
    assert result.action is Action.ACCEPT
    assert result.message.as_bytes() == MAIL  # everything the scanner added is gone
    final = next(v for v in result.verdicts if v.scanner == "outbound")
    assert len(final.findings) == 3


async def test_before_scanning_the_sender_cannot_forge_spam_headers(seed_file: Path) -> None:
    forged = MAIL.replace(
        b"Subject: hello\r\n", b"Subject: hello\r\nX-Spam-Status: No, score=-100\r\n"
    )
    inbound = HeaderRules("inbound", rules="/^X-Spam-/ IGNORE\n/^X-Virus-/ IGNORE\n")
    result = await Pipeline([[inbound]]).run(Message.from_bytes(forged))
    assert result.message.as_bytes() == MAIL


async def test_clean_message_passes_untouched(seed_file: Path) -> None:
    rules = HeaderRules("outbound", file=str(seed_file))
    result = await Pipeline([[rules]]).run(Message.from_bytes(MAIL))
    assert result.action is Action.ACCEPT
    assert result.message.as_bytes() == MAIL
    assert result.verdicts[0].status == "clean"


async def test_null_sender_from_header_discards(seed_file: Path) -> None:
    mail = MAIL.replace(b"From: Alice <alice@example.org>", b"From: <>")
    result = await Pipeline([[HeaderRules("x", file=str(seed_file))]]).run(Message.from_bytes(mail))
    assert result.action is Action.DISCARD
