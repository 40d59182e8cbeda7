"""Every provider call logs one line carrying the answer's rate-limit headers: the provider's own
names verbatim plus a normalised X-RateLimit-Remaining / X-RateLimit-Limit pair, so runbook 001's
`grep "X-RateLimit" integrations.log` finds them; no other header (cookies, tokens) ever does.
CONDUIT_INTEGRATIONS_LOG, when set, is the file those lines go to."""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from django.conf import settings

from conduit.logconfig import INTEGRATION_LOGGERS, json_logging
from integrations.providers import get_provider
from integrations.providers.base import Account
from integrations.providers.errors import RateLimited
from integrations.providers.ratelimit_headers import VALUE_MAX, as_text, bounded, rate_limit_headers
from integrations.providers.synclog import CallContext
from tests.odoo_helpers import MOCK_KEY, ODOO_HOST, ODOO_URL, PUBLIC_IP, fake_dns, odoo_account
from tests.provider_helpers import HS_TOKEN, SF_TOKEN, hubspot_account, salesforce_account
from tests.test_settings import run_manage

pytestmark = pytest.mark.django_db
Lines = Callable[[], list[dict[str, Any]]]

HS_API = settings.HUBSPOT_API_BASE_URL
SF_REST = "https://acme.my.salesforce.com/services/data/v66.0"
ZOHO_CRM = "https://www.zohoapis.eu/crm/v7"
ODOO_JSON2 = f"https://{PUBLIC_IP}/json/2"
ZH_TOKEN = "1000.zoho-access-token-0123456789abcdef"
COOKIE = "sessionid=cookie-value-7c1f9e2a"
# Headers a provider (or a proxy) may send that are not rate-limit headers: never logged.
NOT_RATE_LIMIT = {
    "Set-Cookie": COOKIE,
    "Authorization": "Bearer echoed-token-5d8e2b7a",
    "X-Request-Token": "request-token-value-93af",
}
HUBSPOT_HEADERS = {
    "X-HubSpot-RateLimit-Max": "110",
    "X-HubSpot-RateLimit-Remaining": "97",
    "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
}


def zoho_account() -> Account:
    return Account(
        "zoho", ZH_TOKEN, "7700000000000010001", instance_url="https://www.zohoapis.eu",
        environment="https://accounts.zoho.eu", context=CallContext(),
    )  # fmt: skip


def call_lines(lines: Lines, provider: str) -> list[dict[str, Any]]:
    return [
        line
        for line in lines()
        if line["logger"] == "conduit.integrations" and line["message"].startswith(f"{provider} ")
    ]


def assert_no_other_header(line: dict[str, Any], *secrets: str) -> None:
    text = json.dumps(line)
    for name, value in NOT_RATE_LIMIT.items():
        assert name not in text and value not in text
    for secret in secrets:
        assert secret not in text


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# --- one line per call, per provider ------------------------------------------------------------


def test_hubspot_call_logs_its_headers_and_the_normalised_pair(
    mocked: responses.RequestsMock, capture_json_logs: Lines
) -> None:
    mocked.get(
        f"{HS_API}/account-info/v3/details",
        json={"portalId": 4400001},
        headers={**HUBSPOT_HEADERS, **NOT_RATE_LIMIT},
    )
    get_provider("hubspot").check_health(hubspot_account())
    [line] = call_lines(capture_json_logs, "hubspot")
    assert line["message"] == (
        "hubspot health_check ok http_status=200 X-RateLimit-Remaining=97 X-RateLimit-Limit=110 "
        "X-HubSpot-RateLimit-Max=110 X-HubSpot-RateLimit-Remaining=97 "
        "X-HubSpot-RateLimit-Interval-Milliseconds=10000"
    )
    assert line["rate_limit"] == {
        "X-RateLimit-Remaining": "97",
        "X-RateLimit-Limit": "110",
        **HUBSPOT_HEADERS,
    }
    assert (line["level"], line["category"], line["http_status"]) == ("INFO", "provider", 200)
    assert_no_other_header(line, HS_TOKEN)


def test_salesforce_call_logs_limit_info_and_what_remains_of_the_daily_allocation(
    mocked: responses.RequestsMock, capture_json_logs: Lines
) -> None:
    limit_info = "api-usage=18/15000; api-bursts=1/750"
    mocked.get(
        f"{SF_REST}/query", json={"records": []}, headers={"Sforce-Limit-Info": limit_info, **NOT_RATE_LIMIT}
    )
    get_provider("salesforce").find_contact(salesforce_account(), "maya@acme.example")
    [line] = call_lines(capture_json_logs, "salesforce")
    assert line["message"] == (
        "salesforce find_contact ok http_status=200 X-RateLimit-Remaining=14982 X-RateLimit-Limit=15000 "
        'Sforce-Limit-Info="api-usage=18/15000; api-bursts=1/750"'
    )
    assert line["rate_limit"] == {
        "X-RateLimit-Remaining": "14982",
        "X-RateLimit-Limit": "15000",
        "Sforce-Limit-Info": limit_info,
    }
    assert_no_other_header(line, SF_TOKEN)


def test_zoho_call_logs_its_headers_and_the_normalised_pair(
    mocked: responses.RequestsMock, capture_json_logs: Lines
) -> None:
    zoho_headers = {
        "X-RATELIMIT-LIMIT": "100",
        "X-RATELIMIT-REMAINING": "95",
        "X-RATELIMIT-RESET": "1527051900000",
    }
    mocked.get(
        f"{ZOHO_CRM}/org",
        json={"org": [{"id": "7700000000000010001"}]},
        headers={**zoho_headers, **NOT_RATE_LIMIT},
    )
    get_provider("zoho").check_health(zoho_account())
    [line] = call_lines(capture_json_logs, "zoho")
    # Zoho's own names differ from the normalised pair only in case: each header once
    assert line["message"] == (
        "zoho health_check ok http_status=200 X-RateLimit-Remaining=95 X-RateLimit-Limit=100 "
        "X-RATELIMIT-RESET=1527051900000"
    )
    assert line["rate_limit"] == {
        "X-RateLimit-Remaining": "95",
        "X-RateLimit-Limit": "100",
        "X-RATELIMIT-RESET": "1527051900000",
    }
    assert_no_other_header(line, ZH_TOKEN)


def test_odoo_call_logs_a_line_without_rate_limit_headers(
    mocked: responses.RequestsMock, capture_json_logs: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {ODOO_HOST: [PUBLIC_IP]})
    # Odoo documents no rate-limit header; a look-alike it might send is not one Conduit declares.
    headers = {**NOT_RATE_LIMIT, "X-RateLimit-Remaining": "5"}
    mocked.post(f"{ODOO_JSON2}/res.users/context_get", json={"uid": 6}, headers=headers)
    get_provider("odoo").check_health(odoo_account(ODOO_URL, key=MOCK_KEY, database="acme"))
    [line] = call_lines(capture_json_logs, "odoo")
    assert line["message"] == "odoo health_check ok http_status=200"
    assert "rate_limit" not in line
    assert_no_other_header(line, MOCK_KEY)


# --- rate-limit answers --------------------------------------------------------------------------


def test_a_hubspot_429_line_carries_retry_after_and_the_exhausted_quota(
    mocked: responses.RequestsMock, capture_json_logs: Lines
) -> None:
    headers = {**HUBSPOT_HEADERS, "X-HubSpot-RateLimit-Remaining": "0", "Retry-After": "7", **NOT_RATE_LIMIT}
    mocked.get(
        f"{HS_API}/account-info/v3/details",
        status=429,
        json={"status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"},
        headers=headers,
    )
    with pytest.raises(RateLimited):
        get_provider("hubspot").check_health(hubspot_account())
    [line] = call_lines(capture_json_logs, "hubspot")
    assert line["message"].startswith(
        "hubspot health_check failed error_code=rate_limited http_status=429 "
        "X-RateLimit-Remaining=0 X-RateLimit-Limit=110 "
    )
    assert line["message"].endswith(" Retry-After=7")
    assert line["rate_limit"]["Retry-After"] == "7"
    assert (line["error_code"], line["http_status"]) == ("rate_limited", 429)
    assert_no_other_header(line, HS_TOKEN)


def test_an_odoo_429_line_carries_retry_after_only(
    mocked: responses.RequestsMock, capture_json_logs: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {ODOO_HOST: [PUBLIC_IP]})
    mocked.post(f"{ODOO_JSON2}/res.users/context_get", status=429, headers={"Retry-After": "1"})
    with pytest.raises(RateLimited):
        get_provider("odoo").check_health(odoo_account(ODOO_URL, key=MOCK_KEY, database="acme"))
    [line] = call_lines(capture_json_logs, "odoo")
    assert line["message"] == "odoo health_check failed error_code=rate_limited http_status=429 Retry-After=1"
    assert line["rate_limit"] == {"Retry-After": "1"}


# --- the pure function: bounded values, declared names only ---------------------------------------


def test_long_values_are_cut_and_a_long_count_is_no_quota() -> None:
    found = rate_limit_headers(
        get_provider("hubspot"),
        {"X-HubSpot-RateLimit-Max": "1" * 500, "X-HubSpot-RateLimit-Interval-Milliseconds": "9" * 500},
    )
    assert "X-RateLimit-Limit" not in found
    for value in found.values():
        assert len(value) == VALUE_MAX and value.endswith("…")


def test_a_long_header_value_is_cut_in_the_log_line(
    mocked: responses.RequestsMock, capture_json_logs: Lines
) -> None:
    headers = {**HUBSPOT_HEADERS, "X-HubSpot-RateLimit-Interval-Milliseconds": "4" * 5000}
    mocked.get(f"{HS_API}/account-info/v3/details", json={"portalId": 4400001}, headers=headers)
    get_provider("hubspot").check_health(hubspot_account())
    [line] = call_lines(capture_json_logs, "hubspot")
    assert "4" * VALUE_MAX not in line["message"]
    assert line["rate_limit"]["X-HubSpot-RateLimit-Interval-Milliseconds"] == "4" * (VALUE_MAX - 1) + "…"
    assert len(line["message"]) < 400


def test_only_declared_headers_are_kept_whatever_their_case() -> None:
    received = {
        "x-hubspot-ratelimit-remaining": "12",
        "set-cookie": COOKIE,
        "authorization": "Bearer x",
        "x-hubspot-correlation-id": "abc",
    }
    assert rate_limit_headers(get_provider("hubspot"), received) == {
        "X-RateLimit-Remaining": "12",
        "X-HubSpot-RateLimit-Remaining": "12",
    }
    assert rate_limit_headers(get_provider("odoo"), {"Set-Cookie": COOKIE, "X-RateLimit-Limit": "9"}) == {}


def test_values_are_one_printable_line() -> None:
    assert bounded("  10\r\n\tSet-Cookie: x\x00é ") == "10 Set-Cookie: x??"
    assert as_text({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT", "A": "1"}) == (
        'Retry-After="Wed, 21 Oct 2026 07:28:00 GMT" A=1'
    )


@pytest.mark.parametrize(
    ("limit_info", "expected"),
    [
        ("api-usage=18/15000", (15000, 14982)),
        ("api-usage=15200/15000; api-bursts=1/750", (15000, 0)),
        ("api-usage=abc/15000", (None, None)),
        ("", (None, None)),
    ],
)
def test_salesforce_quota_is_read_from_limit_info(limit_info: str, expected: tuple[Any, Any]) -> None:
    assert get_provider("salesforce").rate_limit_quota({"Sforce-Limit-Info": limit_info}) == expected


# --- the integrations log file -----------------------------------------------------------------


@pytest.fixture
def integrations_log(tmp_path: Path) -> Iterator[Path]:
    """Logging configured as CONDUIT_INTEGRATIONS_LOG=<tmp file> would; restored afterwards."""
    path = tmp_path / "integrations.log"
    logging.config.dictConfig(json_logging("INFO", ["django", "celery"], integrations_log=str(path)))
    try:
        yield path
    finally:
        for name in INTEGRATION_LOGGERS:
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                handler.close()
            logger.setLevel(logging.NOTSET)
            logger.propagate = True
        logging.config.dictConfig(settings.LOGGING)


def test_a_provider_call_writes_its_rate_limit_line_to_the_integrations_log(
    mocked: responses.RequestsMock, integrations_log: Path
) -> None:
    mocked.get(
        f"{HS_API}/account-info/v3/details",
        json={"portalId": 4400001},
        headers={**HUBSPOT_HEADERS, **NOT_RATE_LIMIT},
    )
    get_provider("hubspot").check_health(hubspot_account())
    grepped = [raw for raw in integrations_log.read_text().splitlines() if "X-RateLimit" in raw]
    assert len(grepped) == 1
    line = json.loads(grepped[0])
    assert line["message"].startswith("hubspot health_check ok http_status=200 X-RateLimit-Remaining=97 ")
    assert line["rate_limit"]["X-HubSpot-RateLimit-Max"] == "110"
    assert HS_TOKEN not in grepped[0] and COOKIE not in grepped[0]
    assert_no_other_header(line, HS_TOKEN)


def test_the_integrations_log_holds_only_the_integration_loggers(integrations_log: Path) -> None:
    logging.getLogger("conduit.reconcile").warning("not an integration line")
    logging.getLogger("conduit.webhooks").warning("webhook line")
    text = integrations_log.read_text()
    assert "webhook line" in text and "not an integration line" not in text


def test_without_the_setting_there_is_no_log_file() -> None:
    assert "integrations_file" not in json_logging("INFO", ["django"])["handlers"]


def test_the_setting_sends_integration_lines_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "integrations.log"
    code = (
        "import logging; logging.getLogger('conduit.integrations').info("
        "'hubspot health_check ok X-RateLimit-Remaining=9 Authorization: Bearer abcdefgh12345678')"
    )
    result = run_manage("shell", "-c", code, env={"CONDUIT_INTEGRATIONS_LOG": str(path)}, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    [line] = [json.loads(raw) for raw in path.read_text().splitlines()]
    assert line["message"].startswith("hubspot health_check ok X-RateLimit-Remaining=9")
    assert "abcdefgh12345678" not in path.read_text()


@pytest.mark.parametrize("value", ["relative/integrations.log", "/nonexistent-dir-4f1a/integrations.log"])
def test_a_bad_integrations_log_path_stops_startup(value: str, tmp_path: Path) -> None:
    result = run_manage("check", env={"CONDUIT_INTEGRATIONS_LOG": value}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "CONDUIT_INTEGRATIONS_LOG must be an absolute path in an existing directory" in result.stderr
