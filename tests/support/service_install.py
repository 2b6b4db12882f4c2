"""An ``mxscan`` that another user (``nobody``, as the pipe and ``--user`` tests run
it) can run: a non-editable install of this checkout under the run directory.

Why: the test venv may live where only root can read it (a clone under /root, mode
0700, is where "as root, in a clone" lands), and an editable install points back
into the checkout. So the tests that run mxscan as another user install, as a
service would, wheels built from this checkout (the core with its metrics extra and
the three official plugins) into a venv of a system Python under
``$MXSCAN_RUN_DIR``, readable by everyone. The venv is keyed by a hash of the
sources and the interpreter, so it is built once per change of the code and
worktrees sharing the run directory never see each other's code.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.daemons import REPO_ROOT, run_dir

SERVICE_USER = "nobody"
#: The distributions a service install holds: the core and the official plugins.
DISTRIBUTIONS = (
    REPO_ROOT,
    REPO_ROOT / "plugins" / "mxscan-clamav",
    REPO_ROOT / "plugins" / "mxscan-header-rules",
    REPO_ROOT / "plugins" / "mxscan-spamassassin",
)
_DONE = ".mxscan-service-install-complete"
#: Unused service venvs older than this are removed when a new one is built.
_STALE_SECONDS = 2 * 24 * 3600


def runs_as(user: str, argv: list[str]) -> subprocess.CompletedProcess[bytes] | None:
    """``argv`` run as ``user`` (runuser, cwd /); None if it could not run at all."""
    try:
        return subprocess.run(
            ["runuser", "-u", user, "--", *argv], capture_output=True, timeout=60, cwd="/"
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _reachable(user: str, python: str) -> bool:
    done = runs_as(user, [python, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"])
    return done is not None and done.returncode == 0


def service_python(user: str = SERVICE_USER) -> str:
    """A Python >= 3.11 that ``user`` can run: the tests' own base interpreter when it
    can, else the system one of the same version, else the system python3."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
        f"/usr/bin/python{version}",
        "/usr/bin/python3",
    ]
    for python in candidates:
        if Path(python).exists() and _reachable(user, python):
            return python
    raise RuntimeError(f"{user} can run none of {', '.join(candidates)}")


def _source_key(python: str) -> str:
    digest = hashlib.sha256(python.encode())
    for dist in DISTRIBUTIONS:
        files = [dist / "pyproject.toml", *sorted((dist / "src").rglob("*"))]
        if dist == REPO_ROOT:
            files += [dist / "README.md", dist / "LICENSE"]
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _open_up(path: Path) -> None:
    """Everyone may read files and search directories (a umask of 077 is common
    for root)."""
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | (0o005 if p.is_dir() else 0o004))


def _prune(keep: Path) -> None:
    for old in run_dir().glob("service-venv-*"):
        marker = old / _DONE
        if (
            old != keep
            and marker.exists()
            and time.time() - marker.stat().st_mtime > _STALE_SECONDS
        ):
            shutil.rmtree(old, ignore_errors=True)


def service_venv(user: str = SERVICE_USER) -> Path:
    """The venv (built if needed) holding this checkout's mxscan and plugins."""
    python = service_python(user)
    base = run_dir()
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(base.stat().st_mode | 0o005)
    venv = base / f"service-venv-{_source_key(python)}"
    with (base / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building the same one
        if not (venv / _DONE).exists():
            shutil.rmtree(venv, ignore_errors=True)
            _build(python, venv)
            _prune(venv)
        (venv / _DONE).touch()
    done = runs_as(user, [str(venv / "bin" / "mxscan"), "--version"])
    if done is None or done.returncode != 0:
        detail = "" if done is None else (done.stdout + done.stderr).decode(errors="replace")
        raise RuntimeError(f"{user} cannot run {venv / 'bin' / 'mxscan'}: {detail}")
    return venv


def _build(python: str, venv: Path) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    with tempfile.TemporaryDirectory(prefix="mxscan-wheels-") as wheels:
        # The tests' own environment has the build backend (noxfile, scripts/setup).
        subprocess.run(
            [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", wheels,
             *map(str, DISTRIBUTIONS)],
            check=True, cwd="/",
        )  # fmt: skip
        built = sorted(Path(wheels).glob("*.whl"))
        core = next(w for w in built if w.name.startswith("mxscan-"))
        requirements = [f"mxscan[metrics] @ {core.as_uri()}", *(str(w) for w in built if w != core)]
        subprocess.run(
            [*pip, "--python", str(venv / "bin" / "python"), "install", *requirements],
            check=True, cwd="/",
        )  # fmt: skip
    _open_up(venv)


def service_mxscan(user: str = SERVICE_USER) -> str:
    """The ``mxscan`` command of :func:`service_venv`."""
    return str(service_venv(user) / "bin" / "mxscan")


def service_venv_python(user: str = SERVICE_USER) -> str:
    """The interpreter of :func:`service_venv` (to run ``-m mxscan``)."""
    return str(service_venv(user) / "bin" / "python")
