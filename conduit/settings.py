"""Conduit settings: every value is read here, once, from the environment (django-environ).

CONDUIT_ENV=development (default) generates and keeps a SECRET_KEY and an encryption key in
var/ so `make run` works on a fresh machine. CONDUIT_ENV=production refuses to start when a
required variable is missing or malformed, naming it in one line.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from conduit.env import Env, points_at_this_machine
from conduit.logconfig import json_logging

BASE_DIR = Path(__file__).resolve().parent.parent
env = Env()  # a malformed value stops start-up in one line naming the variable

CONDUIT_ENV = env.str("CONDUIT_ENV", default="development")
if CONDUIT_ENV not in ("development", "production"):
    raise ImproperlyConfigured("CONDUIT_ENV must be 'development' or 'production'")
PRODUCTION = CONDUIT_ENV == "production"

VAR_DIR = Path(env.str("CONDUIT_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def required(name: str) -> str:
    if not (value := env.str(name, default="").strip()):
        raise ImproperlyConfigured(f"{name} must be set")
    return value


def kept_in_var(name: str, make: Any) -> str:
    """Development only: a value generated once and kept in var/ across restarts."""
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def setting_or_dev_default(name: str, make: Any) -> str:
    if PRODUCTION:
        return required(name)
    return env.str(name, default="").strip() or kept_in_var(name.lower(), make)


def parse_fernet_keys(raw: str) -> list[str]:
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    for key in keys:
        try:
            Fernet(key.encode())
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                "CONDUIT_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64 bytes each)"
            ) from exc
    if not keys:
        raise ImproperlyConfigured("CONDUIT_ENCRYPTION_KEYS must be set")
    return keys


SECRET_KEY = setting_or_dev_default("SECRET_KEY", lambda: secrets.token_urlsafe(50))
if PRODUCTION and len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters")
# First key encrypts; every key decrypts (rotation: prepend a new key, run rotate_encryption_keys).
CONDUIT_ENCRYPTION_KEYS = parse_fernet_keys(
    setting_or_dev_default("CONDUIT_ENCRYPTION_KEYS", lambda: Fernet.generate_key().decode())
)

DEBUG = env.bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be false in production")

if PRODUCTION:
    ALLOWED_HOSTS = [h for h in required("ALLOWED_HOSTS").split(",") if h.strip()]
else:
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
_origin_schemes = ("https://",) if PRODUCTION else ("https://", "http://")
for origin in CSRF_TRUSTED_ORIGINS:
    if not origin.startswith(_origin_schemes):
        raise ImproperlyConfigured(
            f"CSRF_TRUSTED_ORIGINS entries must start with {' or '.join(_origin_schemes)}"
        )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "conduit",
    "integrations",
    "reconcile",
    "retention",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "conduit.tenancy.WorkspaceScopeMiddleware",
    "conduit.api_errors.JsonNotFoundUnderApi",
]

ROOT_URLCONF = "conduit.urls"
WSGI_APPLICATION = "conduit.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "conduit.context_processors.workspace",
            ],
        },
    },
]

# --- Database: SQLite (WAL) under var/ by default, Postgres when DATABASE_URL is set ---
DATABASE_URL = required("DATABASE_URL") if PRODUCTION else env.str("DATABASE_URL", default="")
if DATABASE_URL:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "conduit.sqlite3"),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
# Behind PgBouncer in transaction pooling a server connection serves another client after every
# transaction, so nothing may outlive one (docs/deployment.md, "Behind PgBouncer"): no WITH HOLD
# cursor from .iterator(), no named prepared statements, no SET ROLE at connect.
DATABASE_POOLER = env.str("DATABASE_POOLER", default="").strip()
SESSION_STATE_OPTIONS = ("server_side_binding", "prepare_threshold", "assume_role")
if DATABASE_POOLER not in ("", "pgbouncer-transaction"):
    raise ImproperlyConfigured("DATABASE_POOLER must be empty or 'pgbouncer-transaction'")
if DATABASE_POOLER:
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_POOLER needs a postgres:// DATABASE_URL")
    if set_options := [o for o in SESSION_STATE_OPTIONS if o in DATABASES["default"].get("OPTIONS", {})]:
        raise ImproperlyConfigured(
            f"DATABASE_URL must not set {', '.join(set_options)} with DATABASE_POOLER (session state)"
        )
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    # a kept connection may have been closed by the pooler (client_idle_timeout): check before reuse
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: the cache, the shared rate limiter and by default the Celery broker when REDIS_URL is
# set (embedded defaults otherwise). CELERY_BROKER_URL may name RabbitMQ (amqp://) instead. ---
REDIS_URL = required("REDIS_URL") if PRODUCTION else env.str("REDIS_URL", default="")
CELERY_DATA_DIR = VAR_DIR / "celery"
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="").strip() or REDIS_URL
BROKER_SCHEME = urlsplit(CELERY_BROKER_URL).scheme if CELERY_BROKER_URL else "filesystem"
if CELERY_BROKER_URL and BROKER_SCHEME not in BROKER_SCHEMES:
    raise ImproperlyConfigured(f"CELERY_BROKER_URL must be a {', '.join(BROKER_SCHEMES)} URL")
if CELERY_BROKER_URL and not REDIS_URL:
    raise ImproperlyConfigured("CELERY_BROKER_URL needs REDIS_URL too (the cache and the shared limiter)")
# How long the broker lets a worker hold a message it has not acknowledged (acks_late) before it
# hands it to another worker: Redis's visibility timeout, or RabbitMQ's consumer_timeout (its
# default is 30 min; the broker closes the channel instead). A countdown (the health waves, a
# short Retry-After) must stay below it, or the broker delivers the same task twice.
BROKER_AMQP = BROKER_SCHEME in ("amqp", "amqps")
CONDUIT_BROKER_ACK_TIMEOUT_SECONDS = env.int(
    "CONDUIT_BROKER_ACK_TIMEOUT_SECONDS", default=1800 if BROKER_AMQP else 3600
)
if not 600 <= CONDUIT_BROKER_ACK_TIMEOUT_SECONDS <= 86400:
    raise ImproperlyConfigured("CONDUIT_BROKER_ACK_TIMEOUT_SECONDS must be between 600 and 86400")
# Each worker host's own queue name (tests and drills name theirs; production keeps "celery").
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery").strip() or "celery"
if BROKER_AMQP:
    # publisher confirms: a task is only "sent" once RabbitMQ has it (nothing lost on a broker restart)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {"confirm_publish": True}
    CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
elif CELERY_BROKER_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CONDUIT_BROKER_ACK_TIMEOUT_SECONDS}
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    for sub in ("in", "processed", "control"):
        (CELERY_DATA_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DATA_DIR / "in"),
        "data_folder_out": str(CELERY_DATA_DIR / "in"),
        "processed_folder": str(CELERY_DATA_DIR / "processed"),
        "control_folder": str(CELERY_DATA_DIR / "control"),
        "store_processed": False,
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_TASK_IGNORE_RESULT = True
# one run per job and slot however many beats run; an embedded beat dies with its worker
CELERY_BEAT_SCHEDULER = "conduit.beat:SingleRunScheduler"
CELERY_TIMEZONE = "UTC"
# /healthz reports beat as down when its last heartbeat is older than this.
CONDUIT_BEAT_STALE_SECONDS = env.int("CONDUIT_BEAT_STALE_SECONDS", default=180)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "settings-home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise expects it before the first collectstatic
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Email ingest ---
CONDUIT_MAX_MESSAGE_BYTES = env.int("CONDUIT_MAX_MESSAGE_BYTES", default=25 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = CONDUIT_MAX_MESSAGE_BYTES + 1024 * 1024
CONDUIT_INGEST_BATCH_SIZE = env.int("CONDUIT_INGEST_BATCH_SIZE", default=500)

# --- CRM providers (integrations/providers) ---
# Development points every provider at the local sandbox servers (integrations/sandbox), so
# `make run` works offline; production refuses the sandbox and any plain-http provider URL.
CONDUIT_SANDBOX = env.bool("CONDUIT_SANDBOX", default=not PRODUCTION)
if PRODUCTION and CONDUIT_SANDBOX:
    raise ImproperlyConfigured("CONDUIT_SANDBOX must be false in production")
SANDBOX_HOST = env.str("SANDBOX_HOST", default="127.0.0.1")
SANDBOX_HUBSPOT_PORT = env.int("SANDBOX_HUBSPOT_PORT", default=8701)
SANDBOX_SALESFORCE_PORT = env.int("SANDBOX_SALESFORCE_PORT", default=8702)
SANDBOX_ZOHO_PORT = env.int("SANDBOX_ZOHO_PORT", default=8703)
SANDBOX_ODOO_PORT = env.int("SANDBOX_ODOO_PORT", default=8704)
SANDBOX_GOOGLE_PORT = env.int("SANDBOX_GOOGLE_PORT", default=8705)
SANDBOX_MICROSOFT_PORT = env.int("SANDBOX_MICROSOFT_PORT", default=8706)
SANDBOX_GREENHOUSE_PORT = env.int("SANDBOX_GREENHOUSE_PORT", default=8707)
SANDBOX_LEVER_PORT = env.int("SANDBOX_LEVER_PORT", default=8708)
SANDBOX_WORKDAY_PORT = env.int("SANDBOX_WORKDAY_PORT", default=8709)
_hubspot_sandbox = f"http://{SANDBOX_HOST}:{SANDBOX_HUBSPOT_PORT}"
_salesforce_sandbox = f"http://{SANDBOX_HOST}:{SANDBOX_SALESFORCE_PORT}"
_zoho_sandbox = f"http://{SANDBOX_HOST}:{SANDBOX_ZOHO_PORT}"
# Odoo has no fixed provider URL (each customer types their instance's); in development the
# credentials form suggests the sandbox's.
ODOO_SANDBOX_URL = f"http://{SANDBOX_HOST}:{SANDBOX_ODOO_PORT}" if CONDUIT_SANDBOX else ""


def provider_url(name: str, real: str, sandbox: str) -> str:
    value = env.str(name, default=sandbox if CONDUIT_SANDBOX else real).rstrip("/")
    if PRODUCTION and not value.startswith("https://"):
        raise ImproperlyConfigured(f"{name} must be an https:// URL in production")
    if PRODUCTION and (points_at_this_machine(value) or urlsplit(value).hostname == SANDBOX_HOST):
        raise ImproperlyConfigured(f"{name} must not point at a local sandbox in production")
    return value


HUBSPOT_AUTHORIZE_URL = provider_url(
    "HUBSPOT_AUTHORIZE_URL", "https://app.hubspot.com/oauth/authorize", f"{_hubspot_sandbox}/oauth/authorize"
)
HUBSPOT_API_BASE_URL = provider_url("HUBSPOT_API_BASE_URL", "https://api.hubapi.com", _hubspot_sandbox)
SALESFORCE_LOGIN_URL = provider_url(
    "SALESFORCE_LOGIN_URL", "https://login.salesforce.com", _salesforce_sandbox
)
SALESFORCE_TEST_URL = provider_url("SALESFORCE_TEST_URL", "https://test.salesforce.com", _salesforce_sandbox)
SALESFORCE_API_VERSION = env.str("SALESFORCE_API_VERSION", default="v66.0")
# Extra instance_url origins trusted besides Salesforce's own domains: the sandbox, in development only.
SALESFORCE_EXTRA_INSTANCE_ORIGINS = [_salesforce_sandbox] if CONDUIT_SANDBOX else []
# Zoho: consent starts at ZOHO_ACCOUNTS_URL; the callback names the account's data centre
# (accounts server), whose token response names its API domain (integrations/providers/zoho.py).
ZOHO_ACCOUNTS_URL = provider_url("ZOHO_ACCOUNTS_URL", "https://accounts.zoho.com", _zoho_sandbox)
ZOHO_API_VERSION = env.str("ZOHO_API_VERSION", default="v7")
# Extra accounts-server and API-domain origins trusted besides Zoho's own: the sandbox, in development only.
ZOHO_EXTRA_ORIGINS = [_zoho_sandbox] if CONDUIT_SANDBOX else []
# ATS connected by credentials. Greenhouse Harvest v3 (client credentials) and Lever
# have one API host each; Workday has one per customer tenant, typed on the form and checked
# against Workday's own domains (the sandbox's origin is trusted in development only).
GREENHOUSE_API_BASE_URL = provider_url(
    "GREENHOUSE_API_BASE_URL",
    "https://harvest.greenhouse.io",
    f"http://{SANDBOX_HOST}:{SANDBOX_GREENHOUSE_PORT}",
)
GREENHOUSE_TOKEN_URL = provider_url(
    "GREENHOUSE_TOKEN_URL",
    "https://auth.greenhouse.io/token",
    f"http://{SANDBOX_HOST}:{SANDBOX_GREENHOUSE_PORT}/token",
)
LEVER_API_BASE_URL = provider_url(
    "LEVER_API_BASE_URL", "https://api.lever.co/v1", f"http://{SANDBOX_HOST}:{SANDBOX_LEVER_PORT}/v1"
)
WORKDAY_SANDBOX_URL = f"http://{SANDBOX_HOST}:{SANDBOX_WORKDAY_PORT}" if CONDUIT_SANDBOX else ""
WORKDAY_EXTRA_ORIGINS = [WORKDAY_SANDBOX_URL] if CONDUIT_SANDBOX else []

_sandbox_credentials = {
    "HUBSPOT_CLIENT_ID": "conduit-sandbox-hubspot",
    "HUBSPOT_CLIENT_SECRET": "sandbox-hubspot-client-secret",
    "SALESFORCE_CLIENT_ID": "conduit-sandbox-salesforce",
    "SALESFORCE_CLIENT_SECRET": "sandbox-salesforce-client-secret",
    "ZOHO_CLIENT_ID": "conduit-sandbox-zoho",
    "ZOHO_CLIENT_SECRET": "sandbox-zoho-client-secret",
    "GOOGLE_CLIENT_ID": "conduit-sandbox-google",
    "GOOGLE_CLIENT_SECRET": "sandbox-google-client-secret",
    "MICROSOFT_CLIENT_ID": "conduit-sandbox-microsoft",
    "MICROSOFT_CLIENT_SECRET": "sandbox-microsoft-client-secret",
}


def client_credential(name: str) -> str:
    """OAuth app credentials; optional (a provider without them refuses to connect)."""
    return env.str(name, default="" if PRODUCTION else _sandbox_credentials[name]).strip()


HUBSPOT_CLIENT_ID = client_credential("HUBSPOT_CLIENT_ID")
HUBSPOT_CLIENT_SECRET = client_credential("HUBSPOT_CLIENT_SECRET")
SALESFORCE_CLIENT_ID = client_credential("SALESFORCE_CLIENT_ID")
SALESFORCE_CLIENT_SECRET = client_credential("SALESFORCE_CLIENT_SECRET")
ZOHO_CLIENT_ID = client_credential("ZOHO_CLIENT_ID")
ZOHO_CLIENT_SECRET = client_credential("ZOHO_CLIENT_SECRET")

# OAuth: the callback URL is CONDUIT_PUBLIC_URL + /integrations/oauth/callback/<crm>/, exactly as
# registered with the provider.
if PRODUCTION:
    CONDUIT_PUBLIC_URL = required("CONDUIT_PUBLIC_URL").rstrip("/")
    if not CONDUIT_PUBLIC_URL.startswith("https://"):
        raise ImproperlyConfigured("CONDUIT_PUBLIC_URL must be an https:// URL in production")
else:
    CONDUIT_PUBLIC_URL = env.str("CONDUIT_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
CONDUIT_OAUTH_STATE_TTL_SECONDS = env.int("CONDUIT_OAUTH_STATE_TTL_SECONDS", default=600)
if not 60 <= CONDUIT_OAUTH_STATE_TTL_SECONDS <= 3600:
    raise ImproperlyConfigured("CONDUIT_OAUTH_STATE_TTL_SECONDS must be between 60 and 3600")
CONDUIT_PENDING_INSTALL_TTL_HOURS = env.int("CONDUIT_PENDING_INSTALL_TTL_HOURS", default=24)
if not 1 <= CONDUIT_PENDING_INSTALL_TTL_HOURS <= 24 * 30:
    raise ImproperlyConfigured("CONDUIT_PENDING_INSTALL_TTL_HOURS must be between 1 and 720")
# HubSpot access tokens are refreshed this long before they expire.
CONDUIT_TOKEN_REFRESH_MARGIN_SECONDS = env.int("CONDUIT_TOKEN_REFRESH_MARGIN_SECONDS", default=300)
if not 0 <= CONDUIT_TOKEN_REFRESH_MARGIN_SECONDS <= 1500:
    raise ImproperlyConfigured("CONDUIT_TOKEN_REFRESH_MARGIN_SECONDS must be between 0 and 1500")

# HTTP: (connect, read) seconds on every provider call.
CONDUIT_PROVIDER_TIMEOUT = (
    env.float("CONDUIT_PROVIDER_CONNECT_TIMEOUT", default=5.0),
    env.float("CONDUIT_PROVIDER_READ_TIMEOUT", default=20.0),
)
# Shared rate limiter (integrations/providers/ratelimit.py): share of the provider's limit Conduit spends.
CONDUIT_RATE_BUDGET = env.float("CONDUIT_RATE_BUDGET", default=0.92)
if not 0.1 <= CONDUIT_RATE_BUDGET <= 1.0:
    raise ImproperlyConfigured("CONDUIT_RATE_BUDGET must be between 0.1 and 1.0")
HUBSPOT_TEN_SECOND_LIMIT = env.int("HUBSPOT_TEN_SECOND_LIMIT", default=110)
HUBSPOT_SEARCH_PER_SECOND = env.int("HUBSPOT_SEARCH_PER_SECOND", default=5)
# Longest a call waits in-process for a pacing slot before it is handed back as RateLimited.
CONDUIT_RATE_MAX_WAIT_SECONDS = env.float("CONDUIT_RATE_MAX_WAIT_SECONDS", default=15.0)
# Retry-After is honoured but clamped, so a bogus header cannot park an account for days.
CONDUIT_RETRY_AFTER_MAX_SECONDS = env.int("CONDUIT_RETRY_AFTER_MAX_SECONDS", default=3600)
SALESFORCE_DAILY_PAUSE_RATIO = env.float("SALESFORCE_DAILY_PAUSE_RATIO", default=0.8)
SALESFORCE_DAILY_PAUSE_SECONDS = env.int("SALESFORCE_DAILY_PAUSE_SECONDS", default=3600)
# Zoho CRM: concurrent calls per org (Standard edition: 10), paced as calls per second; the wait
# after a concurrency refusal, and after the org's 24-hour API credits run out.
ZOHO_CONCURRENCY_LIMIT = env.int("ZOHO_CONCURRENCY_LIMIT", default=10)
ZOHO_CONCURRENCY_RETRY_SECONDS = env.int("ZOHO_CONCURRENCY_RETRY_SECONDS", default=5)
ZOHO_CREDITS_RETRY_SECONDS = env.int("ZOHO_CREDITS_RETRY_SECONDS", default=3600)
CONDUIT_RATE_LIMIT_DIR = VAR_DIR / "ratelimit"
# Odoo (integrations/providers/odoo.py, pinned.py): the instance URL is the customer's own host.
# Plain http with any port, and the private address the sandbox listens on, are for development
# and tests only; production refuses both.
CONDUIT_ODOO_ALLOW_INSECURE = env.bool("CONDUIT_ODOO_ALLOW_INSECURE", default=not PRODUCTION)
CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS = env.list(
    "CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS", default=[SANDBOX_HOST] if CONDUIT_SANDBOX else []
)
if PRODUCTION and CONDUIT_ODOO_ALLOW_INSECURE:
    raise ImproperlyConfigured("CONDUIT_ODOO_ALLOW_INSECURE must be false in production")
if PRODUCTION and CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS:
    raise ImproperlyConfigured("CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS must be empty in production")
# Odoo documents no API rate limit [verify]: Conduit paces itself per instance and database.
ODOO_REQUESTS_PER_SECOND = env.int("ODOO_REQUESTS_PER_SECOND", default=10)
# The ATS (integrations/providers/greenhouse.py, lever.py, workday.py): Greenhouse Harvest allows
# 50 requests per 10 seconds [verify]; Lever about 10 per second (bursts of 20); Workday publishes
# no limit [verify], so Conduit paces itself at 10 per second per tenant.
GREENHOUSE_TEN_SECOND_LIMIT = env.int("GREENHOUSE_TEN_SECOND_LIMIT", default=50)
LEVER_REQUESTS_PER_SECOND = env.int("LEVER_REQUESTS_PER_SECOND", default=10)
WORKDAY_REQUESTS_PER_SECOND = env.int("WORKDAY_REQUESTS_PER_SECOND", default=10)

# --- Curated CRM writes (reconcile/) ---
# True forces dry run on every connection: writes are planned and shown, never sent.
CONDUIT_FORCE_DRY_RUN = env.bool("CONDUIT_FORCE_DRY_RUN", default=False)


def _int_in(name: str, default: int, low: int, high: int) -> int:
    value = env.int(name, default=default)
    if not low <= value <= high:
        raise ImproperlyConfigured(f"{name} must be between {low} and {high}")
    return value


# Full-jitter backoff: the n-th retry waits random(0, min(cap, base * 2**n)) seconds.
CONDUIT_WRITE_BACKOFF_BASE_SECONDS = _int_in("CONDUIT_WRITE_BACKOFF_BASE_SECONDS", 30, 1, 3600)
CONDUIT_WRITE_BACKOFF_CAP_SECONDS = _int_in("CONDUIT_WRITE_BACKOFF_CAP_SECONDS", 6 * 3600, 60, 7 * 86400)
# Failed attempts (transient errors) before a write becomes a permanent failure.
CONDUIT_WRITE_MAX_ATTEMPTS = _int_in("CONDUIT_WRITE_MAX_ATTEMPTS", 8, 1, 50)
# A claimed write not finished within the lease is swept back to the queue (outcome checked first).
CONDUIT_WRITE_LEASE_SECONDS = _int_in("CONDUIT_WRITE_LEASE_SECONDS", 600, 60, 3600)
# A write whose outcome is unknown is looked up by its marker no sooner than this (HubSpot's
# search index lags new records by a few seconds).
CONDUIT_WRITE_RECHECK_DELAY_SECONDS = _int_in("CONDUIT_WRITE_RECHECK_DELAY_SECONDS", 120, 0, 3600)
# Rows claimed per statement and at most per reconcile run.
CONDUIT_RECONCILE_BATCH_SIZE = _int_in("CONDUIT_RECONCILE_BATCH_SIZE", 500, 1, 10000)
CONDUIT_RECONCILE_LIMIT = _int_in("CONDUIT_RECONCILE_LIMIT", 5000, 1, 1_000_000)
# Claimed writes per delivery task: read in one statement, their successes and sync logs stored
# when the task ends. Smaller spreads a batch over more workers; larger costs less per write.
CONDUIT_DELIVERY_GROUP_SIZE = _int_in("CONDUIT_DELIVERY_GROUP_SIZE", 25, 1, 500)
# A short Retry-After is re-enqueued with a countdown; anything longer waits for reconcile
# (a countdown must stay far below the broker's visibility timeout).
CONDUIT_WRITE_REQUEUE_MAX_SECONDS = _int_in("CONDUIT_WRITE_REQUEUE_MAX_SECONDS", 60, 0, 600)
# Contact -> deal lookups older than this are refreshed from the CRM before a write.
CONDUIT_DEAL_MAPPING_TTL_HOURS = _int_in("CONDUIT_DEAL_MAPPING_TTL_HOURS", 24, 1, 24 * 30)
# At most this many external participants of one message get a write (a mass mail is not activity).
CONDUIT_MAX_WRITES_PER_MESSAGE = _int_in("CONDUIT_MAX_WRITES_PER_MESSAGE", 10, 1, 100)

# --- Connection health (integrations/health/checks.py) ---
# Checks run at most this many at once per worker process (each waits on the provider).
CONDUIT_HEALTH_CONCURRENCY = _int_in("CONDUIT_HEALTH_CONCURRENCY", 8, 1, 64)
# The hourly run spreads its checks over this many seconds, in CONDUIT_HEALTH_WAVES waves.
CONDUIT_HEALTH_SPREAD_SECONDS = _int_in(
    "CONDUIT_HEALTH_SPREAD_SECONDS", min(3000, CONDUIT_BROKER_ACK_TIMEOUT_SECONDS - 300), 0, 3300
)
if CONDUIT_HEALTH_SPREAD_SECONDS > CONDUIT_BROKER_ACK_TIMEOUT_SECONDS - 300:
    raise ImproperlyConfigured(
        "CONDUIT_HEALTH_SPREAD_SECONDS must stay 300 s below CONDUIT_BROKER_ACK_TIMEOUT_SECONDS "
        "(raise RabbitMQ's consumer_timeout and CONDUIT_BROKER_ACK_TIMEOUT_SECONDS together)"
    )
CONDUIT_HEALTH_WAVES = _int_in("CONDUIT_HEALTH_WAVES", 12, 1, 60)
# Consecutive checks the CRM refuses Conduit's token before the connection goes to error.
CONDUIT_HEALTH_AUTH_FAILURES_TO_ERROR = _int_in("CONDUIT_HEALTH_AUTH_FAILURES_TO_ERROR", 2, 1, 24)
# Refusals less than this apart extend the run once (a sustained run, not one outage checked twice).
CONDUIT_HEALTH_AUTH_RUN_SPACING_SECONDS = _int_in("CONDUIT_HEALTH_AUTH_RUN_SPACING_SECONDS", 1800, 0, 3600)
# "Check now" on the Integrations page runs at most once per connection in this many seconds.
CONDUIT_HEALTH_CHECK_NOW_COOLDOWN_SECONDS = _int_in("CONDUIT_HEALTH_CHECK_NOW_COOLDOWN_SECONDS", 60, 0, 3600)

# --- Webhook inbox (integrations/webhooks/) ---
# A signed delivery older (or further in the future) than this is refused (HubSpot v3: 5 minutes).
CONDUIT_WEBHOOK_MAX_AGE_SECONDS = _int_in("CONDUIT_WEBHOOK_MAX_AGE_SECONDS", 300, 30, 3600)
# Largest webhook body accepted; a bigger one is refused with 413 before it is read. At most
# Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB), above which Django itself refuses to read a body.
CONDUIT_WEBHOOK_MAX_BODY_BYTES = _int_in("CONDUIT_WEBHOOK_MAX_BODY_BYTES", 1024 * 1024, 1024, 2621440)
# Processing attempts of one stored event before it stays failed (replay resets the count).
CONDUIT_WEBHOOK_MAX_ATTEMPTS = _int_in("CONDUIT_WEBHOOK_MAX_ATTEMPTS", 5, 1, 50)

# --- Sync cursors (integrations/cursors/): incremental pulls that keep mappings fresh ---
# A new cursor starts this many hours back.
CONDUIT_SYNC_PULL_INITIAL_HOURS = _int_in("CONDUIT_SYNC_PULL_INITIAL_HOURS", 24, 1, 24 * 30)
# Records asked for per page (HubSpot search allows 200, Salesforce returns up to 2000).
CONDUIT_SYNC_PULL_PAGE_SIZE = _int_in("CONDUIT_SYNC_PULL_PAGE_SIZE", 100, 1, 200)
# Pages one pull of one object reads at most; the cursor keeps its place for the next run.
CONDUIT_SYNC_PULL_MAX_PAGES = _int_in("CONDUIT_SYNC_PULL_MAX_PAGES", 50, 1, 1000)

# --- Calendar sync (integrations/calendars/, runbook 004) ---
# The runbook's kill switches: off, every calendar operation of that kind answers 403.
# Development turns them on for everyone ("*"); production starts with them off and refuses a
# flag on without both allowlists (a list of ids, or an explicit "*").
CALENDAR_SYNC_ENABLED = env.bool("CALENDAR_SYNC_ENABLED", default=not PRODUCTION)
CALENDAR_OAUTH_ENABLED = env.bool("CALENDAR_OAUTH_ENABLED", default=not PRODUCTION)
CALENDAR_JOBS_ENABLED = env.bool("CALENDAR_JOBS_ENABLED", default=not PRODUCTION)
CALENDAR_WEBHOOK_ENABLED = env.bool("CALENDAR_WEBHOOK_ENABLED", default=not PRODUCTION)
_calendar_default_allowlist = [] if PRODUCTION else ["*"]
# profiles.id values (provider_id) and external_calendar_connections.id values; "*" allows all.
CALENDAR_ALLOWLIST_PROVIDER_IDS = [
    v.strip()
    for v in env.list("CALENDAR_ALLOWLIST_PROVIDER_IDS", default=_calendar_default_allowlist)
    if v.strip()
]
CALENDAR_ALLOWLIST_CONNECTION_IDS = [
    v.strip()
    for v in env.list("CALENDAR_ALLOWLIST_CONNECTION_IDS", default=_calendar_default_allowlist)
    if v.strip()
]
_calendar_any_flag = (
    CALENDAR_SYNC_ENABLED or CALENDAR_OAUTH_ENABLED or CALENDAR_JOBS_ENABLED or CALENDAR_WEBHOOK_ENABLED
)
if PRODUCTION and _calendar_any_flag:
    for _name in ("CALENDAR_ALLOWLIST_PROVIDER_IDS", "CALENDAR_ALLOWLIST_CONNECTION_IDS"):
        if not globals()[_name]:
            raise ImproperlyConfigured(
                f"{_name} must list ids (or be an explicit *) when a calendar flag is on in production"
            )
_google_sandbox = f"http://{SANDBOX_HOST}:{SANDBOX_GOOGLE_PORT}"
_microsoft_sandbox = f"http://{SANDBOX_HOST}:{SANDBOX_MICROSOFT_PORT}"
GOOGLE_AUTHORIZE_URL = provider_url(
    "GOOGLE_AUTHORIZE_URL",
    "https://accounts.google.com/o/oauth2/v2/auth",
    f"{_google_sandbox}/o/oauth2/v2/auth",
)
GOOGLE_TOKEN_URL = provider_url(
    "GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token", f"{_google_sandbox}/token"
)
GOOGLE_REVOKE_URL = provider_url(
    "GOOGLE_REVOKE_URL", "https://oauth2.googleapis.com/revoke", f"{_google_sandbox}/revoke"
)
GOOGLE_CALENDAR_API_URL = provider_url(
    "GOOGLE_CALENDAR_API_URL", "https://www.googleapis.com/calendar/v3", f"{_google_sandbox}/calendar/v3"
)
GOOGLE_USERINFO_URL = provider_url(
    "GOOGLE_USERINFO_URL",
    "https://openidconnect.googleapis.com/v1/userinfo",
    f"{_google_sandbox}/v1/userinfo",
)
MICROSOFT_LOGIN_URL = provider_url(
    "MICROSOFT_LOGIN_URL", "https://login.microsoftonline.com", _microsoft_sandbox
)
MICROSOFT_TENANT = env.str("MICROSOFT_TENANT", default="common").strip() or "common"
MICROSOFT_GRAPH_URL = provider_url(
    "MICROSOFT_GRAPH_URL", "https://graph.microsoft.com/v1.0", f"{_microsoft_sandbox}/v1.0"
)
GOOGLE_CLIENT_ID = client_credential("GOOGLE_CLIENT_ID")
GOOGLE_CLIENT_SECRET = client_credential("GOOGLE_CLIENT_SECRET")
MICROSOFT_CLIENT_ID = client_credential("MICROSOFT_CLIENT_ID")
MICROSOFT_CLIENT_SECRET = client_credential("MICROSOFT_CLIENT_SECRET")
_calendar_callback = CONDUIT_PUBLIC_URL + "/settings/calendar/callback/{}/"
GOOGLE_REDIRECT_URI = env.str("GOOGLE_REDIRECT_URI", default=_calendar_callback.format("google")).strip()
MICROSOFT_REDIRECT_URI = env.str(
    "MICROSOFT_REDIRECT_URI", default=_calendar_callback.format("microsoft")
).strip()
if PRODUCTION and (CALENDAR_OAUTH_ENABLED or CALENDAR_SYNC_ENABLED):
    if not (GOOGLE_CLIENT_ID or MICROSOFT_CLIENT_ID):
        raise ImproperlyConfigured(
            "CALENDAR_OAUTH_ENABLED / CALENDAR_SYNC_ENABLED need GOOGLE_CLIENT_ID and _SECRET or "
            "MICROSOFT_CLIENT_ID and _SECRET in production"
        )
    for _prefix in ("GOOGLE", "MICROSOFT"):
        _values = {k: globals()[f"{_prefix}_{k}"] for k in ("CLIENT_ID", "CLIENT_SECRET")}
        if any(_values.values()) and not all(_values.values()):
            _missing = next(k for k, v in _values.items() if not v)
            raise ImproperlyConfigured(
                f"{_prefix}_{_missing} must be set when {_prefix}_CLIENT_ID or _SECRET is"
            )
        if _values["CLIENT_ID"] and not globals()[f"{_prefix}_REDIRECT_URI"].startswith("https://"):
            raise ImproperlyConfigured(f"{_prefix}_REDIRECT_URI must be an https:// URL in production")
# Where push notifications are sent (Google channels, Graph subscriptions); https in production.
CALENDAR_WEBHOOK_BASE_URL = env.str("CALENDAR_WEBHOOK_BASE_URL", default=CONDUIT_PUBLIC_URL).rstrip("/")
if PRODUCTION and not CALENDAR_WEBHOOK_BASE_URL.startswith("https://"):
    raise ImproperlyConfigured("CALENDAR_WEBHOOK_BASE_URL must be an https:// URL in production")
# The first sync reads this window of events around now; later syncs are incremental.
CALENDAR_SYNC_PAST_DAYS = _int_in("CALENDAR_SYNC_PAST_DAYS", 30, 1, 365)
CALENDAR_SYNC_FUTURE_DAYS = _int_in("CALENDAR_SYNC_FUTURE_DAYS", 90, 1, 730)
# A connection not synced for this long is due again even without a push (runbook: 1 hour).
CALENDAR_SYNC_STALE_MINUTES = _int_in("CALENDAR_SYNC_STALE_MINUTES", 60, 1, 24 * 60)
# Connections one job pass syncs at most, and at once.
CALENDAR_JOB_BATCH_SIZE = _int_in("CALENDAR_JOB_BATCH_SIZE", 200, 1, 10000)
CALENDAR_JOB_CONCURRENCY = _int_in("CALENDAR_JOB_CONCURRENCY", 4, 1, 64)
# Pages one sync of one connection reads at most; the rest waits for the next pass.
CALENDAR_SYNC_MAX_PAGES = _int_in("CALENDAR_SYNC_MAX_PAGES", 50, 1, 1000)
# After a failed sync: backoff_until = now + min(cap, base * 2**(error_count-1)).
CALENDAR_BACKOFF_BASE_SECONDS = _int_in("CALENDAR_BACKOFF_BASE_SECONDS", 60, 1, 3600)
CALENDAR_BACKOFF_CAP_SECONDS = _int_in("CALENDAR_BACKOFF_CAP_SECONDS", 6 * 3600, 60, 7 * 86400)
# Push channels (Google) and subscriptions (Graph, at most ~3 days) are renewed this long before they end.
CALENDAR_CHANNEL_RENEW_BEFORE_HOURS = _int_in("CALENDAR_CHANNEL_RENEW_BEFORE_HOURS", 12, 1, 48)
# Google Calendar: 600 queries / minute / user by default [verify per project quota]; Graph
# (Outlook): about 10,000 requests / 10 min / app / mailbox. Conduit's budget per account.
GOOGLE_CALENDAR_REQUESTS_PER_MINUTE = _int_in("GOOGLE_CALENDAR_REQUESTS_PER_MINUTE", 500, 1, 100000)
MICROSOFT_GRAPH_REQUESTS_PER_TEN_MINUTES = _int_in(
    "MICROSOFT_GRAPH_REQUESTS_PER_TEN_MINUTES", 9000, 1, 100000
)

# --- Retention (retention/) ---
# Defaults for a workspace's policy (a blank field in the form means "use the default").
CONDUIT_RETENTION_MESSAGE_DAYS = _int_in("CONDUIT_RETENTION_MESSAGE_DAYS", 365, 1, 3650)
CONDUIT_RETENTION_ATTACHMENT_DAYS = _int_in("CONDUIT_RETENTION_ATTACHMENT_DAYS", 180, 1, 3650)
CONDUIT_RETENTION_SYNC_LOG_DAYS = _int_in("CONDUIT_RETENTION_SYNC_LOG_DAYS", 30, 1, 3650)
# Rows changed per purge transaction (each batch commits on its own, so locks stay short).
CONDUIT_PURGE_BATCH_SIZE = _int_in("CONDUIT_PURGE_BATCH_SIZE", 5000, 10, 50000)

# --- Metrics: prometheus-client in multiprocess mode (gunicorn workers + Celery share one dir) ---
CONDUIT_METRICS_TOKEN = env.str("CONDUIT_METRICS_TOKEN", default="").strip()
if CONDUIT_METRICS_TOKEN and len(CONDUIT_METRICS_TOKEN) < 24:
    raise ImproperlyConfigured("CONDUIT_METRICS_TOKEN must be at least 24 characters")
PROMETHEUS_MULTIPROC_DIR = Path(env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus")))
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
# prometheus_client reads this variable when it is first imported, in every process.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)
# A worker-only host serves its own directory's metrics on this port (0: off; the web host's
# /metrics covers a host that runs both). integrations/providers/metrics_host.py.
CONDUIT_WORKER_METRICS_PORT = _int_in("CONDUIT_WORKER_METRICS_PORT", 0, 0, 65535)
CONDUIT_WORKER_METRICS_BIND = env.str("CONDUIT_WORKER_METRICS_BIND", default="127.0.0.1").strip()
if PRODUCTION and CONDUIT_WORKER_METRICS_PORT and not CONDUIT_METRICS_TOKEN:
    raise ImproperlyConfigured("CONDUIT_WORKER_METRICS_PORT needs CONDUIT_METRICS_TOKEN (the scraper's)")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "conduit.api_auth.WorkspaceTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["conduit.api_auth.HasWorkspace"],
    "EXCEPTION_HANDLER": "conduit.api_errors.json_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Conduit API",
    "DESCRIPTION": (
        "Customer endpoints take a workspace API token (Authorization: Bearer cdt_...); operator "
        "endpoints (/api/v1/admin/*, /api/v1/health, /api/v1/sync/logs, /api/v1/system-metrics/*) take "
        'an operator token (Bearer cds_...). Every error is JSON: {"code": ..., "message": ...}.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "PREPROCESSING_HOOKS": ["conduit.api_schema.only_api_v1"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "CrmEnum": "integrations.models.CRM_CHOICES",
        "SyncLogStatusEnum": "integrations.models.SyncLog.Status",
        "WebhookEventStatusEnum": "integrations.models.WebhookEvent.Status",
        "SyncCursorObjectEnum": "integrations.models.SyncCursor.Object",
        "HealthVerdictEnum": ["ok", "degraded", "down"],
    },
}

# --- Security: production passes `manage.py check --deploy --fail-level WARNING` ---
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Logging: JSON lines, one redaction filter on every handler ---
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# Empty: console only. Else a file that also gets the provider-call and webhook lines (runbook 14).
CONDUIT_INTEGRATIONS_LOG = env.str("CONDUIT_INTEGRATIONS_LOG", default="")
if CONDUIT_INTEGRATIONS_LOG and not (
    Path(CONDUIT_INTEGRATIONS_LOG).is_absolute() and Path(CONDUIT_INTEGRATIONS_LOG).parent.is_dir()
):
    raise ImproperlyConfigured("CONDUIT_INTEGRATIONS_LOG must be an absolute path in an existing directory")
LOGGING = json_logging(LOG_LEVEL, ["django", "celery"], integrations_log=CONDUIT_INTEGRATIONS_LOG)
# urllib3's debug lines carry request paths (HubSpot puts tokens in some): never below WARNING.
LOGGING["loggers"]["urllib3"] = {"handlers": ["console"], "level": "WARNING", "propagate": False}
# Celery keeps Django's LOGGING (JSON + redaction) instead of installing its own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
