"""Giving up root once the sockets are bound."""

from __future__ import annotations

import importlib
import logging
import os
import pwd
import sys
from pathlib import Path

from mxscan.config import load_given_config

from .listen import ListenError

__all__ = ["PRELOAD_MODULES", "check_as_user", "drop_privileges", "unreadable_install_path"]

log = logging.getLogger("mxscan.service")

#: Standard-library modules that scanning imports lazily (the default executor of
#: ``asyncio.to_thread``, the IDNA codec of a connection by host name). They are
#: imported while still root, so a new user who cannot read the interpreter's
#: files does not fail mid-scan.
PRELOAD_MODULES = ("concurrent.futures.thread", "encodings.idna")


def drop_privileges(user: str) -> None:
    """Become ``user`` with its groups; nothing to do if we already are."""
    for module in PRELOAD_MODULES:
        importlib.import_module(module)
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise ListenError(f"no such user: {user}") from None
    if entry.pw_uid == os.getuid():
        return
    try:
        os.initgroups(entry.pw_name, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except PermissionError:
        raise ListenError(f"cannot switch to user {user}: not running as root") from None
    log.info("running as user %s", entry.pw_name)
    python_lib = Path(os.__file__).parent
    if not os.access(python_lib, os.R_OK | os.X_OK):
        log.warning(
            "user %s cannot read the Python installation (%s): a reload that needs "
            "modules not yet imported will fail",
            entry.pw_name,
            python_lib,
        )


async def check_as_user(config_path: str, user: str) -> None:
    """Load and build the configuration again, now as ``user``: exactly what a
    SIGHUP reload will do. Plugins that ``user`` cannot find or import, tables it
    cannot read, are a start-up error now rather than a reload failing later."""
    try:
        engine = load_given_config(config_path).build()
    except Exception as exc:
        where = unreadable_install_path()
        hint = f"; {user} cannot read {where}: install mxscan where {user} can" if where else ""
        what = str(exc) if config_path in str(exc) else f"{config_path}: {exc}"
        raise ListenError(
            f"as user {user}, the configuration does not load, so no reload could: {what}{hint}"
        ) from None
    await engine.aclose()


def unreadable_install_path() -> str | None:
    """The first directory of the installation (the interpreter's prefix, then each
    import path) that the current user cannot read, if any: what an error after a
    privilege drop should name."""
    for path in [sys.prefix, str(Path(os.__file__).parent), *sys.path]:
        current = Path(path)
        if not path or not current.is_absolute():
            continue
        for part in [*reversed(current.parents), current]:
            if part.exists() and not os.access(part, os.R_OK | os.X_OK):
                return str(part)
    return None
