from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client

from conduit.ingest import ingest_one, parse_raw
from conduit.services import do_create_api_token
from tests.conftest import Tenant, raw_email


def conduit_models() -> list[type]:
    """The app's own models (tests may register throwaway ones under the app label)."""
    return [m for m in apps.get_app_config("conduit").get_models() if not m.__module__.startswith("tests.")]


@pytest.fixture
def staff(db: None) -> Client:
    user = User.objects.create_superuser("ops@example.com", "ops@example.com", "pw-ops-123456")
    client = Client()
    client.force_login(user)
    return client


def test_every_conduit_model_is_registered_with_search_and_filters() -> None:
    for model in conduit_models():
        model_admin = admin.site._registry.get(model)
        assert model_admin is not None, model
        assert model_admin.search_fields and model_admin.list_filter, model


def test_admin_pages_render_and_never_show_bodies_or_tokens(staff: Client, alice: Tenant) -> None:
    secret_body = "CONFIDENTIAL-BODY-TEXT"
    message = ingest_one(
        alice.workspace,
        parse_raw(raw_email("adm@x", body=secret_body, attachment=("a.txt", "text/plain", b"x"))),
    ).message
    issued = do_create_api_token(alice.workspace, "gw", actor=alice.user)
    pages = []
    for model in conduit_models():
        name = f"/admin/conduit/{model._meta.model_name}/"
        listing = staff.get(name, {"q": "a"})
        assert listing.status_code == 200, name
        pages.append(listing.content)
    pages.append(staff.get(f"/admin/conduit/message/{message.pk}/change/").content)
    pages.append(staff.get(f"/admin/conduit/apitoken/{issued.token.pk}/change/").content)
    pages.append(staff.get(f"/admin/conduit/workspace/{alice.workspace.pk}/change/").content)
    html = b"".join(pages)
    assert b"adm@x" in html and b"gw" in html
    assert secret_body.encode() not in html
    assert issued.raw.encode() not in html and issued.token.token_hash.encode() not in html


def test_admin_requires_staff(alice: Tenant) -> None:
    response = alice.client().get("/admin/conduit/message/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_admin_edits_and_deletes_are_audited(staff: Client, alice: Tenant) -> None:
    from conduit.models import AuditEvent, Membership

    url = f"/admin/conduit/workspace/{alice.workspace.pk}/change/"
    form = {
        "name": "Alice Renamed",
        "slug": "alice",
        "created_at_0": "2026-11-01",
        "created_at_1": "10:00:00",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    response = staff.post(url, form)
    assert response.status_code == 302, response.content[:2000]
    event = AuditEvent.objects.get(event="admin_object_changed")
    assert event.workspace == alice.workspace and "name" in event.payload_json["fields"]
    bob_user = User.objects.create_user("bob@example.com", "bob@example.com", "pw-bob-123456")
    membership = Membership.objects.create(workspace=alice.workspace, user=bob_user, role="member")
    staff.post(f"/admin/conduit/membership/{membership.pk}/delete/", {"post": "yes"})
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.filter(event="admin_object_deleted", target_id=str(membership.pk)).exists()


def test_admin_bulk_delete_and_token_revoke_action_are_audited(staff: Client, alice: Tenant) -> None:
    from conduit.models import AuditEvent, Profile

    issued = do_create_api_token(alice.workspace, "gw", actor=alice.user)
    staff.post("/admin/conduit/apitoken/", {"action": "revoke_tokens", "_selected_action": [issued.token.pk]})
    issued.token.refresh_from_db()
    assert issued.token.revoked_at is not None
    assert AuditEvent.objects.filter(event="api_token_revoked").count() == 1
    profile = Profile.objects.get(user=alice.user)
    staff.post(
        "/admin/conduit/profile/",
        {"action": "delete_selected", "_selected_action": [profile.pk], "post": "yes"},
    )
    assert not Profile.objects.filter(pk=profile.pk).exists()
    assert AuditEvent.objects.filter(event="admin_object_deleted", target_type="profile").exists()


def test_inline_membership_edits_are_audited_and_tokens_cannot_be_deleted(
    staff: Client, alice: Tenant
) -> None:
    from conduit.models import AuditEvent, Membership

    bob_user = User.objects.create_user("bob@example.com", "bob@example.com", "pw-bob-123456")
    membership = Membership.objects.get(user=alice.user)
    form = {
        "name": "Alice",
        "slug": "alice",
        "created_at_0": "2026-11-01",
        "created_at_1": "10:00:00",
        "memberships-TOTAL_FORMS": "2",
        "memberships-INITIAL_FORMS": "1",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-id": str(membership.pk),
        "memberships-0-workspace": str(alice.workspace.pk),
        "memberships-0-user": str(alice.user.pk),
        "memberships-0-role": "admin",
        "memberships-0-created_at_0": "2026-11-01",
        "memberships-0-created_at_1": "10:00:00",
        "memberships-1-workspace": str(alice.workspace.pk),
        "memberships-1-user": str(bob_user.pk),
        "memberships-1-role": "owner",  # alice steps down to admin: bob is the owner now
        "memberships-1-created_at_0": "2026-11-02",
        "memberships-1-created_at_1": "10:00:00",
    }
    response = staff.post(f"/admin/conduit/workspace/{alice.workspace.pk}/change/", form)
    assert response.status_code == 302, response.content[:3000]
    changed = AuditEvent.objects.filter(event="admin_object_changed", target_type="membership").get()
    assert "role" in changed.payload_json["fields"]
    assert AuditEvent.objects.filter(event="admin_object_created", target_type="membership").count() == 1
    new = Membership.objects.get(user=bob_user)
    form.update(
        {
            "memberships-TOTAL_FORMS": "2",
            "memberships-INITIAL_FORMS": "2",
            "memberships-0-role": "owner",
            "memberships-1-id": str(new.pk),
            "memberships-1-DELETE": "on",
        }
    )
    assert staff.post(f"/admin/conduit/workspace/{alice.workspace.pk}/change/", form).status_code == 302
    assert not Membership.objects.filter(pk=new.pk).exists()
    deleted = AuditEvent.objects.get(event="admin_object_deleted")
    assert deleted.payload_json["model"] == "membership" and deleted.workspace == alice.workspace
    issued = do_create_api_token(alice.workspace, "gw", actor=alice.user)
    assert (
        staff.post(f"/admin/conduit/apitoken/{issued.token.pk}/delete/", {"post": "yes"}).status_code == 403
    )


def test_integrations_admin_lists_connections_and_sync_logs_without_tokens(
    staff: Client, alice: Tenant
) -> None:
    from conduit.tenancy import system_scope
    from integrations.models import CrmConnection, SyncLog

    with system_scope():
        conn = CrmConnection.objects.create(
            workspace=alice.workspace,
            crm="hubspot",
            status="connected",
            external_account_key="4400001",
            access_token="ADMIN-ACCESS-TOKEN-123456",
            refresh_token="ADMIN-REFRESH-TOKEN-123456",
        )
        SyncLog.objects.create(
            workspace=alice.workspace,
            connection=conn,
            provider="hubspot",
            operation="create_note",
            status="FAILED",
            http_status=400,
            error_code="validation_error",
            summary="create_note failed",
        )
    for model in (CrmConnection, SyncLog):
        model_admin = admin.site._registry[model]
        assert model_admin.search_fields and model_admin.list_filter
    pages = [
        staff.get("/admin/integrations/crmconnection/"),
        staff.get(f"/admin/integrations/crmconnection/{conn.pk}/change/"),
        staff.get("/admin/integrations/synclog/?status__exact=FAILED"),
    ]
    assert [p.status_code for p in pages] == [200, 200, 200]
    html = b"".join(p.content for p in pages)
    assert b"4400001" in html and b"validation_error" in html
    assert b"ADMIN-ACCESS-TOKEN" not in html and b"ADMIN-REFRESH-TOKEN" not in html


def test_forcing_a_refresh_of_an_odoo_connection_says_an_api_key_has_none(
    staff: Client, alice: Tenant
) -> None:
    from conduit.tenancy import system_scope
    from integrations.models import CrmConnection

    with system_scope():
        conn = CrmConnection.objects.create(
            workspace=alice.workspace,
            crm="odoo",
            status="connected",
            external_account_key="acme.odoo.com/acme",
            external_account_json={"key_last4": "c0de", "api": "json2"},
            access_token="7e57c0de" * 5,
        )
    done = staff.post(
        "/admin/integrations/crmconnection/",
        {"action": "force_token_refresh", "_selected_action": [conn.pk]},
        follow=True,
    )
    assert b"an API key has no refresh; unchanged" in done.content
    assert b"7e57c0de7e57c0de" not in done.content
    with system_scope():
        conn.refresh_from_db()
    assert (conn.status, conn.access_token) == ("connected", "7e57c0de" * 5)


def test_the_console_cannot_take_a_workspaces_last_owner(staff: Client, alice: Tenant) -> None:
    from conduit.models import Membership

    owner = Membership.objects.get(user=alice.user)
    url = f"/admin/conduit/membership/{owner.pk}/change/"
    demoted = staff.post(url, {"workspace": alice.workspace.pk, "user": alice.user.pk, "role": "admin"})
    assert demoted.status_code == 200 and b"A workspace needs an owner" in demoted.content
    assert staff.get(f"/admin/conduit/membership/{owner.pk}/delete/").status_code == 403
    assert b"delete_selected" not in staff.get("/admin/conduit/membership/").content
    inline = {
        "name": "Alice",
        "slug": "alice",
        "created_at_0": "2026-11-01",
        "created_at_1": "10:00:00",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "1",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-id": str(owner.pk),
        "memberships-0-workspace": str(alice.workspace.pk),
        "memberships-0-user": str(alice.user.pk),
        "memberships-0-role": "member",
    }
    refused = staff.post(f"/admin/conduit/workspace/{alice.workspace.pk}/change/", inline)
    assert refused.status_code == 200 and b"A workspace needs an owner" in refused.content
    owner.refresh_from_db()
    assert owner.role == "owner"
