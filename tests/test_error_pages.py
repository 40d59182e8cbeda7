"""The product's error pages (DEBUG off, as in every test), JSON errors under /api/ and /crm/, the
removed-attachment page, the search length limit and the favicon."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.staticfiles import finders
from django.core.files.storage import default_storage
from django.template import loader
from django.test import Client

from conduit.forms import SEARCH_MAX_CHARS
from conduit.ingest import ingest_one, parse_raw
from conduit.models import Attachment
from tests.conftest import Tenant, make_message, raw_email

HOME_LINK = b'<a class="button primary" href="/">Go to the home page</a>'


@pytest.fixture
def failing_urls(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.error_page_urls"


def html(response: Any) -> str:
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


@pytest.mark.django_db
def test_unknown_page_is_the_product_404_with_a_way_home(alice: Tenant) -> None:
    anonymous = Client().get("/no-such-page/")
    assert anonymous.status_code == 404
    page = html(anonymous)
    assert "This page does not exist" in page and HOME_LINK.decode() in page
    assert "conduit.css" in page and 'rel="icon"' in page

    signed_in = alice.client().get("/messages/999999/")
    assert signed_in.status_code == 404
    assert "This page does not exist" in html(signed_in)
    assert "Log out" in signed_in.content.decode()  # the usual top bar of a signed-in person
    assert "No Message matches" not in signed_in.content.decode()  # Django's wording stays out


@pytest.mark.django_db
def test_unknown_urls_under_api_and_crm_stay_json(alice: Tenant) -> None:
    for path in ("/api/v1/nothing-here", "/crm/nothing-here"):
        response = Client().get(path)
        assert response.status_code == 404 and response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_server_error_page_is_static_and_api_crashes_answer_json(alice: Tenant, failing_urls: None) -> None:
    client = alice.client()
    client.raise_request_exception = False
    page = client.get("/boom/")
    assert page.status_code == 500
    text = html(page)
    assert "Something went wrong" in text and HOME_LINK.decode() in text
    assert "a bug" not in text and "Traceback" not in text
    for path in ("/api/v1/boom", "/crm/boom"):
        response = client.get(path)
        assert response.status_code == 500
        assert response.json() == {
            "code": "server_error",
            "message": "Conduit failed to answer this request; the error is logged.",
        }


def test_server_error_page_needs_no_database_and_no_request() -> None:
    # No `db` fixture: any query while rendering would fail this test.
    text = loader.get_template("500.html").render()
    assert "Something went wrong" in text and 'href="/"' in text
    assert "/static/conduit.css" in text


@pytest.mark.django_db
def test_permission_denied_page_says_why_and_api_answers_json(alice: Tenant, failing_urls: None) -> None:
    response = alice.client().get("/forbidden/")
    assert response.status_code == 403
    text = html(response)
    assert "You cannot do this here" in text
    assert "Only workspace owners and admins can do this." in text  # one full stop, capitalised
    assert HOME_LINK.decode() in text and "Log out" in text

    api = alice.client().get("/api/v1/forbidden")
    assert api.status_code == 403
    assert api.json() == {
        "code": "permission_denied",
        "message": "You do not have permission to perform this action.",
    }


@pytest.mark.django_db
def test_bad_request_page_names_no_detail_and_api_answers_json(failing_urls: None) -> None:
    response = Client().get("/suspicious/")
    assert response.status_code == 400
    text = html(response)
    assert "Conduit could not read this request" in text and HOME_LINK.decode() in text
    assert "secret" not in text

    too_big = Client().get("/api/v1/too-big")
    assert too_big.status_code == 400
    assert too_big.json() == {
        "code": "bad_request",
        "message": "Conduit could not read this request: the request body is larger than Conduit accepts.",
    }


@pytest.mark.django_db
def test_a_host_not_served_gets_the_400_page_and_json_under_api() -> None:
    page = Client().get("/accounts/login/", HTTP_HOST="evil.example")
    assert page.status_code == 400 and "Conduit could not read this request" in html(page)
    api = Client().get("/api/v1/integrations/status", HTTP_HOST="evil.example")
    assert api.status_code == 400 and api.json()["code"] == "bad_request"


@pytest.mark.django_db
def test_a_stale_form_gets_the_csrf_page_and_nothing_changes(alice: Tenant) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    response = client.post("/settings/workspace/", {"workspace_id": "1"})
    assert response.status_code == 403
    text = html(response)
    assert "This form could not be sent" in text and "Nothing was changed" in text
    assert "workspace_id" not in client.session


def removed_attachment(tenant: Tenant) -> Attachment:
    result = ingest_one(
        tenant.workspace, parse_raw(raw_email("gone@x", attachment=("deck.pdf", "application/pdf", b"%PDF")))
    )
    attachment = result.message.attachments.get()
    default_storage.delete(attachment.file.name)
    # what the retention purge leaves: no file, removed_at set
    Attachment.objects.filter(pk=attachment.pk).update(
        file="", removed_at=datetime(2026, 3, 4, 3, 30, tzinfo=UTC)
    )
    attachment.refresh_from_db()
    return attachment


@pytest.mark.django_db
def test_removed_attachment_says_when_the_retention_policy_removed_it(alice: Tenant) -> None:
    attachment = removed_attachment(alice)
    response = alice.client().get(f"/attachments/{attachment.pk}/")
    assert response.status_code == 404
    text = html(response)
    assert "This attachment was removed" in text
    assert "“deck.pdf” was removed by your workspace's retention policy on" in text
    assert "4 Mar 2026, 03:30 UTC" in text and 'datetime="2026-03-04T03:30:00+00:00"' in text
    assert f'href="/messages/{attachment.message_id}/"' in text and 'href="/settings/retention/"' in text


@pytest.mark.django_db
def test_missing_attachment_file_is_not_blamed_on_retention_and_is_logged(
    alice: Tenant, capture_json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    result = ingest_one(
        alice.workspace, parse_raw(raw_email("lost@x", attachment=("a.csv", "text/csv", b"a")))
    )
    attachment = result.message.attachments.get()
    default_storage.delete(attachment.file.name)
    response = alice.client().get(f"/attachments/{attachment.pk}/")
    assert response.status_code == 404
    text = html(response)
    assert "This attachment's file is missing" in text and "not removed by the retention policy" in text
    [line] = [entry for entry in capture_json_logs() if entry.get("error_code") == "attachment_file_missing"]
    assert line["level"] == "WARNING" and line["attachment_id"] == attachment.pk


@pytest.mark.django_db
def test_another_workspaces_removed_attachment_is_a_plain_404(alice: Tenant, bob: Tenant) -> None:
    attachment = removed_attachment(bob)
    response = alice.client().get(f"/attachments/{attachment.pk}/")
    assert response.status_code == 404
    assert "This page does not exist" in html(response) and "deck.pdf" not in html(response)


@pytest.mark.django_db
def test_search_box_has_a_length_limit(alice: Tenant) -> None:
    make_message(alice.workspace, "s@x", subject="Renewal " + "x" * (SEARCH_MAX_CHARS - 8))
    client = alice.client()
    page = client.get("/messages/")
    assert f'maxlength="{SEARCH_MAX_CHARS}"' in page.content.decode()
    at_limit = client.get("/messages/", {"q": "Renewal " + "x" * (SEARCH_MAX_CHARS - 8)})
    assert at_limit.status_code == 200 and "Page 1 of 1 · 1 message" in at_limit.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("q" * (SEARCH_MAX_CHARS + 1), f"at most {SEARCH_MAX_CHARS} characters; this search has 201"),
        ("é" * 5000, "this search has 5000"),
        ("a\x00b", "cannot contain a NUL character"),
    ],
)
def test_over_long_or_broken_search_is_refused_with_the_page(alice: Tenant, query: str, says: str) -> None:
    make_message(alice.workspace, "s@x", subject="Renewal")
    response = alice.client().get("/messages/", {"q": query})
    assert response.status_code == 400
    text = html(response)
    assert says in text and "Nothing was searched" in text
    assert "Renewal" not in text  # no results, and the refused text is not echoed back
    assert query[:50] not in text
    assert "<h1>Messages</h1>" in text and 'name="q" value=""' in text


def test_gunicorn_lets_a_search_just_over_the_limit_reach_django() -> None:
    from gunicorn.config import Config
    from gunicorn.http.parser import RequestParser

    from conduit import gunicorn

    config = Config()
    config.set("limit_request_line", gunicorn.limit_request_line)
    # the widest a browser can make it: 4-byte characters, each percent-encoded to 12 bytes
    query = quote("𝄞" * (SEARCH_MAX_CHARS + 1))
    line = f"GET /messages/?q={query}&page=99999 HTTP/1.1\r\nHost: conduit.example\r\n\r\n".encode()
    request = next(RequestParser(config, iter([line]), ("127.0.0.1", 1)))
    assert request.path == "/messages/" and len(request.query) > 12 * SEARCH_MAX_CHARS


@pytest.mark.django_db
def test_long_subject_is_cut_in_the_list_and_whole_on_the_detail_page(alice: Tenant) -> None:
    subject = "Quarterly " + "s" * 200_000
    message = make_message(alice.workspace, "long@x", subject=subject, from_address="a" * 300 + "@x.example")
    client = alice.client()
    listing = client.get("/messages/").content.decode()
    assert len(listing) < 20_000  # one row, not 200,000 characters twice
    assert f'title="Quarterly {"s" * 289}…"' in listing and 'class="table fixed messages"' in listing
    detail = client.get(f"/messages/{message.pk}/").content.decode()
    assert subject in detail and '<h1 class="subject long" tabindex="0">' in detail
    assert f"<title>Quarterly {'s' * 69}… · Conduit</title>" in detail


@pytest.mark.django_db
def test_favicon_is_linked_and_favicon_ico_redirects_to_it(alice: Tenant) -> None:
    response = Client().get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/favicon.svg"
    found = finders.find("favicon.svg")
    assert isinstance(found, str) and Path(found).read_text(encoding="utf-8").startswith("<svg")
    page = alice.client().get("/settings/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
