"""``[quarantine]`` configuration errors and ``mxscan quarantine`` usage errors:
one line naming the problem, exit status 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mxscan import Config, ConfigError
from mxscan.cli import main

SCANNER = '[scanner.rules]\nplugin = "header-rules"\nrules = ""\n'


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[quarantine]\nstore = "mysql://x"\n', "store: expected sqlite:PATH or postgresql"),
        ('[quarantine]\nkeep = "soon"\n', "expected an age such as 30d"),
        ('[quarantine]\nkeep_copy = ["accept"]\n', "'accept' is not one of discard, reject"),
        ('[quarantine]\nkeep_copy = "discard"\n', "keep_copy: expected a list"),
        ('[quarantine]\nquarantine_action = "park"\n', "expected one of store, hold"),
        ('[quarantine]\non_store_error = "ignore"\n', "expected one of tempfail, proceed"),
        ('[quarantine]\nrelease = "lmtp://x"\n', "release: expected sendmail:PATH or smtp"),
        ("[quarantine]\nstor = 1\n", "stor: unknown key"),
        ('[quarantine]\nmax_size = "big"\n', "expected a size"),
    ],
)
def test_bad_quarantine_tables(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        Config.from_toml(SCANNER + text, source="t.toml")


def test_per_scanner_keep_copy_needs_the_table() -> None:
    with pytest.raises(ConfigError, match=r"\[scanner.rules\] keep_copy: needs a \[quarantine\]"):
        Config.from_toml(SCANNER + 'keep_copy = ["reject"]\n')
    config = Config.from_toml(SCANNER + 'keep_copy = ["reject"]\n[quarantine]\nkeep = "2w"\n')
    assert config.quarantine is not None
    assert config.quarantine.per_scanner == {"rules": frozenset({"reject"})}
    assert config.quarantine.keep == 14 * 86400
    assert "keep_copy" not in config.scanners["rules"].options  # not passed to the plugin


def test_a_policy_cannot_change_keep_copy() -> None:
    text = SCANNER + '[quarantine]\n[policy."example.net"]\nrules.keep_copy = ["reject"]\n'
    with pytest.raises(ConfigError, match=r"rules.keep_copy: set it in \[scanner.rules\]"):
        Config.from_toml(text)


def test_config_show_names_the_quarantine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text(SCANNER + f'[quarantine]\nstore = "sqlite:{tmp_path}/q.db"\n')
    assert main(["config", "show", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert f'store = "sqlite:{tmp_path}/q.db"  # file' in out
    assert 'quarantine_action = "store"  # default' in out
    assert 'keep = "30d"  # default' in out


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text(SCANNER)
    assert main(["quarantine", "list", "-c", str(cfg)]) == 2
    assert "has no [quarantine] table (or give --store URL)" in capsys.readouterr().err
    store = f"sqlite:{tmp_path}/q.db"
    assert main(["quarantine", "list", "--store", store, "--since", "soon"]) == 2
    assert "--since: expected an age" in capsys.readouterr().err
    assert main(["quarantine", "show", "--store", store, "nope"]) == 2
    assert "nope: no such message in" in capsys.readouterr().err
    (tmp_path / "dir.db").mkdir()
    assert main(["quarantine", "stats", "--store", f"sqlite:{tmp_path}/dir.db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mxscan: error: sqlite:") and err.count("\n") == 1
    assert main(["quarantine", "list", "--store", "bogus:x"]) == 2
    assert "--store: store must be sqlite:PATH" in capsys.readouterr().err


def test_init_stats_and_an_empty_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:{tmp_path}/q.db"
    assert main(["quarantine", "init", "--store", store]) == 0
    assert "created, schema version 2" in capsys.readouterr().out
    assert main(["quarantine", "init", "--store", store]) == 0
    assert "schema version 2, up to date" in capsys.readouterr().out
    assert main(["quarantine", "list", "--store", store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["quarantine", "stats", "--store", store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["messages"] == 0
    assert main(["quarantine", "expire", "--store", store, "--older-than", "1d"]) == 0
    assert "expired 0 messages" in capsys.readouterr().out


def test_a_failed_release_is_not_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from mxscan.quarantine.sqlite import SqliteStore

    from .test_quarantine_store import record

    async def put() -> None:
        store = SqliteStore(tmp_path / "q.db")
        await store.put(record(id="r1"), [b"Subject: x\r\n\r\nx\r\n"])
        await store.aclose()

    asyncio.run(put())
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        SCANNER
        + f'[quarantine]\nstore = "sqlite:{tmp_path}/q.db"\nrelease = "smtp://127.0.0.1:1"\n'
    )
    assert main(["quarantine", "release", "r1", "-c", str(cfg)]) == 1
    assert "r1: not released: smtp://127.0.0.1:1:" in capsys.readouterr().err
    assert main(["quarantine", "show", "r1", "--json", "-c", str(cfg)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["releases"] == 0 and shown["released_at"] is None


def test_config_check_connect_probes_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text(SCANNER + f'[quarantine]\nstore = "sqlite:{tmp_path}/q.db"\n')
    assert main(["config", "check", "--connect", "-c", str(cfg)]) == 0
    assert f"quarantine sqlite:{tmp_path}/q.db: 0 messages, schema version 2" in (
        capsys.readouterr().out
    )
    (tmp_path / "dir.db").mkdir()
    cfg.write_text(SCANNER + f'[quarantine]\nstore = "sqlite:{tmp_path}/dir.db"\n')
    assert main(["config", "check", "--connect", "-c", str(cfg)]) == 2
    out = capsys.readouterr()
    assert f"quarantine sqlite:{tmp_path}/dir.db: FAILED: sqlite:" in out.out
    assert "1 of 1 addresses did not answer" in out.err
