from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from conduit.management.commands.seed_demo import AGED_MESSAGES, DEMO_EMAIL, DEMO_PASSWORD
from conduit.models import Attachment, Membership, Message, Workspace
from retention.policy import do_update_policy
from retention.purge import purge_retention

AGED_400, AGED_120 = (a.message_id for a in AGED_MESSAGES)


def test_seed_demo_is_idempotent_and_prints_login(db: None, capsys) -> None:  # type: ignore[no-untyped-def]
    call_command("seed_demo", "--url", "http://127.0.0.1:9999/")
    first = capsys.readouterr().out
    call_command("seed_demo")
    second = capsys.readouterr().out
    workspace = Workspace.objects.get(slug="demo")
    assert Message.objects.filter(workspace=workspace).count() == 6
    assert Attachment.objects.filter(workspace=workspace).count() == 2
    assert Membership.objects.get(workspace=workspace).role == "owner"
    assert authenticate(username=DEMO_EMAIL, password=DEMO_PASSWORD) is not None
    assert f"http://127.0.0.1:9999/  login: {DEMO_EMAIL} / {DEMO_PASSWORD}" in first
    assert "4 sample messages (4 new)" in first and "(0 new)" in second
    assert "2 aged messages received 400 and 120 days ago (2 new)" in first
    assert "2 aged messages received 400 and 120 days ago (0 new)" in second


def test_seed_demo_stores_aged_messages_one_with_an_attachment(db: None) -> None:
    before = timezone.now()
    call_command("seed_demo")
    after = timezone.now()
    old, older = Message.objects.get(message_id=AGED_120), Message.objects.get(message_id=AGED_400)
    for message, days in ((old, 120), (older, 400)):
        assert before <= message.received_at + timedelta(days=days) <= after
        assert message.body_text and not message.is_redacted
        assert message.sent_at == message.received_at.replace(microsecond=0)
    assert older.attachments.get().filename == "depot-survey.csv"
    assert not old.attachments.exists()
    fresh = Message.objects.exclude(message_id__in=[AGED_120, AGED_400])
    assert fresh.count() == 4 and all(before <= m.received_at <= after for m in fresh)


def purge_demo(**policy: object) -> None:
    """What a newcomer does: Settings -> Retention (its service), then purge_retention (the
    command's service)."""
    workspace = Workspace.objects.get(slug="demo")
    do_update_policy(workspace, {"purge_enabled": True, **policy}, actor="test")
    run = purge_retention(workspace=workspace)
    assert [r.status for r in run.results] == ["completed"]


def redacted_ids() -> set[str]:
    return set(Message.objects.filter(is_redacted=True).values_list("message_id", flat=True))


def test_a_90_day_purge_redacts_both_aged_messages_and_removes_the_attachment(
    db: None, django_capture_on_commit_callbacks: Any
) -> None:
    call_command("seed_demo")
    attachment = Attachment.objects.get(message__message_id=AGED_400)
    assert default_storage.exists(attachment.file.name)
    file_name = attachment.file.name

    with django_capture_on_commit_callbacks(execute=True):  # files go after the batch commits
        purge_demo(message_days=90, attachment_days=90, sync_log_days=30)

    assert redacted_ids() == {AGED_120, AGED_400}
    for message in Message.objects.filter(message_id__in=[AGED_120, AGED_400]):
        assert message.body_text is None and message.body_html is None and message.raw is None
        assert message.redacted_at is not None
    attachment.refresh_from_db()
    assert attachment.removed_at is not None and not default_storage.exists(file_name)
    assert Message.objects.filter(is_redacted=False).count() == 4  # this week's samples stay

    call_command("seed_demo")  # seeding again neither restores nor duplicates them
    assert redacted_ids() == {AGED_120, AGED_400}
    assert Message.objects.count() == 6


def test_the_default_policy_redacts_the_400_day_message_only(db: None) -> None:
    call_command("seed_demo")
    purge_demo(message_days=365, attachment_days=180, sync_log_days=30)
    assert redacted_ids() == {AGED_400}
    assert Attachment.objects.get(message__message_id=AGED_400).removed_at is not None


def test_seed_demo_refuses_production(db: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="refused"):
        call_command("seed_demo")
    assert not Workspace.objects.exists()
