"""rspamd's own client, rspamc (Debian's rspamd package), against ``mxscan http``.

What rspamc prints is compared with what mxscan itself decides for the same
message in-process, so the test checks the protocol, not a guess at spamd's rules.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import mxscan
from mxscan import Action
from mxscan.adapters.http.rspamd import ACTIONS
from tests.support.daemons import daemons_required, eicar_message, gtube_message, ham_message
from tests.support.httpd import HttpProcess

pytestmark = [pytest.mark.e2e, pytest.mark.clamd, pytest.mark.spamd]


def _rspamc() -> str:
    path = shutil.which("rspamc")
    if path is None:
        if daemons_required():
            pytest.fail("rspamc is missing: run scripts/install-system-deps", pytrace=False)
        pytest.skip("rspamc is missing (Debian package rspamd)")
    return path


def _rspamc_run(port: int, command: str, path: Path) -> str:
    done = subprocess.run(
        [_rspamc(), "-h", f"127.0.0.1:{port}", "-t", "30", command, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _symbols(output: str) -> dict[str, str]:
    """``Symbol: NAME (SCORE)[OPTIONS]`` lines -> NAME: OPTIONS."""
    return {
        m[1]: m[3] or ""
        for m in re.finditer(r"^Symbol: (\S+) \(([-\d.]+)\)(?:\[(.*)\])?$", output, re.M)
    }


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("gtube", gtube_message, Action.REJECT),
        ("eicar", eicar_message, Action.REJECT),
        ("ham", ham_message, Action.ACCEPT),
    ],
)
@pytest.mark.parametrize("command", ["symbols", "check"])
def test_rspamc_prints_mxscans_decision(
    mxscan_http: HttpProcess, tmp_path: Path, name: str, make, expected: Action, command: str
) -> None:  # type: ignore[no-untyped-def]
    data = make()
    path = tmp_path / f"{name}.eml"
    path.write_bytes(data)
    truth = mxscan.scan(data, config=str(mxscan_http.config_path))
    assert truth.action is expected  # the daemons see what the test means them to

    output = _rspamc_run(mxscan_http.port, command, path)

    assert f"Action: {ACTIONS[truth.action]}\n" in output
    assert ("Spam: true" in output) is (expected is Action.REJECT)
    symbols = _symbols(output)
    by_scanner = {v.scanner: v for v in truth.verdicts}
    assert set(symbols) == {"CLAMAV", "SPAMASSASSIN"}
    if name == "eicar":
        assert by_scanner["clamav"].findings
        assert symbols["CLAMAV"] == ", ".join(by_scanner["clamav"].findings)
    if name == "gtube":
        assert "GTUBE" in symbols["SPAMASSASSIN"].split(", ")
        assert "Message - smtp_message: 5.7.1 " in output
    spam = by_scanner["spamassassin"]
    assert spam.score is not None and spam.threshold is not None
    assert f"Score: {spam.score:.2f} / {spam.threshold:.2f}" in output
    assert "Message-ID: " in output
    # One log line per message, the core's (as the milter writes it: size as
    # received, then the scan's elapsed time).
    mxscan_http.wait_for(mxscan.format_result(truth, size=len(data)) + " elapsed=")


def test_rspamc_sees_soft_reject_when_clamd_is_down(tmp_path: Path) -> None:
    """The real clamav plugin against a socket nobody listens on: ``on_error =
    "tempfail"`` is rspamd's ``soft reject`` with a 4.x.x reply."""
    _rspamc()
    config = f"""
[scanner.clamav]
plugin = "clamav"
address = "unix:{tmp_path}/no-clamd.sock"
on_error = "tempfail"
timeout = "5s"
"""
    proc = HttpProcess(config, tmp_path)
    try:
        path = tmp_path / "ham.eml"
        path.write_bytes(ham_message())
        output = _rspamc_run(proc.port, "symbols", path)
        assert "Action: soft reject\n" in output
        assert re.search(r"^Message - smtp_message: 4\.\d+\.\d+ ", output, re.M), output
        proc.wait_for("clamav=error(")
    finally:
        proc.stop()
