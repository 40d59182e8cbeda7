"""The Retention page in a real browser: the defaults, inline validation that saves nothing,
saving a policy, the last purge receipt after a real purge, and a redacted message."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from conduit.models import Attachment
from conduit.tenancy import system_scope
from retention.models import RetentionPolicy
from retention.purge import purge_retention
from tests.conftest import Tenant, make_message, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
BODY = "CONFIDENTIAL BODY: the merger closes Friday"


def test_retention_card_validation_save_and_purge_receipt(
    page: Any, live_server: Any, alice: Tenant, tmp_path: Path
) -> None:
    old = make_message(
        alice.workspace,
        "old@x",
        subject="Q3 pricing",
        received_at=timezone.now() - timedelta(days=120),
        body_text=BODY,
        body_html=f"<p>{BODY}</p>",
        raw=BODY.encode(),
    )
    with system_scope():
        attachment = Attachment(
            workspace=alice.workspace,
            message=old,
            filename="deck.pdf",
            content_type="application/pdf",
            size=18,
        )
        attachment.file.name = default_storage.save(
            "attachments/deck.pdf", ContentFile(b"%PDF-1.4 quarterly")
        )
        attachment.save()
    url = live_server.url
    sign_in(page, url, alice)
    page.goto(f"{url}/settings/retention/")
    policy = page.locator("#retention-policy")
    assert policy.locator(".badge", has_text="Purge off").is_visible()
    assert page.locator("#id_message_days").get_attribute("placeholder") == "365"
    assert "No policy saved yet" in policy.inner_text()
    assert page.locator("[data-receipt=none]").is_visible()
    shot(page, tmp_path, "retention-01-defaults")

    # bad input: inline errors, nothing saved
    page.check("#id_purge_enabled")
    page.fill("#id_message_days", "0")
    page.fill("#id_attachment_days", "1.5")
    page.get_by_role("button", name="Save policy").click()
    page.wait_for_load_state()
    assert "Nothing was saved" in page.locator("[role=alert]").inner_text()
    errors = page.locator(".field-error").all_inner_texts()
    assert "Keep message bodies for a whole number of days between 1 and 3650." in errors
    assert "Keep attachments for a whole number of days between 1 and 3650." in errors
    with system_scope():
        assert not RetentionPolicy.objects.exists()
    shot(page, tmp_path, "retention-02-validation")

    # a valid policy: blank sync logs take the default
    page.fill("#id_message_days", "90")
    page.fill("#id_attachment_days", "60")
    page.fill("#id_sync_log_days", "")
    page.get_by_role("button", name="Save policy").click()
    page.wait_for_load_state()
    assert "Retention policy saved." in page.locator("ul.flash").inner_text()
    assert page.locator("#retention-policy .badge", has_text="Purge on").is_visible()
    with system_scope():
        saved = RetentionPolicy.objects.get()
    assert (saved.purge_enabled, saved.message_days, saved.attachment_days, saved.sync_log_days) == (
        True,
        90,
        60,
        30,
    )

    # the daily purge runs: the receipt shows its counts
    [result] = purge_retention().results
    assert (result.messages_redacted, result.attachments_removed) == (1, 1)
    page.goto(f"{url}/settings/retention/")
    receipt = page.locator("#last-purge")
    assert receipt.locator("[data-receipt=completed]").is_visible()
    assert receipt.locator("[data-count=messages_redacted]").inner_text() == "1"
    assert receipt.locator("[data-count=attachments_removed]").inner_text() == "1"
    assert "18\xa0bytes" in receipt.locator("[data-count=attachment_bytes_freed]").inner_text()
    assert "bodies 90 days" in receipt.inner_text()
    shot(page, tmp_path, "retention-03-saved-and-receipt")

    page.goto(f"{url}/messages/{old.pk}/")
    content = page.content()
    assert "Body removed" in content and BODY not in content
    assert "deck.pdf" in content and page.locator("a[href*='/attachments/']").count() == 0
    shot(page, tmp_path, "retention-04-redacted-message")
