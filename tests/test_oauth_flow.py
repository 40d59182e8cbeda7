"""Connect, install-first claim, refresh, disconnect and reconnect against the sandbox CRMs over
real sockets, through Conduit's pages (Django test client) and services. Every CRM."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from django.test import Client
from django.utils import timezone

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from integrations.connections import claims
from integrations.models import CrmConnection, OAuthState, PendingInstall
from tests.conftest import Tenant
from tests.sandbox_helpers import answer_consent

pytestmark = pytest.mark.django_db
KEYS = {"hubspot": "4400001", "salesforce": "00D5g000004SbxAEAS", "zoho": "7700000000000010001"}
CRMS = ["hubspot", "salesforce", "zoho"]


def consent(authorize_url: str, **kw: Any) -> str:
    """Answer the sandbox consent page; return the callback path (with query) for the test client."""
    location = urlsplit(answer_consent(authorize_url, **kw))
    assert location.netloc == "testserver"
    return f"{location.path}?{location.query}"


def connect(client: Client, crm: str, environment: str = "login", **consent_kw: Any) -> Any:
    start = client.post(f"/settings/integrations/{crm}/connect/", {"environment": environment})
    assert start.status_code == 302, start.content
    return client.get(consent(start["Location"], **consent_kw))


def live(workspace: Any, crm: str) -> CrmConnection:
    with system_scope():
        return CrmConnection.objects.exclude(status="disconnected").get(workspace=workspace, crm=crm)


def events(name: str) -> list[AuditEvent]:
    with system_scope():
        return list(AuditEvent.objects.filter(event=name).order_by("id"))


@pytest.mark.parametrize("crm", CRMS)
def test_connect_from_settings_connects_in_dry_run_and_audits(crm: str, crm_env: Any, alice: Tenant) -> None:
    client = alice.client()
    environment = "test" if crm == "salesforce" else "login"
    done = connect(client, crm, environment)
    assert done.status_code == 302 and done["Location"] == "/settings/integrations/"
    conn = live(alice.workspace, crm)
    assert (conn.status, conn.external_account_key, conn.dry_run) == ("connected", KEYS[crm], True)
    assert conn.access_token and conn.refresh_token and conn.connected_at
    if crm == "zoho":  # the data centre the callback named: its accounts server and API domain
        assert conn.external_account_json["environment"] == crm_env["zoho"]
        assert conn.external_account_json["instance_url"] == crm_env["zoho"]
        assert conn.token_expires_at is not None and conn.external_account_json["org_name"]
    else:
        assert conn.external_account_json["environment"] == environment
    if crm == "hubspot":
        assert conn.token_expires_at is not None and conn.external_account_json["hub_domain"]
    elif crm == "salesforce":
        assert conn.token_expires_at is None
        assert conn.external_account_json["instance_url"] == crm_env["salesforce"]
    [event] = events("crm_connected")
    assert event.workspace_id == alice.workspace.pk and event.payload_json["crm"] == crm
    page = client.get("/settings/integrations/").content.decode()
    assert 'data-status="connected"' in page and "Dry run" in page
    with system_scope():
        raw = OAuthState.objects.get().code_verifier
    assert bool(raw) is (crm == "salesforce")  # PKCE only where the provider supports it


@pytest.mark.parametrize("crm", CRMS)
def test_install_first_creates_a_pending_install_then_a_signed_in_admin_claims_it(
    crm: str, crm_env: Any, alice: Tenant
) -> None:
    anonymous = Client()
    start = anonymous.get(f"/integrations/install/{crm}/")
    assert start.status_code == 302
    with system_scope():
        assert OAuthState.objects.get().workspace_id is None  # a state without a workspace
    landed = anonymous.get(consent(start["Location"]))
    assert landed.status_code == 302
    query = parse_qs(urlsplit(landed["Location"]).query)
    assert urlsplit(landed["Location"]).path == "/claim-install" and query["crm"] == [crm]
    with system_scope():
        pending = PendingInstall.objects.select_related("connection").get()
    assert (pending.status, pending.external_account_key) == ("pending", KEYS[crm])
    assert pending.install_id == query["install_id"][0] and len(pending.install_id) >= 32
    assert pending.metadata["account_name"] and pending.metadata["scopes"]
    assert pending.connection is not None and pending.connection.workspace_id is None
    assert pending.connection.status == "pending_claim" and pending.connection.access_token

    claim_url = landed["Location"]
    to_login = anonymous.get(claim_url)
    assert to_login.status_code == 302
    assert parse_qs(urlsplit(to_login["Location"]).query)["next"] == [claim_url]
    client = alice.client()
    page = client.get(claim_url)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Claim install" in body and alice.workspace.name in body and KEYS[crm] in body
    claimed = client.post(
        "/claim-install", {"crm": crm, "install_id": pending.install_id, "workspace_id": alice.workspace.pk}
    )
    assert claimed.status_code == 302 and claimed["Location"] == "/settings/integrations/"
    conn = live(alice.workspace, crm)
    assert conn.pk == pending.connection.pk and conn.status == "connected"
    with system_scope():
        pending.refresh_from_db()
    assert (pending.status, pending.claimed_workspace_id, pending.claimed_by_id) == (
        "claimed",
        alice.workspace.pk,
        alice.user.pk,
    )
    [event] = events("install_claimed")
    assert event.workspace_id == alice.workspace.pk and event.actor == f"user:{alice.user.pk}"
    assert event.payload_json["external_account_key"] == KEYS[crm]
    again = client.post(
        "/claim-install", {"crm": crm, "install_id": pending.install_id, "workspace_id": alice.workspace.pk}
    )
    assert again.status_code == 400 and b"already claimed" in again.content


def test_a_repeated_install_of_the_same_account_updates_the_one_pending_row(crm_env: Any) -> None:
    anonymous = Client()
    for _ in range(2):
        anonymous.get(consent(anonymous.get("/integrations/install/hubspot/")["Location"]))
    with system_scope():
        assert PendingInstall.objects.count() == 1
        assert CrmConnection.objects.count() == 1
    assert [e.event for e in events("install_pending_created") + events("install_pending_updated")] == [
        "install_pending_created",
        "install_pending_updated",
    ]


@pytest.mark.postgres
def test_pending_installs_are_unique_per_account_only_while_pending(db: None) -> None:
    from django.db import IntegrityError, transaction

    later = timezone.now() + timedelta(hours=1)
    with system_scope():
        PendingInstall.objects.create(
            crm="hubspot", external_account_key="1", expires_at=later, status="claimed"
        )
        PendingInstall.objects.create(crm="hubspot", external_account_key="1", expires_at=later)
        PendingInstall.objects.create(crm="salesforce", external_account_key="1", expires_at=later)
        with pytest.raises(IntegrityError), transaction.atomic():
            PendingInstall.objects.create(crm="hubspot", external_account_key="1", expires_at=later)


def pending_install(crm: str = "hubspot", **kw: Any) -> PendingInstall:
    with system_scope():
        conn = CrmConnection.objects.create(
            crm=crm,
            status="pending_claim",
            external_account_key=KEYS[crm],
            access_token="a-tok",
            refresh_token="r-tok",
        )
        return PendingInstall.objects.create(
            crm=crm,
            external_account_key=KEYS[crm],
            expires_at=kw.pop("expires_at", timezone.now() + timedelta(hours=2)),
            connection=conn,
            **kw,
        )


def test_claim_refuses_an_expired_install_naming_the_expiry(alice: Tenant) -> None:
    pending = pending_install(expires_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(claims.InstallExpired) as err:
        claims.do_claim_install(pending.install_id, "hubspot", alice.workspace.pk, actor=alice.user)
    assert "expired at" in err.value.user_message and "Install Conduit again" in err.value.user_message
    page = alice.client().get(f"/claim-install?crm=hubspot&install_id={pending.install_id}")
    assert page.status_code == 400 and b"expired at" in page.content
    with system_scope():
        assert CrmConnection.objects.get().workspace_id is None  # nothing changed


def test_claim_refuses_a_workspace_the_user_does_not_administer(make_workspace: Any, bob: Tenant) -> None:
    member = make_workspace("carol", role="member")
    pending = pending_install()
    for workspace_id in (member.workspace.pk, bob.workspace.pk):
        with pytest.raises(claims.NotWorkspaceAdmin):
            claims.do_claim_install(pending.install_id, "hubspot", workspace_id, actor=member.user)
    with pytest.raises(claims.InstallNotFound):
        claims.do_claim_install("nope", "hubspot", bob.workspace.pk, actor=bob.user)
    with pytest.raises(claims.InstallNotFound):
        claims.do_claim_install(pending.install_id, "salesforce", bob.workspace.pk, actor=bob.user)


def test_claim_into_a_connected_workspace_needs_an_explicit_replace(alice: Tenant) -> None:
    with system_scope():
        old = CrmConnection.objects.create(
            workspace=alice.workspace,
            crm="hubspot",
            status="connected",
            external_account_key="111",
            access_token="x",
        )
    pending = pending_install()
    with pytest.raises(claims.WorkspaceAlreadyConnected, match="already connected to HubSpot 111"):
        claims.do_claim_install(pending.install_id, "hubspot", alice.workspace.pk, actor=alice.user)
    conn = claims.do_claim_install(
        pending.install_id, "hubspot", alice.workspace.pk, actor=alice.user, replace_existing=True
    )
    with system_scope():
        old.refresh_from_db()
    assert (old.status, old.access_token) == ("disconnected", "")
    assert (
        conn.status == "connected"
        and events("install_claimed")[0].payload_json["replaced_connection_id"] == old.pk
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, b"carries no state"),
        ({"state": "unknown-state", "code": "x"}, b"not one Conduit issued"),
    ],
)
def test_callback_refuses_missing_or_unknown_state(
    crm_env: Any, params: dict[str, str], message: bytes
) -> None:
    response = Client().get(f"/integrations/oauth/callback/hubspot/?{urlencode(params)}")
    assert response.status_code == 400 and message in response.content


def test_callback_refuses_reused_expired_and_wrong_crm_states(crm_env: Any, alice: Tenant) -> None:
    client = alice.client()
    start = client.post("/settings/integrations/hubspot/connect/")
    callback = consent(start["Location"])
    wrong = client.get(callback.replace("/hubspot/", "/salesforce/"))
    assert wrong.status_code == 400 and b"started for HubSpot, not Salesforce" in wrong.content
    assert client.get(callback).status_code == 302
    reused = client.get(callback)
    assert reused.status_code == 400 and b"already used" in reused.content
    start = client.post("/settings/integrations/hubspot/connect/")
    callback = consent(start["Location"])
    with system_scope():
        OAuthState.objects.filter(used_at__isnull=True).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    expired = client.get(callback)
    assert expired.status_code == 400 and b"expired" in expired.content
    assert len(events("crm_connected")) == 1


def test_denied_consent_changes_nothing(crm_env: Any, alice: Tenant) -> None:
    client = alice.client()
    start = client.post("/settings/integrations/hubspot/connect/")
    done = client.get(consent(start["Location"], decision="deny"))
    assert done.status_code == 302
    with system_scope():
        assert not CrmConnection.objects.exists()
    install = Client().get(
        consent(Client().get("/integrations/install/salesforce/")["Location"], decision="deny")
    )
    assert install.status_code == 200 and b"declined" in install.content


@pytest.mark.parametrize("crm", CRMS)
def test_a_grant_missing_scopes_leaves_the_connection_in_error_naming_them(
    crm: str, crm_env: Any, alice: Tenant
) -> None:
    scope = {"hubspot": "oauth crm.objects.contacts.read", "salesforce": "id", "zoho": "ZohoCRM.org.READ"}[
        crm
    ]
    client = alice.client()
    connect(client, crm, scope=scope)
    conn = live(alice.workspace, crm)
    assert (conn.status, conn.last_error, conn.access_token, conn.refresh_token) == (
        "error",
        "missing_scope",
        "",
        "",
    )
    page = client.get("/settings/integrations/").content.decode()
    missing = {"hubspot": "crm.objects.contacts.write", "salesforce": "api", "zoho": "ZohoCRM.coql.READ"}[crm]
    assert missing in page and "Reconnect" in page


@pytest.mark.parametrize("crm", CRMS)
def test_disconnect_revokes_clears_tokens_and_audits(crm: str, crm_env: Any, alice: Tenant) -> None:
    client = alice.client()
    connect(client, crm)
    refresh_token, environment = (
        live(alice.workspace, crm).refresh_token,
        live(alice.workspace, crm).environment,
    )
    done = client.post(f"/settings/integrations/{crm}/disconnect/")
    assert done.status_code == 302
    with system_scope():
        conn = CrmConnection.objects.get(workspace=alice.workspace, crm=crm)
    assert (conn.status, conn.access_token, conn.refresh_token, conn.token_expires_at) == (
        "disconnected",
        "",
        "",
        None,
    )
    [event] = events("crm_disconnected")
    assert event.payload_json["revoked"] is True
    # the grant is really gone at the provider
    from integrations.providers import get_provider
    from integrations.providers.errors import AuthRevoked

    with pytest.raises(AuthRevoked):
        get_provider(crm).refresh(refresh_token, environment=environment)


def test_reconnect_after_a_revoked_refresh_token_reuses_the_connection(crm_env: Any, alice: Tenant) -> None:
    from integrations.connections.tokens import refresh_connection

    client = alice.client()
    connect(client, "hubspot")
    conn = live(alice.workspace, "hubspot")
    requests.post(f"{crm_env['hubspot']}/_sandbox/faults", json={"kind": "invalid_grant"}, timeout=5)
    revoked = refresh_connection(conn.pk, force=True)
    assert (revoked.status, revoked.last_error, revoked.access_token) == (
        "error",
        "refresh_token_revoked",
        "",
    )
    assert events("crm_connection_error")[0].payload_json["last_error"] == "refresh_token_revoked"
    page = client.get("/settings/integrations/").content.decode()
    assert "Reconnect" in page and "no longer accepts" in page
    connect(client, "hubspot")
    again = live(alice.workspace, "hubspot")
    assert (again.pk, again.status, again.last_error) == (conn.pk, "connected", "")
    assert events("crm_reconnected")[0].payload_json["previous"]["status"] == "error"


def test_reconnecting_to_another_account_asks_first(crm_env: Any, alice: Tenant) -> None:
    client = alice.client()
    connect(client, "hubspot")
    with system_scope():
        CrmConnection.objects.update(
            external_account_key="111", status="error", last_error="refresh_token_revoked"
        )
    held = connect(client, "hubspot")
    assert held.status_code == 302 and "/integrations/oauth/confirm/" in held["Location"]
    page = client.get(held["Location"])
    assert page.status_code == 200 and b"Switch HubSpot account?" in page.content
    assert live(alice.workspace, "hubspot").external_account_key == "111"
    client.post(held["Location"], {"decision": "replace"})
    conn = live(alice.workspace, "hubspot")
    assert (conn.external_account_key, conn.status) == (KEYS["hubspot"], "connected")
    # keeping the current account discards the new grant
    with system_scope():
        CrmConnection.objects.update(external_account_key="111")
    held = connect(client, "hubspot")
    client.post(held["Location"], {"decision": "keep"})
    assert live(alice.workspace, "hubspot").external_account_key == "111"
    assert client.post(held["Location"], {"decision": "replace"}).status_code == 302  # nothing waiting now


def test_expiry_revokes_and_clears_stale_installs_once(crm_env: Any) -> None:
    anonymous = Client()
    anonymous.get(consent(anonymous.get("/integrations/install/hubspot/")["Location"]))
    with system_scope():
        PendingInstall.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert claims.expire_pending_installs() == 1
    assert claims.expire_pending_installs() == 0
    with system_scope():
        pending = PendingInstall.objects.select_related("connection").get()
    assert pending.status == "expired"
    assert pending.connection is not None
    assert (pending.connection.access_token, pending.connection.refresh_token) == ("", "")
    assert pending.connection.status == "disconnected"
    assert events("install_expired")[0].payload_json["revoked"] is True


def test_member_cannot_connect_or_disconnect(crm_env: Any, make_workspace: Any) -> None:
    member = make_workspace("dave", role="member")
    client = member.client()
    assert client.post("/settings/integrations/hubspot/connect/").status_code == 404
    assert client.post("/settings/integrations/hubspot/disconnect/").status_code == 404
    assert b"Only workspace owners and admins" in client.get("/settings/integrations/").content


def test_unknown_crm_and_missing_credentials_are_clear_errors(
    crm_env: Any, alice: Tenant, settings: Any
) -> None:
    client = alice.client()
    assert client.post("/settings/integrations/pipedrive/connect/").status_code == 404
    assert Client().get("/integrations/install/pipedrive/").status_code == 404
    settings.HUBSPOT_CLIENT_SECRET = ""
    done = client.post("/settings/integrations/hubspot/connect/", follow=True)
    assert b"HubSpot is not set up on this Conduit" in done.content
    bad_env = client.post(
        "/settings/integrations/salesforce/connect/", {"environment": "staging"}, follow=True
    )
    assert b"no &#x27;staging&#x27; environment" in bad_env.content


@pytest.mark.parametrize(
    ("fault", "message"),
    [("unavailable", b"could not be reached"), ("invalid_session", b"did not accept the authorization")],
)
def test_a_provider_failure_after_consent_saves_nothing(
    crm_env: Any, alice: Tenant, fault: str, message: bytes
) -> None:
    client = alice.client()
    start = client.post("/settings/integrations/salesforce/connect/")
    callback = consent(start["Location"])
    # the token exchange succeeds; the userinfo call that identifies the org fails
    requests.post(f"{crm_env['salesforce']}/_sandbox/faults", json={"kind": fault}, timeout=5)
    done = client.get(callback)
    assert done.status_code == 400 and message in done.content
    with system_scope():
        assert not CrmConnection.objects.exists()
        assert OAuthState.objects.get().used_at is not None  # used up all the same


def test_a_salesforce_instance_outside_its_domains_is_refused(
    crm_env: Any, alice: Tenant, settings: Any
) -> None:
    client = alice.client()
    start = client.post("/settings/integrations/salesforce/connect/")
    callback = consent(start["Location"])
    settings.SALESFORCE_EXTRA_INSTANCE_ORIGINS = []  # the sandbox is now "not Salesforce"
    done = client.get(callback)
    assert done.status_code == 400 and b"outside Salesforce" in done.content


def test_an_install_missing_scopes_is_not_kept(crm_env: Any) -> None:
    anonymous = Client()
    start = anonymous.get("/integrations/install/hubspot/")
    done = anonymous.get(consent(start["Location"], scope="oauth"))
    assert done.status_code == 400 and b"crm.objects.contacts.write" in done.content
    with system_scope():
        assert not PendingInstall.objects.exists() and not CrmConnection.objects.exists()


def test_claim_page_without_an_admin_workspace_offers_to_create_one(make_workspace: Any) -> None:
    member = make_workspace("erin", role="member")
    pending = pending_install()
    page = member.client().get(f"/claim-install?crm=hubspot&install_id={pending.install_id}")
    assert page.status_code == 200 and b"not an owner or admin of any workspace" in page.content
    bad = member.client().post("/claim-install", {"crm": "hubspot", "install_id": pending.install_id})
    assert bad.status_code == 400 and b"Choose the workspace" in bad.content
    unknown = member.client().get("/claim-install?crm=pipedrive&install_id=x")
    assert unknown.status_code == 400 and b"names no CRM" in unknown.content


def test_expire_command_and_task_share_the_service(crm_env: Any) -> None:
    from io import StringIO

    from django.core.management import call_command

    from integrations.tasks import expire_pending_installs

    pending_install(expires_at=timezone.now() - timedelta(seconds=5))
    out = StringIO()
    call_command("expire_pending_installs", stdout=out)
    assert out.getvalue().strip() == "expired 1 pending install(s)"
    assert expire_pending_installs() == 0


def test_disconnect_when_not_connected_says_so(crm_env: Any, alice: Tenant) -> None:
    done = alice.client().post("/settings/integrations/hubspot/disconnect/", follow=True)
    assert b"HubSpot is not connected." in done.content
    assert alice.client().get("/integrations/oauth/confirm/999/").status_code == 400


def test_a_consent_finished_in_another_users_session_is_refused(
    crm_env: Any, alice: Tenant, bob: Tenant
) -> None:
    start = alice.client().post("/settings/integrations/hubspot/connect/")
    callback = consent(start["Location"])
    hijacked = bob.client().get(callback)
    assert hijacked.status_code == 400 and b"started by another Conduit user" in hijacked.content
    anonymous = Client().get(callback)
    assert anonymous.status_code == 400
    with system_scope():
        assert not CrmConnection.objects.exists()
    assert alice.client().get(callback).status_code == 302  # its owner can still finish it


def test_a_short_grant_never_replaces_a_healthy_connection(crm_env: Any, alice: Tenant) -> None:
    client = alice.client()
    connect(client, "hubspot")
    before = live(alice.workspace, "hubspot")
    connect(client, "hubspot", scope="oauth")
    after = live(alice.workspace, "hubspot")
    assert (after.status, after.access_token, after.refresh_token) == (
        "connected",
        before.access_token,
        before.refresh_token,
    )


def test_an_account_switch_left_too_long_is_discarded_and_cleared(crm_env: Any, alice: Tenant) -> None:
    client = alice.client()
    connect(client, "hubspot")
    with system_scope():
        CrmConnection.objects.update(external_account_key="111")
    held = connect(client, "hubspot")
    with system_scope():
        OAuthState.objects.update(expires_at=timezone.now() - timedelta(hours=1))
    done = client.post(held["Location"], {"decision": "replace"}, follow=True)
    assert b"waited too long" in done.content
    with system_scope():
        assert all(not s.pending_tokens for s in OAuthState.objects.all())
    assert live(alice.workspace, "hubspot").external_account_key == "111"


def test_expiry_also_prunes_old_states(crm_env: Any) -> None:
    Client().get("/integrations/install/hubspot/")
    with system_scope():
        OAuthState.objects.update(expires_at=timezone.now() - timedelta(days=2))
    claims.expire_pending_installs()
    with system_scope():
        assert not OAuthState.objects.exists()


def test_an_api_token_cannot_claim_installs(alice: Tenant) -> None:
    from conduit.services import do_create_api_token

    pending = pending_install()
    issued = do_create_api_token(alice.workspace, "ops", actor=alice.user)
    body = {"crm": "hubspot", "install_id": pending.install_id, "workspace_id": alice.workspace.pk}
    answer = Client(HTTP_AUTHORIZATION=f"Bearer {issued.raw}").post(
        "/api/v1/claim-install", body, content_type="application/json"
    )
    assert answer.status_code in (401, 403)
    with system_scope():
        assert PendingInstall.objects.get().status == "pending"


def test_access_log_lines_carry_no_query_string() -> None:
    from conduit import gunicorn

    assert "%(U)s" in gunicorn.access_log_format and "%(r)s" not in gunicorn.access_log_format
    assert "%(q)s" not in gunicorn.access_log_format


# --- Zoho: the data centre the callback names ---------------------------------------------------


def zoho_requests(crm_env: dict[str, str]) -> int:
    return int(requests.get(f"{crm_env['zoho']}/_sandbox/state", timeout=5).json()["requests"]["total"])


@pytest.mark.parametrize(
    "server",
    [
        "https://accounts.zoho.evil.com",
        "https://accounts.zoho.eu@evil.com",
        "https://accounts.zoho.eu:8443",
        "http://accounts.zoho.eu",
        "https://evil.com/accounts.zoho.eu",
    ],
)
def test_a_zoho_callback_naming_a_foreign_data_centre_is_refused_with_no_request(
    crm_env: dict[str, str], alice: Tenant, server: str
) -> None:
    client = alice.client()
    start = client.post("/settings/integrations/zoho/connect/")
    path, _, query = consent(start["Location"]).partition("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    assert params["accounts-server"] == crm_env["zoho"] and params["location"] == "eu"
    before = zoho_requests(crm_env)
    done = client.get(f"{path}?{urlencode({**params, 'accounts-server': server})}")
    assert done.status_code == 400 and b"outside Zoho CRM&#x27;s own domains" in done.content
    assert zoho_requests(crm_env) == before  # the code was sent nowhere
    with system_scope():
        assert not CrmConnection.objects.exists()
        assert OAuthState.objects.get().used_at is not None


def test_a_zoho_callback_with_a_malformed_location_is_refused(crm_env: dict[str, str], alice: Tenant) -> None:
    client = alice.client()
    callback = consent(client.post("/settings/integrations/zoho/connect/")["Location"])
    done = client.get(callback.replace("location=eu", "location=eu%3Cscript%3E"))
    assert done.status_code == 400
    with system_scope():
        assert not CrmConnection.objects.exists()


def test_zoho_refreshes_at_the_data_centre_and_a_revoked_grant_asks_for_a_reconnect(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    from integrations.connections.tokens import refresh_connection

    client = alice.client()
    connect(client, "zoho")
    conn = live(alice.workspace, "zoho")
    # ZOHO_ACCOUNTS_URL (where consent started) is another host: the data centre refuses tokens there
    fresh = refresh_connection(conn.pk, force=True)
    assert fresh.status == "connected" and fresh.access_token != conn.access_token
    assert fresh.refresh_token == conn.refresh_token  # Zoho sends no new one; the old one is kept
    requests.post(f"{crm_env['zoho']}/_sandbox/faults", json={"kind": "invalid_grant"}, timeout=5)
    revoked = refresh_connection(conn.pk, force=True)
    assert (revoked.status, revoked.last_error, revoked.access_token) == (
        "error",
        "refresh_token_revoked",
        "",
    )
    page = client.get("/settings/integrations/").content.decode()
    assert "no longer accepts Conduit&#x27;s access" in page and "Reconnect" in page
    connect(client, "zoho")
    again = live(alice.workspace, "zoho")
    assert (again.pk, again.status, again.environment) == (conn.pk, "connected", crm_env["zoho"])


def test_a_zoho_account_switch_keeps_the_new_accounts_data_centre(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    client = alice.client()
    connect(client, "zoho")
    with system_scope():
        CrmConnection.objects.update(
            external_account_key="111", external_account_json={"environment": "login"}
        )
    held = connect(client, "zoho")
    assert "/integrations/oauth/confirm/" in held["Location"]
    assert b"Switch Zoho CRM account?" in client.get(held["Location"]).content
    client.post(held["Location"], {"decision": "replace"})
    conn = live(alice.workspace, "zoho")
    assert (conn.external_account_key, conn.environment) == (KEYS["zoho"], crm_env["zoho"])
    assert conn.external_account_json["instance_url"] == crm_env["zoho"]


def test_an_unknown_crm_is_refused_naming_every_crm_conduit_connects() -> None:
    from integrations.connections import oauth

    with pytest.raises(oauth.BadState) as refused:
        oauth.begin_authorization("pipedrive", workspace=None, user=None)
    assert refused.value.user_message == (
        "Conduit does not connect to 'pipedrive'; choose one of "
        + ", ".join(label for _, label in oauth.CRM_CHOICES)
        + "."
    )
