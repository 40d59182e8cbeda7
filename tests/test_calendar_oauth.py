"""A member's calendar grant: connect (flags, allowlist, configuration), the callback (single-use
state bound to user and provider, declined consent, missing calendar scope, encrypted tokens,
reconnect), disconnect (tokens, channel and events gone, audited) and Sync now. The provider is
a fake here; the real providers are tested in test_calendar_provider_*.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from conduit.models import AuditEvent, Profile
from conduit.tenancy import system_scope
from integrations.calendars import flags, jobs, push, tokens
from integrations.calendars import oauth as calendar_oauth
from integrations.connections.oauth import hash_state
from integrations.models import ExternalCalendarConnection, ExternalCalendarEvent, OAuthState
from integrations.providers.base import Account, ExternalAccount, TokenSet
from integrations.providers.calendar_base import PushChannel
from integrations.providers.errors import Permanent, ProviderError, Transient
from tests.conftest import Tenant

CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.readonly"
ACCESS = "ya29.access-token-ALPHA-0123456789"
REFRESH = "1//refresh-token-BRAVO-0123456789"


@dataclass
class FakeCalendar:
    """Stands in for GoogleCalendarProvider / MicrosoftCalendarProvider: records calls, answers
    what the test sets."""

    name: str = "google"
    required_scopes: tuple[str, ...] = (CALENDAR_SCOPE,)
    email: str = "alice@gmail.example"
    scopes: tuple[str, ...] = ("openid", "email", CALENDAR_SCOPE)
    access: str = ACCESS
    refresh_token: str | None = REFRESH
    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail: dict[str, ProviderError | list[ProviderError]] = field(default_factory=dict)
    channel_seq: int = 0

    def _maybe_fail(self, op: str) -> None:
        error = self.fail.get(op)
        if isinstance(error, list):
            if error:
                raise error.pop(0)
        elif error is not None:
            raise error

    def authorize_url(self, *, state: str, redirect_uri: str, code_challenge: str | None = None) -> str:
        self.calls.append(("authorize_url", redirect_uri))
        self._maybe_fail("authorize_url")
        return f"https://accounts.example/auth?state={state}&code_challenge={code_challenge}"

    def exchange_code(
        self, *, code: str, redirect_uri: str, code_verifier: str | None, context: Any
    ) -> TokenSet:
        self.calls.append(("exchange_code", (code, redirect_uri, code_verifier)))
        self._maybe_fail("exchange_code")
        return TokenSet(
            access_token=self.access,
            refresh_token=self.refresh_token,
            expires_at=timezone.now() + timedelta(hours=1),
            scopes=self.scopes,
        )

    def identify(self, tokens: TokenSet, *, context: Any) -> ExternalAccount:
        self.calls.append(("identify", None))
        self._maybe_fail("identify")
        return ExternalAccount(key=self.email, details={}, scopes=tokens.scopes, user_email=self.email)

    def missing_scopes(self, granted: list[str]) -> list[str]:
        return [s for s in self.required_scopes if s not in granted]

    def refresh(self, refresh_token: str, *, context: Any) -> TokenSet:
        self.calls.append(("refresh", refresh_token))
        self._maybe_fail("refresh")
        self.access = f"{self.access}-r"
        return TokenSet(
            access_token=self.access,
            refresh_token=f"{refresh_token}-rotated" if self.name == "microsoft" else None,
            expires_at=timezone.now() + timedelta(hours=1),
        )

    def revoke(self, token: str, *, context: Any) -> None:
        self.calls.append(("revoke", token))
        self._maybe_fail("revoke")

    def watch(self, account: Account, *, address: str, secret: str, channel_id: str) -> PushChannel:
        self.calls.append(("watch", (account.access_token, address, secret)))
        self._maybe_fail("watch")
        self.channel_seq += 1
        return PushChannel(
            channel_id=f"chan-{self.channel_seq}",
            resource_id="" if self.name == "microsoft" else f"res-{self.channel_seq}",
            expires_at=timezone.now() + timedelta(days=3),
        )

    def renew(self, account: Account, channel: PushChannel, *, address: str, secret: str) -> PushChannel:
        self.calls.append(("renew", (channel.channel_id, address, secret)))
        self._maybe_fail("renew")
        return PushChannel(channel.channel_id, channel.resource_id, timezone.now() + timedelta(days=3))

    def stop(self, account: Account, channel: PushChannel) -> None:
        self.calls.append(("stop", channel.channel_id))
        self._maybe_fail("stop")

    def called(self, op: str) -> list[Any]:
        return [args for name, args in self.calls if name == op]


def switch_on(settings: Any) -> None:
    """Every calendar switch on for everyone (push off unless a test turns it on), both apps set."""
    settings.CALENDAR_OAUTH_ENABLED = True
    settings.CALENDAR_SYNC_ENABLED = True
    settings.CALENDAR_JOBS_ENABLED = True
    settings.CALENDAR_WEBHOOK_ENABLED = False
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = ["*"]
    settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = ["*"]
    settings.GOOGLE_CLIENT_ID = "conduit.apps.googleusercontent.example"
    settings.MICROSOFT_CLIENT_ID = "00000000-aaaa"
    settings.GOOGLE_REDIRECT_URI = "http://testserver/settings/calendar/callback/google/"
    settings.MICROSOFT_REDIRECT_URI = "http://testserver/settings/calendar/callback/microsoft/"
    settings.CALENDAR_WEBHOOK_BASE_URL = "https://conduit.example"


def install_fakes(monkeypatch: pytest.MonkeyPatch, settings: Any) -> dict[str, FakeCalendar]:
    """Switches on, and a fake provider per calendar wherever the calendar room looks one up."""
    switch_on(settings)
    made = {"google": FakeCalendar("google"), "microsoft": FakeCalendar("microsoft")}
    for module in (calendar_oauth, tokens, push):
        monkeypatch.setattr(module, "get_calendar_provider", made.__getitem__)
    return made


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, settings: Any) -> dict[str, FakeCalendar]:
    return install_fakes(monkeypatch, settings)


@pytest.fixture
def fake(fakes: dict[str, FakeCalendar]) -> FakeCalendar:
    return fakes["google"]


def profile_of(tenant: Tenant) -> Profile:
    with system_scope():
        return Profile.objects.get(user=tenant.user)


def make_connection(tenant: Tenant, provider: str = "google", **fields: Any) -> ExternalCalendarConnection:
    values: dict[str, Any] = {
        "status": "connected",
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "token_expiry": timezone.now() + timedelta(hours=1),
        "account_email": "alice@gmail.example",
        "granted_scopes": [CALENDAR_SCOPE],
    }
    with system_scope():
        return ExternalCalendarConnection.objects.create(
            workspace=tenant.workspace, profile=profile_of(tenant), provider=provider, **{**values, **fields}
        )


def make_event(conn: ExternalCalendarConnection, external_id: str) -> ExternalCalendarEvent:
    with system_scope():
        return ExternalCalendarEvent.objects.create(
            workspace_id=conn.workspace_id,
            profile_id=conn.profile_id,
            connection=conn,
            external_id=external_id,
            title="Quarterly review",
        )


def start(client: Client, provider: str = "google") -> str:
    """Press Connect; return the raw state from the provider URL."""
    resp = client.post(f"/settings/calendar/{provider}/connect/")
    assert resp.status_code == 302, resp.content
    return parse_qs(urlparse(resp["Location"]).query)["state"][0]


def finish(client: Client, provider: str = "google", **params: str) -> Any:
    return client.get(f"/settings/calendar/callback/{provider}/", params)


def live(tenant: Tenant, provider: str = "google") -> ExternalCalendarConnection | None:
    with system_scope():
        return (
            ExternalCalendarConnection.objects.filter(workspace=tenant.workspace, provider=provider)
            .exclude(status="disconnected")
            .first()
        )


def audits(event: str) -> list[AuditEvent]:
    with system_scope():
        return list(AuditEvent.objects.filter(event=event))


def flashed(resp: Any) -> list[str]:
    return [str(m) for m in resp.wsgi_request._messages]


# --- connect ---


def test_connect_redirects_to_the_provider_with_a_bound_single_use_state(
    alice: Tenant, fake: FakeCalendar
) -> None:
    resp = alice.client().post("/settings/calendar/google/connect/")
    assert resp.status_code == 302
    query = parse_qs(urlparse(resp["Location"]).query)
    raw, challenge = query["state"][0], query["code_challenge"][0]
    assert challenge and challenge != "None"
    with system_scope():
        state = OAuthState.objects.get(state_hash=hash_state(raw))
    assert (state.crm, state.workspace_id, state.user_id) == ("google", alice.workspace.pk, alice.user.pk)
    assert state.code_verifier and state.used_at is None and state.expires_at > timezone.now()
    assert fake.called("authorize_url") == ["http://testserver/settings/calendar/callback/google/"]


def test_connect_is_refused_with_403_when_the_oauth_flag_is_off(
    alice: Tenant, fake: FakeCalendar, settings: Any
) -> None:
    settings.CALENDAR_OAUTH_ENABLED = False
    resp = alice.client().post("/settings/calendar/google/connect/")
    assert resp.status_code == 403
    assert "CALENDAR_OAUTH_ENABLED=false" in resp.content.decode()
    with system_scope():
        assert not OAuthState.objects.exists()


def test_connect_is_refused_with_403_for_a_member_not_on_the_allowlist(
    alice: Tenant, fake: FakeCalendar, settings: Any
) -> None:
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = [str(profile_of(alice).pk + 1000)]
    resp = alice.client().post("/settings/calendar/google/connect/")
    assert resp.status_code == 403
    assert "CALENDAR_ALLOWLIST_PROVIDER_IDS" in resp.content.decode()


def test_connect_allows_a_listed_member(alice: Tenant, fake: FakeCalendar, settings: Any) -> None:
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = [str(profile_of(alice).pk)]
    assert alice.client().post("/settings/calendar/google/connect/").status_code == 302


def test_unknown_provider_is_404(alice: Tenant, fake: FakeCalendar) -> None:
    client = alice.client()
    assert client.post("/settings/calendar/yahoo/connect/").status_code == 404
    assert client.get("/settings/calendar/callback/yahoo/", {"state": "x"}).status_code == 404


def test_connect_needs_a_post_and_a_signed_in_member(alice: Tenant, fake: FakeCalendar) -> None:
    assert alice.client().get("/settings/calendar/google/connect/").status_code == 405
    assert Client().post("/settings/calendar/google/connect/").status_code == 302  # to sign in


def test_connect_without_a_client_id_says_so_and_stores_nothing(
    alice: Tenant, fake: FakeCalendar, settings: Any
) -> None:
    settings.GOOGLE_CLIENT_ID = ""
    resp = alice.client().post("/settings/calendar/google/connect/")
    assert resp.status_code == 302 and resp["Location"] == "/settings/calendar/"
    assert any("GOOGLE_CLIENT_ID" in m for m in flashed(resp))
    with system_scope():
        assert not OAuthState.objects.exists()


def test_connect_when_the_provider_refuses_its_configuration(alice: Tenant, fake: FakeCalendar) -> None:
    fake.fail["authorize_url"] = Permanent("google", "not_configured", "no secret")
    resp = alice.client().post("/settings/calendar/google/connect/")
    assert resp["Location"] == "/settings/calendar/"
    assert any("not set up" in m for m in flashed(resp))
    with system_scope():
        assert not OAuthState.objects.exists()


# --- callback ---


def test_callback_connects_with_encrypted_tokens_and_audits(alice: Tenant, fake: FakeCalendar) -> None:
    client = alice.client()
    raw = start(client)
    resp = finish(client, state=raw, code="auth-code-1")
    assert resp.status_code == 302 and resp["Location"] == "/settings/calendar/"
    assert any("connected (alice@gmail.example)" in m for m in flashed(resp))
    conn = live(alice)
    assert conn is not None
    assert (conn.status, conn.access_token, conn.refresh_token) == ("connected", ACCESS, REFRESH)
    assert conn.account_email == "alice@gmail.example"
    assert conn.granted_scopes == ["openid", "email", CALENDAR_SCOPE]
    assert conn.sync_needed and conn.sync_enabled and conn.error_count == 0
    assert conn.last_error is None and conn.backoff_until is None and conn.token_expiry is not None
    assert conn.profile_id == profile_of(alice).pk
    with connection.cursor() as cur:
        cur.execute(
            "SELECT access_token, refresh_token FROM external_calendar_connections WHERE id = %s", [conn.pk]
        )
        stored = cur.fetchone()
    assert ACCESS not in stored[0] and REFRESH not in stored[1]
    [code, redirect, verifier] = fake.called("exchange_code")[0]
    assert code == "auth-code-1" and redirect.endswith("/callback/google/") and verifier
    [audit] = audits("calendar_connected")
    assert audit.payload_json == {
        "provider": "google",
        "connection_id": conn.pk,
        "account_email": "alice@gmail.example",
    }
    assert audit.actor == f"user:{alice.user.pk}"


def test_the_state_is_single_use(alice: Tenant, fake: FakeCalendar) -> None:
    client = alice.client()
    raw = start(client)
    assert finish(client, state=raw, code="c").status_code == 302
    again = finish(client, state=raw, code="c")
    assert again.status_code == 400 and "already used" in again.content.decode()
    assert len(fake.called("exchange_code")) == 1


def test_an_expired_state_is_refused(alice: Tenant, fake: FakeCalendar) -> None:
    client = alice.client()
    raw = start(client)
    with system_scope():
        OAuthState.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    resp = finish(client, state=raw, code="c")
    assert resp.status_code == 400 and "expired" in resp.content.decode()
    assert live(alice) is None and not fake.called("exchange_code")


def test_a_state_started_by_another_user_is_refused_and_not_used_up(
    alice: Tenant, bob: Tenant, fake: FakeCalendar
) -> None:
    raw = start(alice.client())
    resp = finish(bob.client(), state=raw, code="c")
    assert resp.status_code == 400 and "another Conduit user" in resp.content.decode()
    assert live(bob) is None and live(alice) is None
    assert finish(alice.client(), state=raw, code="c").status_code == 302  # still Alice's to finish
    assert live(alice) is not None


def test_a_state_of_the_other_provider_or_a_crm_is_refused(alice: Tenant, fake: FakeCalendar) -> None:
    client = alice.client()
    raw = start(client, "microsoft")
    resp = finish(client, "google", state=raw, code="c")
    assert resp.status_code == 400 and "Microsoft 365" in resp.content.decode()
    with system_scope():
        OAuthState.objects.create(
            state_hash=hash_state("crm-state"),
            crm="hubspot",
            workspace=alice.workspace,
            user=alice.user,
            expires_at=timezone.now() + timedelta(minutes=5),
        )
    assert finish(client, state="crm-state", code="c").status_code == 400
    assert finish(client, code="c").status_code == 400  # no state at all
    assert not fake.called("exchange_code")


def test_a_declined_consent_stores_nothing(alice: Tenant, fake: FakeCalendar) -> None:
    client = alice.client()
    raw = start(client)
    resp = finish(client, state=raw, error="access_denied")
    assert resp.status_code == 302 and resp["Location"] == "/settings/calendar/"
    assert any("You declined access" in m for m in flashed(resp))
    assert live(alice) is None and not fake.called("exchange_code")
    with system_scope():
        assert OAuthState.objects.get().used_at is not None


def test_another_provider_error_or_a_missing_code_is_a_400(alice: Tenant, fake: FakeCalendar) -> None:
    client = alice.client()
    resp = finish(client, state=start(client), error="server_error")
    assert resp.status_code == 400 and "server_error" in resp.content.decode()
    resp = finish(client, state=start(client), error="<script>")
    assert resp.status_code == 400 and "<script>" not in resp.content.decode()
    resp = finish(client, state=start(client))
    assert resp.status_code == 400 and "no authorization code" in resp.content.decode()
    assert live(alice) is None


def test_missing_calendar_scope_asks_for_calendar_access_and_stores_nothing(
    alice: Tenant, fake: FakeCalendar
) -> None:
    fake.scopes = ("openid", "email")
    client = alice.client()
    resp = finish(client, state=start(client), code="c")
    assert resp.status_code == 302
    assert any("allow calendar access" in m for m in flashed(resp))
    assert live(alice) is None
    assert fake.called("revoke") == [REFRESH]  # the short grant is given back


def test_a_failed_exchange_stores_nothing(alice: Tenant, fake: FakeCalendar) -> None:
    client = alice.client()
    fake.fail["exchange_code"] = Permanent("google", "invalid_grant", "bad code")
    resp = finish(client, state=start(client), code="c")
    assert resp.status_code == 400 and "invalid_grant" in resp.content.decode()
    fake.fail["exchange_code"] = Transient("google", "network_error")
    resp = finish(client, state=start(client), code="c")
    assert resp.status_code == 400 and "could not be reached" in resp.content.decode()
    assert live(alice) is None


def test_the_callback_is_refused_when_the_flag_went_off_meanwhile(
    alice: Tenant, fake: FakeCalendar, settings: Any
) -> None:
    client = alice.client()
    raw = start(client)
    settings.CALENDAR_OAUTH_ENABLED = False
    assert finish(client, state=raw, code="c").status_code == 403
    assert live(alice) is None and not fake.called("exchange_code")


def test_the_callback_refuses_a_member_who_left_the_workspace(alice: Tenant, fake: FakeCalendar) -> None:
    client = alice.client()
    raw = start(client)
    with system_scope():
        alice.user.memberships.all().delete()
    resp = finish(client, state=raw, code="c")
    assert resp.status_code == 400 and "no longer a member" in resp.content.decode()


def test_reconnect_of_the_same_account_keeps_events_and_cursor(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(
        alice,
        status="error",
        last_error="refresh_token_revoked",
        error_count=3,
        sync_cursor="cursor-1",
        access_token="",
        refresh_token="",
        sync_needed=False,
        backoff_until=timezone.now(),
    )
    make_event(conn, "ev1")
    client = alice.client()
    resp = finish(client, state=start(client), code="c")
    assert any("reconnected" in m for m in flashed(resp))
    conn.refresh_from_db()
    assert (conn.status, conn.error_count, conn.last_error, conn.backoff_until) == (
        "connected",
        0,
        None,
        None,
    )
    assert conn.sync_cursor == "cursor-1" and conn.sync_needed and conn.access_token == ACCESS
    with system_scope():
        assert ExternalCalendarEvent.objects.filter(connection=conn).count() == 1
        assert ExternalCalendarConnection.objects.count() == 1
    [audit] = audits("calendar_reconnected")
    assert audit.payload_json["connection_id"] == conn.pk


def test_reconnect_keeps_the_refresh_token_when_google_sends_none(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(alice, refresh_token="old-refresh")
    fake.refresh_token = None
    client = alice.client()
    finish(client, state=start(client), code="c")
    conn.refresh_from_db()
    assert conn.refresh_token == "old-refresh"


def test_reconnect_to_another_account_clears_cursor_and_events(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(
        alice, sync_cursor="cursor-1", account_email="old@gmail.example", last_synced_at=timezone.now()
    )
    make_event(conn, "ev1")
    make_event(conn, "ev2")
    fake.refresh_token = None
    client = alice.client()
    finish(client, state=start(client), code="c")
    conn.refresh_from_db()
    assert conn.sync_cursor is None and conn.last_synced_at is None
    assert conn.account_email == "alice@gmail.example" and conn.refresh_token == ""
    with system_scope():
        assert not ExternalCalendarEvent.objects.filter(connection=conn).exists()
    [audit] = audits("calendar_reconnected")
    assert audit.payload_json["events_dropped"] == 2


def test_connect_opens_the_push_channel_after_commit_when_push_is_on(
    alice: Tenant, fake: FakeCalendar, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.CALENDAR_WEBHOOK_ENABLED = True
    client = alice.client()
    raw = start(client)
    with django_capture_on_commit_callbacks(execute=True):
        finish(client, state=raw, code="c")
    conn = live(alice)
    assert conn is not None and conn.channel_id == "chan-1" and conn.channel_resource_id == "res-1"
    [(_token, address, secret)] = fake.called("watch")
    assert address == "https://conduit.example/webhooks/calendar/google"
    assert conn.channel_secret == secret and len(secret) >= 40


def test_a_push_channel_that_fails_to_open_does_not_fail_the_connect(
    alice: Tenant,
    fake: FakeCalendar,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
    capture_json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    settings.CALENDAR_WEBHOOK_ENABLED = True
    fake.fail["watch"] = Transient("google", "network_error")
    client = alice.client()
    raw = start(client)
    with django_capture_on_commit_callbacks(execute=True):
        resp = finish(client, state=raw, code="c")
    assert resp.status_code == 302
    conn = live(alice)
    assert conn is not None and conn.status == "connected" and conn.channel_id == ""
    assert any(
        line["message"] == "calendar channel not opened" and line["error_code"] == "network_error"
        for line in capture_json_logs()
    )


def test_the_grant_never_reaches_logs_audits_or_pages(
    alice: Tenant,
    fake: FakeCalendar,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
    capture_json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    settings.CALENDAR_WEBHOOK_ENABLED = True
    client = alice.client()
    raw = start(client)
    with django_capture_on_commit_callbacks(execute=True):
        resp = finish(client, state=raw, code="auth-code-SECRET")
    conn = live(alice)
    assert conn is not None
    client.post(f"/settings/calendar/{conn.pk}/disconnect/")
    text = str(capture_json_logs()) + str([a.payload_json for a in audits("calendar_connected")])
    text += str([a.payload_json for a in audits("calendar_disconnected")]) + str(flashed(resp))
    for secret in (ACCESS, REFRESH, raw, "auth-code-SECRET", conn.channel_secret):
        assert secret not in text


# --- disconnect ---


def test_disconnect_clears_tokens_channel_and_events_and_audits(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(
        alice,
        channel_id="chan-9",
        channel_resource_id="res-9",
        channel_secret="s" * 43,
        channel_expires_at=timezone.now() + timedelta(days=1),
        sync_cursor="cursor-1",
    )
    make_event(conn, "ev1")
    resp = alice.client().post(f"/settings/calendar/{conn.pk}/disconnect/")
    assert resp.status_code == 302 and resp["Location"] == "/settings/calendar/"
    assert any("disconnected" in m and "1 meetings" in m for m in flashed(resp))
    conn.refresh_from_db()
    assert (conn.status, conn.sync_enabled, conn.access_token, conn.refresh_token) == (
        "disconnected",
        False,
        "",
        "",
    )
    assert conn.channel_id == conn.channel_resource_id == conn.channel_secret == ""
    assert conn.channel_expires_at is None and conn.token_expiry is None and conn.sync_cursor is None
    with system_scope():
        assert not ExternalCalendarEvent.objects.filter(connection=conn).exists()
    assert fake.called("stop") == ["chan-9"] and fake.called("revoke") == [REFRESH]
    [audit] = audits("calendar_disconnected")
    assert audit.payload_json == {
        "provider": "google",
        "connection_id": conn.pk,
        "account_email": "alice@gmail.example",
        "events_deleted": 1,
        "revoked": True,
    }


def test_disconnect_goes_on_when_the_provider_cannot_be_told(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(alice, channel_id="chan-9", channel_resource_id="res-9", channel_secret="s" * 43)
    fake.fail["stop"] = Transient("google", "network_error")
    fake.fail["revoke"] = Transient("google", "network_error")
    resp = alice.client().post(f"/settings/calendar/{conn.pk}/disconnect/")
    assert any("could not be told" in m for m in flashed(resp))
    conn.refresh_from_db()
    assert conn.status == "disconnected" and conn.access_token == "" and conn.channel_id == ""


def test_disconnect_of_someone_elses_connection_is_404(
    alice: Tenant, make_workspace: Callable[..., Tenant], fake: FakeCalendar
) -> None:
    conn = make_connection(alice)
    carol = make_workspace("carol")
    with system_scope():  # carol joins alice's workspace as a member
        carol.user.memberships.all().delete()
        carol.user.memberships.create(workspace=alice.workspace, role="admin")
    assert carol.client().post(f"/settings/calendar/{conn.pk}/disconnect/").status_code == 404
    assert carol.client().post(f"/settings/calendar/{conn.pk}/sync/").status_code == 404
    conn.refresh_from_db()
    assert conn.status == "connected"


def test_disconnect_of_a_disconnected_calendar_changes_nothing(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(alice, status="disconnected", access_token="", refresh_token="")
    resp = alice.client().post(f"/settings/calendar/{conn.pk}/disconnect/")
    assert any("already disconnected" in m for m in flashed(resp))
    assert not audits("calendar_disconnected")


# --- Sync now ---


def test_sync_now_requests_a_sync(alice: Tenant, fake: FakeCalendar, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = make_connection(alice)
    asked: list[int] = []
    monkeypatch.setattr(jobs, "request_sync", lambda c: asked.append(c.pk))
    resp = alice.client().post(f"/settings/calendar/{conn.pk}/sync/")
    assert resp.status_code == 302 and asked == [conn.pk]
    assert any("requested" in m for m in flashed(resp))


def test_sync_now_refused_by_a_switch_is_403(
    alice: Tenant, fake: FakeCalendar, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = make_connection(alice)

    def refuse(c: ExternalCalendarConnection) -> None:
        raise flags.CalendarForbidden("calendar_disabled", "Calendar sync is turned off.")

    monkeypatch.setattr(jobs, "request_sync", refuse)
    resp = alice.client().post(f"/settings/calendar/{conn.pk}/sync/")
    assert resp.status_code == 403 and "Calendar sync is turned off." in resp.content.decode()


def test_sync_now_shows_a_readable_refusal(
    alice: Tenant, fake: FakeCalendar, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conduit.services import ConduitError

    conn = make_connection(alice)

    def refuse(c: ExternalCalendarConnection) -> None:
        raise ConduitError("A sync is already running.")

    monkeypatch.setattr(jobs, "request_sync", refuse)
    resp = alice.client().post(f"/settings/calendar/{conn.pk}/sync/")
    assert resp.status_code == 302 and "A sync is already running." in flashed(resp)


# --- through the real providers and the sandboxes, on real sockets ---


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_connect_and_callback_through_the_sandbox(
    alice: Tenant, calendar_env: dict[str, str], settings: Any, provider: str
) -> None:
    from tests.sandbox_helpers import answer_consent

    switch_on(settings)
    for name in ("GOOGLE", "MICROSOFT"):
        setattr(settings, f"{name}_CLIENT_ID", f"conduit-test-{name.lower()}")
        setattr(settings, f"{name}_CLIENT_SECRET", f"conduit-test-{name.lower()}-secret")
    client = alice.client()
    resp = client.post(f"/settings/calendar/{provider}/connect/")
    assert resp.status_code == 302 and resp["Location"].startswith(calendar_env[provider])
    back = urlparse(answer_consent(resp["Location"]))
    assert back.path == f"/settings/calendar/callback/{provider}/"
    done = client.get(f"{back.path}?{back.query}")
    assert done.status_code == 302 and done["Location"] == "/settings/calendar/", flashed(done)
    conn = live(alice, provider)
    assert conn is not None and conn.status == "connected" and "@" in conn.account_email
    assert conn.access_token and conn.refresh_token and conn.token_expiry is not None
    account = tokens.valid_account(conn.pk)
    assert account.access_token == conn.access_token
    if provider == "google":  # a real channel: Google's watch answers at once
        settings.CALENDAR_WEBHOOK_ENABLED = True
        push.open_channel(conn.pk)
        conn.refresh_from_db()
        assert conn.channel_id and conn.channel_resource_id and conn.channel_secret
        push.close_channel(conn.pk)
    client.post(f"/settings/calendar/{conn.pk}/disconnect/")
    conn.refresh_from_db()
    assert conn.status == "disconnected" and conn.access_token == ""


def test_the_services_refuse_an_unknown_provider_and_an_empty_token(
    alice: Tenant, fake: FakeCalendar
) -> None:
    from conduit.services import ConduitError
    from integrations.providers.synclog import CallContext

    with pytest.raises(ConduitError):
        calendar_oauth.begin_authorization("yahoo", workspace=alice.workspace, user=alice.user)
    assert not calendar_oauth.revoke_quietly("google", "", CallContext())
    assert not fake.called("revoke")


def test_a_calendar_state_is_no_crm_state(alice: Tenant, fake: FakeCalendar) -> None:
    client = alice.client()
    raw = start(client)
    resp = client.get("/integrations/oauth/callback/hubspot/", {"state": raw, "code": "c"})
    assert resp.status_code == 400 and "not one Conduit issued" in resp.content.decode()
    assert finish(client, state=raw, code="c").status_code == 302  # still usable where it belongs
