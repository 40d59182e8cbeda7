"""The writes page of a connection (reconcile/customer_writes.py): failed, permanently failed and
skipped writes with the reason in plain words (reconcile/error_words.py), Retry now and Skip for
owners and admins (audited with the user as actor), read-only for members, isolation between
workspaces, stale and bad requests that change nothing, and a query count that does not grow
with the rows shown."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from reconcile import customer_writes, error_words, services
from reconcile.error_words import kind_of, reason_for, scrub
from reconcile.models import CrmWriteLog, DealMapping
from reconcile.services import do_retry_writes, do_skip_writes
from tests.conftest import Tenant
from tests.ops_helpers import events, flash, member_client
from tests.writes_page_helpers import BODY, live_conn, make_write, reload

pytestmark = pytest.mark.django_db
Status = CrmWriteLog.Status
PAGE = "/settings/integrations/hubspot/writes/"


def shown_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-write="(\d+)"', html)]


def seen_of(html: str, write_id: int) -> str:
    item = html[html.index(f'data-write="{write_id}"') :]
    match = re.search(r'name="seen" value="([^"]+)"', item)
    assert match, "no action form on that write"
    return match[1]


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    calls: list[list[int]] = []
    monkeypatch.setattr(services, "dispatch_after_commit", lambda ids: calls.append(list(ids)))
    return calls


# The page ---------------------------------------------------------------------------------------


def test_the_page_lists_failed_writes_newest_first_with_counts_and_reasons(alice: Tenant) -> None:
    conn = live_conn(alice)
    due = timezone.now() + timedelta(minutes=7)
    refused = make_write(
        conn,
        permanent=True,
        code="validation_error",
        message="Property values were not valid",
        retry_count=1,
        subject="Invoice question",
        age=timedelta(hours=3),
    )
    retrying = make_write(
        conn,
        code="http_503",
        message="Service Unavailable",
        retry_count=3,
        next_retry_at=due,
        subject="Delivery",
    )
    skipped = make_write(
        conn, status=Status.SKIPPED, code="no_matching_contact", message="no HubSpot contact has this email"
    )
    make_write(conn, status=Status.SUCCEEDED, subject="Went through")
    make_write(live_conn(alice, "salesforce"), code="http_500", subject="Another CRM")

    response = alice.client().get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert shown_ids(html) == [retrying.pk, refused.pk]  # failed ones, newest first
    assert 'data-count="retrying">1<' in html and 'data-count="skipped">1<' in html
    assert 'data-count="permanent" class="bad">1<' in html
    assert "HubSpot refused the data: Property values were not valid." in html
    assert "HubSpot was unavailable (server error 503); Conduit tries again automatically." in html
    assert "3 of 8" in html and "1 of 8" in html
    assert due.strftime("%Y-%m-%d %H:%M") + " UTC" in html  # the next attempt of the retrying one
    assert "None: Conduit stopped trying" in html  # the permanent one
    assert "Went through" not in html and "Another CRM" not in html
    assert "Exact request body sent to HubSpot" in html and "hs_note_body" in html
    assert html.count("data-retry") == 2 and html.count("data-skip") == 2

    skipped_tab = alice.client().get(PAGE, {"show": "skipped"}).content.decode()
    assert shown_ids(skipped_tab) == [skipped.pk]
    assert "No HubSpot contact has this email address" in skipped_tab
    assert "data-skip" not in skipped_tab and "data-retry" in skipped_tab  # no contact: may be retried
    permanent_tab = alice.client().get(PAGE, {"show": "permanent"}).content.decode()
    assert shown_ids(permanent_tab) == [refused.pk]
    retrying_tab = alice.client().get(PAGE, {"show": "retrying"}).content.decode()
    assert shown_ids(retrying_tab) == [retrying.pk]


def test_each_write_says_what_it_is_on_which_contact_and_deal_and_from_which_email(alice: Tenant) -> None:
    conn = live_conn(alice)
    long_subject = "Renewal terms for the 2027 contract " + "and the logistics annex " * 8
    task = make_write(
        conn,
        operation="create_task",
        code="http_500",
        subject=long_subject,
        with_message=True,
        resolved={"contact_id": "9001", "deal_id": "7007"},
    )
    with system_scope():
        DealMapping.objects.create(
            workspace=alice.workspace, connection=conn, email="lee@beta.example", contact_id="42", deal_id=""
        )
    cached = make_write(conn, code="timeout", target="lee@beta.example")
    html = alice.client().get(PAGE).content.decode()
    item = html[html.index(f'data-write="{task.pk}"') :]
    assert ">Task<" in item
    assert f'title="{long_subject}"' in item and 'class="write-subject"' in item  # cut by CSS, full in title
    assert "HubSpot contact 9001, deal 7007" in item
    assert f'href="/messages/{task.message_id}/"' in item
    assert "Email (inbound): Renewal terms" in item  # the curated summary
    other = html[html.index(f'data-write="{cached.pk}"') :]
    assert "HubSpot contact 42)" in other  # from the lookup cache, before the send
    assert "the email was deleted" in other
    assert "it did not answer in time" in other


def test_a_meeting_write_points_to_the_customers_timeline_not_to_an_email(alice: Tenant) -> None:
    meeting = make_write(
        live_conn(alice), operation="create_meeting", code="http_500", subject="Renewal call"
    )
    html = alice.client().get(PAGE).content.decode()
    item = html[
        html.index(f'data-write="{meeting.pk}"') : html.index(
            "</li>", html.index(f'data-write="{meeting.pk}"')
        )
    ]
    assert ">Meeting<" in item and f'href="/customers/{meeting.target}/"' in item
    assert "the email was deleted" not in item and "<dt>Email</dt>" not in item and "<dt>Meeting</dt>" in item


def test_no_email_body_token_or_secret_is_shown(alice: Tenant) -> None:
    conn = live_conn(alice, access_token="tok-ACCESS-abcdef123456", refresh_token="tok-REFRESH-abcdef123456")
    make_write(
        conn,
        code="weird_new_code",
        message="upstream said Authorization: Bearer abcdefghijklmnop1234 and more",
        with_message=True,
    )
    html = alice.client().get(PAGE).content.decode()
    assert BODY not in html
    assert "tok-ACCESS" not in html and "tok-REFRESH" not in html
    assert "abcdefghijklmnop1234" not in html
    assert "[redacted]" in html  # the unknown code's message is shown, scrubbed


def test_members_read_the_page_without_actions(alice: Tenant, make_workspace: Callable[..., Tenant]) -> None:
    conn = live_conn(alice)
    make_write(conn, permanent=True, code="validation_error", message="bad")
    member = member_client(alice, make_workspace)
    html = member.get(PAGE).content.decode()
    assert "HubSpot refused the data: bad." in html
    assert "data-retry" not in html and "data-skip" not in html
    assert "Only workspace owners and admins can retry or skip a write." in html


def test_the_page_pages_fifty_writes_at_a_time(alice: Tenant) -> None:
    conn = live_conn(alice)
    rows = [make_write(conn, code="http_502", age=timedelta(minutes=i)) for i in range(51)]
    client = alice.client()
    first = client.get(PAGE).content.decode()
    assert shown_ids(first) == [r.pk for r in rows[:50]]
    assert "Page 1 of 2" in first and 'href="/settings/integrations/hubspot/writes/?page=2"' in first
    second = client.get(PAGE, {"page": "2"}).content.decode()
    assert shown_ids(second) == [rows[50].pk] and "Page 2 of 2" in second
    assert shown_ids(client.get(PAGE, {"page": "abc"}).content.decode()) == shown_ids(first)
    assert shown_ids(client.get(PAGE, {"page": "999"}).content.decode()) == [rows[50].pk]
    assert shown_ids(client.get(PAGE, {"show": "<script>"}).content.decode()) == shown_ids(first)


def test_the_query_count_does_not_grow_with_the_rows_shown(alice: Tenant) -> None:
    conn = live_conn(alice)
    client = alice.client()

    def queries_with(n: int) -> int:
        for i in range(n):
            make_write(
                conn,
                permanent=i % 2 == 0,
                code="validation_error" if i % 2 == 0 else "http_503",
                target=f"p{i}@beta.example",
                with_message=i % 3 == 0,
            )
            with system_scope():
                DealMapping.objects.get_or_create(
                    workspace=alice.workspace, connection=conn, email=f"p{i}@beta.example", contact_id=str(i)
                )
        with CaptureQueriesContext(db_connection) as captured:
            response = client.get(PAGE)
        assert response.status_code == 200 and len(shown_ids(response.content.decode())) == n
        return len(captured)

    one = queries_with(1)
    with system_scope():
        CrmWriteLog.objects.all().delete()
    thirty = queries_with(30)
    assert thirty == one, f"{one} queries for 1 write, {thirty} for 30"


def test_unknown_crm_or_no_connection_is_a_404_and_a_stranger_is_sent_to_sign_in(alice: Tenant) -> None:
    live_conn(alice)
    client = alice.client()
    assert client.get("/settings/integrations/nosuchcrm/writes/").status_code == 404
    assert client.get("/settings/integrations/zoho/writes/").status_code == 404
    anonymous = Client().get(PAGE)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_a_disconnected_connection_still_shows_its_writes(alice: Tenant) -> None:
    conn = live_conn(alice, status="disconnected")
    row = make_write(
        conn, code="refresh_token_revoked", message="waiting for the connection to be reconnected"
    )
    html = alice.client().get(PAGE).content.decode()
    assert shown_ids(html) == [row.pk]
    assert "HubSpot is disconnected" in html
    assert "HubSpot no longer accepts Conduit&#x27;s access: reconnect HubSpot" in html
    assert "After HubSpot is reconnected" in html


# Retry and skip ---------------------------------------------------------------------------------


def test_an_owner_retries_a_permanent_failure_audited_with_the_user(
    alice: Tenant, dispatched: list[list[int]]
) -> None:
    conn = live_conn(alice)
    row = make_write(conn, permanent=True, code="validation_error", message="bad", retry_count=2)
    client = alice.client()
    seen = seen_of(client.get(PAGE, {"show": "permanent"}).content.decode(), row.pk)
    response = client.post(
        f"{PAGE}{row.pk}/retry/", {"seen": seen, "show": "permanent", "page": "1"}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"{PAGE}?show=permanent"
    assert (
        f"Write #{row.pk} is queued again with its attempts reset: Conduit sends it to HubSpot now."
        in flash(response)
    )
    after = reload(row)
    assert (after.status, after.permanent_failure, after.retry_count) == (Status.FAILED, False, 0)
    assert after.next_retry_at is not None and after.next_retry_at <= timezone.now()
    [event] = events("crm_write_retry_requested")
    assert event.actor == f"user:{alice.user.pk}" and event.workspace_id == alice.workspace.pk
    assert event.target_id == str(row.pk)
    assert event.payload_json["reason"] == "customer: writes page" and event.payload_json["permanent_failure"]
    assert dispatched == [[conn.pk]]
    assert shown_ids(response.content.decode()) == []  # no longer permanent


def test_an_admin_skips_a_write_audited_and_it_moves_to_skipped(
    alice: Tenant, make_workspace: Callable[..., Tenant], dispatched: list[list[int]]
) -> None:
    conn = live_conn(alice)
    row = make_write(conn, permanent=True, code="object_not_found", message="contact deleted")
    admin = member_client(alice, make_workspace, role="admin")
    seen = seen_of(admin.get(PAGE).content.decode(), row.pk)
    response = admin.post(f"{PAGE}{row.pk}/skip/", {"seen": seen}, follow=True)
    assert f"Write #{row.pk} skipped: Conduit will not send it. It is listed under Skipped." in flash(
        response
    )
    assert reload(row).status == Status.SKIPPED
    [event] = events("crm_write_skipped")
    admin_user = User.objects.get(username="alice-admin@example.com")
    assert event.actor == f"user:{admin_user.pk}" and event.payload_json["reason"] == "customer: writes page"
    assert dispatched == []
    html = response.content.decode()
    assert 'data-count="permanent">0<' in html and 'data-count="skipped">1<' in html
    assert shown_ids(admin.get(PAGE, {"show": "skipped"}).content.decode()) == [row.pk]


def test_a_member_cannot_retry_or_skip(alice: Tenant, make_workspace: Callable[..., Tenant]) -> None:
    conn = live_conn(alice)
    row = make_write(conn, permanent=True, code="validation_error")
    seen = seen_of(alice.client().get(PAGE).content.decode(), row.pk)
    member = member_client(alice, make_workspace)
    assert member.post(f"{PAGE}{row.pk}/retry/", {"seen": seen}).status_code == 403
    assert member.post(f"{PAGE}{row.pk}/skip/", {"seen": seen}).status_code == 403
    after = reload(row)
    assert (after.status, after.permanent_failure) == (Status.FAILED, True)
    assert events("crm_write_retry_requested") == [] and events("crm_write_skipped") == []


def test_a_write_of_another_workspace_is_a_404(alice: Tenant, bob: Tenant) -> None:
    bobs = make_write(live_conn(bob), permanent=True, code="validation_error", message="bob's secret reason")
    live_conn(alice)
    client = alice.client()
    assert "bob&#x27;s secret reason" not in client.get(PAGE).content.decode()
    seen = customer_writes.seen_token(bobs)
    assert client.post(f"{PAGE}{bobs.pk}/retry/", {"seen": seen}).status_code == 404
    assert client.post(f"{PAGE}{bobs.pk}/skip/", {"seen": seen}).status_code == 404
    # the same write under another CRM's path is no better
    assert (
        client.post(f"/settings/integrations/salesforce/writes/{bobs.pk}/retry/", {"seen": seen}).status_code
        == 404
    )
    after = reload(bobs)
    assert (after.status, after.permanent_failure) == (Status.FAILED, True)
    assert events("crm_write_retry_requested") == [] and events("crm_write_skipped") == []


def test_a_write_that_changed_since_the_page_changes_nothing(
    alice: Tenant, dispatched: list[list[int]]
) -> None:
    conn = live_conn(alice)
    retried = make_write(conn, permanent=True, code="validation_error", age=timedelta(minutes=1))
    sent = make_write(conn, code="http_503", retry_count=1, age=timedelta(minutes=2))
    skipped = make_write(conn, code="http_503", retry_count=1, age=timedelta(minutes=3))
    client = alice.client()
    html = client.get(PAGE).content.decode()
    seen = {row.pk: seen_of(html, row.pk) for row in (retried, sent, skipped)}

    do_retry_writes([retried], actor="someone else")  # another admin, in another tab
    dispatched.clear()  # that retry's own dispatch; the page's stale posts must add none
    with system_scope():
        CrmWriteLog.objects.filter(pk=sent.pk).update(status=Status.SUCCEEDED, external_id="77")
    do_skip_writes([skipped], actor="someone else")
    before = {row.pk: reload(row) for row in (retried, sent, skipped)}
    with system_scope():
        audit_count = AuditEvent.objects.count()
    cases = [
        (retried, "retry", "was retried in the meantime; nothing was changed."),
        (retried, "skip", "was retried in the meantime; nothing was changed."),
        (sent, "retry", "was sent to HubSpot in the meantime; nothing was changed."),
        (skipped, "retry", "was skipped in the meantime; nothing was changed."),
    ]
    for row, action, words in cases:
        response = client.post(f"{PAGE}{row.pk}/{action}/", {"seen": seen[row.pk]}, follow=True)
        assert response.status_code == 200
        assert f"Write #{row.pk} {words}" in flash(response)
    for row in (retried, sent, skipped):
        after = reload(row)
        assert (after.status, after.retry_count, after.updated_at) == (
            before[row.pk].status,
            before[row.pk].retry_count,
            before[row.pk].updated_at,
        )
    with system_scope():
        assert AuditEvent.objects.count() == audit_count
    assert dispatched == []


def test_bad_input_changes_nothing(alice: Tenant) -> None:
    conn = live_conn(alice)
    row = make_write(conn, permanent=True, code="validation_error")
    client = alice.client()
    for data in ({}, {"seen": "nonsense"}, {"seen": "failed.1.0"}, {"seen": "<script>.1.0.1"}):
        response = client.post(f"{PAGE}{row.pk}/retry/", data, follow=True)
        assert "That request was incomplete, so nothing was changed. Reload the page and try again." in flash(
            response
        )
    assert client.get(f"{PAGE}{row.pk}/retry/").status_code == 405
    assert client.post(f"{PAGE}abc/retry/").status_code == 404
    assert client.post(f"{PAGE}{row.pk + 1000}/retry/", {"seen": "failed.1.0.1"}).status_code == 404
    response = client.post(f"{PAGE}{row.pk}/skip/", {"seen": "failed.1.0.1", "show": "<x>", "page": "x"})
    assert response["Location"] == PAGE  # the stale token: back to the default tab, page 1
    after = reload(row)
    assert (after.status, after.permanent_failure) == (Status.FAILED, True)
    assert events("crm_write_retry_requested") == [] and events("crm_write_skipped") == []


def test_a_post_without_the_csrf_token_is_refused(alice: Tenant) -> None:
    conn = live_conn(alice)
    row = make_write(conn, permanent=True, code="validation_error")
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    response = client.post(f"{PAGE}{row.pk}/retry/", {"seen": customer_writes.seen_token(row)})
    assert response.status_code == 403
    assert reload(row).permanent_failure and events("crm_write_retry_requested") == []


def test_retry_on_a_connection_in_error_says_when_it_will_be_sent(
    alice: Tenant, dispatched: list[list[int]]
) -> None:
    conn = live_conn(alice, status="error")
    row = make_write(conn, status=Status.SKIPPED, code="no_matching_contact")
    client = alice.client()
    seen = seen_of(client.get(PAGE, {"show": "skipped"}).content.decode(), row.pk)
    response = client.post(f"{PAGE}{row.pk}/retry/", {"seen": seen, "show": "skipped"}, follow=True)
    assert (
        f"Write #{row.pk} is queued again with its attempts reset: "
        "it is sent once HubSpot is connected and live." in flash(response)
    )
    assert reload(row).status == Status.FAILED


# Error words ------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
RAISED = re.compile(
    r"\b(?:Transient|Permanent|RateLimited|AuthRevoked|TokenExpired|InvalidInstanceUrl|MissingScope)\("
    r"\s*[^,()]+,\s*\"([a-z0-9_]+)\"",
    re.S,
)
CLASS_CODE = re.compile(r"^\s+(?:error_)?code = \"([a-z0-9_]+)\"", re.M)
ZOHO_URL_CODE = re.compile(r"validate_zoho_url\([^)]*\"(invalid_[a-z_]+)\"\)")
RECONCILE_CODES = {
    "no_matching_contact",
    "max_attempts",
    "internal_error",
    "lease_expired",
    "lease_expired_outcome_unknown",
    "skipped_at_go_live",
}


def codes_in(paths: list[Path], *patterns: re.Pattern[str]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        text = path.read_text()
        for pattern in patterns:
            found.update(pattern.findall(text))
    return found


def provider_codes() -> set[str]:
    """Every literal error code the provider layer and the token layer can raise."""
    paths = [
        *sorted((ROOT / "integrations" / "providers").glob("*.py")),
        ROOT / "integrations" / "connections" / "tokens.py",
    ]
    return codes_in(paths, RAISED, CLASS_CODE, ZOHO_URL_CODE)


def test_every_error_code_the_providers_raise_has_words() -> None:
    codes = provider_codes()
    # the scan finds the codes (a broken scan must not pass quietly)
    assert {
        "rate_limited",
        "timeout",
        "network_error",
        "refresh_token_revoked",
        "invalid_session_id",
    } <= codes
    assert {"api_key_rejected", "daily_budget_paused", "not_connected", "invalid_accounts_server"} <= codes
    assert len(codes) >= 45
    unknown = sorted(c for c in codes if kind_of(c) == error_words.UNKNOWN)
    assert unknown == [], f"add these codes to reconcile/error_words.py: {unknown}"
    for code in codes:
        words = reason_for(code, "", crm="HubSpot").words
        assert words and words[0].isupper() and words.endswith("."), (code, words)


def test_every_code_reconcile_writes_has_words() -> None:
    source = "".join((ROOT / "reconcile" / n).read_text() for n in ("delivery.py", "queue.py", "services.py"))
    for code in RECONCILE_CODES:
        assert f'"{code}"' in source or f"'{code}'" in source, code  # still written there
        assert kind_of(code) != error_words.UNKNOWN, code


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (
            "rate_limited",
            "limit",
            "HubSpot asked Conduit to slow down (a rate limit); the write is sent automatically.",
        ),
        (
            "daily_budget_paused",
            "limit",
            "Conduit paused writes to stay within HubSpot's daily API allowance",
        ),
        ("token_expired", "reconnect", "HubSpot no longer accepts Conduit's access: reconnect HubSpot;"),
        ("refresh_token_revoked", "reconnect", "reconnect HubSpot"),
        # codes the providers compute (not literals the scan finds): HubSpot and Zoho 401s, Zoho limits
        ("invalid_authentication", "reconnect", "reconnect HubSpot"),
        ("invalid_token", "reconnect", "reconnect HubSpot"),
        ("authentication_failure", "reconnect", "reconnect HubSpot"),
        ("credits_exhausted", "limit", "HubSpot's API credits for the day are used up"),
        ("concurrency_limit", "limit", "asked Conduit to slow down"),
        ("invalid_session_id", "reconnect", "reconnect HubSpot"),
        ("access_token_rejected", "reconnect", "reconnect HubSpot"),
        ("not_connected", "reconnect", "reconnect HubSpot"),
        ("api_key_rejected", "reconnect", "HubSpot refused the API key: update the credentials"),
        ("missing_scope", "reconnect", "Conduit lacks a permission in HubSpot (missing scopes: tasks)"),
        (
            "http_500",
            "unavailable",
            "HubSpot was unavailable (server error 500); Conduit tries again automatically.",
        ),
        ("http_503", "unavailable", "HubSpot was unavailable (server error 503)"),
        ("timeout", "unavailable", "HubSpot was unavailable (it did not answer in time)"),
        ("network_error", "unavailable", "HubSpot was unavailable (it could not be reached)"),
        ("locked", "unavailable", "HubSpot was unavailable (the record was locked by another change)"),
        ("validation_error", "refused", "HubSpot refused the data: the message."),
        ("required_field_missing", "refused", "HubSpot refused the data: the message."),
        ("invalid_data", "refused", "HubSpot refused the data: the message."),
        ("http_400", "refused", "HubSpot refused the data: the message."),
        ("object_not_found", "refused", "HubSpot refused the data: the message."),
        (
            "invalid_client",
            "setup",
            "Conduit could not write to HubSpot because of a setup problem (the message)",
        ),
        ("lease_expired_outcome_unknown", "interrupted", "Sending was interrupted before HubSpot answered"),
        ("internal_error", "interrupted", "an error on Conduit's side"),
        ("no_matching_contact", "no_contact", "No HubSpot contact has this email address"),
        ("skipped_at_go_live", "not_sent", "Planned during dry run and not sent when HubSpot went live."),
    ],
)
def test_error_codes_read_as_plain_sentences(code: str, kind: str, words: str) -> None:
    message = "missing scopes: tasks" if code == "missing_scope" else "The message"
    reason = reason_for(code, message, crm="HubSpot")
    assert reason.kind == kind
    assert words.lower() in reason.words.lower(), reason.words


def test_provider_codes_not_known_in_advance_are_read_by_their_shape() -> None:
    # Salesforce errorCode, HubSpot category, Zoho code, Odoo exception name, lower-cased
    for code in ("field_integrity_exception", "string_too_long", "duplicate_data", "mandatory_not_found"):
        assert kind_of(code) == error_words.REFUSED, code
    for code in ("http_502", "http_504", "http_599"):
        assert kind_of(code) == error_words.UNAVAILABLE
    for code in ("http_404", "http_409", "http_422"):
        assert kind_of(code) == error_words.REFUSED
    # only a Permanent error (or max_attempts) makes a write permanent: its code is a refusal
    assert kind_of("cannot_update_converted_lead") == error_words.UNKNOWN
    assert kind_of("cannot_update_converted_lead", permanent=True) == error_words.REFUSED
    refused = reason_for("cannot_update_converted_lead", "converted lead", crm="Salesforce", permanent=True)
    assert refused.words == "Salesforce refused the data: converted lead."


def test_max_attempts_names_the_last_error() -> None:
    words = reason_for(
        "max_attempts", "8 failed attempts; last: http_503", crm="Zoho CRM", permanent=True
    ).words
    assert words == (
        "Zoho CRM was unavailable on all 8 attempts (last: server error 503); Conduit stopped trying. "
        "Retry once Zoho CRM works again."
    )
    timeout = reason_for("max_attempts", "5 failed attempts; last: timeout", crm="HubSpot").words
    assert "(last: it did not answer in time)" in timeout
    ours = reason_for("max_attempts", "5 failed attempts; last: internal_error", crm="HubSpot").words
    assert ours.startswith("Sending failed on all 5 attempts because of an error on Conduit's side")
    assert "Conduit stopped trying" in reason_for("max_attempts", "", crm="HubSpot").words


def test_an_unknown_code_shows_the_stored_message_scrubbed() -> None:
    reason = reason_for("brand_new_code", "refused: access_token=abc123secret456 for\n  the   record")
    assert reason.kind == error_words.UNKNOWN
    assert "abc123secret456" not in reason.words and "[redacted]" in reason.words
    assert reason.words == "refused: access_token=[redacted] for the record."
    assert (
        reason_for("brand_new_code", "", crm="HubSpot").words == "HubSpot reported an error (brand_new_code)."
    )
    assert reason_for("", "").words == "No reason was recorded."


def test_scrub_cuts_long_messages_with_an_ellipsis() -> None:
    text = scrub("word " * 200)
    assert len(text) == error_words.MESSAGE_MAX and text.endswith("…")
    assert reason_for("validation_error", "word " * 200, crm="HubSpot").words.endswith("…")


@pytest.mark.parametrize("code", ["refresh_token_revoked", "not_connected", "missing_scope"])
def test_an_api_key_crm_asks_for_new_credentials_not_a_reconnect(code: str) -> None:
    from reconcile.error_words import reason_for

    words = reason_for(code, crm="Odoo", oauth=False).words
    assert "update the credentials" in words and "reconnect" not in words
    assert "reconnect HubSpot" in reason_for(code, crm="HubSpot").words


def test_a_row_that_cannot_make_a_request_body_is_left_out_of_the_previews(alice: Tenant) -> None:
    from reconcile.ledger import ReconcileLedger
    from tests.ops_helpers import make_connection
    from tests.ops_helpers import make_write as make_row

    conn = make_connection(alice.workspace)
    broken = make_row(conn, "dry_run", payload={})  # curated by an older version: no text, no time
    with system_scope():
        assert ReconcileLedger().previews(conn) == []
    page = alice.client().get("/settings/integrations/")
    assert page.status_code == 200 and broken.target not in page.content.decode()
