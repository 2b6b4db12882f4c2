"""The quarantine: copies of mail mxscan did not deliver, with their verdicts.

``[quarantine]`` in the configuration turns it on. The engine stores each copy
(``keeper``) before any adapter answers the MTA; ``mxscan quarantine ...``
lists, shows, releases, deletes and expires them (``cli``). Stores: SQLite built
in (``sqlite``), PostgreSQL for several MX hosts sharing one (``postgres``).
"""

from .keeper import Keeper
from .record import Record
from .settings import QuarantineSettings
from .store import Filter, Store, StoreError, open_store

__all__ = ["Filter", "Keeper", "QuarantineSettings", "Record", "Store", "StoreError", "open_store"]
