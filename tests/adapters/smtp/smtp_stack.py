"""The smtp/lmtp adapter's end-to-end stack: one private Postfix with the
documented content_filter lines, `mxscan smtp` and `mxscan lmtp` (real clamd and
spamd), the re-injection listener and a sink. A module of its own name (not
conftest): test modules import ``Stack`` from it, and a bare ``conftest`` would
be another directory's when the whole suite runs."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from smtp_dsn_sink import DsnSink
from smtp_proc import FilterProcess, filter_postfix, full_config, snippet_main, snippet_master

from tests.support.daemons import require_daemon, run_dir
from tests.support.postfix import PostfixInstance, free_port
from tests.support.sink import SMTPSink


@dataclass
class Stack:
    postfix: PostfixInstance
    sink: SMTPSink
    smtp: FilterProcess
    lmtp: FilterProcess
    lmtp_port: int  # the smtpd listener whose content_filter is `mxscan lmtp`
    plain_port: int  # an smtpd listener with no content_filter (the reference copy)
    next_port: int
    dsn_sink: DsnSink  # where mail to DSN_DOMAIN goes: it announces DSN


#: Mail to this domain is relayed to the stack's DSN sink rather than the plain one.
DSN_DOMAIN = "dsn.example.net"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    for kind in ("postfix", "clamd", "spamd"):
        require_daemon(kind)  # type: ignore[arg-type]
    sink = SMTPSink().start()
    dsn_sink = DsnSink().start()
    work = Path(tempfile.mkdtemp(prefix="smtp-e2e-", dir=run_dir()))
    postfix, filter_port, next_port = filter_postfix("smtp", sink.port)
    lmtp_filter = free_port()
    postfix.master_extra += snippet_master("lmtp", next_port)
    lmtp_main = snippet_main("lmtp", lmtp_filter)
    del lmtp_main["content_filter"]  # per listener: the main content_filter is smtp's
    postfix.main_overrides.update(lmtp_main)
    lmtp_port = postfix.add_smtpd_listener(
        {"content_filter": f"mxscan-lmtp:inet:127.0.0.1:{lmtp_filter}"}
    )
    plain_port = postfix.add_smtpd_listener({"content_filter": ""})
    postfix.relay_domains += (DSN_DOMAIN,)
    postfix.main_overrides["transport_maps"] = (
        f"inline:{{{DSN_DOMAIN}=smtp:[127.0.0.1]:{dsn_sink.port}}}, "
        f"texthash:{postfix.config_dir}/transport"
    )
    smtp = FilterProcess("smtp", full_config(), work / "smtp", filter_port, next_port)
    lmtp = FilterProcess("lmtp", full_config(), work / "lmtp", lmtp_filter, next_port)
    try:
        smtp.start()
        lmtp.start()
        postfix.start()
        yield Stack(postfix, sink, smtp, lmtp, lmtp_port, plain_port, next_port, dsn_sink)
    finally:
        smtp.stop()
        lmtp.stop()
        postfix.remove()
        sink.stop()
        dsn_sink.stop()
