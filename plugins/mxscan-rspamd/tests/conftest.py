"""Fixtures live in rspamd_support.py (a uniquely named module, so tests of several
plugins can import their helpers in one pytest session)."""

from rspamd_support import *  # noqa: F403
