"""Security checks through the running system (real Postfix + ``mxscan milter``):

* the unix socket gets exactly the asked mode and group, and a socket Postfix may
  not connect to is a defined outcome (451, nothing delivered), not a hole;
* rules cannot inject headers: a REPLACE whose ``$1`` copies a line break out of a
  folded header, and a rule whose text holds a bare CR, change nothing on the wire;
* a catastrophic-backtracking pattern in a header_checks file cannot hang the
  milter: PCRE2's match limit ends it, the rule counts as not matching (as in
  Postfix), and the message goes on.

Privilege dropping with ``--user`` (uid, gid, supplementary groups, socket owner)
is tested in tests/adapters/milter/test_milter_ops_e2e.py; the unit-level CR/LF
refusals in tests/core/test_edits.py and the header-rules plugin's tests.
"""

from __future__ import annotations

import grp
import os
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import pytest

from tests.support.daemons import require_daemon
from tests.support.faults import LogCursor, figure, smtp_send
from tests.support.milter import MilterProcess, plain_config, socket_dir
from tests.support.postfix import PostfixInstance, process_alive
from tests.support.sink import SMTPSink

pytestmark = [pytest.mark.faults, pytest.mark.postfix]

INJECT_RULES = (
    "/^Subject: (.*)/ REPLACE Subject: $1\n"
    "/^X-Trigger: cr/ PREPEND X-Added: a\rBcc: evil@example.net\n"
)
REDOS_RULES = "/^Subject: (a+)+$/ REJECT 5.7.1 never\n/^X-Redos-Marker:/ PREPEND X-Seen: yes\n"


@dataclass
class Rig:
    postfix: PostfixInstance
    sink: SMTPSink
    milters: dict[str, MilterProcess]
    ports: dict[str, int]


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    require_daemon("postfix")
    directory = socket_dir()
    (directory / "inject.pcre").write_text(INJECT_RULES)
    (directory / "redos.pcre").write_text(REDOS_RULES)
    (directory / "redos.regexp").write_text(REDOS_RULES)
    rules = {"rules": {"plugin": "header-rules", "rules": "/^Subject: never/ DISCARD\n"}}
    setups = {
        "m0660": (plain_config(rules), ["--socket-group", "postfix", "--socket-mode", "0660"]),
        "m0600": (plain_config(rules), ["--socket-mode", "0600"]),
        "m0640": (plain_config(rules), ["--socket-group", "postfix", "--socket-mode", "0640"]),
        "inject": (
            plain_config({"r": {"plugin": "header-rules", "file": str(directory / "inject.pcre")}}),
            ["--socket-group", "postfix"],
        ),
        "redos": (
            plain_config(
                {
                    "p": {"plugin": "header-rules", "file": f"pcre:{directory / 'redos.pcre'}"},
                    "r": {"plugin": "header-rules", "file": f"regexp:{directory / 'redos.regexp'}"},
                }
            ),
            ["--socket-group", "postfix"],
        ),
    }
    sink = SMTPSink().start()
    milters: dict[str, MilterProcess] = {}
    postfix: PostfixInstance | None = None
    try:
        for name, (config, args) in setups.items():
            milters[name] = MilterProcess(config, directory, name=name, args=args).start()
        postfix = PostfixInstance(relay_port=sink.port)
        ports = {
            name: postfix.add_smtpd_listener({"smtpd_milters": m.address})
            for name, m in milters.items()
        }
        postfix.start()
        yield Rig(postfix, sink, milters, ports)
    finally:
        if postfix is not None:
            postfix.remove()
        for m in milters.values():
            m.stop()
        sink.stop()


def message(token: str, extra: bytes = b"", subject: bytes | None = None) -> bytes:
    subject = subject if subject is not None else f"Subject: {token}\r\n".encode()
    return (
        b"From: Alice <alice@example.org>\r\nTo: rcpt@example.com\r\n"
        + subject
        + extra
        + f"Date: {formatdate()}\r\nMessage-ID: <{token}@example.org>\r\n\r\nHello.\r\n".encode()
    )


def delivered(rig: Rig, token: str, timeout: float = 30) -> bytes:
    needle = f"<{token}@".encode()
    deadline = time.monotonic() + timeout
    while True:
        hits = [d for d in rig.sink.deliveries if needle in d.data]
        if hits:
            time.sleep(0.3)
            hits = [d for d in rig.sink.deliveries if needle in d.data]
            assert len(hits) == 1
            assert hits[0].rcpt_tos == ("rcpt@example.com",)  # no recipient was added
            return hits[0].data
        assert time.monotonic() < deadline, rig.postfix.log_tail()
        time.sleep(0.05)


# ---------------------------------------------------------------- sockets


@pytest.mark.parametrize(
    ("name", "mode", "group", "reachable"),
    [
        ("m0660", 0o660, "postfix", True),
        ("m0640", 0o640, "postfix", False),  # group may read, not write: no connect
        ("m0600", 0o600, "root", False),
    ],
)
def test_socket_has_the_asked_mode_and_group(
    rig: Rig, name: str, mode: int, group: str, reachable: bool
) -> None:
    milter = rig.milters[name]
    st = os.stat(milter.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == mode
    assert st.st_gid == grp.getgrnam(group).gr_gid
    assert stat.S_IMODE(os.stat(Path(milter.sock).parent).st_mode) & 0o002 == 0
    token = f"sock-{name}-{uuid.uuid4().hex[:6]}"
    reply = smtp_send(rig.ports[name], message(token))
    if reachable:
        assert reply.code == 250, reply
        delivered(rig, token)
    else:
        # smtpd (user postfix) cannot connect: milter_default_action = tempfail.
        assert reply.code == 451, reply
        rig.postfix.wait_for_log(
            rf"connect to Milter service unix:.*{name}\.sock: Permission denied"
        )
        assert not [d for d in rig.sink.deliveries if f"<{token}@".encode() in d.data]


# ---------------------------------------------------------------- header injection


def test_replace_cannot_inject_a_header_through_a_folded_value(rig: Rig) -> None:
    """``$1`` of a folded Subject holds a line break: the REPLACE is refused (logged),
    the message is delivered exactly as sent, no header or recipient appears."""
    token = f"inject-fold-{uuid.uuid4().hex[:6]}"
    folded = f"Subject: {token}\r\n Bcc: evil@example.net\r\n".encode()
    cursor = LogCursor(rig.milters["inject"].log_path)
    assert smtp_send(rig.ports["inject"], message(token, subject=folded)).code == 250
    data = delivered(rig, token)
    assert folded in data  # untouched, still one folded field
    assert b"\r\nBcc:" not in data
    assert any("refusing REPLACE" in x for x in cursor.wait("refusing REPLACE"))


def test_rule_text_with_a_bare_cr_cannot_inject_a_header(rig: Rig) -> None:
    token = f"inject-cr-{uuid.uuid4().hex[:6]}"
    cursor = LogCursor(rig.milters["inject"].log_path)
    reply = smtp_send(rig.ports["inject"], message(token, b"X-Trigger: cr\r\n"))
    assert reply.code == 250, reply
    data = delivered(rig, token)
    assert b"Bcc" not in data and b"X-Added" not in data and b"\r" not in data.replace(b"\r\n", b"")
    lines = list(cursor.wait(" action="))
    assert any("refusing PREPEND" in x or "bad PREPEND" in x for x in lines), lines
    assert process_alive(rig.milters["inject"].pid)


# ---------------------------------------------------------------- ReDoS


def test_catastrophic_backtracking_pattern_cannot_hang_the_milter(rig: Rig) -> None:
    """/^Subject: (a+)+$/ on 'a' * 50 + '!' is ~2**50 steps for a naive backtracker.
    pcre: PCRE2's match limit stops it (logged; the rule does not match, as in
    Postfix); regexp: glibc's POSIX matcher does not backtrack exponentially. The
    rule after it still applies, the message is delivered, the milter stays up."""
    token = f"redos-{uuid.uuid4().hex[:6]}"
    subject = b"Subject: " + b"a" * 50 + b"!\r\n"
    cursor = LogCursor(rig.milters["redos"].log_path)
    start = time.monotonic()
    reply = smtp_send(rig.ports["redos"], message(token, b"X-Redos-Marker: 1\r\n", subject))
    took = time.monotonic() - start
    assert reply.code == 250, reply
    data = delivered(rig, token)
    assert data.count(b"X-Seen: yes\r\n") == 2  # both tables' second rule applied
    lines = list(cursor.wait(" action=accept"))
    assert any("match limit exceeded" in x for x in lines), lines
    assert process_alive(rig.milters["redos"].pid)
    figure(f"\nhostile pattern through Postfix + milter: {took:.2f}s for the SMTP transaction")
    assert took < 60  # a hang would hit smtplib's timeout instead
