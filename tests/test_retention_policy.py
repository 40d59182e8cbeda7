"""Retention policies: defaults, normalization, the audited save, the settings card, the admin."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from conduit.audit import record_audit
from conduit.ingest import ingest_one, parse_raw
from conduit.models import AuditEvent, Membership
from conduit.tenancy import system_scope, workspace_scope
from retention.cards import actor_name, schedule_label
from retention.forms import RetentionPolicyForm
from retention.models import RetentionPolicy
from retention.policy import (
    MAX_DAYS,
    MIN_DAYS,
    PolicyInvalid,
    PolicyValues,
    defaults,
    do_update_policy,
    normalize,
    normalize_days,
    policy_for,
)
from tests.conftest import Tenant, raw_email

pytestmark = pytest.mark.django_db
MESSAGE_ERROR = "Keep message bodies for a whole number of days between 1 and 3650."
ATTACHMENT_ERROR = "Keep attachments for a whole number of days between 1 and 3650."
SYNC_ERROR = "Keep CRM sync logs for a whole number of days between 1 and 3650."


def saved_policy(tenant: Tenant) -> RetentionPolicy | None:
    with system_scope():
        return RetentionPolicy.objects.filter(workspace=tenant.workspace).first()


def policy_events() -> list[AuditEvent]:
    with system_scope():
        return list(AuditEvent.objects.filter(event="retention_policy_updated").order_by("id"))


# --- defaults and normalization -------------------------------------------------------------


def test_defaults_are_purge_off_and_the_day_settings(settings: Any) -> None:
    assert defaults() == PolicyValues(False, 365, 180, 30)
    settings.CONDUIT_RETENTION_MESSAGE_DAYS = 90
    assert defaults().message_days == 90
    assert (MIN_DAYS, MAX_DAYS) == (1, 3650)


def test_policy_for_is_an_unsaved_default_until_saved(alice: Tenant) -> None:
    with workspace_scope(alice.workspace):
        policy = policy_for(alice.workspace)
    assert policy.pk is None and not policy.purge_enabled and policy.message_days == 365
    do_update_policy(alice.workspace, {"purge_enabled": True, "message_days": 40}, actor=alice.user)
    with workspace_scope(alice.workspace):
        saved = policy_for(alice.workspace)
    assert saved.pk is not None and saved.purge_enabled and saved.message_days == 40
    assert (saved.attachment_days, saved.sync_log_days) == (180, 30)
    assert str(saved) == "retention of alice: on"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 365), ("", 365), ("   ", 365), ("30", 30), (" 30 ", 30), (30, 30), (30.0, 30), ("30.0", 30)],
)
def test_blank_days_take_the_default_and_whole_days_are_accepted(value: Any, expected: int) -> None:
    assert normalize_days("message_days", value) == expected


@pytest.mark.parametrize("value", ["1.5", 1.5, "abc", "0", 0, -3, 3651, "3651", True, "NaN", "Infinity", [5]])
def test_days_that_are_not_whole_or_out_of_range_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="whole number of days between 1 and 3650"):
        normalize_days("message_days", value)


def test_range_edges_are_accepted() -> None:
    assert normalize_days("sync_log_days", 1) == 1
    assert normalize_days("sync_log_days", "3650") == 3650


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), (True, True), (False, False), ("on", True), ("TRUE", True), ("1", True), ("", False)],
)
def test_the_switch_accepts_form_and_json_values(value: Any, expected: bool) -> None:
    assert normalize({"purge_enabled": value}).purge_enabled is expected


def test_normalize_names_every_wrong_field_in_one_error() -> None:
    with pytest.raises(PolicyInvalid) as caught:
        normalize(
            {"purge_enabled": "maybe", "message_days": "0", "attachment_days": "x", "sync_log_days": "9999"}
        )
    assert caught.value.errors == {
        "purge_enabled": "Turn the purge on or off.",
        "message_days": MESSAGE_ERROR,
        "attachment_days": ATTACHMENT_ERROR,
        "sync_log_days": SYNC_ERROR,
    }
    assert caught.value.error_code == "retention_policy_invalid"
    assert caught.value.user_message.startswith("The retention policy was not saved")


# --- the audited save -----------------------------------------------------------------------


def test_first_save_creates_the_row_and_audits_before_and_after(alice: Tenant) -> None:
    update = do_update_policy(
        alice.workspace,
        {"purge_enabled": "on", "message_days": "90", "attachment_days": "", "sync_log_days": 14},
        actor=alice.user,
    )
    assert update.changed == ["purge_enabled", "message_days", "attachment_days", "sync_log_days"]
    policy = saved_policy(alice)
    assert policy is not None
    assert (policy.purge_enabled, policy.message_days, policy.attachment_days, policy.sync_log_days) == (
        True,
        90,
        180,
        14,
    )
    assert policy.updated_by == f"user:{alice.user.pk}"
    [event] = policy_events()
    assert event.workspace == alice.workspace and event.actor == f"user:{alice.user.pk}"
    assert event.target_type == "retentionpolicy" and event.target_id == str(policy.pk)
    assert event.payload_json == {
        "before": None,
        "after": {"purge_enabled": True, "message_days": 90, "attachment_days": 180, "sync_log_days": 14},
        "changed": ["purge_enabled", "message_days", "attachment_days", "sync_log_days"],
    }


def test_a_change_audits_what_changed_and_no_change_writes_nothing(alice: Tenant) -> None:
    do_update_policy(alice.workspace, {"purge_enabled": True}, actor=alice.user)
    update = do_update_policy(
        alice.workspace, {"purge_enabled": True, "message_days": 100}, actor="system:ops"
    )
    assert update.changed == ["message_days"]
    last = policy_events()[-1]
    assert last.payload_json["before"]["message_days"] == 365
    assert last.payload_json["after"]["message_days"] == 100 and last.actor == "system:ops"
    assert "body" not in json.dumps(last.payload_json)
    stamp = saved_policy(alice).updated_at  # type: ignore[union-attr]
    again = do_update_policy(
        alice.workspace, {"purge_enabled": True, "message_days": "100"}, actor=alice.user
    )
    assert again.changed == [] and len(policy_events()) == 2
    assert saved_policy(alice).updated_at == stamp  # type: ignore[union-attr]


def test_an_invalid_policy_saves_and_audits_nothing(alice: Tenant) -> None:
    with pytest.raises(PolicyInvalid):
        do_update_policy(alice.workspace, {"purge_enabled": True, "message_days": 0}, actor=alice.user)
    assert saved_policy(alice) is None and policy_events() == []


# --- the form -------------------------------------------------------------------------------


def test_form_errors_read_as_sentences_and_blank_means_default() -> None:
    form = RetentionPolicyForm({"purge_enabled": "on", "message_days": "1.5", "attachment_days": "0"})
    assert not form.is_valid()
    assert form.errors["message_days"] == [MESSAGE_ERROR]
    assert form.errors["attachment_days"] == [ATTACHMENT_ERROR]
    assert form.values is None
    ok = RetentionPolicyForm({"purge_enabled": "on", "message_days": "3650", "sync_log_days": "7"})
    assert ok.is_valid() and ok.values == PolicyValues(True, 3650, 180, 7)
    assert RetentionPolicyForm({"sync_log_days": "3651"}).errors["sync_log_days"] == [SYNC_ERROR]
    html = str(RetentionPolicyForm()["message_days"])
    assert 'placeholder="365"' in html and 'min="1"' in html and 'max="3650"' in html


def test_form_reports_what_normalize_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(data: Any) -> PolicyValues:
        raise PolicyInvalid({"purge_enabled": "Turn the purge on or off."})

    monkeypatch.setattr("retention.forms.normalize", refuse)
    form = RetentionPolicyForm({"purge_enabled": "on"})
    assert not form.is_valid() and form.errors["purge_enabled"] == ["Turn the purge on or off."]


# --- the settings card ----------------------------------------------------------------------


def test_admin_sees_the_form_with_defaults_and_no_receipt(alice: Tenant) -> None:
    page = alice.client().get("/settings/retention/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Purge off" in html and 'name="message_days"' in html and 'placeholder="365"' in html
    assert 'placeholder="180"' in html and 'placeholder="30"' in html
    assert "No purge has run for this workspace yet." in html
    assert "Conduit&#x27;s defaults" in html or "Conduit's defaults" in html
    assert "The purge runs daily at 03:30 UTC." in html


def test_admin_saves_the_policy_and_sees_it(alice: Tenant) -> None:
    client = alice.client()
    response = client.post(
        "/settings/retention/",
        {"purge_enabled": "on", "message_days": "90", "attachment_days": "", "sync_log_days": "14"},
        follow=True,
    )
    assert response.redirect_chain == [("/settings/retention/", 302)]
    html = response.content.decode()
    assert "Retention policy saved." in html and "Purge on" in html and 'value="90"' in html
    assert "alice@example.com" in html  # last changed by
    policy = saved_policy(alice)
    assert policy is not None and policy.purge_enabled and policy.attachment_days == 180
    assert [e.actor for e in policy_events()] == [f"user:{alice.user.pk}"]
    again = client.post(
        "/settings/retention/",
        {"purge_enabled": "on", "message_days": "90", "attachment_days": "180", "sync_log_days": "14"},
        follow=True,
    )
    assert b"Nothing changed." in again.content and len(policy_events()) == 1


def test_invalid_post_shows_inline_errors_and_saves_nothing(alice: Tenant) -> None:
    response = alice.client().post(
        "/settings/retention/", {"purge_enabled": "on", "message_days": "abc", "sync_log_days": "5000"}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert MESSAGE_ERROR in html and SYNC_ERROR in html and "Nothing was saved." in html
    assert 'value="abc"' in html  # what the user typed stays in the field
    assert saved_policy(alice) is None and policy_events() == []


def test_a_refusal_from_the_service_is_shown_inline(alice: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PolicyInvalid({"message_days": MESSAGE_ERROR})

    monkeypatch.setattr("retention.views.do_update_policy", refuse)
    response = alice.client().post("/settings/retention/", {"message_days": "5"})
    assert response.status_code == 400 and MESSAGE_ERROR in response.content.decode()


def test_member_reads_the_policy_but_cannot_change_it(alice: Tenant, make_workspace: Any) -> None:
    do_update_policy(alice.workspace, {"purge_enabled": True, "message_days": 60}, actor=alice.user)
    member = User.objects.create_user("mia@example.com", "mia@example.com", "pw-member-12345")
    with system_scope():
        Membership.objects.create(workspace=alice.workspace, user=member, role=Membership.Role.MEMBER)
    client = Client()
    client.force_login(member)
    page = client.get("/settings/retention/")
    html = page.content.decode()
    assert page.status_code == 200 and "Purge on" in html and "kept 60 days" in html
    assert 'name="message_days"' not in html and "Only workspace owners and admins" in html
    assert client.post("/settings/retention/", {"purge_enabled": "", "message_days": "5"}).status_code == 404
    assert saved_policy(alice).message_days == 60 and len(policy_events()) == 1  # type: ignore[union-attr]


def test_each_tenant_sees_and_changes_only_its_own_policy(alice: Tenant, bob: Tenant) -> None:
    do_update_policy(bob.workspace, {"purge_enabled": True, "message_days": 7}, actor=bob.user)
    with system_scope():
        record_audit(
            "retention_purge_completed",
            actor="system:purge_retention",
            workspace=bob.workspace,
            payload={"messages_redacted": 4242},
        )
    page = alice.client().get("/settings/retention/").content.decode()
    assert "Purge off" in page and "4242" not in page and "No purge has run" in page
    alice.client().post("/settings/retention/", {"purge_enabled": "on", "message_days": "20"})
    assert saved_policy(bob).message_days == 7  # type: ignore[union-attr]
    assert saved_policy(alice).message_days == 20  # type: ignore[union-attr]
    assert "4242" in bob.client().get("/settings/retention/").content.decode()


def test_receipt_shows_the_latest_completed_purge(alice: Tenant) -> None:
    with system_scope():
        event = record_audit(
            "retention_purge_completed",
            actor="system:purge_retention",
            workspace=alice.workspace,
            payload={
                "messages_redacted": 1234,
                "attachments_removed": 56,
                "attachment_bytes_freed": 3 * 1024 * 1024,
                "files_missing": 2,
                "sync_logs_deleted": 789,
                "duration_ms": 4321,
                "policy": {
                    "purge_enabled": True,
                    "message_days": 90,
                    "attachment_days": 30,
                    "sync_log_days": 7,
                },
            },
        )
        AuditEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(hours=5))
    html = alice.client().get("/settings/retention/").content.decode()
    assert 'data-receipt="completed"' in html and "5\xa0hours ago" in html
    for text in (
        "1234",
        "56",
        "3.0\xa0MB",
        "789",
        "4321 ms",
        "2 attachment files had already gone",
        "bodies 90 days",
    ):
        assert text in html, text


def test_receipt_shows_a_failed_purge(alice: Tenant) -> None:
    with system_scope():
        record_audit(
            "retention_purge_completed",
            actor="system:purge_retention",
            workspace=alice.workspace,
            payload={"messages_redacted": 1},
        )
        record_audit(
            "retention_purge_failed",
            actor="system:purge_retention",
            workspace=alice.workspace,
            payload={"messages_redacted": 10, "step": "attachments", "error_class": "OperationalError"},
        )
    html = alice.client().get("/settings/retention/").content.decode()
    assert 'data-receipt="failed"' in html and "while deleting attachments" in html
    assert "OperationalError" in html and "next daily run carries on" in html


def test_schedule_label_follows_the_beat_entry() -> None:
    entry = PeriodicTask.objects.get(name="purge retention")
    assert entry.task == "retention.purge_retention" and entry.enabled and entry.interval is None
    assert (entry.crontab.minute, entry.crontab.hour, str(entry.crontab.timezone)) == ("30", "3", "UTC")
    from conduit.celery import app
    from retention.tasks import purge_retention

    assert purge_retention.name in app.tasks
    entry.crontab.minute = "*/5"
    entry.crontab.save()
    assert schedule_label() == "The purge runs daily."
    entry.enabled = False
    entry.save()
    assert "paused" in schedule_label()
    entry.delete()
    assert "paused" in schedule_label()


def test_actor_names(alice: Tenant) -> None:
    assert actor_name(f"user:{alice.user.pk}") == "alice@example.com"
    assert actor_name("user:999999") == "a former user"
    assert actor_name("system:purge_retention") == "Conduit"
    assert actor_name("") == "Conduit" and actor_name("ops") == "ops"


def test_message_detail_marks_removed_attachments_without_a_link(alice: Tenant) -> None:
    message = ingest_one(
        alice.workspace, parse_raw(raw_email("rm@x", attachment=("q.csv", "text/csv", b"a,b")))
    ).message
    with system_scope():
        attachment = message.attachments.get()
        attachment.removed_at = timezone.now()
        attachment.file = ""
        attachment.save()
        message.is_redacted, message.redacted_at = True, timezone.now()
        message.body_text = message.body_html = message.raw = None
        message.save()
    html = alice.client().get(f"/messages/{message.pk}/").content.decode()
    assert "Body removed on" in html and "by the retention policy" in html
    assert "removed by the retention policy on" in html
    assert f"/attachments/{attachment.pk}/" not in html


# --- the admin ------------------------------------------------------------------------------


@pytest.fixture
def staff(db: None) -> tuple[Client, User]:
    user = User.objects.create_superuser("ops@example.com", "ops@example.com", "pw-ops-123456")
    client = Client()
    client.force_login(user)
    return client, user


def test_admin_lists_and_edits_policies_through_the_audited_service(
    staff: tuple[Client, User], alice: Tenant, bob: Tenant
) -> None:
    client, user = staff
    do_update_policy(alice.workspace, {"purge_enabled": True}, actor=alice.user)
    listing = client.get("/admin/retention/retentionpolicy/", {"q": "alice"})
    assert listing.status_code == 200 and b"alice" in listing.content
    policy = saved_policy(alice)
    assert policy is not None
    url = f"/admin/retention/retentionpolicy/{policy.pk}/change/"
    assert client.get(url).status_code == 200
    form = {"purge_enabled": "", "message_days": "200", "attachment_days": "100", "sync_log_days": "10"}
    assert client.post(url, form).status_code == 302
    policy.refresh_from_db()
    assert (policy.purge_enabled, policy.message_days, policy.updated_by) == (False, 200, f"user:{user.pk}")
    last = policy_events()[-1]
    assert last.actor == f"user:{user.pk}" and set(last.payload_json["changed"]) == {
        "purge_enabled",
        "message_days",
        "attachment_days",
        "sync_log_days",
    }
    bad = client.post(url, {**form, "message_days": "0"})
    assert bad.status_code == 200 and b"Ensure this value is greater than or equal to 1" in bad.content
    added = client.post(
        "/admin/retention/retentionpolicy/add/",
        {
            "workspace": bob.workspace.pk,
            "purge_enabled": "on",
            **{k: form[k] for k in form if k != "purge_enabled"},
        },
    )
    assert added.status_code == 302
    assert saved_policy(bob).purge_enabled  # type: ignore[union-attr]
    assert policy_events()[-1].workspace == bob.workspace
