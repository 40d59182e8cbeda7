"""The provider HTTP session reads the environment once per origin and honours it (proxies,
no_proxy, CA bundle), and never takes credentials from ~/.netrc."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from integrations.providers import session as session_module
from integrations.providers.base import http_session
from integrations.providers.session import EnvironmentOnceSession


def merged(session: requests.Session, url: str, verify: bool | str | None = None) -> dict[str, object]:
    return dict(session.merge_environment_settings(url, {}, None, verify, None))


def test_the_process_session_is_this_session() -> None:
    assert isinstance(http_session(), EnvironmentOnceSession)


def test_environment_is_read_once_per_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real = requests.sessions.get_environ_proxies

    def counting(url: str, no_proxy: str | None = None) -> dict[str, str]:
        reads.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    session = EnvironmentOnceSession()
    for path in ("a", "b", "c"):
        merged(session, f"https://api.hubapi.com/{path}")
    merged(session, "https://eu1.salesforce.com/x")
    assert reads == ["https://api.hubapi.com/a", "https://eu1.salesforce.com/x"]


def test_proxies_and_no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "bypass.example")
    session = EnvironmentOnceSession()
    proxied: dict[str, str] = merged(session, "https://api.hubapi.com/x")["proxies"]  # type: ignore[assignment]
    assert proxied["https"] == "http://proxy.internal:3128"
    assert "https" not in merged(session, "https://bypass.example/x")["proxies"]  # type: ignore[operator]


def test_ca_bundle_from_the_environment_and_explicit_verify_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/company-ca.pem")
    session = EnvironmentOnceSession()
    assert merged(session, "https://api.hubapi.com/x")["verify"] == "/etc/ssl/company-ca.pem"
    assert merged(session, "https://api.hubapi.com/x", verify=False)["verify"] is False


def test_origins_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "MAX_ORIGINS", 2)
    session = EnvironmentOnceSession()
    for host in ("a", "b", "c"):
        session.environment_for(f"https://{host}.example/x")
    assert len(session._by_origin) == 1


def test_netrc_credentials_are_never_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password from-a-file\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    request = requests.Request("GET", "http://127.0.0.1:9/x")
    assert "Authorization" in requests.Session().prepare_request(request).headers  # plain requests would
    assert "Authorization" not in EnvironmentOnceSession().prepare_request(request).headers
