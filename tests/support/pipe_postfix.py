"""A private Postfix set up from docs/snippets/pipe-*.cf, running ``mxscan pipe``.

The test uses the snippet files the documentation shows, with only the
site-specific words replaced (the mxscan path, its config, the pipe user, the
Postfix config directory), so the documented setup is the tested one.

Two facts of a test machine shape this module:

* pipe(8) refuses to run commands as root, so ``mxscan pipe`` runs as
  ``nobody``, from a non-editable install of this checkout that nobody can read
  (tests/support/service_install.py): the test venv may be under /root.
* sendmail/postdrop run by a non-root user refuse a non-default config
  directory unless the default main.cf lists it in
  ``alternate_config_directories``; the fixture adds it there and restores the
  file afterwards.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support.daemons import REPO_ROOT, clamd_unix, run_dir, spamd_inet
from tests.support.postfix import PostfixInstance
from tests.support.service_install import service_mxscan

REPO = REPO_ROOT
SNIPPETS = REPO / "docs" / "snippets"
PIPE_USER = "nobody"
DEFAULT_MAIN_CF = Path("/etc/postfix/main.cf")


def snippet_main_cf() -> dict[str, str]:
    settings = {}
    for line in (SNIPPETS / "pipe-main.cf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def snippet_master_cf(mxscan: str, config: Path, config_dir: Path) -> list[str]:
    text = (SNIPPETS / "pipe-master.cf").read_text()
    for old, new in (
        ("/usr/bin/mxscan", mxscan),
        ("/etc/mxscan/mxscan.toml", str(config)),
        ("user=mxscan", f"user={PIPE_USER}"),
        ("/etc/postfix/", f"{config_dir}/"),
    ):
        assert old in text, f"docs/snippets/pipe-master.cf no longer holds {old!r}"
        text = text.replace(old, new)
    return text.splitlines()


class PipePostfix(PostfixInstance):
    """The snippet redefines pickup; master.cf may define a service only once."""

    def master_cf(self) -> str:
        text = super().master_cf()
        if any(line.startswith("pickup ") for line in self.master_extra):
            text = re.sub(r"(?m)^pickup\s.*\n", "", text, count=1)
        return text


def mxscan_for_pipe_user() -> str:
    """An ``mxscan`` executable that the pipe user can run (see the module doc)."""
    return service_mxscan(PIPE_USER)


_MARKER = "# written by mxscan's pipe tests; removed when they end\n"
_DIRECTIVE = re.compile(r"(?m)^alternate_config_directories\s*=(.*)$")


@contextmanager
def _locked(main_cf: Path) -> Iterator[None]:
    """One editor of main.cf at a time: test sessions of several checkouts may
    share the host, and each edits the file at start and at end."""
    lock = run_dir() / "main-cf.lock"  # not beside main.cf: leave /etc/postfix as it was
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as fp:
        fcntl.flock(fp, fcntl.LOCK_EX)
        yield


@contextmanager
def alternate_config_directory(config_dir: Path, main_cf: Path = DEFAULT_MAIN_CF) -> Iterator[None]:
    """List ``config_dir`` in the default main.cf's alternate_config_directories,
    and take exactly that entry out again afterwards (not a snapshot of the whole
    file: another session may have added its own entry meanwhile). A file these
    tests created is removed once no entry is left."""
    with _locked(main_cf):
        text = main_cf.read_text() if main_cf.exists() else _MARKER
        match = _DIRECTIVE.search(text)
        if match:
            text = text[: match.end()] + f" {config_dir}" + text[match.end() :]
        else:
            text += f"alternate_config_directories = {config_dir}\n"
        main_cf.write_text(text)
    try:
        yield
    finally:
        with _locked(main_cf):
            text = main_cf.read_text() if main_cf.exists() else ""
            match = _DIRECTIVE.search(text)
            if match:
                left = [d for d in match.group(1).split() if d != str(config_dir)]
                if left:
                    line = "alternate_config_directories = " + " ".join(left)
                    text = text[: match.start()] + line + text[match.end() :]
                else:  # the line was ours alone
                    text = text[: match.start()] + text[match.end() :].removeprefix("\n")
            if text.startswith(_MARKER) and not text[len(_MARKER) :].strip():
                main_cf.unlink(missing_ok=True)
            else:
                main_cf.write_text(text)


def mxscan_config(*, clamd: str | None = None) -> str:
    """examples/mxscan.toml with the test daemons' addresses and test-only rules and
    policies (HOLD/REJECT by Subject, a lenient example.jp). Its ``file =
    "header_checks"`` stays relative: write it with :func:`write_mxscan_config`."""
    text = (REPO / "examples" / "mxscan.toml").read_text()
    replacements: Mapping[str, str] = {
        'file = "header_checks"': 'file = "header_checks"',
        'address = ["unix:/tmp/mxscan-run/clamd.sock", "inet:127.0.0.1:13310"]': f'address = ["{clamd or clamd_unix()}"]',
        'address = "inet:127.0.0.1:10783"': f'address = "{spamd_inet()}"',
        "/^X-Virus-/   IGNORE\n": "/^X-Virus-/   IGNORE\n"
        "/^Subject: mxscan-hold-test/    HOLD\n"
        "/^Subject: mxscan-reject-test/  REJECT 5.7.1 rejected by the pipe test\n",
        'timeout = "60s"': 'timeout = "20s"',
    }
    for old, new in replacements.items():
        assert old in text, f"examples/mxscan.toml no longer holds {old!r}"
        text = text.replace(old, new)
    return text + (
        '\n[policy."example.jp"]         # lenient: spam is tagged, not discarded\n'
        "spamassassin.spam_score = 5000.0\n"
        "spamassassin.discard_score = 5000.0\n"
    )


def write_world_readable(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def write_mxscan_config(path: Path, text: str) -> None:
    """The configuration and, beside it, the examples' header_checks that its
    relative ``file`` names: both where the pipe user can read them (the checkout
    may be in a directory only root can enter)."""
    write_world_readable(
        path.parent / "header_checks", (REPO / "examples" / "header_checks").read_text()
    )
    write_world_readable(path, text)
