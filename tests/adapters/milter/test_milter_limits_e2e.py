"""Nothing passes as clean that was not fully scanned, end to end: SMTP ->
private Postfix -> ``mxscan milter`` (examples/mxscan.toml as shipped, its
defaults) -> a clamd of the test's own with AlertExceedsMax yes -> sink.

Each hostile message of tests/support/hostile.py, with EICAR and without,
gets its defined outcome from Postfix and a log line naming the limit that
decided; none reaches the sink. Real mail with the deepest structure in the
shared corpus passes with no ``unchecked`` verdict.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support import hostile
from tests.support.daemons import corpus_dir, require_daemon
from tests.support.milter import MilterProcess, remove_dir, seed_config, socket_dir
from tests.support.postfix import PostfixInstance
from tests.support.private_clamd import private_clamd
from tests.support.sink import SMTPSink
from tests.support.snippets import milter_main_cf

pytestmark = [pytest.mark.postfix, pytest.mark.e2e, pytest.mark.clamd, pytest.mark.spamd]

#: name -> (SMTP reply at end of DATA, mxscan's token naming the limit, action).
OUTCOMES = {
    "nested-zips-20": ("451 4.7.0", "clamav=unchecked(MaxRecursion)", "tempfail"),
    "parts-12000": ("554 5.7.0", "mime=unchecked(max_parts)", "reject"),
    "depth-30": ("554 5.7.0", "mime=unchecked(max_depth)", "reject"),
    "depth-1000": ("554 5.7.0", "mime=unchecked(max_depth)", "reject"),
    "zip-bomb": ("451 4.7.0", "clamav=unchecked(MaxScanSize)", "tempfail"),
}


@dataclass
class Stack:
    postfix: PostfixInstance
    sink: SMTPSink
    milter: MilterProcess

    def log_line(self, queue_id: str) -> str:
        """mxscan's one verdict line for the message (other lines may name it too)."""
        deadline = time.monotonic() + 120
        while True:
            lines = [x for x in self.milter.log().splitlines() if f"{queue_id}: " in x]
            verdicts = [x for x in lines if " action=" in x]
            if verdicts or time.monotonic() > deadline:
                assert len(verdicts) == 1, lines
                return verdicts[0]
            time.sleep(0.05)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    for kind in ("postfix", "spamd"):
        require_daemon(kind)  # type: ignore[arg-type]
    with private_clamd("e2e", ALERT_EXCEEDS_MAX="yes") as clamd:
        config = seed_config(clamav={"address": [clamd["unix"]], "timeout": "120s"})
        config["defaults"]["timeout"] = "120s"
        directory = socket_dir()
        sink = SMTPSink().start()
        milter = MilterProcess(config, directory).start()
        overrides = milter_main_cf(milter.address)
        overrides["milter_content_timeout"] = "300s"
        postfix = PostfixInstance(relay_port=sink.port, main_overrides=overrides)
        try:
            postfix.start()
            yield Stack(postfix, sink, milter)
        finally:
            postfix.remove()
            milter.stop()
            sink.stop()
            remove_dir(directory)


@pytest.mark.parametrize("virus", [True, False], ids=["eicar", "harmless"])
@pytest.mark.parametrize("name", list(OUTCOMES))
def test_hostile_mail_gets_its_outcome_and_is_never_delivered(
    stack: Stack, name: str, virus: bool
) -> None:
    reply, token, action = OUTCOMES[name]
    sender = f"{name}-{'eicar' if virus else 'harmless'}@example.org"
    data = hostile.HOSTILE[name](virus)
    result = stack.postfix.send(data, sender=sender, timeout=300)
    assert f"{result.code} {result.text}".startswith(reply), result
    # Postfix logs the refusal with the queue id, next to the sender.
    (refused,) = stack.postfix.wait_for_log(
        rf"([0-9A-Za-z]+): milter-reject: END-OF-MESSAGE .*from=<{re.escape(sender)}>"
    )
    queue_id = re.search(r"([0-9A-Za-z]+): milter-reject:", refused)[1]  # type: ignore[index]
    line = stack.log_line(queue_id)
    assert token in line and f" action={action}" in line, line
    if token.startswith("mime="):  # decided before any scanner: none ran
        assert "clamav=" not in line and "spamassassin=" not in line, line
    time.sleep(0.5)
    assert not [d for d in stack.sink.deliveries if sender.encode() in d.data]


@pytest.mark.parametrize(
    "path", ["flanker/torture.eml", "rspamd-functional-messages/gargantua.eml"]
)
def test_the_corpus_messages_with_the_most_structure_pass(stack: Stack, path: str) -> None:
    """The deepest (multipart 4, message/rfc822 3) and most parted (59) real mail."""
    data = corpus_dir(path).read_bytes()
    sender = f"corpus-{path.replace('/', '-')}@example.org"
    result = stack.postfix.send(data, sender=sender, timeout=300)
    assert result.queue_id, result
    line = stack.log_line(result.queue_id)
    assert "unchecked" not in line and "mime=" not in line, line
