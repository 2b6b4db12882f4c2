"""Giving up root once the sockets are bound."""

from __future__ import annotations

import importlib
import logging
import os
import pwd
from pathlib import Path

from .listen import ListenError

__all__ = ["PRELOAD_MODULES", "drop_privileges"]

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
