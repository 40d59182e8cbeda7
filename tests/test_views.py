from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from conduit.ingest import ingest_one, parse_raw
from conduit.models import ApiToken, AuditEvent, Membership, Message, Profile, Workspace
from tests.conftest import PASSWORD, Tenant, make_message, raw_email


def test_signup_creates_user_profile_workspace_and_owner_membership(db: None) -> None:
    client = Client()
    response = client.post(
        "/signup/", {"email": "New.Person@Example.com", "workspace_name": "Acme Corp", "password": PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == "/settings/"
    user = User.objects.get(username="new.person@example.com")
    assert Profile.objects.get(user=user).email == "new.person@example.com"
    membership = Membership.objects.get(user=user)
    assert membership.role == "owner" and membership.workspace.slug == "acme-corp"
    assert set(AuditEvent.objects.values_list("event", flat=True)) == {"user_signed_up", "workspace_created"}
    page = client.get("/settings/")
    assert page.status_code == 200 and b"Acme Corp" in page.content


def test_signup_slug_is_unique(alice: Tenant) -> None:
    Client().post("/signup/", {"email": "x@y.example", "workspace_name": "Alice", "password": PASSWORD})
    assert Workspace.objects.filter(slug="alice-2").exists()


@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        (
            {"email": "alice@example.com", "workspace_name": "W", "password": PASSWORD},
            "email",
            "already exists",
        ),
        ({"email": "not-an-email", "workspace_name": "W", "password": PASSWORD}, "email", "valid email"),
        (
            {"email": "n@example.com", "workspace_name": "   ", "password": PASSWORD},
            "workspace_name",
            "required",
        ),
        ({"email": "n@example.com", "workspace_name": "W", "password": "123"}, "password", "too short"),
    ],
)
def test_signup_errors_are_shown_and_nothing_is_created(
    alice: Tenant, data: dict, field: str, text: str
) -> None:  # type: ignore[type-arg]
    before = (User.objects.count(), Workspace.objects.count(), AuditEvent.objects.count())
    response = Client().post("/signup/", data)
    assert response.status_code == 400
    assert any(text in e for e in response.context["form"].errors[field])
    assert (User.objects.count(), Workspace.objects.count(), AuditEvent.objects.count()) == before


def test_login_and_logout(alice: Tenant) -> None:
    client = Client()
    assert client.get("/").url == "/accounts/login/"
    bad = client.post("/accounts/login/", {"username": "alice@example.com", "password": "wrong"})
    assert bad.status_code == 200 and b"Please enter a correct" in bad.content
    ok = client.post("/accounts/login/", {"username": "alice@example.com", "password": PASSWORD})
    assert ok.status_code == 302 and ok["Location"] == "/settings/"
    assert client.get("/").url == "/settings/"
    assert client.get("/signup/").url == "/settings/"
    client.post("/accounts/logout/")
    assert client.get("/settings/").status_code == 302


@pytest.mark.parametrize(
    "url", ["/settings/", "/settings/integrations/", "/settings/retention/", "/messages/"]
)
def test_pages_render_with_navigation(alice: Tenant, url: str) -> None:
    response = alice.client().get(url)
    assert response.status_code == 200
    for label in (b"Integrations", b"Retention", b"Messages"):
        assert label in response.content


def test_pages_require_login(db: None) -> None:
    response = Client().get("/messages/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_user_without_workspace_sees_explanation(db: None) -> None:
    user = User.objects.create_user("lonely@example.com", "lonely@example.com", PASSWORD)
    client = Client()
    client.force_login(user)
    response = client.get("/messages/")
    assert response.status_code == 403 and b"not in a workspace" in response.content


def test_message_list_search_and_pagination(alice: Tenant, bob: Tenant) -> None:
    for n in range(30):
        make_message(alice.workspace, f"p{n}@x", subject=f"Renewal {n}" if n % 2 else f"Intro {n}")
    make_message(bob.workspace, "bob@x", subject="Renewal bob")
    client = alice.client()
    page = client.get("/messages/")
    assert page.context["page"].paginator.count == 30 and len(page.context["page"].object_list) == 25
    assert b"Older" in page.content
    renewals = client.get("/messages/?q=renewal")
    assert renewals.context["page"].paginator.count == 15
    assert b"bob" not in renewals.content
    assert b"No messages match" in client.get("/messages/?q=zzz").content


def test_empty_message_list_explains_how_to_ingest(alice: Tenant) -> None:
    assert b"No messages yet" in alice.client().get("/messages/").content


def test_message_detail_shows_headers_body_and_attachment(alice: Tenant) -> None:
    result = ingest_one(
        alice.workspace, parse_raw(raw_email("d@x", attachment=("q.csv", "text/csv", b"a,b")))
    )
    client = alice.client()
    page = client.get(f"/messages/{result.message.pk}/")
    assert page.status_code == 200
    for text in (
        b"Quarterly review",
        b"maya@acme.example",
        b"see you Tuesday",
        b"q.csv",
        b"priya@alice.example",
    ):
        assert text in page.content
    attachment = result.message.attachments.get()
    download = client.get(f"/attachments/{attachment.pk}/")
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"a,b"  # type: ignore[attr-defined]


def test_redacted_message_and_removed_attachment(alice: Tenant) -> None:
    from django.utils import timezone

    result = ingest_one(
        alice.workspace, parse_raw(raw_email("r@x", attachment=("q.csv", "text/csv", b"a,b")))
    )
    message = result.message
    message.is_redacted, message.redacted_at, message.body_text = True, timezone.now(), None
    message.save()
    attachment = message.attachments.get()
    attachment.removed_at = timezone.now()
    attachment.save()
    client = alice.client()
    page = client.get(f"/messages/{message.pk}/")
    assert b"removed on" in page.content and b"see you Tuesday" not in page.content
    assert client.get(f"/attachments/{attachment.pk}/").status_code == 404


def test_html_only_message_detail(alice: Tenant) -> None:
    message = make_message(alice.workspace, "h@x", body_text=None, body_html="<p>Only <b>html</b></p>")
    assert b"Only html" in alice.client().get(f"/messages/{message.pk}/").content


def test_other_workspace_message_and_attachment_are_404(alice: Tenant, bob: Tenant) -> None:
    result = ingest_one(bob.workspace, parse_raw(raw_email("b@x", attachment=("s.txt", "text/plain", b"s"))))
    client = alice.client()
    assert client.get(f"/messages/{result.message.pk}/").status_code == 404
    assert client.get(f"/attachments/{result.message.attachments.get().pk}/").status_code == 404


def test_owner_creates_and_revokes_api_token(alice: Tenant) -> None:
    client = alice.client()
    created = client.post("/settings/tokens/", {"name": "mail-gateway"}, follow=True)
    token = ApiToken.objects.get()
    assert token.revoked_at is None and token.name == "mail-gateway"
    raw = created.context["new_token"]
    assert raw.startswith("cdt_") and raw.encode() in created.content and token.token_hash != raw
    assert raw.encode() not in client.get("/settings/").content  # shown once
    client.post(f"/settings/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is not None
    events = list(AuditEvent.objects.filter(workspace=alice.workspace).values_list("event", "payload_json"))
    assert ("api_token_created", {"name": "mail-gateway", "prefix": token.prefix}) in events
    assert any(e == "api_token_revoked" for e, _ in events)
    assert raw not in str(events)


def test_token_form_errors_and_member_restrictions(alice: Tenant, make_workspace) -> None:  # type: ignore[no-untyped-def]
    client = alice.client()
    response = client.post("/settings/tokens/", {"name": ""}, follow=True)
    assert b"Give the token a name" in response.content and not ApiToken.objects.exists()
    member = make_workspace("team", role=Membership.Role.MEMBER)
    assert member.client().post("/settings/tokens/", {"name": "x"}).status_code == 404
    assert not ApiToken.objects.exists()


def test_cannot_revoke_another_workspaces_token(alice: Tenant, bob: Tenant) -> None:
    from conduit.services import do_create_api_token

    issued = do_create_api_token(bob.workspace, "bobs", actor=bob.user)
    assert alice.client().post(f"/settings/tokens/{issued.token.pk}/revoke/").status_code == 404
    issued.token.refresh_from_db()
    assert issued.token.revoked_at is None


def test_revoking_twice_is_harmless(alice: Tenant) -> None:
    from conduit.services import do_create_api_token, do_revoke_api_token

    issued = do_create_api_token(alice.workspace, "t", actor=alice.user)
    do_revoke_api_token(issued.token, actor=alice.user)
    do_revoke_api_token(issued.token, actor=alice.user)
    assert AuditEvent.objects.filter(event="api_token_revoked").count() == 1


def test_session_workspace_choice_is_respected(alice: Tenant, make_workspace) -> None:  # type: ignore[no-untyped-def]
    second = make_workspace("second")
    Membership.objects.create(workspace=second.workspace, user=alice.user, role="member")
    client = alice.client()
    session = client.session
    session["workspace_id"] = second.workspace.pk
    session.save()
    assert client.get("/settings/").context["current_workspace"] == second.workspace


def test_new_token_waits_in_the_session_encrypted(alice: Tenant) -> None:
    client = alice.client()
    client.post("/settings/tokens/", {"name": "gw"})
    sealed = client.session["new_api_token"]
    assert not sealed.startswith("cdt_")
    shown = client.get("/settings/").context["new_token"]
    assert shown.startswith("cdt_") and "new_api_token" not in client.session


def test_switch_workspace(alice: Tenant, make_workspace) -> None:  # type: ignore[no-untyped-def]
    second = make_workspace("second")
    Membership.objects.create(workspace=second.workspace, user=alice.user, role="admin")
    client = alice.client()
    page = client.get("/settings/")
    assert b"Switch workspace" in page.content
    switched = client.post("/settings/workspace/", {"workspace_id": second.workspace.pk}, follow=True)
    assert switched.context["current_workspace"] == second.workspace
    outsider = make_workspace("outsider")
    refused = client.post("/settings/workspace/", {"workspace_id": outsider.workspace.pk}, follow=True)
    assert b"not a member of that workspace" in refused.content
    assert refused.context["current_workspace"] == second.workspace


def test_api_token_never_opens_html_pages(alice: Tenant, make_workspace) -> None:  # type: ignore[no-untyped-def]
    from conduit.services import do_create_api_token

    make_message(alice.workspace, "alice-secret@x", subject="Alice confidential")
    raw = do_create_api_token(alice.workspace, "gw", actor=alice.user).raw
    mallory = make_workspace("mallory")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    page = mallory.client().get("/messages/", **auth)
    assert page.status_code == 200 and b"Alice confidential" not in page.content
    assert page.context["current_workspace"] == mallory.workspace
    message = Message.objects.get(message_id="alice-secret@x")
    assert mallory.client().get(f"/messages/{message.pk}/", **auth).status_code == 404
    assert Client().get("/settings/", **auth).status_code == 302  # not signed in: to the login page
    lonely = User.objects.create_user("lonely2@example.com", "lonely2@example.com", PASSWORD)
    client = Client()
    client.force_login(lonely)
    assert client.get("/messages/", **auth).status_code == 403


def test_request_that_crashes_is_rolled_back(alice: Tenant, settings) -> None:  # type: ignore[no-untyped-def]
    settings.ROOT_URLCONF = "tests.crash_urls"
    client = alice.client()
    client.raise_request_exception = False
    assert client.get("/crash/").status_code == 500
    assert not Message.objects.filter(message_id="half-done@x").exists()
