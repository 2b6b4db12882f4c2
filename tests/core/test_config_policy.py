"""Configuration mistakes in ``[policy."domain"]`` tables, blamed where they are
written (issue 19.4)."""

from __future__ import annotations

import pytest

from mxscan import Config, ConfigError

from .test_config import registry

BASE = "[scanner.spam]\nplugin = 'opt'\nthreshold = 5.0\n"


@pytest.mark.parametrize("domain", ["*.example.net", "*example.net", ".*.example.net"])
def test_a_wildcard_domain_is_an_error_pointing_at_the_dot_form(domain: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_toml(BASE + f'[policy."{domain}"]\nspam.threshold = 9\n', source="f.toml")
    message = str(info.value)
    assert message.startswith(f'f.toml: [policy."{domain}"]: ')
    assert '[policy.".example.net"] for the subdomains of example.net' in message
    assert '[policy."example.net"] for example.net itself' in message


@pytest.mark.parametrize("domain", ["exa mple.net", "example.net.", "a/b", "", "."])
def test_other_non_domains_are_errors(domain: str) -> None:
    with pytest.raises(ConfigError, match="expected a recipient domain"):
        Config.from_toml(BASE + f'[policy."{domain}"]\nspam.threshold = 9\n', source="f.toml")


@pytest.mark.parametrize(
    "domain",
    ["example.net", ".example.net", "xn--bcher-kva.example", "bücher.example", "mx_1.example"],
)
def test_real_domains_are_accepted(domain: str) -> None:
    config = Config.from_toml(BASE + f'[policy."{domain}"]\nspam.threshold = 9\n')
    assert list(config.policies) == [domain.lower()]


def test_an_option_typo_in_a_policy_is_blamed_on_the_policy() -> None:
    config = Config.from_toml(
        BASE + '[policy."example.net"]\nspam.threshhold = 9\n', source="f.toml"
    )
    with pytest.raises(ConfigError) as info:
        config.build(registry())
    assert str(info.value) == (
        'f.toml: [policy."example.net"] spam.threshhold: not an option of plugin '
        "'opt' (its options: threshold, style)"
    )


def test_a_bad_value_in_a_policy_is_blamed_on_the_policy() -> None:
    config = Config.from_toml(BASE + '[policy."example.net"]\nspam.max_size = "huge"\n')
    with pytest.raises(ConfigError) as info:
        config.build(registry())
    assert str(info.value).startswith('<string>: [policy."example.net"] spam.max_size: ')


def test_the_same_typo_in_the_scanner_table_is_blamed_there() -> None:
    config = Config.from_toml(BASE + "threshhold = 1\n", source="f.toml")
    with pytest.raises(ConfigError, match=r"^f.toml: \[scanner.spam\] threshhold: not an option"):
        config.build(registry())
