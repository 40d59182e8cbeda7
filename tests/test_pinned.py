"""The stricter SSRF guard for customer-hosted URLs (integrations/providers/pinned.py): what is
refused, that a refused URL sends nothing, that the host is resolved once and the call pinned
to that address (TLS still checking the original name), and that redirects are not followed."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conduit.tenancy import system_scope
from integrations.models import SyncLog
from integrations.providers import pinned
from integrations.providers.errors import Permanent, Transient
from integrations.providers.odoo import OdooProvider
from integrations.providers.pinned import Target, UnsafeUrl
from tests.odoo_helpers import (
    MOCK_KEY,
    ODOO_HOST,
    ODOO_URL,
    PUBLIC_IP,
    connect_spy,
    fake_dns,
    odoo_account,
    production_settings,
    sandbox_settings,
    start_odoo,
    tiny_server,
)
from tests.test_settings import PROD_ENV, run_manage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _production_rules(settings: Any) -> None:
    production_settings(settings)


def refused(url: str, **kw: Any) -> UnsafeUrl:
    with pytest.raises(UnsafeUrl) as caught:
        pinned.parse_target(url, **kw)
    assert caught.value.code == "unsafe_url"
    return caught.value


# --- the URL itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://acme.odoo.com@169.254.169.254",
        "https://user:password@acme.odoo.com",
        "https://acme.odoo.com:443@evil.example",
        "https://@acme.odoo.com",
        "https://169.254.169.254#@acme.odoo.com",
        "https://acme.odoo.com%40evil.example",
    ],
)
def test_any_at_sign_is_refused_before_any_lookup(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dns = fake_dns(monkeypatch, {ODOO_HOST: [PUBLIC_IP]})
    error = refused(url)
    assert error.reason in ("userinfo", "host")
    assert "@" not in url or error.reason == "userinfo"
    assert dns.lookups == {}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("https://evil.example\\@acme.odoo.com", "userinfo"),
        ("https://evil.example\\.acme.odoo.com", "characters"),
        ("https://acme .odoo.com", "characters"),
        ("https://acme.odoo.com/%40evil.example", "path"),
        ("https://acme.odoo.com/\x00", "characters"),
        ("http://acme.odoo.com", "scheme"),
        ("ftp://acme.odoo.com", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("acme.odoo.com", "scheme"),
        ("https://", "empty_host"),
        ("https:///json/2", "empty_host"),
        ("https://acme.odoo.com:8443", "port"),
        ("https://acme.odoo.com:80", "port"),
        ("https://acme.odoo.com:0", "port"),
        ("https://acme.odoo.com:99999", "port"),
        ("https://acme.odoo.com:https", "port"),
        ("https://acme.odoo.com/odoo", "path"),
        ("https://acme.odoo.com/?db=x", "path"),
        ("https://acme.odoo.com#top", "path"),
        ("https://127.1", "host"),
        ("https://2130706433", "host"),
        ("https://0x7f000001", "host"),
        ("https://0x7f.0.0.1", "host"),
        ("https://-acme.odoo.com", "host"),
        ("https://acme..odoo.com", "host"),
        ("https://" + "a" * 64 + ".odoo.com", "host"),
        ("https://" + ".".join(["abcdefgh"] * 30) + ".com", "host"),
        ("https://acme_corp.odoo.com", "host"),
        ("https://[fe80::1%25eth0]", "host"),
        ("https://\u2024.com", "host"),
    ],
)
def test_malformed_urls_schemes_ports_and_paths_are_refused(url: str, reason: str) -> None:
    assert refused(url).reason == reason


def test_a_strip_of_the_input_is_not_a_control_character() -> None:
    target, rest = pinned.parse_target("  https://ACME.Odoo.com./  ")
    assert (target.origin, rest) == ("https://acme.odoo.com", "/")


def test_accepted_urls_are_normalised() -> None:
    assert pinned.parse_target("https://Acme.Odoo.COM:443")[0].origin == "https://acme.odoo.com"
    assert pinned.parse_target("https://bücher.example")[0].host == "xn--bcher-kva.example"
    assert pinned.parse_target("https://[2606:4700::1111]")[0].origin == "https://[2606:4700::1111]"
    assert pinned.parse_target("https://93.184.216.34")[0].host == PUBLIC_IP
    call, rest = pinned.parse_target(f"{ODOO_URL}/json/2/res.partner/search_read?x=1", bare=False)
    assert (call.origin, rest) == (ODOO_URL, "/json/2/res.partner/search_read?x=1")


def test_development_allows_plain_http_and_any_port(settings: Any) -> None:
    sandbox_settings(settings)
    target, _ = pinned.parse_target("http://127.0.0.1:8704")
    assert target.origin == "http://127.0.0.1:8704"
    assert Target("https", "::1", 8443).netloc == "[::1]:8443"
    assert Target("http", "odoo.test", 80).origin == "http://odoo.test"
    assert refused("https://acme.odoo.com:0").reason == "port"


# --- the addresses a name resolves to ---------------------------------------------------------


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        (["127.0.0.1"], "loopback"),
        (["169.254.169.254"], "link_local"),
        (["10.0.0.7"], "private"),
        (["192.168.1.20"], "private"),
        (["100.64.0.1"], "not_global"),
        (["0.0.0.0"], "unspecified"),
        (["224.0.0.251"], "multicast"),
        (["::1"], "loopback"),
        (["fe80::1"], "link_local"),
        (["fd00::5"], "private"),
        (["::ffff:127.0.0.1"], "loopback"),
        (["::ffff:169.254.169.254"], "link_local"),
        (["2002:a9fe:a9fe::1"], "link_local"),  # 6to4 wrapping 169.254.169.254
        (["2001:0:4136:e378:8000:63bf:56fe:fefe"], "private"),  # Teredo
        ([PUBLIC_IP, "10.0.0.7"], "private"),  # any address refuses the name
        (["2606:4700::1111", "::1"], "loopback"),
    ],
)
def test_a_name_resolving_inside_a_private_network_is_refused_and_nothing_is_sent(
    addresses: list[str], reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns = fake_dns(monkeypatch, {ODOO_HOST: addresses})
    spy = connect_spy(monkeypatch)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        with pytest.raises(UnsafeUrl) as caught:
            OdooProvider().check_health(odoo_account(ODOO_URL, key=MOCK_KEY))
        assert len(mock.calls) == 0
    assert caught.value.reason == reason
    assert dns.lookups == {ODOO_HOST: 1}
    assert spy.targets == []
    # the message never repeats the address (no DNS oracle), and the refusal is in the sync log
    assert all(a not in caught.value.message for a in addresses)
    with system_scope():
        row = SyncLog.objects.get()
    assert (row.operation, row.status, row.error_code, row.http_status) == (
        "health_check",
        "FAILED",
        "unsafe_url",
        None,
    )


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1", "https://[::1]", "https://169.254.169.254", "https://10.1.2.3"]
)
def test_an_ip_literal_inside_a_private_network_is_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = connect_spy(monkeypatch)
    with pytest.raises(UnsafeUrl):
        pinned.check_url(url)
    assert spy.targets == []


def test_the_sandbox_address_passes_only_when_listed(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.CONDUIT_ODOO_ALLOW_INSECURE = True
    fake_dns(monkeypatch, {"localhost": ["127.0.0.1"]})
    with pytest.raises(UnsafeUrl):
        pinned.check_url("http://localhost:8069")
    settings.CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS = ["not-an-address", " 127.0.0.1 "]
    checked = pinned.check_url("http://localhost:8069")
    assert (checked.origin, str(checked.address)) == ("http://localhost:8069", "127.0.0.1")
    with pytest.raises(UnsafeUrl):
        pinned.check_url("http://127.0.0.2:8069")


def test_a_name_that_does_not_resolve_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {ODOO_HOST: [], "only-unix.example": ["x"]})
    with pytest.raises(Transient) as caught:
        pinned.check_url(ODOO_URL)
    assert caught.value.code == "dns_error"

    def unix_only(*args: Any, **kwargs: Any) -> list[Any]:
        return [(1, 1, 0, "", "/tmp/sock")]  # AF_UNIX only: no address to check

    monkeypatch.setattr(pinned.socket, "getaddrinfo", unix_only)
    with pytest.raises(Transient) as caught:
        pinned.check_url(ODOO_URL)
    assert caught.value.code == "dns_error"


# --- resolved once, pinned to the checked address ---------------------------------------------


@responses.activate
def test_the_call_goes_to_the_checked_address_with_the_original_host(monkeypatch: pytest.MonkeyPatch) -> None:
    dns = fake_dns(monkeypatch, {ODOO_HOST: [[PUBLIC_IP], ["127.0.0.1"]]})  # the answer changes
    responses.post(f"https://{PUBLIC_IP}/json/2/res.users/context_get", json={"uid": 2, "lang": "en_US"})
    result = OdooProvider().check_health(odoo_account(ODOO_URL, key=MOCK_KEY))
    assert result.details["uid"] == 2
    assert dns.lookups == {ODOO_HOST: 1}  # no second lookup between the check and the connection
    (call,) = responses.calls
    assert call.request.url == f"https://{PUBLIC_IP}/json/2/res.users/context_get"
    assert call.request.headers["Host"] == ODOO_HOST
    assert call.request.headers["Authorization"] == f"Bearer {MOCK_KEY}"
    # the next call checks again, sees the new answer and refuses it
    with pytest.raises(UnsafeUrl):
        OdooProvider().check_health(odoo_account(ODOO_URL, key=MOCK_KEY))
    assert len(responses.calls) == 1


def test_over_a_real_socket_a_changed_answer_is_never_used(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox_settings(settings)
    odoo = start_odoo()
    try:
        port = int(odoo.base_url.rsplit(":", 1)[1])
        dns = fake_dns(monkeypatch, {"odoo.pinned.test": [["127.0.0.1"], ["10.9.9.9"]]})
        spy = connect_spy(monkeypatch)
        base = f"http://odoo.pinned.test:{port}"
        result = OdooProvider().check_health(odoo_account(base))
        assert result.details["uid"] == 2
        assert dns.lookups == {"odoo.pinned.test": 1}
        assert spy.targets == [("127.0.0.1", port)]
    finally:
        odoo.stop()


def test_proxies_from_the_environment_are_ignored(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox_settings(settings)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    odoo = start_odoo()
    try:
        spy = connect_spy(monkeypatch)
        assert OdooProvider().check_health(odoo_account(odoo.base_url)).details["uid"] == 2
        assert spy.targets == [("127.0.0.1", int(odoo.base_url.rsplit(":", 1)[1]))]
    finally:
        odoo.stop()


# --- redirects are refused, never followed ----------------------------------------------------


@responses.activate
def test_a_redirect_to_an_internal_address_is_refused_not_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {ODOO_HOST: [PUBLIC_IP]})
    responses.post(
        f"https://{PUBLIC_IP}/json/2/res.users/context_get",
        status=302,
        headers={"Location": "http://169.254.169.254/latest/meta-data/"},
    )
    with pytest.raises(Permanent) as caught:
        OdooProvider().check_health(odoo_account(ODOO_URL, key=MOCK_KEY))
    assert caught.value.code == "unexpected_redirect"
    assert [c.request.url for c in responses.calls] == [f"https://{PUBLIC_IP}/json/2/res.users/context_get"]


def test_over_a_real_socket_the_redirect_target_gets_no_request(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox_settings(settings)
    with tiny_server(200) as internal, tiny_server(307, {"Location": f"{internal['url']}/admin"}) as customer:
        spy = connect_spy(monkeypatch)
        with pytest.raises(Permanent) as caught:
            OdooProvider().check_health(odoo_account(customer["url"]))
        assert caught.value.code == "unexpected_redirect"
        assert customer["hits"] == ["/json/2/res.users/context_get"]
        assert internal["hits"] == []
        assert spy.targets == [("127.0.0.1", int(customer["url"].rsplit(":", 1)[1]))]


# --- TLS: SNI and the certificate check use the original name ---------------------------------


def issue(ca_key: Any, ca: x509.Certificate, name: str, key: Any) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An HTTPS server on 127.0.0.1 whose certificate names odoo.pinned.test, from a test CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Conduit test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue(ca_key, ca, "odoo.pinned.test", key)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    seen: dict[str, Any] = {"sni": [], "hosts": [], "ca": str(tmp_path / "ca.pem")}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen["hosts"].append(self.headers.get("Host"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    context.sni_callback = lambda sock, name, ctx: seen["sni"].append(name)  # type: ignore[assignment,misc]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    seen["port"] = server.server_address[1]
    yield seen
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_tls_sends_the_original_name_and_checks_the_certificate_against_it(
    tls_server: dict[str, Any], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CONDUIT_ODOO_ALLOW_INSECURE = True  # the test server's port is not 443
    settings.CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    port = tls_server["port"]
    fake_dns(monkeypatch, {"odoo.pinned.test": ["127.0.0.1"], "other.pinned.test": ["127.0.0.1"]})
    session, url, headers = pinned.pinned_transport(f"https://odoo.pinned.test:{port}/web/version")
    assert url == f"https://127.0.0.1:{port}/web/version"
    answer = session.get(url, headers=headers, verify=tls_server["ca"], timeout=5)
    assert (answer.status_code, answer.text) == (200, "ok")
    assert tls_server["sni"] == ["odoo.pinned.test"]
    assert tls_server["hosts"] == [f"odoo.pinned.test:{port}"]
    # a name the certificate does not carry fails the check, though the address is the same
    session, url, headers = pinned.pinned_transport(f"https://other.pinned.test:{port}/web/version")
    with pytest.raises(requests.exceptions.SSLError):
        session.get(url, headers=headers, verify=tls_server["ca"], timeout=5)


def test_one_session_per_process_and_host_name() -> None:
    first = pinned.pinned_session(1, "a.example")
    assert pinned.pinned_session(1, "a.example") is first
    assert pinned.pinned_session(1, "b.example") is not first
    assert first.trust_env is False
    assert first.headers["User-Agent"].startswith("Conduit/")


def test_check_url_names_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {ODOO_HOST: ["2606:4700::1111", PUBLIC_IP]})
    checked = pinned.check_url(ODOO_URL)
    assert checked.origin == ODOO_URL
    assert checked.address == ipaddress.ip_address("2606:4700::1111")


# --- production refuses the development allowances --------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"CONDUIT_ODOO_ALLOW_INSECURE": "true"}, "CONDUIT_ODOO_ALLOW_INSECURE must be false in production"),
        (
            {"CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS": "127.0.0.1"},
            "CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS must be empty in production",
        ),
    ],
)
def test_production_refuses_the_sandbox_allowances(
    override: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = run_manage("check", env={**PROD_ENV, **override}, tmp_path=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr


def test_production_defaults_allow_neither(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings; "
        "print(settings.CONDUIT_ODOO_ALLOW_INSECURE, settings.CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS)"
    )
    result = run_manage("shell", "-c", code, env=PROD_ENV, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False []"
