"""Runbook 004's switches: the calendar block of conduit/settings.py refuses a bad production
configuration in one line, and integrations/calendars/flags.py refuses an operation whose flag is
off or whose member / connection is not on the allowlist."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from integrations.calendars.flags import FLAG_SETTINGS, CalendarForbidden, Feature, check, enabled, refusal
from tests.test_settings import ENV_UNDER_TEST, PROD_ENV, run_manage

CALENDAR_PREFIXES = ("CALENDAR_", "GOOGLE_", "MICROSOFT_")
MUST_LIST = "must list ids (or be an explicit *) when a calendar flag is on in production"
ON_FOR_ONE = {
    "CALENDAR_OAUTH_ENABLED": "true",
    "CALENDAR_ALLOWLIST_PROVIDER_IDS": "12",
    "CALENDAR_ALLOWLIST_CONNECTION_IDS": "*",
}
GOOGLE_APP = {"GOOGLE_CLIENT_ID": "conduit.apps.googleusercontent.com", "GOOGLE_CLIENT_SECRET": "gsecret"}
MICROSOFT_APP = {"MICROSOFT_CLIENT_ID": "00000000-aaaa", "MICROSOFT_CLIENT_SECRET": "msecret"}
PRINT_CALENDAR = (
    "from django.conf import settings as s;"
    "print(s.CALENDAR_SYNC_ENABLED, s.CALENDAR_OAUTH_ENABLED, s.CALENDAR_JOBS_ENABLED,"
    " s.CALENDAR_WEBHOOK_ENABLED, s.CALENDAR_ALLOWLIST_PROVIDER_IDS, s.CALENDAR_ALLOWLIST_CONNECTION_IDS,"
    " s.GOOGLE_REDIRECT_URI, s.CALENDAR_WEBHOOK_BASE_URL)"
)


def manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """manage.py with this machine's environment minus anything calendar-shaped, plus `env`."""
    return run_manage(
        *args,
        env=env,
        tmp_path=tmp_path,
        drop=lambda k: k in ENV_UNDER_TEST or k.startswith(CALENDAR_PREFIXES),
    )


# --- conduit/settings.py, production ---


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"CALENDAR_SYNC_ENABLED": "true"},
            f"CALENDAR_ALLOWLIST_PROVIDER_IDS {MUST_LIST}",
        ),
        (
            {"CALENDAR_WEBHOOK_ENABLED": "true", "CALENDAR_ALLOWLIST_PROVIDER_IDS": "12"},
            f"CALENDAR_ALLOWLIST_CONNECTION_IDS {MUST_LIST}",
        ),
        (
            {"CALENDAR_JOBS_ENABLED": "true", "CALENDAR_ALLOWLIST_PROVIDER_IDS": " , "},
            f"CALENDAR_ALLOWLIST_PROVIDER_IDS {MUST_LIST}",
        ),
        (
            ON_FOR_ONE,
            "CALENDAR_OAUTH_ENABLED / CALENDAR_SYNC_ENABLED need GOOGLE_CLIENT_ID and _SECRET or "
            "MICROSOFT_CLIENT_ID and _SECRET in production",
        ),
        (
            {**ON_FOR_ONE, "GOOGLE_CLIENT_ID": "conduit.apps.googleusercontent.com"},
            "GOOGLE_CLIENT_SECRET must be set when GOOGLE_CLIENT_ID or _SECRET is",
        ),
        (
            {**ON_FOR_ONE, **GOOGLE_APP, "MICROSOFT_CLIENT_SECRET": "msecret"},
            "MICROSOFT_CLIENT_ID must be set when MICROSOFT_CLIENT_ID or _SECRET is",
        ),
        (
            {**ON_FOR_ONE, **GOOGLE_APP, "GOOGLE_REDIRECT_URI": "http://conduit.example.com/cb/"},
            "GOOGLE_REDIRECT_URI must be an https:// URL in production",
        ),
        (
            {
                **ON_FOR_ONE,
                **MICROSOFT_APP,
                "MICROSOFT_REDIRECT_URI": "http://conduit.example.com/settings/calendar/callback/microsoft/",
            },
            "MICROSOFT_REDIRECT_URI must be an https:// URL in production",
        ),
        (
            {"CALENDAR_WEBHOOK_BASE_URL": "http://hooks.conduit.example.com"},
            "CALENDAR_WEBHOOK_BASE_URL must be an https:// URL in production",
        ),
        (
            {"GOOGLE_CALENDAR_API_URL": "http://www.googleapis.com/calendar/v3"},
            "GOOGLE_CALENDAR_API_URL must be an https:// URL in production",
        ),
        (
            {"MICROSOFT_GRAPH_URL": "https://127.0.0.1:8706/v1.0"},
            "MICROSOFT_GRAPH_URL must not point at a local sandbox in production",
        ),
        ({"CALENDAR_BACKOFF_BASE_SECONDS": "0"}, "CALENDAR_BACKOFF_BASE_SECONDS must be between 1 and 3600"),
        ({"CALENDAR_SYNC_PAST_DAYS": "366"}, "CALENDAR_SYNC_PAST_DAYS must be between 1 and 365"),
    ],
    ids=[
        "flag-without-allowlists",
        "flag-without-connection-allowlist",
        "blank-allowlist",
        "no-calendar-app",
        "google-id-without-secret",
        "microsoft-secret-without-id",
        "google-http-redirect",
        "microsoft-http-redirect",
        "http-webhook-base",
        "http-google-api",
        "graph-at-the-sandbox",
        "backoff-out-of-range",
        "window-out-of-range",
    ],
)
def test_production_refuses_a_bad_calendar_configuration_in_one_line(
    tmp_path: Path, override: dict[str, str], expected: str
) -> None:
    result = manage("check", env={**PROD_ENV, **override}, tmp_path=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [f"conduit: configuration error: {expected}"]


def test_production_starts_with_every_calendar_flag_off_and_no_one_allowed(tmp_path: Path) -> None:
    result = manage("shell", "-v", "0", "-c", PRINT_CALENDAR, env=PROD_ENV, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "False",
        "False",
        "False",
        "False",
        "[]",
        "[]",
        "https://conduit.example.com/settings/calendar/callback/google/",
        "https://conduit.example.com",
    ]


def test_production_accepts_flags_with_allowlists_and_whole_https_apps(tmp_path: Path) -> None:
    env = {
        **PROD_ENV,
        **ON_FOR_ONE,
        **GOOGLE_APP,
        **MICROSOFT_APP,
        "CALENDAR_SYNC_ENABLED": "true",
        "CALENDAR_ALLOWLIST_PROVIDER_IDS": "12, 40",
        "CALENDAR_WEBHOOK_BASE_URL": "https://hooks.conduit.example.com/",
    }
    result = manage("shell", "-v", "0", "-c", PRINT_CALENDAR, env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "True",
        "True",
        "False",
        "False",
        "['12',",
        "'40']",
        "['*']",
        "https://conduit.example.com/settings/calendar/callback/google/",
        "https://hooks.conduit.example.com",
    ]


def test_development_turns_calendars_on_for_everyone(tmp_path: Path) -> None:
    result = manage(
        "shell", "-v", "0", "-c", PRINT_CALENDAR, env={"CONDUIT_ENV": "development"}, tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:6] == ["True", "True", "True", "True", "['*']", "['*']"]


# --- integrations/calendars/flags.py ---


def allow_all(settings: Any) -> None:
    for name in FLAG_SETTINGS.values():
        setattr(settings, name, True)
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = ["*"]
    settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = ["*"]


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        (Feature.OAUTH, "Connecting calendars is turned off (CALENDAR_OAUTH_ENABLED=false)."),
        (Feature.SYNC, "Calendar sync is turned off (CALENDAR_SYNC_ENABLED=false)."),
        (Feature.JOBS, "The calendar job runner is turned off (CALENDAR_JOBS_ENABLED=false)."),
        (Feature.WEBHOOK, "Calendar push notifications is turned off (CALENDAR_WEBHOOK_ENABLED=false)."),
    ],
)
def test_each_flag_off_refuses_its_operations_only(settings: Any, feature: Feature, message: str) -> None:
    allow_all(settings)
    setattr(settings, FLAG_SETTINGS[feature], False)
    assert not enabled(feature)
    with pytest.raises(CalendarForbidden) as refused:
        check(feature, provider_id=1, connection_id=2)
    assert (refused.value.code, refused.value.message, str(refused.value)) == (
        "calendar_disabled",
        message,
        message,
    )
    for other in Feature:
        if other is not feature:
            assert enabled(other)
            check(other, provider_id=1, connection_id=2)  # the others still run


def test_a_flag_off_wins_over_the_allowlists(settings: Any) -> None:
    allow_all(settings)
    settings.CALENDAR_SYNC_ENABLED = False
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = []
    refused = refusal(Feature.SYNC, provider_id=1)
    assert refused is not None and refused.code == "calendar_disabled"


def test_the_provider_allowlist_takes_listed_ids_or_star(settings: Any) -> None:
    allow_all(settings)
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = ["12", "40"]
    assert refusal(Feature.OAUTH, provider_id=12) is None
    assert refusal(Feature.OAUTH, provider_id=40) is None
    refused = refusal(Feature.OAUTH, provider_id=41)
    assert refused is not None
    assert refused.code == "calendar_not_allowlisted"
    assert refused.message == (
        "Calendar sync is not open to this member yet (not in CALENDAR_ALLOWLIST_PROVIDER_IDS)."
    )
    assert refusal(Feature.OAUTH) is None  # no id given: not checked (connecting has no connection yet)
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = ["12", "*"]
    assert refusal(Feature.OAUTH, provider_id=41) is None


def test_the_connection_allowlist_takes_listed_ids_or_star(settings: Any) -> None:
    allow_all(settings)
    settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = ["7"]
    check(Feature.SYNC, provider_id=1, connection_id=7)
    with pytest.raises(CalendarForbidden) as refused:
        check(Feature.SYNC, provider_id=1, connection_id=8)
    assert refused.value.code == "calendar_not_allowlisted"
    assert "CALENDAR_ALLOWLIST_CONNECTION_IDS" in refused.value.message
    settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = ["*"]
    check(Feature.SYNC, provider_id=1, connection_id=8)


def test_an_empty_allowlist_refuses_everyone(settings: Any) -> None:
    allow_all(settings)
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = []
    refused = refusal(Feature.JOBS, provider_id=1, connection_id=1)
    assert refused is not None and "CALENDAR_ALLOWLIST_PROVIDER_IDS" in refused.message
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = ["*"]
    settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = []
    refused = refusal(Feature.JOBS, provider_id=1, connection_id=1)
    assert refused is not None and "CALENDAR_ALLOWLIST_CONNECTION_IDS" in refused.message
