"""docs/snippets/milter-main.cf as main.cf settings, for the end-to-end tests: the
lines the documentation shows are the lines the tested Postfix runs with (only
the socket path differs)."""

from __future__ import annotations

from tests.support.daemons import REPO_ROOT

SNIPPET = REPO_ROOT / "docs" / "snippets" / "milter-main.cf"
DOCUMENTED_SOCKET = "unix:/mxscan/milter.sock"


def milter_main_cf(address: str) -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in SNIPPET.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    assert settings.get("smtpd_milters") == DOCUMENTED_SOCKET, f"{SNIPPET} changed its socket"
    settings["smtpd_milters"] = address
    return settings
