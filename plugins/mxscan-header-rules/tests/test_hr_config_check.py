"""``mxscan config check`` on header_checks tables that Postfix would load only in
part (issue 19.3): a non-zero exit naming file and line, strict or not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = """
[scanner.inbound]
plugin = "header-rules"
file = "{table}"
{extra}
"""

BROKEN = {
    "bad regex": ("/^Subject: (/ REJECT\n", "line 2: error in regex"),
    "unknown action": ("/^Subject: spam/ REJCT go away\n", "line 2: unknown command in "
                       "header_checks map: REJCT: this rule never acts"),
    "replace without a header": ("/^Subject:/ REPLACE oops\n", 'line 2: bad REPLACE header '
                                 'text "oops"'),
    "IF without ENDIF": ("if /^Subject:/\n/x/ DISCARD\n", "line 2: IF has no matching ENDIF"),
}  # fmt: skip


def mxscan(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MXSCAN_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "mxscan", *args], capture_output=True, text=True, env=env
    )


def check(tmp_path: Path, rules: str, extra: str = "") -> subprocess.CompletedProcess[str]:
    table = tmp_path / "header_checks"
    table.write_text("/^X-Fine:/ DUNNO\n" + rules)
    config = tmp_path / "mxscan.toml"
    config.write_text(CONFIG.format(table=table, extra=extra))
    return mxscan("config", "check", "-c", str(config))


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.parametrize("extra", ["", "strict = true", "strict = false"])
def test_config_check_fails_on_a_line_postfix_would_skip(
    tmp_path: Path, case: str, extra: str
) -> None:
    rules, problem = BROKEN[case]
    out = check(tmp_path, rules, extra)
    assert out.returncode == 2, out
    assert out.stdout == ""
    assert f"map {tmp_path / 'header_checks'}, {problem}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_config_check_passes_a_good_table(tmp_path: Path) -> None:
    out = check(tmp_path, "/^Subject: (.*)/ REPLACE Subject: [SPAM] $1\n/^X-Do: (\\w+)/ $1\n")
    assert out.returncode == 0, out.stderr
    assert "OK (1 scanners" in out.stdout
    assert out.stderr == ""


def test_config_show_marks_a_missing_table_instead_of_failing(tmp_path: Path) -> None:
    """Issue 19.4: the configuration is shown, the missing file marked on its line."""
    missing = tmp_path / "gone" / "header_checks"
    config = tmp_path / "mxscan.toml"
    config.write_text(
        CONFIG.format(table=missing, extra="")
        + '\n[scanner.other]\nplugin = "header-rules"\nrules = "/^X:/ DUNNO"\n'
        + '\n[policy."example.net"]\nother.strict = false\n'
    )
    out = mxscan("config", "show", "-c", str(config))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    marked = [line for line in lines if "ERROR:" in line]
    assert len(marked) == 1, out.stdout
    assert marked[0].startswith(f'file = "{missing}"  # file; ERROR: ')
    assert str(missing) in marked[0].split("ERROR:", 1)[1]
    # Everything else is still shown, with its origins.
    assert "[scanner.other]" in lines and '[policy."example.net"]' in lines
    assert "other.strict = false  # file" in lines
    assert "strict = true  # default of plugin header-rules" in lines
    assert "marked ERROR above" in out.stderr and "Traceback" not in out.stderr
    # config check still fails on it.
    check = mxscan("config", "check", "-c", str(config))
    assert check.returncode == 2 and str(missing) in check.stderr
