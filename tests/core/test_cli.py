"""The mxscan command: a verdict table, JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = """
[scanner.kw]
plugin = "keyword"
keyword = "viagra"
action = "discard"
"""


def run(
    *args: str, pythonpath: Path | None = None, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop("MXSCAN_CONFIG", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "mxscan", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin.decode(),
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    config = tmp_path / "mxscan.toml"
    config.write_text(CONFIG)
    ham = tmp_path / "ham.eml"
    ham.write_bytes(b"Subject: hello\n\nhi there\n")
    spam = tmp_path / "spam.eml"
    spam.write_bytes(b"Subject: offer\n\ncheap viagra\n")
    return {"config": config, "ham": ham, "spam": spam}


def test_scan_prints_a_verdict_table(testplugin: Path, files: dict[str, Path]) -> None:
    out = run("scan", "-c", str(files["config"]), str(files["ham"]), str(files["spam"]),
              pythonpath=testplugin)  # fmt: skip
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["FILE", "ACTION", "VERDICTS"]
    assert lines[1].split() == [str(files["ham"]), "accept", "kw=clean"]
    assert lines[2].split() == [str(files["spam"]), "discard", "kw=found(viagra)"]
    assert out.stderr == ""


def test_scan_exit_zero_when_all_accepted(testplugin: Path, files: dict[str, Path]) -> None:
    out = run("scan", "-c", str(files["config"]), str(files["ham"]), pythonpath=testplugin)
    assert out.returncode == 0


def test_scan_json(testplugin: Path, files: dict[str, Path]) -> None:
    out = run("scan", "--json", "-c", str(files["config"]), str(files["spam"]),
              pythonpath=testplugin)  # fmt: skip
    data = json.loads(out.stdout)
    assert data[0]["action"] == "discard"
    assert data[0]["scanners"][0] == {
        "scanner": "kw",
        "action": "discard",
        "status": "found(viagra)",
        "reason": "body contains 'viagra'",
        "score": None,
        "findings": ["viagra"],
    }
    assert data[0]["edits"] == ["add X-Keyword: viagra"]


def test_scan_stdin(testplugin: Path, files: dict[str, Path]) -> None:
    out = run("scan", "-c", str(files["config"]), "-", pythonpath=testplugin,
              stdin=b"Subject: x\n\nviagra\n")  # fmt: skip
    assert out.returncode == 1
    assert "discard" in out.stdout


def test_unreadable_file_is_reported_and_exit_two(testplugin: Path, files: dict[str, Path]) -> None:
    out = run("scan", "-c", str(files["config"]), str(files["ham"]), "/nonexistent.eml",
              pythonpath=testplugin)  # fmt: skip
    assert out.returncode == 2
    line = out.stdout.splitlines()[2].split(None, 2)
    assert line == ["/nonexistent.eml", "error", "cannot read: No such file or directory"]
    # The README's promise: one line on stderr, no traceback.
    assert out.stderr == "mxscan: error: /nonexistent.eml: cannot read: No such file or directory\n"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[scanner.x]\nplugin = 'nope'\n", "no scanner plugin 'nope' is installed"),
        ("[scanner.x\n", "not valid TOML"),
        ("[scanner.x]\nplugin='keyword'\nkeyword='a'\nfoo=1\n", "foo: not an option"),
    ],
)
def test_bad_config_is_one_line_and_exit_two(
    testplugin: Path, tmp_path: Path, config: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(config)
    for args in (["scan", "-c", str(path), "x.eml"], ["config", "check", "-c", str(path)]):
        out = run(*args, pythonpath=testplugin)
        assert out.returncode == 2
        assert "Traceback" not in out.stderr
        assert out.stderr.count("\n") == 1
        assert out.stderr.startswith(f"mxscan: error: {path}")
        assert message in out.stderr
    # config show shows what it can read, and marks what is wrong (issue 19.4).
    out = run("config", "show", "-c", str(path), pythonpath=testplugin)
    assert "Traceback" not in out.stderr
    if "TOML" in message:
        assert out.returncode == 2 and out.stdout == ""
    else:
        assert out.returncode == 0
        (marked,) = (line for line in out.stdout.splitlines() if "ERROR: " in line)
        assert message in marked
        assert out.stderr.startswith(f"mxscan: warning: {path}")


def test_missing_default_config_is_explained(tmp_path: Path) -> None:
    out = run("scan", str(tmp_path / "x.eml"))
    assert out.returncode == 2
    assert "give --config FILE" in out.stderr


def test_config_show_fills_defaults_with_origins(testplugin: Path, files: dict[str, Path]) -> None:
    out = run("config", "show", "-c", str(files["config"]), pythonpath=testplugin)
    assert out.returncode == 0, out.stderr
    assert 'keyword = "viagra"  # file' in out.stdout
    assert "tag = true  # default of plugin keyword" in out.stdout
    assert 'on_error = "tempfail"  # default' in out.stdout
    assert 'plugin = "keyword"  # file; mxscan-testplugin 1.2.3' in out.stdout


def test_config_check(testplugin: Path, files: dict[str, Path]) -> None:
    out = run("config", "check", "-c", str(files["config"]), pythonpath=testplugin)
    assert out.returncode == 0
    assert "OK (1 scanners in 1 stages, 0 domain policies)" in out.stdout


def test_help_explains_commands() -> None:
    out = run("--help")
    assert out.returncode == 0
    for command in ("scan", "config", "plugins"):
        assert command in out.stdout
    out = run("scan", "--help")
    assert "Exit status" in out.stdout


def test_no_command_prints_usage_and_exit_two() -> None:
    out = run()
    assert out.returncode == 2
    assert "usage: mxscan" in out.stderr


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from mxscan import cli

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    fake = Tty()
    monkeypatch.setattr(cli.sys, "stderr", fake)
    progress = cli._Progress(3, enabled=True)
    progress.step()
    assert "[##########....................] 1/3" in fake.getvalue()
    progress.step()
    progress.step()
    assert fake.getvalue().endswith("\r")
    plain = io.StringIO()
    monkeypatch.setattr(cli.sys, "stderr", plain)
    quiet = cli._Progress(3, enabled=True)
    quiet.step()
    assert plain.getvalue() == ""
