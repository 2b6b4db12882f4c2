"""A third-party plugin installed from a distribution is found by its entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mxscan import Action, ConfigError, Envelope, Registry, load_config, scan
from mxscan.plugins import discover


def test_entry_point_plugin_is_discovered_with_distribution_and_version(testplugin: Path) -> None:
    info = discover()["keyword"]
    assert info.distribution == "mxscan-testplugin"
    assert info.version == "1.2.3"
    assert info.target == "mxscan_testplugin:Keyword"


def test_entry_point_plugin_runs_from_a_config_file(testplugin: Path, tmp_path: Path) -> None:
    config = tmp_path / "mxscan.toml"
    config.write_text('[scanner.kw]\nplugin = "keyword"\nkeyword = "viagra"\naction = "discard"\n')
    result = scan(b"Subject: x\n\nbuy viagra now\n", config=config)
    assert result.action is Action.DISCARD
    assert result.verdict.scanner == "kw"
    assert result.verdict.findings == ("viagra",)
    assert result.message.get("X-Keyword") == "viagra"
    clean = scan(b"Subject: x\n\nhello\n", config=config, envelope=Envelope(sender="a@b.c"))
    assert clean.action is Action.ACCEPT


def test_missing_plugin_error_names_installed_ones(testplugin: Path) -> None:
    with pytest.raises(ConfigError, match=r"no scanner plugin 'klamav' is installed .*keyword"):
        Registry().info("klamav")


def test_plugin_own_config_error_is_reported_with_file_and_section(
    testplugin: Path, tmp_path: Path
) -> None:
    config = tmp_path / "mxscan.toml"
    config.write_text('[scanner.kw]\nplugin = "keyword"\nkeyword = ""\n')
    with pytest.raises(
        ConfigError, match=r"mxscan.toml: \[scanner.kw\] keyword: must not be empty"
    ):
        load_config(config).build()


def test_broken_plugin_import_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mxscan.scanners]\nbroken = no_such_module:X\n")
    monkeypatch.syspath_prepend(tmp_path)
    with pytest.raises(ConfigError, match="failed to load from no_such_module:X"):
        Registry().factory("broken")


def test_mxscan_plugins_lists_the_plugin(testplugin: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(testplugin)}
    out = subprocess.run(
        [sys.executable, "-m", "mxscan", "plugins"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0
    line = next(line for line in out.stdout.splitlines() if line.startswith("keyword"))
    assert line.split()[:3] == ["keyword", "mxscan-testplugin", "1.2.3"]
