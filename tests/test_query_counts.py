"""Query counts: every page and every /api/v1 list runs the same number of queries
however many rows it shows. Each is requested over a small world, then again after several times
more rows of every kind were added (members, invitations, tokens, messages and attachments, writes
in every state with their lookups, sync logs, webhook events, pauses, calendar events, audit
events, and other workspaces with their connections, health, cursors, policies and installs); the
two counts must be equal. A view, serializer or admin column that queries once per row shown (an
N+1) fails here.

A page is one line of PAGES; every admin of Conduit's apps has its changelist counted without
being listed. test_every_route_is_counted_or_says_why_not fails on a new route until it is in PAGES
or NOT_COUNTED."""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone

from conduit.models import (
    Attachment,
    AuditEvent,
    Heartbeat,
    Invitation,
    Membership,
    Message,
    PeriodicRun,
    Profile,
    Workspace,
    hash_token,
)
from conduit.services import do_create_api_token, do_create_staff_token
from conduit.tenancy import SESSION_WORKSPACE_KEY, system_scope
from integrations.models import (
    CRM_CHOICES,
    CrmConnection,
    ExternalCalendarConnection,
    ExternalCalendarEvent,
    IntegrationSetting,
    OAuthState,
    PendingInstall,
    SyncCursor,
    SyncLog,
    SyncPause,
    WebhookEvent,
)
from reconcile.models import CrmWriteLog, WritePolicy
from retention.models import RetentionPolicy
from tests.conftest import Tenant, make_message
from tests.ops_helpers import (
    make_connection,
    make_health,
    make_log,
    make_mapping,
    staff_token,
    workspace_token,
)
from tests.ops_helpers import make_write as make_ledger_write
from tests.writes_page_helpers import CUSTOMER, make_write

CRMS = [crm for crm, _ in CRM_CHOICES]
CALENDARS = ["google", "microsoft"]
FEW, MORE = 1, 4  # rows of each kind before, and added before the second count
OUR_APPS = {"conduit", "integrations", "reconcile", "retention"}
Status = CrmWriteLog.Status
SESSION, WORKSPACE_TOKEN, OPERATOR_TOKEN = "session", "workspace token", "operator token"  # Page.auth


@dataclass
class World:
    """Alice's workspace (alice is also an operator) and what its pages and endpoints read."""

    tenant: Tenant
    client: Client
    tokens: dict[str, str]  # auth -> bearer token
    connections: dict[str, CrmConnection]
    calendars: list[ExternalCalendarConnection]
    message: Message  # the one whose page is counted
    log: SyncLog  # the one whose endpoint is counted
    install: PendingInstall  # the one the claim page shows
    pause_targets: Iterator[dict[str, Any]]
    batches: int = 0

    @property
    def workspace(self) -> Workspace:
        return self.tenant.workspace

    def url(self, template: str) -> str:
        return template.format(
            workspace=self.workspace.pk,
            message=self.message.pk,
            log=self.log.pk,
            install=self.install.install_id,
            customer=CUSTOMER,
        )


# --- rows of every kind --------------------------------------------------------------------------


def new_user(email: str) -> User:
    user = User.objects.create_user(username=email, email=email, password="x" * 12)
    Profile.objects.create(user=user, email=email)
    return user


def add_members(world: World, tag: str) -> None:
    user = new_user(f"member@{tag}.alice.example")  # a domain each: Write settings lists them
    Membership.objects.create(workspace=world.workspace, user=user, role=Membership.Role.MEMBER)
    Invitation.objects.create(
        workspace=world.workspace,
        email=f"invited-{tag}@example.com",
        token_hash=hash_token(secrets.token_hex(16)),
        invited_by=user,
        expires_at=timezone.now() + timedelta(days=7),
    )


def add_tokens(world: World, tag: str) -> None:
    do_create_api_token(world.workspace, f"token {tag}", actor=world.tenant.user)
    do_create_staff_token(world.tenant.user, f"operator token {tag}")


def add_messages(world: World, tag: str) -> None:
    """A message with the customer (the message list, the customer's timeline) and an attachment
    of it and of the message whose page is counted."""
    message = make_message(
        world.workspace,
        f"{tag}@mail.example",
        from_address=f"Maya <{CUSTOMER}>",
        to_addresses=["alice@example.com"],
        sent_at=timezone.now() - timedelta(hours=1),
    )
    for parent in (message, world.message):
        Attachment.objects.create(
            workspace=world.workspace, message=parent, filename=f"{tag}.pdf", content_type="application/pdf"
        )


def add_writes(world: World, tag: str) -> None:
    """Per connection: a retrying, a permanent, a skipped, a dry-run and a planned write, each
    with its cached lookup; error codes differ, so grouped lists get a group more."""
    for crm, conn in world.connections.items():
        for n, (status, permanent) in enumerate(
            [(Status.FAILED, False), (Status.FAILED, True), (Status.SKIPPED, False), (Status.DRY_RUN, False)]
        ):
            target = f"{crm}-{n}@{tag}.customer.example"
            make_write(
                conn,
                status=status,
                permanent=permanent,
                code=f"code_{tag}_{n}",
                target=target,
                with_message=True,
            )
            make_mapping(conn, target, contact_id=f"c-{tag}-{n}", deal_id=f"d-{tag}-{n}")
        make_ledger_write(conn, "planned")


def add_sync_logs(world: World, tag: str) -> None:
    make_log(world.workspace, ok=False, code=f"code_{tag}")
    make_log(world.workspace, operation="search_contact")
    make_log(None, provider="salesforce", ok=False, code="network_error")


def add_webhook_events(world: World, tag: str) -> None:
    for status in (WebhookEvent.Status.RECEIVED, WebhookEvent.Status.FAILED):
        WebhookEvent.objects.create(
            provider="hubspot",
            event_id=f"evt-{tag}-{status}",
            event_type="contact.propertyChange",
            workspace=world.workspace,
            status=status,
            payload={"objectId": 101},
        )


def add_meetings(world: World, tag: str) -> None:
    """An upcoming meeting with the customer in each of alice's calendars."""
    starts = timezone.now() + timedelta(days=1)
    for calendar in world.calendars:
        make_meeting(calendar, f"{tag}-{calendar.provider}", starts)


def make_meeting(calendar: ExternalCalendarConnection, external_id: str, starts: Any) -> None:
    ExternalCalendarEvent.objects.create(
        workspace_id=calendar.workspace_id,
        profile_id=calendar.profile_id,
        connection=calendar,
        external_id=external_id,
        title=f"Meeting {external_id}",
        starts_at=starts,
        ends_at=starts + timedelta(minutes=30),
        attendees=["alice@example.com", CUSTOMER],
        customer_emails=[CUSTOMER],
    )


def add_audit_events(world: World, tag: str) -> None:
    for event in ("retention_purge_completed", "crm_write_skipped"):
        AuditEvent.objects.create(
            workspace=world.workspace,
            actor=f"user:{world.tenant.user.pk}",
            event=event,
            target_type="crm_write",
            target_id=tag,
            payload_json={"messages_redacted": 1},
        )


def add_pause(world: World, tag: str) -> None:
    """The next free pause scope (connection, workspace, provider, global), each set by a user."""
    member = new_user(f"pauser@{tag}.alice.example")
    SyncPause.objects.create(reason=f"pause {tag}", actor=f"user:{member.pk}", **next(world.pause_targets))


def pause_targets(workspace: Workspace, connections: dict[str, CrmConnection]) -> Iterator[dict[str, Any]]:
    yield {"scope": SyncPause.Scope.CONNECTION, "connection": connections["hubspot"]}
    yield {"scope": SyncPause.Scope.WORKSPACE, "workspace": workspace}
    yield {"scope": SyncPause.Scope.CONNECTION, "connection": connections["salesforce"]}
    yield {"scope": SyncPause.Scope.PROVIDER, "provider": "zoho"}
    yield {"scope": SyncPause.Scope.GLOBAL}


def add_other_workspace(world: World, tag: str) -> None:
    """A workspace with everything the operator pages and the admin list: alice administers it
    too (the workspace switcher, the claim page)."""
    workspace = Workspace.objects.create(slug=f"other-{tag}", name=f"Other {tag}")
    owner = new_user(f"owner@{tag}.other.example")
    Membership.objects.create(workspace=workspace, user=owner, role=Membership.Role.OWNER)
    Membership.objects.create(workspace=workspace, user=world.tenant.user, role=Membership.Role.ADMIN)
    WritePolicy.objects.create(workspace=workspace, internal_domains=[f"{tag}.other.example"])
    make_retention_policy(workspace, owner)
    for crm in CRMS:
        add_crm_rows(workspace, crm, owner)
    calendar = make_calendar(workspace, owner.profile, "google")
    make_meeting(calendar, tag, timezone.now() + timedelta(days=2))
    now = timezone.now()
    Heartbeat.objects.create(name=f"beat-{tag}", beat_at=now)
    PeriodicRun.objects.create(job=f"job-{tag}", slot=int(now.timestamp()), sent_at=now, sent_by="beat")


def add_crm_rows(workspace: Workspace, crm: str, owner: User) -> None:
    conn = make_connection(workspace, crm)
    make_health(conn, "warning", reason="rate_limited")
    make_mapping(conn, f"{crm}@{workspace.slug}.example", contact_id="1")
    make_ledger_write(conn, "failed", "validation_failed")
    IntegrationSetting.objects.create(workspace=workspace, provider=crm, enabled=False, changed_by="ops")
    for obj in SyncCursor.Object.values:
        SyncCursor.objects.create(
            workspace=workspace, connection=conn, provider=crm, object=obj, since_ts=timezone.now()
        )
    PendingInstall.objects.create(
        crm=crm,
        external_account_key=f"{workspace.slug}-{crm}",
        status=PendingInstall.Status.CLAIMED,
        expires_at=timezone.now(),
        connection=conn,
        claimed_workspace=workspace,
        claimed_by=owner,
        claimed_at=timezone.now(),
    )
    OAuthState.objects.create(
        state_hash=hash_token(secrets.token_hex(16)),
        crm=crm,
        workspace=workspace,
        user=owner,
        expires_at=timezone.now() + timedelta(minutes=10),
    )


ROW_MAKERS: list[Callable[[World, str], None]] = [
    add_members,
    add_tokens,
    add_messages,
    add_writes,
    add_sync_logs,
    add_webhook_events,
    add_meetings,
    add_audit_events,
    add_pause,
    add_other_workspace,
]


def add_rows(world: World, count: int) -> None:
    """`count` more rows of every kind."""
    with system_scope():
        for _ in range(count):
            world.batches += 1
            for make in ROW_MAKERS:
                make(world, f"b{world.batches}")


# --- the world -----------------------------------------------------------------------------------


def make_calendar(workspace: Workspace, profile: Profile, provider: str) -> ExternalCalendarConnection:
    return ExternalCalendarConnection.objects.create(
        workspace=workspace,
        profile=profile,
        provider=provider,
        account_email=profile.email,
        access_token="calendar-access",
        refresh_token="calendar-refresh",
        last_synced_at=timezone.now(),
    )


def make_retention_policy(workspace: Workspace, by: User) -> RetentionPolicy:
    return RetentionPolicy.objects.create(
        workspace=workspace, message_days=90, attachment_days=30, sync_log_days=30, updated_by=f"user:{by.pk}"
    )


def alice_connections(alice: Tenant) -> dict[str, CrmConnection]:
    """One per CRM (a card each); odoo in dry run (its card previews writes)."""
    conns = {crm: make_connection(alice.workspace, crm, dry_run=crm == "odoo") for crm in CRMS}
    with system_scope():
        for conn in conns.values():
            make_health(conn, "ok")
            for obj in SyncCursor.Object.values:
                SyncCursor.objects.create(
                    workspace=alice.workspace,
                    connection=conn,
                    provider=conn.crm,
                    object=obj,
                    since_ts=timezone.now(),
                )
        IntegrationSetting.objects.create(workspace=alice.workspace, provider="zoho", enabled=False)
        make_retention_policy(alice.workspace, alice.user)
    return conns


def pending_install() -> PendingInstall:
    """An install of a Salesforce org waiting to be claimed, holding its grant."""
    org = "00D5g000004SbxAEAS"
    with system_scope():
        grant = CrmConnection.objects.create(
            crm="salesforce", external_account_key=org, access_token="a-tok", refresh_token="r-tok"
        )
        return PendingInstall.objects.create(
            connection=grant,
            crm="salesforce",
            external_account_key=org,
            expires_at=timezone.now() + timedelta(hours=2),
            metadata={"account_name": "Acme", "installing_user_email": "it@acme.example"},
        )


def signed_in(alice: Tenant) -> Client:
    client = alice.client()
    session = client.session
    session[SESSION_WORKSPACE_KEY] = alice.workspace.pk  # alice joins other workspaces below
    session.save()
    return client


@pytest.fixture
def world(alice: Tenant) -> World:
    with system_scope():
        User.objects.filter(pk=alice.user.pk).update(is_staff=True, is_superuser=True)
        alice.user.refresh_from_db()
        calendars = [make_calendar(alice.workspace, alice.user.profile, p) for p in CALENDARS]
    conns = alice_connections(alice)
    return World(
        tenant=alice,
        client=signed_in(alice),
        tokens={WORKSPACE_TOKEN: workspace_token(alice), OPERATOR_TOKEN: staff_token()},
        connections=conns,
        calendars=calendars,
        message=make_message(alice.workspace, "shown@mail.example", to_addresses=[CUSTOMER]),
        log=make_log(alice.workspace, ok=False, code="validation_failed"),
        install=pending_install(),
        pause_targets=pause_targets(alice.workspace, conns),
    )


# --- counting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    name: str
    url: str  # formatted by World.url
    auth: str = SESSION
    lists: bool = True  # shows rows: the second response is longer than the first
    # queries each added row may cost: only where Django gives no way round it, said where set
    per_added_row: int = 0

    def __str__(self) -> str:
        return self.name


@dataclass
class Counted:
    queries: int
    size: int
    sql: list[str] = field(repr=False)


def queries_for(world: World, page: Page) -> Counted:
    """The queries of one GET of the page, as its caller sends it."""
    headers = {"Authorization": f"Bearer {world.tokens[page.auth]}"} if page.auth != SESSION else {}
    client = world.client if page.auth == SESSION else Client()
    with CaptureQueriesContext(connection) as captured:
        response = client.get(world.url(page.url), headers=headers)
    assert response.status_code == 200, (page.name, response.status_code, response.content[:500])
    return Counted(len(captured), len(response.content), [q["sql"] for q in captured.captured_queries])


def assert_count_does_not_grow(world: World, page: Page) -> None:
    add_rows(world, FEW)
    queries_for(world, page)  # warm: a token's first use, sessions, caches
    few = queries_for(world, page)
    add_rows(world, MORE)
    more = queries_for(world, page)
    if page.lists:
        assert more.size > few.size, f"{page.name}: the added rows are not shown, so nothing was tested"
    assert more.queries == few.queries + page.per_added_row * MORE, (
        f"{page.name}: {few.queries} queries with {FEW} row(s) of each kind, {more.queries} with "
        f"{FEW + MORE}; these ran more often:\n" + repeated(few.sql, more.sql)
    )


def shape(sql: str) -> str:
    """The statement without its values: the same query for another row has the same shape."""
    return IN_LIST.sub("IN (...)", VALUES.sub("?", sql))


VALUES = re.compile(r"'[^']*'|\b\d+\b|\"s\d+_x\d+\"")  # strings, numbers, savepoint names
IN_LIST = re.compile(r"IN \([?, ]+\)")


def repeated(few: list[str], more: list[str]) -> str:
    extra = Counter(map(shape, more)) - Counter(map(shape, few))
    return "\n".join(f"{n} x {sql}" for sql, n in extra.most_common())


PAGES = [
    # pages
    Page("settings", "/settings/"),
    Page("members", "/settings/members/"),
    Page("integrations", "/settings/integrations/"),
    Page("write settings", "/settings/integrations/write-settings/"),
    Page("odoo credentials", "/settings/integrations/odoo/credentials/", lists=False),
    Page("greenhouse credentials", "/settings/integrations/greenhouse/credentials/", lists=False),
    Page("lever credentials", "/settings/integrations/lever/credentials/", lists=False),
    Page("workday credentials", "/settings/integrations/workday/credentials/", lists=False),
    Page("writes, failed", "/settings/integrations/hubspot/writes/"),
    Page("writes, skipped", "/settings/integrations/hubspot/writes/?show=skipped"),
    Page("claim an install", "/claim-install?crm=salesforce&install_id={install}"),
    Page("retention", "/settings/retention/", lists=False),
    Page("messages", "/messages/"),
    Page("messages, searched", "/messages/?q=subject"),
    Page("message", "/messages/{message}/"),
    Page("calendar", "/settings/calendar/"),
    Page("customer timeline", "/customers/{customer}/"),
    Page("admin home", "/admin/", lists=False),
    # Django's autocomplete widget looks up its selected user once per inline row
    Page("admin workspace (members inline)", "/admin/conduit/workspace/{workspace}/change/", per_added_row=1),
    Page("admin message (attachments inline)", "/admin/conduit/message/{message}/change/"),
    # /api/v1 and runbook 003's /crm twins
    Page("integrations status", "/api/v1/integrations/status", WORKSPACE_TOKEN, lists=False),
    Page("integration status", "/api/v1/integrations/hubspot/status", WORKSPACE_TOKEN, lists=False),
    Page("sync logs", "/api/v1/integrations/hubspot/sync-logs", WORKSPACE_TOKEN),
    Page("sync log", "/api/v1/integrations/hubspot/sync-logs/{log}", WORKSPACE_TOKEN, lists=False),
    Page("failures", "/api/v1/integrations/hubspot/failures?hours=48", WORKSPACE_TOKEN),
    Page("sync status", "/api/v1/admin/sync-status?workspace_id={workspace}", OPERATOR_TOKEN),
    Page("health matrix", "/api/v1/health", OPERATOR_TOKEN, lists=False),
    Page("system sync logs", "/api/v1/sync/logs", OPERATOR_TOKEN),
    Page("queue metrics", "/api/v1/system-metrics/queues", OPERATOR_TOKEN, lists=False),
    Page("playbook sync status", "/crm/admin/sync-status?workspace_id={workspace}", OPERATOR_TOKEN),
    Page("playbook health", "/crm/health", OPERATOR_TOKEN, lists=False),
    Page("playbook sync logs", "/crm/sync/logs", OPERATOR_TOKEN),
]
ADMIN_LISTS = [
    Page(f"admin {model._meta.label_lower}", f"/admin/{model._meta.app_label}/{model._meta.model_name}/")
    for model in sorted(admin.site._registry, key=lambda m: m._meta.label_lower)
    if model._meta.app_label in OUR_APPS
]


@pytest.mark.parametrize("page", PAGES, ids=str)
def test_page_query_count_does_not_grow_with_rows(world: World, page: Page) -> None:
    assert_count_does_not_grow(world, page)


@pytest.mark.parametrize("page", ADMIN_LISTS, ids=str)
def test_admin_list_query_count_does_not_grow_with_rows(world: World, page: Page) -> None:
    assert_count_does_not_grow(world, page)


# --- every route is counted, or says why not -----------------------------------------------------

NOT_COUNTED: dict[str, set[str]] = {
    "changes something (POST only)": {
        "api-token-create",
        "api-token-revoke",
        "staff-token-create",
        "staff-token-revoke",
        "switch-workspace",
        "member-invite",
        "invitation-revoke",
        "member-role",
        "member-remove",
        "integrations-pause",
        "integrations-resume",
        "integrations-connect",
        "integrations-disconnect",
        "integrations-check",
        "integrations-go-live",
        "integrations-dry-run",
        "integrations-write-retry",
        "integrations-write-skip",
        "calendar-connect",
        "calendar-disconnect",
        "calendar-sync-now",
        "api-messages",
        "api-claim-install",
        "api-integration-refresh",
        "api-integration-disconnect",
        "api-pause-sync",
        "api-integration-retry-failed",
        "api-admin-tenant-integration",
        "api-admin-replay-webhook",
        "api-calendar-jobs-run",
        "calendar-jobs-run",
        "crm-pause-sync",
        "crm-replay-webhook",
        "webhook-hubspot",
        "calendar-push-google",
        "calendar-push-microsoft",
    },
    "a redirect or a step of an OAuth flow, no rows": {
        "home",
        "favicon",
        "integrations-install",
        "oauth-callback",
        "calendar-callback",
    },
    "one object, opened from a link (no list)": {"invitation", "oauth-confirm", "attachment-download"},
    "a form or fixed checks, no rows": {"login", "logout", "signup", "healthz"},
    "no database rows (Prometheus samples, the schema built from code)": {
        "metrics",
        "crm-metrics",
        "api-schema",
        "api-docs",
    },
}


def route_names(patterns: list[Any]) -> set[str]:
    names: set[str] = set()
    for entry in patterns:
        if isinstance(entry, URLResolver) and entry.namespace != "admin":
            names |= route_names(entry.url_patterns)
        elif isinstance(entry, URLPattern) and entry.name:
            names.add(entry.name)
    return names


def route_of(page: Page) -> str | None:
    path = urlsplit(page.url).path.format(workspace=1, message=1, log=1, customer="ann@acme.example")
    return resolve(path).url_name


def test_every_route_is_counted_or_says_why_not() -> None:
    """A new route fails here until it is in PAGES or NOT_COUNTED (admin pages: ADMIN_LISTS)."""
    counted = {route_of(page) for page in PAGES if not page.url.startswith("/admin/")}
    left_out = set().union(*NOT_COUNTED.values())
    assert not counted & left_out
    assert route_names(get_resolver().url_patterns) == counted | left_out
