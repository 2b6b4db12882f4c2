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


def check(tmp_path: Path, rules: str, extra: str = "") -> subprocess.CompletedProcess[str]:
    table = tmp_path / "header_checks"
    table.write_text("/^X-Fine:/ DUNNO\n" + rules)
    config = tmp_path / "mxscan.toml"
    config.write_text(CONFIG.format(table=table, extra=extra))
    env = {k: v for k, v in os.environ.items() if k != "MXSCAN_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "mxscan", "config", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


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
