"""The private clamd/spamd answer as the rest of the suite expects (scripts/daemons)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Literal

import pytest

from tests.support import daemons
from tests.support.daemons import (
    EICAR_SIGNATURE,
    clamd_alive,
    eicar_bytes,
    eicar_message,
    parse_address,
    require_daemon,
    spamd_alive,
)


def _spamc(message: bytes) -> tuple[float, float]:
    """(score, threshold) from `spamc -c` against the private spamd."""
    addr = parse_address(daemons.spamd_inet())
    proc = subprocess.run(
        ["spamc", "-c", "-d", addr.host, "-p", str(addr.port), "-t", "30"],
        input=message,
        capture_output=True,
        timeout=60,
        check=False,
    )
    score, _, threshold = proc.stdout.decode().strip().partition("/")
    return float(score), float(threshold)


def _clamdscan(data: bytes) -> str:
    """clamdscan --stream on stdin against the private clamd's unix socket."""
    conf = daemons.run_dir() / "clamd.conf"
    proc = subprocess.run(
        ["clamdscan", "--no-summary", "--stream", f"--config-file={conf}", "-"],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return proc.stdout.decode() + proc.stderr.decode()


def test_eicar_bytes_are_the_official_file() -> None:
    data = eicar_bytes()
    assert len(data) == 68
    assert hashlib.md5(data).hexdigest() == "44d88612fea8a8f36de82e1278abb02f"


def test_parse_address() -> None:
    assert parse_address("unix:/tmp/x.sock").path == "/tmp/x.sock"
    inet = parse_address("inet:127.0.0.1:13310")
    assert (inet.host, inet.port) == ("127.0.0.1", 13310)
    assert str(inet) == "inet:127.0.0.1:13310"
    for bad in ("tcp:1.2.3.4:5", "inet:127.0.0.1", "inet:127.0.0.1:0", "unix:"):
        with pytest.raises(ValueError, match="bad daemon address"):
            parse_address(bad)


def test_absent_daemon_is_detected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MXSCAN_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("MXSCAN_CLAMD_UNIX", f"unix:{tmp_path}/none.sock")
    monkeypatch.setenv("MXSCAN_SPAMD_INET", "inet:127.0.0.1:1")
    assert not clamd_alive()
    assert not spamd_alive()
    monkeypatch.setenv("MXSCAN_REQUIRE_DAEMONS", "1")
    with pytest.raises(pytest.fail.Exception, match="MXSCAN_REQUIRE_DAEMONS=1"):
        require_daemon("clamd")
    monkeypatch.setenv("MXSCAN_REQUIRE_DAEMONS", "0")
    with pytest.raises(pytest.skip.Exception, match="clamd not answering"):
        require_daemon("clamd")


@pytest.mark.spamd
def test_gtube_is_spam_and_ham_is_not() -> None:
    require_daemon("spamd")
    score, threshold = _spamc(daemons.gtube_message())
    assert score >= 1000
    assert threshold == 5.0
    score, _ = _spamc(daemons.ham_message())
    assert score < threshold


@pytest.mark.clamd
@pytest.mark.parametrize("wrapping", ["base64", "zip", "nested"])
def test_eicar_found_by_clamd(wrapping: Literal["base64", "zip", "nested"]) -> None:
    require_daemon("clamd")
    assert f"{EICAR_SIGNATURE} FOUND" in _clamdscan(eicar_message(wrapping))


@pytest.mark.clamd
def test_plain_eicar_and_clean_message() -> None:
    require_daemon("clamd")
    assert f"{EICAR_SIGNATURE} FOUND" in _clamdscan(eicar_bytes())
    out = _clamdscan(daemons.clean_attachment_message())
    assert "FOUND" not in out
    assert "OK" in out


@pytest.mark.clamd
def test_clamd_inet_answers() -> None:
    require_daemon("clamd-inet")
    assert clamd_alive(daemons.clamd_inet())
