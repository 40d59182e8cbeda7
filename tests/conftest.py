"""Shared fixtures: `alice` and `bob` workspaces from one make_workspace factory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from conduit.models import Membership, Message, Profile, Workspace
from conduit.tenancy import system_scope

FIXTURES = Path(__file__).parent / "fixtures"
CI_MODE = os.environ.get("CONDUIT_REQUIRE_POSTGRES") == "1"
SCREENSHOT_DIR = os.environ.get("CONDUIT_SCREENSHOT_DIR")


def is_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CI_MODE and not is_postgres():
        raise pytest.UsageError("CONDUIT_REQUIRE_POSTGRES=1 but DATABASE_URL is not a Postgres URL")
    if CI_MODE:
        return  # in CI nothing may be skipped
    skip_pg = pytest.mark.skip(reason="needs Postgres: set DATABASE_URL")
    skip_browser = pytest.mark.skip(reason="needs /usr/bin/chromium")
    for item in items:
        if "postgres" in item.keywords and not is_postgres():
            item.add_marker(skip_pg)
        if "browser" in item.keywords and not Path("/usr/bin/chromium").exists():
            item.add_marker(skip_browser)


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings: Any, tmp_path: Path) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = str(tmp_path / "media")


@dataclass
class Tenant:
    workspace: Workspace
    user: User
    password: str

    def client(self) -> Client:
        client = Client()
        client.force_login(self.user)
        return client


PASSWORD = "correct horse battery staple"


@pytest.fixture
def make_workspace(db: None) -> Callable[..., Tenant]:
    def make(slug: str, *, role: str = Membership.Role.OWNER, email: str | None = None) -> Tenant:
        email = email or f"{slug}@example.com"
        with system_scope():
            workspace = Workspace.objects.create(slug=slug, name=slug.title())
            user = User.objects.create_user(username=email, email=email, password=PASSWORD)
            Profile.objects.create(user=user, email=email)
            Membership.objects.create(workspace=workspace, user=user, role=role)
        return Tenant(workspace, user, PASSWORD)

    return make


@pytest.fixture
def alice(make_workspace: Callable[..., Tenant]) -> Tenant:
    return make_workspace("alice")


@pytest.fixture
def bob(make_workspace: Callable[..., Tenant]) -> Tenant:
    return make_workspace("bob")


def make_message(workspace: Workspace, message_id: str, **fields: Any) -> Message:
    with system_scope():
        return Message.objects.create(
            workspace=workspace,
            message_id=message_id,
            subject=fields.pop("subject", f"Subject {message_id}"),
            from_address=fields.pop("from_address", "sender@example.com"),
            body_text=fields.pop("body_text", "hello"),
            **fields,
        )


def raw_email(
    message_id: str = "m1@example.com",
    *,
    subject: str = "Quarterly review",
    body: str = "Hello there,\nsee you Tuesday.\n",
    attachment: tuple[str, str, bytes] | None = None,
) -> bytes:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "Maya Lopez <maya@acme.example>"
    msg["To"] = "Sam <sam@alice.example>, Lee <lee@alice.example>"
    msg["Cc"] = "Priya <priya@alice.example>"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 16 Nov 2026 09:12:00 +0000"
    if message_id:
        msg["Message-ID"] = f"<{message_id}>"
    msg.set_content(body)
    msg.add_alternative(f"<p>{body}</p>", subtype="html")
    if attachment:
        name, ctype, data = attachment
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return bytes(msg)


@pytest.fixture
def capture_json_logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Attach a handler built exactly like the configured one and return its parsed lines."""
    import io
    import json
    import logging

    from conduit.logging import RedactSecrets, json_formatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    finally:
        root.removeHandler(handler)


@pytest.fixture(autouse=True)
def _fresh_rate_limits(settings: Any, tmp_path: Path) -> Iterator[None]:
    """Each test starts with empty rate-limit windows and no blocks (Redis or the file store)."""
    from integrations.providers import ratelimit

    settings.CONDUIT_RATE_LIMIT_DIR = tmp_path / "ratelimit"
    ratelimit._limiter_for.cache_clear()
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter("conduit-rl*"):
            client.delete(key)
    yield
    ratelimit._limiter_for.cache_clear()


FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


@pytest.fixture
def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        yield context.new_page()
        browser.close()


def shot(page: Any, tmp_path: Path, name: str) -> None:
    folder = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    assert (folder / f"{name}.png").stat().st_size > 5000


def sign_in(page: Any, url: str, tenant: Tenant) -> None:
    """Sign `tenant` in through the login page of the live server at `url` (browser tests)."""
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=username]", tenant.user.username)
    page.fill("input[name=password]", tenant.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/settings/")


@pytest.fixture(scope="session")
def sandboxes() -> Iterator[dict[str, str]]:
    """The sandbox CRMs on free ports for the whole run: {"hubspot": base_url, "salesforce": ...}."""
    from integrations.sandbox.server import start_sandbox

    running = {name: start_sandbox(name, port=0) for name in ("hubspot", "salesforce", "zoho", "odoo")}
    yield {name: sandbox.base_url for name, sandbox in running.items()}
    for sandbox in running.values():
        sandbox.stop()


@pytest.fixture
def crm_env(settings: Any, sandboxes: dict[str, str]) -> dict[str, str]:
    """Fresh sandboxes, with Conduit's provider settings pointing at them."""
    import requests

    for base in sandboxes.values():
        requests.post(f"{base}/_sandbox/reset", timeout=5)
    settings.CONDUIT_PUBLIC_URL = "http://testserver"
    settings.HUBSPOT_API_BASE_URL = sandboxes["hubspot"]
    settings.HUBSPOT_AUTHORIZE_URL = f"{sandboxes['hubspot']}/oauth/authorize"
    settings.SALESFORCE_LOGIN_URL = settings.SALESFORCE_TEST_URL = sandboxes["salesforce"]
    settings.SALESFORCE_EXTRA_INSTANCE_ORIGINS = [sandboxes["salesforce"]]
    zoho_sandbox(settings, sandboxes["zoho"])
    odoo_sandbox(settings, sandboxes["odoo"])
    return sandboxes


@pytest.fixture(scope="session")
def calendar_sandboxes() -> Iterator[dict[str, str]]:
    """The Google Calendar and Microsoft Graph sandboxes on free ports for the whole run."""
    from integrations.sandbox.server import start_sandbox

    running = {name: start_sandbox(name, port=0) for name in ("google", "microsoft")}
    yield {name: sandbox.base_url for name, sandbox in running.items()}
    for sandbox in running.values():
        sandbox.stop()


@pytest.fixture
def calendar_env(settings: Any, calendar_sandboxes: dict[str, str]) -> dict[str, str]:
    """Fresh calendar sandboxes, with Conduit's Google / Microsoft settings pointing at them."""
    import requests

    for base in calendar_sandboxes.values():
        requests.post(f"{base}/_sandbox/reset", timeout=5)
    google, microsoft = calendar_sandboxes["google"], calendar_sandboxes["microsoft"]
    settings.GOOGLE_AUTHORIZE_URL = f"{google}/o/oauth2/v2/auth"
    settings.GOOGLE_TOKEN_URL = f"{google}/token"
    settings.GOOGLE_REVOKE_URL = f"{google}/revoke"
    settings.GOOGLE_USERINFO_URL = f"{google}/v1/userinfo"
    settings.GOOGLE_CALENDAR_API_URL = f"{google}/calendar/v3"
    settings.MICROSOFT_LOGIN_URL = microsoft
    settings.MICROSOFT_GRAPH_URL = f"{microsoft}/v1.0"
    settings.CONDUIT_PUBLIC_URL = settings.CALENDAR_WEBHOOK_BASE_URL = "http://testserver"
    return calendar_sandboxes


def zoho_sandbox(settings: Any, base_url: str) -> None:
    """Point Zoho at its sandbox. Consent starts at `localhost`, while the sandbox's callback names
    its `127.0.0.1` origin as the account's data centre, whose token endpoint refuses requests that
    reach it under another host name: only a client that follows `accounts-server` gets through."""
    settings.ZOHO_ACCOUNTS_URL = base_url.replace("://127.0.0.1:", "://localhost:")
    settings.ZOHO_EXTRA_ORIGINS = [base_url]


def odoo_sandbox(settings: Any, base_url: str) -> None:
    """Let Odoo reach its sandbox: a customer-typed instance URL may use plain http and the
    sandbox's 127.0.0.1 only in development and tests (production refuses both). Odoo has no
    provider URL setting; the credentials form suggests ODOO_SANDBOX_URL."""
    settings.CONDUIT_ODOO_ALLOW_INSECURE = True
    settings.CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    settings.ODOO_SANDBOX_URL = base_url
