"""Exim 4 (Debian's exim4-daemon-heavy, unpacked by scripts/install-exim because it
conflicts with Postfix) with ``spamd_address = 127.0.0.1 PORT variant=rspamd`` and an
ACL ``spam = nobody:true``: it asks ``mxscan http`` in rspamd's RSPAMC/1.3 line
protocol, rejects GTUBE and delivers clean mail to a sink.

Exim runs as ``exim4 -C CONFIG -bs`` (SMTP on stdin, no listening socket) with
``-odi`` (deliver at once, in the foreground), as root with ``exim_user = nobody``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import daemons_required, gtube_message, ham_message, run_dir
from tests.support.httpd import HttpProcess
from tests.support.sink import SMTPSink

pytestmark = [pytest.mark.e2e, pytest.mark.clamd, pytest.mark.spamd]

CONFIG = """\
primary_hostname = exim.mxscan.test
exim_path = {exim}
exim_user = nobody
exim_group = nogroup
never_users =
keep_environment =
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
host_lookup =
rfc1413_hosts =
spamd_address = 127.0.0.1 {port} variant=rspamd
acl_smtp_rcpt = acl_rcpt
acl_smtp_data = acl_data

begin acl
acl_rcpt:
  accept

acl_data:
  warn   spam      = nobody:true
  deny   condition = ${{if eq{{$spam_action}}{{reject}}}}
         message   = 5.7.1 rejected by mxscan ($spam_action, score $spam_score)
  defer  condition = ${{if eq{{$spam_action}}{{soft reject}}}}
         message   = 4.7.1 mxscan cannot scan this now
  accept add_header = X-Mxscan-Action: $spam_action

begin routers
sink:
  driver = manualroute
  route_list = * 127.0.0.1
  self = send
  transport = to_sink

begin transports
to_sink:
  driver = smtp
  port = {sink}
  hosts_avoid_tls = *

begin retry
* * F,1m,1m
"""


def _exim() -> Path:
    base = Path(os.environ.get("MXSCAN_EXIM_DIR", str(run_dir() / "exim")))
    binary = base / "root" / "usr" / "sbin" / "exim4"
    if not binary.exists():
        reason = f"Exim is not unpacked in {base}: run scripts/install-exim"
        if daemons_required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return binary


@pytest.fixture
def exim_config(mxscan_http: HttpProcess, sink: SMTPSink) -> Iterator[Path]:
    """Exim's spool and logs, in a directory its user (nobody) can reach: pytest's
    tmp_path is 0700 root."""
    exim = _exim()
    parent = run_dir()
    parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="exim-", dir=parent))
    directory.chmod(0o755)
    for sub in ("spool", "log"):
        (directory / sub).mkdir()
        shutil.chown(directory / sub, "nobody", "nogroup")
    path = directory / "exim.conf"
    path.write_text(CONFIG.format(exim=exim, dir=directory, port=mxscan_http.port, sink=sink.port))
    try:
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _smtp(config: Path, data: bytes) -> str:
    session = (
        b"EHLO localhost\r\nMAIL FROM:<sender@example.org>\r\nRCPT TO:<rcpt@example.com>\r\n"
        b"DATA\r\n" + data.replace(b"\r\n.", b"\r\n..") + b".\r\nQUIT\r\n"
    )
    done = subprocess.run(
        [str(_exim()), "-C", str(config), "-bs", "-odi"],
        input=session,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return done.stdout.decode("utf-8", "replace")


def _log(config: Path) -> str:
    logs = config.parent / "log"
    return "\n".join(p.read_text(errors="replace") for p in sorted(logs.glob("*log")))


def test_gtube_is_rejected_by_exim(exim_config: Path, sink: SMTPSink) -> None:
    before = len(sink)
    out = _smtp(exim_config, gtube_message())
    assert "550 5.7.1 rejected by mxscan (reject, score 1" in out, out + _log(exim_config)
    assert len(sink) == before


def test_clean_mail_is_delivered_by_exim(
    exim_config: Path, sink: SMTPSink, mxscan_http: HttpProcess
) -> None:
    before = len(sink)
    data = ham_message()
    out = _smtp(exim_config, data)
    assert "250 OK id=" in out, out + _log(exim_config)
    delivery = sink.wait_for(before + 1)[-1]
    head, _, body = delivery.data.partition(b"\r\n\r\n")
    assert data.endswith(body)
    assert b"\r\nX-Mxscan-Action: no action" in head
    assert "action=accept" in mxscan_http.log()
