"""The pipe tests' edit of the default main.cf (alternate_config_directories),
which sendmail/postdrop run by the pipe user need: undone exactly, even when test
sessions of several checkouts overlap on one host."""

from __future__ import annotations

from pathlib import Path

from tests.support.pipe_postfix import alternate_config_directory


def test_alternate_config_directory_entries_of_overlapping_sessions(tmp_path: Path) -> None:
    """Two test sessions on one host, overlapping: each takes out only its own
    entry, and the file the first one created is gone when both have ended (a
    snapshot restore left the other session's entry behind for good)."""
    main_cf = tmp_path / "main.cf"
    first = alternate_config_directory(Path("/a"), main_cf)
    second = alternate_config_directory(Path("/b"), main_cf)
    first.__enter__()
    second.__enter__()
    assert "alternate_config_directories = /a /b" in main_cf.read_text()
    first.__exit__(None, None, None)
    assert "alternate_config_directories = /b\n" in main_cf.read_text()
    second.__exit__(None, None, None)
    assert not main_cf.exists()
    # An admin's own main.cf is left as it was.
    main_cf.write_text("myhostname = mx.example\n")
    with alternate_config_directory(Path("/c"), main_cf):
        assert main_cf.read_text().endswith("alternate_config_directories = /c\n")
    assert main_cf.read_text() == "myhostname = mx.example\n"
