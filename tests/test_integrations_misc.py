"""Small pieces of the integrations app: metric files at startup, gunicorn's hook, model labels."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import call_command

from integrations.models import CrmConnection, SyncLog


def test_clear_metrics_empties_the_multiprocess_dir(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.PROMETHEUS_MULTIPROC_DIR = tmp_path
    (tmp_path / "counter_123.db").write_bytes(b"x")
    (tmp_path / "histogram_456.db").write_bytes(b"x")
    (tmp_path / "keep.txt").write_text("not a metric file")
    out = StringIO()
    call_command("clear_metrics", stdout=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert out.getvalue().strip() == f"metrics: cleared 2 file(s) in {tmp_path}"


def test_gunicorn_child_exit_marks_the_worker_dead(monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import multiprocess

    from conduit import gunicorn

    seen: list[int] = []
    monkeypatch.setattr(multiprocess, "mark_process_dead", seen.append)
    gunicorn.child_exit(None, SimpleNamespace(pid=4321))
    assert seen == [4321]


def test_model_labels_name_what_an_operator_looks_for() -> None:
    conn = CrmConnection(crm="hubspot", status="connected", external_account_key="4400001")
    assert str(conn) == "hubspot 4400001 (connected)"
    assert str(CrmConnection(crm="salesforce")) == "salesforce ? (pending_claim)"
    assert (
        str(SyncLog(provider="hubspot", operation="create_note", status="FAILED"))
        == "hubspot create_note FAILED"
    )
