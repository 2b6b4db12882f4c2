"""The pipe(8) adapter keeps quarantine copies through the same engine step as
the milter: stored before it exits, QUARANTINE answered as a discard (exit 0,
nothing re-injected), a store that fails deferring the message (exit 75). And
`quarantine release` re-injects through sendmail(1) with the original envelope."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.child import child_env, module_argv
from tests.support.pipe import PipeRunner, fake_config

MESSAGE = b"From: alice@example.org\nTo: bob@example.com\nSubject: lunch\n\nnoon?\n"


def with_store(pipe: PipeRunner, action: str, store: str, release: str = "") -> None:
    text = fake_config(action) + f'\n[quarantine]\nstore = "{store}"\n'
    if release:
        text += f'release = "{release}"\n'
    pipe.write_config(text)


def mxscan(pipe: PipeRunner, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mxscan", *args, "-c", str(pipe.config)],
        capture_output=True, text=True, env=pipe.env(), timeout=60,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def listed(pipe: PipeRunner) -> list[dict[str, Any]]:
    proc = mxscan(pipe, "quarantine", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


@pytest.mark.parametrize("action", ["quarantine", "discard"])
def test_pipe_stores_and_drops(pipe: PipeRunner, tmp_path: Path, action: str) -> None:
    with_store(pipe, action, f"sqlite:{tmp_path / 'q.db'}")
    proc = pipe.run(MESSAGE, "-f", "alice@example.org", "--queue-id", "4QP", "--",
                    "bob@example.com")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert pipe.sent() == []
    (record,) = listed(pipe)
    assert (record["action"], record["queue_id"], record["recipients"]) == (
        action, "4QP", ["bob@example.com"],
    )  # fmt: skip
    raw = subprocess.run(
        [sys.executable, "-m", "mxscan", "quarantine", "show", record["id"], "--raw", "-c",
         str(pipe.config)], capture_output=True, env=pipe.env(), timeout=60, check=True,
    ).stdout  # fmt: skip
    assert raw == MESSAGE


def test_pipe_defers_when_the_store_fails(pipe: PipeRunner, tmp_path: Path) -> None:
    (tmp_path / "not-a-db").mkdir()
    with_store(pipe, "quarantine", f"sqlite:{tmp_path / 'not-a-db'}")
    proc = pipe.run(MESSAGE, "-f", "alice@example.org", "--", "bob@example.com")
    assert proc.returncode == 75, proc
    assert proc.stdout.startswith(b"4.3.0 "), proc.stdout
    assert pipe.sent() == []


def test_release_through_sendmail_with_the_original_envelope(
    pipe: PipeRunner, tmp_path: Path
) -> None:
    # A sendmail(1) stand-in at a path (release = "sendmail:PATH" takes no arguments).
    fake = tmp_path / "sendmail"
    argv = module_argv("fake_sendmail", str(pipe.outbox), "0")
    fake.write_text(
        f"#!{sys.executable}\nimport os, sys\n"
        f"os.environ['PYTHONPATH'] = {child_env()['PYTHONPATH']!r}\n"
        f"os.execv(sys.executable, [*{argv!r}, *sys.argv[1:]])\n"
    )
    fake.chmod(0o755)
    with_store(pipe, "discard", f"sqlite:{tmp_path / 'q.db'}", release=f"sendmail:{fake}")
    assert pipe.run(MESSAGE, "-f", "", "--", "bob@example.com", "-x@example.com").returncode == 0
    (record,) = listed(pipe)
    released = mxscan(pipe, "quarantine", "release", record["id"])
    assert released.returncode == 0, released.stderr
    (sent,) = pipe.sent()
    assert sent.argv == ["-G", "-i", "-f", "", "--", "bob@example.com", "-x@example.com"]
    assert sent.data == MESSAGE
    refused = mxscan(pipe, "quarantine", "release", record["id"])
    assert refused.returncode == 1 and "already released" in refused.stderr
    assert len(pipe.sent()) == 1
