"""Against the real spamd from ``bash scripts/daemons start spamd``.

GTUBE scores 1000 there; CLEAN (loopback Received, Date, Message-ID) scores -1.0.
"""

from __future__ import annotations

import re

import pytest
from sa_support import CLEAN, GTUBE, spam_message, with_body

from mxscan import Action, Config, Envelope, Message, Pipeline, Step, format_result
from mxscan_spamassassin import SpamAssassin

pytestmark = pytest.mark.spamd

FILLER = b"Just an ordinary line of an ordinary long newsletter, nothing to see.\r\n"


def big(first: bytes = b"", last: bytes = b"", size: int = 600 * 1024) -> bytes:
    """A two-part message over the 500 KiB default: ``first`` at the top of part
    one, filler, and ``last`` alone in part two.

    Two parts because SpamAssassin 4 runs body rules on the first 50 kB of each
    text part only (body_part_scan_size): text at the end of one huge part is
    never seen, whatever mxscan sends.
    """
    filler = FILLER * (size // len(FILLER) + 1)
    body = (
        b"--b1\r\nContent-Type: text/plain\r\n\r\n" + first + filler
        + b"--b1\r\nContent-Type: text/plain\r\n\r\n" + last + b"\r\n--b1--\r\n"
    )  # fmt: skip
    mime = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n"
    return with_body(body, mime)


def header(message: Message, name: str) -> list[str]:
    return message.get_all(name)


async def test_gtube_is_discarded_at_discard_score_15(spamd: str) -> None:
    scanner = SpamAssassin(address=spamd, timeout=30, discard_score=15.0)
    message = Message.from_bytes(spam_message())
    verdict = await scanner.scan(message)
    assert verdict.action is Action.DISCARD
    assert verdict.score is not None and verdict.score >= 900
    assert re.fullmatch(r"spam\(\d{3,4}\.\d\)", verdict.status)
    assert "GTUBE" in verdict.findings
    assert verdict.reason.startswith(f"score {verdict.score:.1f} / threshold 5.0")
    tagged = message.apply(verdict.edits)
    assert header(tagged, "X-Spam-Flag") == ["YES"]
    (status,) = header(tagged, "X-Spam-Status")
    assert status.startswith(f"Yes, score={verdict.score:.1f} required=5.0 tests=")
    assert "GTUBE" in status.split("tests=")[1].split()[0].split(",")
    assert header(tagged, "X-Spam-Level") == ["*" * 50]
    (checker,) = header(tagged, "X-Spam-Checker-Version")
    assert checker.startswith("SpamAssassin 4.")


async def test_clean_message_is_accepted_with_status_no(spamd: str) -> None:
    scanner = SpamAssassin(address=spamd, timeout=30, discard_score=15.0)
    message = Message.from_bytes(CLEAN)
    verdict = await scanner.scan(message)
    assert verdict.action is Action.ACCEPT
    assert verdict.status == "ham(-1.0)"
    assert verdict.findings == ("ALL_TRUSTED",)
    tagged = message.apply(verdict.edits)
    (status,) = header(tagged, "X-Spam-Status")
    assert status.startswith("No, score=-1.0 required=5.0 tests=ALL_TRUSTED ")
    assert header(tagged, "X-Spam-Flag") == []
    assert header(tagged, "X-Spam-Level") == [""]
    # only header lines were added: the original bytes are all still there, in order
    head, _, body = CLEAN.partition(b"\r\n\r\n")
    assert tagged.as_bytes().startswith(head + b"\r\n")
    assert tagged.as_bytes().endswith(b"\r\n\r\n" + body)


async def test_forged_spam_flag_on_clean_mail_is_removed_and_accepted(spamd: str) -> None:
    forged = with_body(
        b"Hello Bob,\r\n\r\nsee you at noon.\r\n",
        b"X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=99.0\r\nx-spam-level: ****\r\n",
    )
    message = Message.from_bytes(forged)
    verdict = await SpamAssassin(address=spamd, timeout=30, discard_score=15.0).scan(message)
    assert verdict.action is Action.ACCEPT
    assert verdict.status.startswith("ham(")
    tagged = message.apply(verdict.edits)
    assert header(tagged, "X-Spam-Flag") == []
    (status,) = header(tagged, "X-Spam-Status")
    assert status.startswith("No, ")
    assert len(header(tagged, "X-Spam-Level")) == 1


async def test_forged_headers_stay_when_remove_existing_is_off(spamd: str) -> None:
    forged = with_body(b"Hello.\r\n", b"X-Spam-Flag: YES\r\nX-Spam-Origin: upstream\r\n")
    message = Message.from_bytes(forged)
    scanner = SpamAssassin(address=spamd, timeout=30, remove_existing=False)
    tagged = message.apply((await scanner.scan(message)).edits)
    assert header(tagged, "X-Spam-Flag") == ["YES"]
    assert header(tagged, "X-Spam-Origin") == ["upstream"]
    assert header(tagged, "X-Spam-Status")[0].startswith("No, ")


async def test_own_levels_override_required_score(spamd: str) -> None:
    scanner = SpamAssassin(address=spamd, timeout=30, spam_score=-5.0, subject_tag="[SPAM]")
    message = Message.from_bytes(CLEAN)
    verdict = await scanner.scan(message)
    assert verdict.status == "spam(-1.0)"
    assert verdict.reason == "score -1.0 / threshold -5.0"
    tagged = message.apply(verdict.edits)
    assert header(tagged, "X-Spam-Flag") == ["YES"]
    assert header(tagged, "X-Spam-Status")[0].startswith("Yes, score=-1.0 required=-5.0 ")
    assert header(tagged, "Subject") == ["[SPAM] lunch"]


async def test_below_tag_score_no_headers(spamd: str) -> None:
    verdict = await SpamAssassin(address=spamd, timeout=30, tag_score=2.0).scan(
        Message.from_bytes(CLEAN)
    )
    assert verdict.action is Action.ACCEPT
    assert verdict.edits == ()


async def test_user_and_compress_with_real_spamd(spamd: str) -> None:
    scanner = SpamAssassin(address=spamd, timeout=30, user="nobody", compress=True)
    verdict = await scanner.scan(Message.from_bytes(spam_message()))
    assert "GTUBE" in verdict.findings


async def test_reject_score(spamd: str) -> None:
    scanner = SpamAssassin(address=spamd, timeout=30, discard_score=2000, reject_score=500)
    verdict = await scanner.scan(Message.from_bytes(spam_message()))
    assert verdict.action is Action.REJECT
    assert str(verdict.reply) == "550 5.7.1 Message rejected as spam"


# -- oversize: each on_oversize choice -------------------------------------------


async def test_oversize_accept_is_said_in_verdict_and_log_line(spamd: str) -> None:
    scanner = SpamAssassin(address=spamd, timeout=30, discard_score=15.0)
    message = Message.from_bytes(big(first=GTUBE + b"\r\n"), envelope=Envelope(queue_id="4ABC123"))
    assert message.size > 500 * 1024
    result = await Pipeline([[Step(scanner, timeout=30)]]).run(message)
    assert result.verdict.action is Action.ACCEPT
    (verdict,) = result.verdicts
    assert verdict.status == "skipped(oversize)"
    assert "not spam-checked" in verdict.reason
    assert format_result(result).startswith(
        "4ABC123: spamassassin=skipped(oversize) action=accept "
    )


async def test_oversize_truncate_scans_the_first_max_size_bytes(spamd: str) -> None:
    scanner = SpamAssassin(address=spamd, timeout=30, discard_score=15.0, on_oversize="truncate")
    early = await scanner.scan(Message.from_bytes(big(first=GTUBE + b"\r\n")))
    assert early.action is Action.DISCARD
    assert "GTUBE" in early.findings
    assert ": over max_size 512000)" in early.reason
    assert early.status.startswith("spam(") and early.status.endswith(",truncated)")
    # GTUBE beyond the cut is not seen: proof that only the head went to spamd
    late = await scanner.scan(Message.from_bytes(big(last=GTUBE)))
    assert late.action is Action.ACCEPT
    assert "GTUBE" not in late.findings
    assert late.status.startswith("ham(") and late.status.endswith(",truncated)")


@pytest.mark.parametrize(
    ("choice", "action"), [("tempfail", Action.TEMPFAIL), ("reject", Action.REJECT)]
)
async def test_oversize_tempfail_and_reject(spamd: str, choice: str, action: Action) -> None:
    scanner = SpamAssassin(address=spamd, timeout=30, on_oversize=choice)
    verdict = await scanner.scan(Message.from_bytes(big()))
    assert verdict.action is action
    assert verdict.status == "skipped(oversize)"
    assert verdict.reply is not None


async def test_max_size_is_configurable(spamd: str) -> None:
    scanner = SpamAssassin(address=spamd, timeout=30, max_size="1MiB", discard_score=15.0)
    verdict = await scanner.scan(Message.from_bytes(big(last=GTUBE)))
    assert verdict.action is Action.DISCARD


# -- per-recipient-domain policy through the core's config and PolicyRouter -------------

POLICY_CONFIG = """
[scanner.spamassassin]
plugin = "spamassassin"
address = "{address}"
timeout = "30s"
discard_score = 15.0

[[stage]]
run = ["spamassassin"]

[policy."example.net"]
spamassassin.discard_score = 10.0

[policy."example.jp"]
spamassassin.discard_score = 2000.0
"""


async def test_per_domain_discard_score(spamd: str) -> None:
    engine = Config.from_toml(POLICY_CONFIG.format(address=spamd)).build()
    try:
        data = spam_message()
        for rcpt, expected in [
            ("bob@example.net", Action.DISCARD),
            ("taro@example.jp", Action.ACCEPT),
        ]:
            result = await engine.scan(
                Message.from_bytes(data, envelope=Envelope(recipients=(rcpt,)))
            )
            assert result.verdict.action is expected, rcpt
            (verdict,) = result.verdicts
            assert verdict.status.startswith("spam("), rcpt
        both = await engine.scan(
            Message.from_bytes(
                data, envelope=Envelope(recipients=("bob@example.net", "taro@example.jp"))
            )
        )
        assert both.policy == "split"
        by_policy = {group.policy: group for group in both.splits}
        assert by_policy["example.net"].verdict.action is Action.DISCARD
        assert by_policy["example.net"].recipients == ("bob@example.net",)
        jp = by_policy["example.jp"]
        assert jp.verdict.action is Action.ACCEPT
        assert jp.recipients == ("taro@example.jp",)
        assert jp.message.get("X-Spam-Flag") == "YES"
    finally:
        await engine.aclose()


async def test_spamd_down_through_the_pipeline_is_tempfail() -> None:
    from sa_support import free_port

    address = f"inet:127.0.0.1:{free_port()}"
    scanner = SpamAssassin(address=address, timeout=5)
    result = await Pipeline([[Step(scanner, timeout=5)]]).run(Message.from_bytes(CLEAN))
    assert result.verdict.action is Action.TEMPFAIL
    assert address in result.verdict.reason
