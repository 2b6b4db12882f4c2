"""The seed's secondary MX with rspamd instead of SpamAssassin, end to end:
SMTP -> private Postfix 3.7 -> `mxscan milter` -> aiosmtpd sink.

One Postfix, three smtpd listeners, each with its own `mxscan milter`:

* ``sa``: examples/mxscan.toml as shipped (clamav + spamassassin, the seed's
  header_checks file after the scanners), the reference;
* ``rspamd``: the same with rspamd in spamassassin's place, configured as
  docs/rspamd.md's "replacing the seed stack" (``actions.reject = "discard"``,
  rspamd's own headers not added: the seed's header_checks strips only
  SpamAssassin's);
* ``rspamd_tagged``: no outbound stage and rspamd's headers added, so they
  reach the recipient, exactly once, with the sender's forgeries gone.

Every message of the seed scenario goes through ``sa`` and ``rspamd``: the
outcome is the same, and what is delivered is byte for byte the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from email.utils import formatdate

import dkim
import pytest

from tests.support.daemons import (
    EICAR_SIGNATURE,
    eicar_message,
    gtube_message,
    require_daemon,
)
from tests.support.milter import (
    MilterProcess,
    remove_dir,
    rspamd_seed_config,
    seed_config,
    socket_dir,
)
from tests.support.postfix import PostfixInstance
from tests.support.seed import (
    FORGED,
    Stack,
    dkim_dns,
    dkim_key,
    ham,
    tricky_ham,
    without_received,
)
from tests.support.sink import SMTPSink
from tests.support.snippets import milter_main_cf

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.e2e,
    pytest.mark.clamd,
    pytest.mark.spamd,
    pytest.mark.rspamd,
]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    for kind in ("postfix", "clamd", "spamd", "rspamd"):
        require_daemon(kind)  # type: ignore[arg-type]
    configs = {
        "sa": seed_config(),
        "rspamd": rspamd_seed_config(),
        "rspamd_tagged": rspamd_seed_config(outbound=False, add_headers=True),
    }
    directory = socket_dir()
    sink = SMTPSink().start()
    milters: dict[str, MilterProcess] = {}
    postfix: PostfixInstance | None = None
    try:
        for name, config in configs.items():
            milters[name] = MilterProcess(config, directory, name=name).start()
        postfix = PostfixInstance(
            relay_port=sink.port, main_overrides=milter_main_cf(milters["sa"].address)
        )
        ports = {"sa": postfix.smtp_port}
        for name in ("rspamd", "rspamd_tagged"):
            ports[name] = postfix.add_smtpd_listener({"smtpd_milters": milters[name].address})
        postfix.start()
        yield Stack(postfix, sink, milters, ports)
    finally:
        if postfix is not None:
            postfix.remove()
        for milter in milters.values():
            milter.stop()
        sink.stop()
        remove_dir(directory)


#: One Date for every message of the module, so the same message sent twice
#: (to each stack) is the same bytes.
DATE = formatdate()


def _with_token(message: bytes, token: str) -> bytes:
    """``message`` with Message-ID ``<token@mxscan.test>`` and the module's Date."""
    message = re.sub(
        rb"Message-ID: <[^>]*>", f"Message-ID: <{token}@mxscan.test>".encode(), message
    )
    return re.sub(rb"\r\nDate: [^\r\n]*\r\n", f"\r\nDate: {DATE}\r\n".encode(), message)


def japanese(token: str) -> bytes:
    """8-bit UTF-8 body and an encoded-word Subject, as Japanese mail often is."""
    body = "山田さん、\r\n\r\n明日の昼食はいかがですか。\r\n\r\n花子\r\n".encode()
    return (
        b"From: Hanako <hanako@example.org>\r\nTo: Taro <rcpt@example.com>\r\n"
        b"Subject: =?UTF-8?B?5piO5pel44Gu5pi86aOf?=\r\n"
        + f"Date: {DATE}\r\nMessage-ID: <{token}@mxscan.test>\r\n".encode()
        + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body
    )


def dkim_signed(token: str) -> bytes:
    message = tricky_ham(token, FORGED).replace(b"alice@example.org", b"alice@example.com")
    signature = dkim.sign(
        message, b"test", b"example.com", dkim_key()[0],
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id", b"x-folded"],
    )  # fmt: skip
    return signature + message


Builder = Callable[[str], bytes]
#: name -> (message builder taking a unique token, discarding scanner or None, its status)
SCENARIO: dict[str, tuple[Builder, str | None]] = {
    "gtube": (lambda t: _with_token(gtube_message(), t), "rspamd=reject("),
    "eicar": (lambda t: _with_token(eicar_message("base64"), t), f"clamav=infected({EICAR_SIGNATURE})"),
    "eicar-zip": (lambda t: _with_token(eicar_message("zip"), t), f"clamav=infected({EICAR_SIGNATURE})"),
    "forged-flags": (lambda t: tricky_ham(t, FORGED), None),
    "null-sender": (lambda t: ham(t).replace(b"From: Alice <alice@example.org>", b"From: <>"), "outbound=discard("),
    "japanese-8bit": (japanese, None),
    "clean": (tricky_ham, None),
}  # fmt: skip
# GTUBE's score is 1000 plus whatever the trust rules add (ALL_TRUSTED for the
# loopback client, now that spamd sees this hop's Received: line): spam, and GTUBE hit.
SA_STATUS = {"gtube": "spamassassin=spam("}


def _run(stack: Stack, setup: str, name: str, builder: Builder) -> tuple[str, bytes | None]:
    token = f"rspamd-e2e-{name}-{setup}"
    message = _with_token(builder(token), token)
    queue_id = stack.send(setup, message)
    line = stack.log_line(setup, queue_id)
    if " action=discard" in line:
        stack.postfix.wait_for_log(rf"{queue_id}: milter-discard: END-OF-MESSAGE")
        return line, None
    delivered = without_received(stack.delivered(token.encode()).data)
    return line, delivered.replace(token.encode(), b"TOKEN")


@pytest.mark.parametrize("name", list(SCENARIO))
def test_seed_scenario_same_outcome_and_bytes_as_spamassassin(stack: Stack, name: str) -> None:
    builder, discarded_by = SCENARIO[name]
    sa_line, sa_data = _run(stack, "sa", name, builder)
    rs_line, rs_data = _run(stack, "rspamd", name, builder)
    assert "spamassassin=" not in rs_line and "rspamd=" in rs_line, rs_line
    if discarded_by is None:
        assert " action=accept" in sa_line and " action=accept" in rs_line, (sa_line, rs_line)
        assert sa_data is not None and rs_data is not None
        assert rs_data == sa_data  # byte for byte what the SpamAssassin stack delivers
        sent = _with_token(builder("TOKEN"), "TOKEN").replace(FORGED, b"")
        assert rs_data == sent  # ... which is what was sent, forgeries removed
    else:
        assert sa_data is None and rs_data is None, (sa_line, rs_line)
        assert discarded_by in rs_line, rs_line
        assert SA_STATUS.get(name, discarded_by) in sa_line, sa_line
        if name == "gtube":
            assert "GTUBE" in sa_line, sa_line


@pytest.mark.corpus
def test_dkim_signature_still_verifies_through_rspamd(stack: Stack) -> None:
    for setup in ("rspamd", "rspamd_tagged"):
        token = f"rspamd-dkim-{setup}"
        signed = dkim_signed(token)
        assert dkim.verify(signed, dnsfunc=dkim_dns)
        stack.send(setup, signed)
        data = stack.delivered(token.encode()).data
        assert data != signed
        assert dkim.verify(data, dnsfunc=dkim_dns), setup


def test_rspamds_headers_reach_the_recipient_once_forgeries_gone(stack: Stack) -> None:
    token = "rspamd-tagged-forged"
    message = tricky_ham(token, FORGED + b"X-Spamd-Result: default: False [-50 / 15]\r\n")
    stack.send("rspamd_tagged", message)
    data = without_received(stack.delivered(token.encode()).data)
    assert b"forged by the sender" not in data and b"[-50 / 15]" not in data
    assert b"X-Spam-Flag" not in data
    _, body = message.split(b"\r\n\r\n", 1)
    assert data.endswith(b"\r\n\r\n" + body)
    names = [
        line.split(b":", 1)[0] for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t")
    ]  # fmt: skip
    assert names.count(b"X-Spamd-Result") == 1
    assert names.count(b"X-Spam-Status") == 1
    assert re.search(rb"\r\nX-Spamd-Result: default: False \[-?\d+\.\d\d / 15\.00\];", data)
    assert re.search(rb"\r\nX-Rspamd-Queue-Id: [0-9A-F]+\r\n", data)  # Postfix's queue id
