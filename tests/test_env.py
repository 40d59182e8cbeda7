"""Configuration is refused in one line: a malformed number names its variable, and production
refuses provider URLs that point at this machine or a private network however they are spelt."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from conduit.env import Env, legacy_ipv4, points_at_this_machine
from tests.test_settings import PROD_ENV, run_manage


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost",
        "https://localhost.",
        "https://LOCALHOST:8443",
        "https://api.localhost",
        "https://127.0.0.1",
        "https://127.1",
        "https://0x7f.1",
        "https://0177.0.0.1",
        "https://2130706433",
        "https://0.0.0.0",
        "https://[::1]",
        "https://[::ffff:127.0.0.1]",
        "https://10.1.2.3",
        "https://192.168.1.10",
        "https://169.254.169.254",
        "https://224.0.0.1",
        "https://",
    ],
)
def test_local_and_private_hosts_are_recognised_in_every_spelling(url: str) -> None:
    assert points_at_this_machine(url)


@pytest.mark.parametrize(
    "url", ["https://api.hubapi.com", "https://login.salesforce.com", "https://8.8.8.8", "https://1.2.3.400"]
)
def test_public_hosts_pass(url: str) -> None:
    assert not points_at_this_machine(url)


def test_legacy_ipv4_reads_hosts_as_inet_aton_does() -> None:
    assert str(legacy_ipv4("127.1")) == "127.0.0.1"
    assert str(legacy_ipv4("10.1.257")) == "10.1.1.1"
    assert legacy_ipv4("256.1.1.1") is None
    assert legacy_ipv4("1..1") is None
    assert legacy_ipv4("api") is None
    assert legacy_ipv4("1.2.3.4.5") is None


def test_a_malformed_number_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDUIT_TEST_NUMBER", "twelve")
    monkeypatch.setenv("CONDUIT_TEST_RATIO", "half")
    with pytest.raises(ImproperlyConfigured, match=r"^CONDUIT_TEST_NUMBER must be a whole number$"):
        Env().int("CONDUIT_TEST_NUMBER")
    with pytest.raises(ImproperlyConfigured, match=r"^CONDUIT_TEST_RATIO must be a number$"):
        Env().float("CONDUIT_TEST_RATIO")
    monkeypatch.setenv("CONDUIT_TEST_NUMBER", "12")
    assert Env().int("CONDUIT_TEST_NUMBER") == 12


def test_start_up_with_a_malformed_number_stops_in_one_line(tmp_path: Path) -> None:
    result = run_manage("check", env={"CONDUIT_HEALTH_WAVES": "abc"}, tmp_path=tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr.strip() == "conduit: configuration error: CONDUIT_HEALTH_WAVES must be a whole number"
    )


@pytest.mark.parametrize(
    "url", ["https://localhost.", "https://127.1", "https://0.0.0.0", "https://[::1]:443"]
)
def test_production_refuses_provider_urls_on_this_machine(tmp_path: Path, url: str) -> None:
    result = run_manage("check", env={**PROD_ENV, "HUBSPOT_API_BASE_URL": url}, tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "conduit: configuration error: HUBSPOT_API_BASE_URL must not point at a local sandbox in production"
    )
