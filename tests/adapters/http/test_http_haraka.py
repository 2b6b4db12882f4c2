"""Haraka with haraka-plugin-rspamd, pointed at ``mxscan http``: the MTA rejects
what mxscan rejects and adds mxscan's header edits (milter.add_headers) itself."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from tests.support.daemons import gtube_message, ham_message
from tests.support.haraka import Haraka
from tests.support.httpd import HttpProcess
from tests.support.sink import SMTPSink

pytestmark = [pytest.mark.e2e, pytest.mark.clamd, pytest.mark.spamd]


@pytest.fixture(scope="module")
def haraka(
    mxscan_http: HttpProcess, sink: SMTPSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Haraka]:
    h = Haraka(tmp_path_factory.mktemp("haraka"), rspamd_port=mxscan_http.port, sink_port=sink.port)
    try:
        yield h
    finally:
        h.stop()


def _send(port: int, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost", timeout=60) as smtp:
        smtp.sendmail("sender@example.org", ["rcpt@example.com"], data)


def test_gtube_is_rejected_by_haraka(haraka: Haraka, sink: SMTPSink) -> None:
    before = len(sink.deliveries)
    try:
        _send(haraka.port, gtube_message())
    except smtplib.SMTPDataError as error:
        assert error.smtp_code == 550, haraka.log()
        assert b"5.7.1 Message rejected as spam" in error.smtp_error
    else:
        # Haraka accepts mail a plugin crashed on: its log says why (wrong
        # Haraka/haraka-plugin-rspamd pair, see scripts/install-haraka --help).
        pytest.fail(f"Haraka accepted GTUBE:\n{haraka.log()}", pytrace=False)
    assert len(sink.deliveries) == before


def test_clean_mail_is_delivered_with_mxscans_headers(
    haraka: Haraka, sink: SMTPSink, mxscan_http: HttpProcess
) -> None:
    data = ham_message()
    _send(haraka.port, data)
    delivery = sink.wait_for(1)[-1]
    head, _, body = delivery.data.partition(b"\r\n\r\n")
    assert data.endswith(body)  # the body Haraka relays is the one it was given
    fields = {line.split(b":", 1)[0].lower(): line for line in head.split(b"\r\n")}
    assert fields[b"x-virus-status"] == b"X-Virus-Status: Clean"
    assert fields[b"x-spam-status"].startswith(b"X-Spam-Status: No, score=")
    assert b"x-spam-checker-version" in fields
    assert "action=accept" in mxscan_http.log()
