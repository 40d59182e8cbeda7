"""Settings are read once from the environment; production refuses bad configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
PROD_ENV = {
    "CONDUIT_ENV": "production",
    "SECRET_KEY": "x9!" + "k2#Lq8@vR7$" * 6,
    "CONDUIT_ENCRYPTION_KEYS": f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
    "ALLOWED_HOSTS": "conduit.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://conduit.example.com",
    "DATABASE_URL": "postgres://conduit_app@127.0.0.1:5432/conduit",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "CONDUIT_PUBLIC_URL": "https://conduit.example.com",
}

ENV_UNDER_TEST = {
    "SECRET_KEY",
    "CONDUIT_ENCRYPTION_KEYS",
    "CONDUIT_ENV",
    "DEBUG",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    "CONDUIT_SANDBOX",
    "SANDBOX_HOST",
    "SANDBOX_ODOO_PORT",
}


def run_manage(
    *args: str,
    env: dict[str, str],
    tmp_path: Path,
    drop: Callable[[str], bool] = ENV_UNDER_TEST.__contains__,
) -> subprocess.CompletedProcess[str]:
    """manage.py with this machine's environment minus the names `drop` picks, plus `env`."""
    base = {k: v for k, v in os.environ.items() if not drop(k)}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, "CONDUIT_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_passes_check_deploy_at_warning_level(tmp_path: Path) -> None:
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=PROD_ENV, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 50 characters"),
        ({"CONDUIT_ENCRYPTION_KEYS": ""}, "CONDUIT_ENCRYPTION_KEYS must be set"),
        (
            {"CONDUIT_ENCRYPTION_KEYS": "not-a-fernet-key"},
            "CONDUIT_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64 bytes each)",
        ),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS must be set"),
        ({"DEBUG": "true"}, "DEBUG must be false in production"),
        (
            {"CSRF_TRUSTED_ORIGINS": "http://conduit.example.com"},
            "CSRF_TRUSTED_ORIGINS entries must start with https://",
        ),
        ({"DATABASE_URL": ""}, "DATABASE_URL must be set"),
        ({"REDIS_URL": ""}, "REDIS_URL must be set"),
        ({"CONDUIT_ENV": "staging"}, "CONDUIT_ENV must be 'development' or 'production'"),
        ({"CONDUIT_SANDBOX": "true"}, "CONDUIT_SANDBOX must be false in production"),
        ({"CONDUIT_PUBLIC_URL": ""}, "CONDUIT_PUBLIC_URL must be set"),
        (
            {"CONDUIT_PUBLIC_URL": "http://conduit.example.com"},
            "CONDUIT_PUBLIC_URL must be an https:// URL in production",
        ),
        (
            {"CONDUIT_PENDING_INSTALL_TTL_HOURS": "0"},
            "CONDUIT_PENDING_INSTALL_TTL_HOURS must be between 1 and 720",
        ),
        (
            {"HUBSPOT_API_BASE_URL": "http://api.hubapi.com"},
            "HUBSPOT_API_BASE_URL must be an https:// URL in production",
        ),
        (
            {"SALESFORCE_LOGIN_URL": "https://127.0.0.1:8702"},
            "SALESFORCE_LOGIN_URL must not point at a local sandbox in production",
        ),
        (
            {"ZOHO_ACCOUNTS_URL": "http://accounts.zoho.eu"},
            "ZOHO_ACCOUNTS_URL must be an https:// URL in production",
        ),
        (
            {"ZOHO_ACCOUNTS_URL": "https://localhost:8703"},
            "ZOHO_ACCOUNTS_URL must not point at a local sandbox in production",
        ),
        ({"CONDUIT_METRICS_TOKEN": "short"}, "CONDUIT_METRICS_TOKEN must be at least 24 characters"),
        ({"CONDUIT_RATE_BUDGET": "1.5"}, "CONDUIT_RATE_BUDGET must be between 0.1 and 1.0"),
    ],
)
def test_production_refuses_missing_or_malformed_settings_in_one_line(
    tmp_path: Path, override: dict[str, str], expected: str
) -> None:
    result = run_manage("check", env={**PROD_ENV, **override}, tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"conduit: configuration error: {expected}"]


def test_development_generates_keys_once_and_keeps_them(tmp_path: Path) -> None:
    env = {"CONDUIT_ENV": "development"}
    script = (
        "from django.conf import settings;"
        "print(settings.SECRET_KEY[:12], settings.CONDUIT_ENCRYPTION_KEYS[0][:12])"
    )
    first = run_manage("shell", "-v", "0", "-c", script, env=env, tmp_path=tmp_path)
    second = run_manage("shell", "-v", "0", "-c", script, env=env, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and first.stdout.strip()
    assert (tmp_path / "secret_key").exists() and (tmp_path / "conduit_encryption_keys").exists()
    assert oct((tmp_path / "secret_key").stat().st_mode)[-3:] == "600"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SANDBOX_ODOO_PORT": "18704"}, "http://127.0.0.1:18704 ['127.0.0.1']"),
        ({}, "http://127.0.0.1:8704 ['127.0.0.1']"),
        ({"CONDUIT_SANDBOX": "false"}, " []"),
    ],
)
def test_the_odoo_sandbox_address_follows_its_port_in_development_only(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    script = (
        "from django.conf import settings;"
        "print(settings.ODOO_SANDBOX_URL, settings.CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS)"
    )
    result = run_manage(
        "shell", "-v", "0", "-c", script, env={"CONDUIT_ENV": "development", **env}, tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected.strip()


def test_default_database_is_sqlite_wal_under_var(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "", "REDIS_URL": ""}
    script = (
        "from django.db import connection; c = connection.cursor(); c.execute('PRAGMA journal_mode');"
        "print(connection.vendor, c.fetchone()[0], connection.settings_dict['NAME'])"
    )
    result = run_manage("shell", "-v", "0", "-c", script, env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["sqlite", "wal", str(tmp_path / "conduit.sqlite3")]


@pytest.mark.parametrize(
    "command",
    [
        [str(Path(sys.executable).parent / "celery"), "-A", "conduit", "worker", "--pool=solo"],
        [str(Path(sys.executable).parent / "gunicorn"), "conduit.wsgi", "-c", "python:conduit.gunicorn"],
    ],
    ids=["celery", "gunicorn"],
)
def test_worker_and_web_refuse_bad_configuration_in_one_line(tmp_path: Path, command: list[str]) -> None:
    base = {k: v for k, v in os.environ.items() if k not in ENV_UNDER_TEST}
    env = {**base, "CONDUIT_VAR_DIR": str(tmp_path), **PROD_ENV, "SECRET_KEY": ""}
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["conduit: configuration error: SECRET_KEY must be set"]
