"""A new ``Action`` member must not pass silently through any adapter.

Each place that maps an action (milter outcome, pipe plan and its exit codes,
SMTP outcome, HTTP answer, ``mxscan scan``'s exit status, the quarantine's
choice of what to keep, a verdict's default reply) is a ``match`` ending in
``assert_never``, so ``mypy --strict`` names every place a new member must touch.
This test proves it on a scratch copy of the package with one member added.

Metrics map no action of their own: every series is labelled ``str(action)`` and
created ``for action in Action``, so a new member is counted as it comes; the
quarantine series follow ``keepable``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import mxscan

api = pytest.importorskip("mypy.api", reason="mypy is part of the [test] extra")

SRC = Path(mxscan.__file__).parent
#: The modules that map an Action; each must fail to type-check with a new member.
MAPPERS = (
    "adapters/milter/outcome.py",
    "adapters/pipe/plan.py",
    "adapters/smtp/outcome.py",
    "adapters/http/rspamd.py",
    "cli.py",
    "quarantine/settings.py",
    "verdict.py",
)


def _mypy(root: Path) -> tuple[str, int]:
    out, err, status = api.run(
        [
            "--strict",
            "--no-incremental",
            "--cache-dir=/dev/null",
            "--no-error-summary",
            "--python-version=3.11",
            *(str(root / "mxscan" / m) for m in MAPPERS),
        ]
    )
    return out + err, status


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "scratch"
    shutil.copytree(SRC, root / "mxscan", ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_new_action_member_fails_type_checking_in_every_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy(tmp_path)
    monkeypatch.chdir(root)  # mypy finds the scratch package, not the installed one
    monkeypatch.setenv("MYPYPATH", str(root))
    output, status = _mypy(root)
    assert status == 0, output  # the copy as it is type-checks

    verdict = root / "mxscan" / "verdict.py"
    text = verdict.read_text()
    new, count = re.subn(r"(\n    REJECT = 4\n)", r"\1    REVIEW = 5\n", text)
    assert count == 1, "Action's last member moved: update this test"
    verdict.write_text(new)
    output, status = _mypy(root)
    assert status != 0, output
    for mapper in MAPPERS:
        assert re.search(
            rf"(?m)(?:^|/)mxscan/{re.escape(mapper)}:\d+: error: .*assert_never", output
        ), (
            mapper,
            output,
        )
