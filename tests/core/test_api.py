"""The function adapter: bytes, paths and files in; a Result out."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from mxscan import Action, ConfigError, Envelope, HeaderEdit, Pipeline, ascan, scan

from .fakes import FakeScanner

DATA = b"Subject: hi\r\n\r\nbody\r\n"


def pipeline() -> Pipeline:
    return Pipeline([[FakeScanner("tag", edits=(HeaderEdit.add("X-Tag", "1"),))]])


def test_scan_takes_bytes_path_and_file(tmp_path: Path) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(DATA)
    for source in (DATA, bytearray(DATA), path, str(path), io.BytesIO(DATA)):
        result = scan(source, config=pipeline())  # type: ignore[arg-type]
        assert result.action is Action.ACCEPT
        assert result.message.as_bytes() == b"Subject: hi\r\nX-Tag: 1\r\n\r\nbody\r\n"


def test_scan_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        scan(12345, config=pipeline())  # type: ignore[arg-type]


def test_envelope_reaches_scanners() -> None:
    seen = FakeScanner("s")
    scan(DATA, config=Pipeline([[seen]]), envelope=Envelope(sender="a@example.com"))
    assert seen.seen[0].envelope.sender == "a@example.com"


async def test_ascan_inside_a_loop_and_scan_refuses_it() -> None:
    result = await ascan(DATA, config=pipeline())
    assert result.message.get("X-Tag") == "1"
    with pytest.raises(RuntimeError, match="await ascan"):
        scan(DATA, config=pipeline())


def test_default_config_missing_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MXSCAN_CONFIG", str(tmp_path / "none.toml"))
    with pytest.raises(ConfigError, match="none.toml does not exist"):
        scan(DATA)


def test_spool_settings_of_the_config_are_used(tmp_path: Path, testplugin: Path) -> None:
    """[spool] threshold and directory apply to messages mxscan.scan() reads."""
    spool = tmp_path / "spool"
    spool.mkdir()
    config = tmp_path / "mxscan.toml"
    config.write_text(
        f'[spool]\nthreshold = 100\ndirectory = "{spool}"\n'
        '[scanner.kw]\nplugin = "keyword"\nkeyword = "never-there"\n'
    )
    big = b"Subject: x\r\n\r\n" + b"y" * 1000
    result = scan(big, config=config)
    assert result.message.body.spooled
    spool_file = result.message.body._file  # the unlinked temporary file
    assert spool_file is not None
    assert os.readlink(f"/proc/self/fd/{spool_file.fileno()}").startswith(str(spool))
    small = scan(b"Subject: x\r\n\r\nshort\r\n", config=config)
    assert not small.message.body.spooled
    assert result.message.as_bytes() == big
