from __future__ import annotations

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.core.management.base import CommandError

from conduit.management.commands.seed_demo import DEMO_EMAIL, DEMO_PASSWORD
from conduit.models import Attachment, Membership, Message, Workspace


def test_seed_demo_is_idempotent_and_prints_login(db: None, capsys) -> None:  # type: ignore[no-untyped-def]
    call_command("seed_demo", "--url", "http://127.0.0.1:9999/")
    first = capsys.readouterr().out
    call_command("seed_demo")
    second = capsys.readouterr().out
    workspace = Workspace.objects.get(slug="demo")
    assert Message.objects.filter(workspace=workspace).count() == 4
    assert Attachment.objects.filter(workspace=workspace).count() == 1
    assert Membership.objects.get(workspace=workspace).role == "owner"
    assert authenticate(username=DEMO_EMAIL, password=DEMO_PASSWORD) is not None
    assert f"http://127.0.0.1:9999/  login: {DEMO_EMAIL} / {DEMO_PASSWORD}" in first
    assert "4 sample messages (4 new)" in first and "(0 new)" in second


def test_seed_demo_refuses_production(db: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="refused"):
        call_command("seed_demo")
    assert not Workspace.objects.exists()
