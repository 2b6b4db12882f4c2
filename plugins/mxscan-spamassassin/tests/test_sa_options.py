"""Options as an admin writes them: defaults, validation, clear errors."""

from __future__ import annotations

import pytest

from mxscan import Config, ConfigError, InetAddress, Registry, UnixAddress
from mxscan_spamassassin import SpamAssassin
from mxscan_spamassassin.oversize import OnOversize


def test_entry_point_names_the_class() -> None:
    assert Registry().factory("spamassassin") is SpamAssassin


def test_defaults_are_spamc_like() -> None:
    scanner = SpamAssassin()
    assert scanner.name == "spamassassin"
    assert scanner.addresses == (InetAddress("127.0.0.1", 783),)
    assert scanner.max_size == 500 * 1024
    assert scanner.on_oversize is OnOversize.ACCEPT
    assert scanner.remove_existing is True
    assert scanner.subject_tag is None
    assert scanner.timeout == 60.0


def test_addresses_sizes_durations_in_admin_syntax() -> None:
    scanner = SpamAssassin(
        address=["unix:/run/spamd.sock", "inet:127.0.0.1:10783"],
        timeout="90s",
        max_size="2MiB",
        on_oversize="Truncate",
    )
    assert scanner.addresses == (UnixAddress("/run/spamd.sock"), InetAddress("127.0.0.1", 10783))
    assert scanner.timeout == 90.0
    assert scanner.max_size == 2 * 1024 * 1024
    assert scanner.on_oversize is OnOversize.TRUNCATE


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"address": "localhost:783"}, "address: expected an address"),
        ({"address": []}, "address: expected at least one address"),
        ({"timeout": "soon"}, "timeout: expected a duration"),
        ({"timeout": 0}, "timeout: must be more than 0 seconds"),
        ({"discard_score": "high"}, "discard_score: expected a number"),
        ({"spam_score": True}, "spam_score: expected a number"),
        ({"tag_score": float("nan")}, "tag_score: expected a finite number"),
        ({"max_size": "big"}, "max_size: expected a size"),
        ({"max_size": 0}, "max_size: must be more than 0 bytes"),
        ({"on_oversize": "drop"}, "on_oversize: expected one of accept, truncate"),
        ({"remove_existing": "yes"}, "remove_existing: expected true or false"),
        ({"compress": 1}, "compress: expected true or false"),
        ({"subject_tag": "a\r\nBcc: x"}, "subject_tag: expected one printable line"),
        ({"reject_message": 5}, "reject_message: expected one printable line"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SpamAssassin(**options)  # type: ignore[arg-type]


def test_config_errors_reach_the_admin_as_config_errors() -> None:
    config = Config.from_toml(
        '[scanner.spam]\nplugin = "spamassassin"\ndiscard_score = "high"\n'
        '[[stage]]\nrun = ["spam"]\n',
        source="mxscan.toml",
    )
    with pytest.raises(ConfigError, match=r"mxscan.toml: \[scanner.spam\].*discard_score"):
        config.build()


def test_unknown_option_is_a_config_error() -> None:
    config = Config.from_toml(
        '[scanner.spam]\nplugin = "spamassassin"\nrequired_hits = 5\n[[stage]]\nrun = ["spam"]\n'
    )
    with pytest.raises(ConfigError, match="required_hits: not an option"):
        config.build()
