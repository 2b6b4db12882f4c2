"""Against the real rspamd from ``bash scripts/daemons start rspamd``.

Expectations come from rspamd itself: GTUBE is its prefilter (action reject,
whatever the thresholds); SLOPPY scores a few points (MISSING_DATE,
MISSING_MID), below rspamd's default greylist and add-header thresholds.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from mxscan_rspamd import Rspamd
from rspamd_support import CLEAN, SLOPPY, spam_message

from mxscan import Action, Envelope, Message, ScannerError, load_config

pytestmark = pytest.mark.rspamd

ENVELOPE = Envelope(
    sender="alice@example.com",
    recipients=["bob@example.net"],
    client_address="127.0.0.1",
    client_name="localhost",
    helo="localhost",
    queue_id="4ABC",
)


def message(data: bytes, envelope: Envelope = ENVELOPE) -> Message:
    return Message.from_bytes(data, envelope=envelope)


@pytest.mark.parametrize(("table", "action"), [({}, Action.REJECT),
                                               ({"reject": "discard"}, Action.DISCARD)])  # fmt: skip
async def test_gtube_is_rejected_or_discarded_per_the_table(
    rspamd: str, table: dict[str, str], action: Action
) -> None:
    scanner = Rspamd(address=rspamd, timeout=30, actions=table)
    verdict = await scanner.scan(message(spam_message()))
    await scanner.aclose()
    assert verdict.action is action
    assert "GTUBE" in verdict.findings
    assert verdict.status.startswith("reject(")
    assert verdict.score is not None and verdict.score >= 15
    if action is Action.REJECT:
        assert verdict.reply is not None and verdict.reply.code == 550


async def test_clean_mail_is_accepted_with_rspamds_headers(rspamd: str) -> None:
    scanner = Rspamd(address=rspamd, timeout=30)
    original = message(CLEAN)
    verdict = await scanner.scan(original)
    await scanner.aclose()
    assert verdict.action is Action.ACCEPT
    assert verdict.status.startswith("no-action(")
    tagged = original.apply(verdict.edits)
    (result,) = tagged.get_all("X-Spamd-Result")
    assert result.startswith(f"default: False [{verdict.score:.2f} / ")
    for symbol in verdict.findings:
        assert f"{symbol}(" in result
    (status,) = tagged.get_all("X-Spam-Status")
    assert status.startswith("No, score=")
    assert tagged.get_all("X-Rspamd-Queue-Id") == ["4ABC"]  # the envelope reached rspamd
    # Only header lines were added: the original bytes are all still there, in order.
    assert tagged.as_bytes().startswith(original.head_bytes()[: -len(b"\r\n")])
    assert tagged.as_bytes().endswith(original.body.as_bytes())


async def test_a_forged_spam_header_is_gone_before_rspamd_sees_it(rspamd: str) -> None:
    scanner = Rspamd(address=rspamd, timeout=30)
    forged = message(
        CLEAN.replace(
            b"Subject:", b"X-Spam-Flag: YES\r\nX-Spam: Yes\r\nX-Spamd-Result: fake\r\nSubject:"
        )
    )
    verdict = await scanner.scan(forged)
    await scanner.aclose()
    # rspamd scores a message carrying X-Spam-Flag: YES (SPAM_FLAG): it must not see it.
    assert "SPAM_FLAG" not in verdict.findings
    after = forged.apply(verdict.edits)
    assert after.get_all("X-Spam-Flag") == []
    assert after.get_all("X-Spam") == []
    assert after.get_all("X-Spamd-Result") != ["fake"] and len(after.get_all("X-Spamd-Result")) == 1
    kept = Rspamd(address=rspamd, timeout=30, remove_existing=False)
    seen = await kept.scan(message(forged.as_bytes()))
    await kept.aclose()
    assert "SPAM_FLAG" in seen.findings  # the same message, unstripped, is scored for it


def write_config(tmp_path: Path, rspamd: str) -> Path:
    config = tmp_path / "mxscan.toml"
    config.write_text(
        f"""
[scanner.rspamd]
plugin = "rspamd"
address = "{rspamd}"
timeout = "30s"

[policy."example.net"]
rspamd.reject_score = 1.0
rspamd.actions = {{ reject = "discard" }}
"""
    )
    return config


async def test_a_per_domain_threshold_is_honoured(rspamd: str, tmp_path: Path) -> None:
    engine = load_config(write_config(tmp_path, rspamd)).build()
    try:
        to_com = await engine.scan(
            message(SLOPPY, Envelope(sender="alice@example.com", recipients=["bob@example.com"]))
        )
        to_net = await engine.scan(
            message(SLOPPY, Envelope(sender="alice@example.com", recipients=["bob@example.net"]))
        )
    finally:
        await engine.aclose()
    (com,) = to_com.verdicts
    (net,) = to_net.verdicts
    assert com.score == net.score and net.score is not None and 1.0 < net.score < 6.0
    assert to_com.action is Action.ACCEPT and com.status.startswith("no-action(")
    assert to_net.action is Action.DISCARD
    assert net.status == f"reject({net.score:.2f}/1.00)"  # rspamd used the policy's threshold


async def test_learning_needs_the_controller_password(rspamd_learning: tuple[str, str]) -> None:
    controller, password = rspamd_learning
    good = Rspamd(controller=controller, password=password, timeout=30)
    bad = Rspamd(controller=controller, password="not-" + password, timeout=30)
    try:
        # Long enough for rspamd's Bayes (11 tokens at least), and new words each
        # run (rspamd remembers what it learned by content), so the first learn
        # is new and the second one is not.
        words = " ".join(uuid.uuid4().hex[i : i + 6] for i in range(0, 30, 6))
        text = CLEAN.replace(
            b"at noon?",
            f"at noon in the small Italian place near the station, with Carol? {words}".encode(),
        )
        assert await good.learn(message(text), spam=False) == "learned"
        assert await good.learn(message(text), spam=False) == "already learned"
        with pytest.raises(ScannerError, match="refused the password"):
            await bad.learn(message(CLEAN), spam=True)
    finally:
        await good.aclose()
        await bad.aclose()
