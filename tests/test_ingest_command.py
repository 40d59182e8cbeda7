from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from conduit.models import Message
from tests.conftest import Tenant, raw_email


def write_mbox(path: Path, ids: list[str]) -> Path:
    box = mailbox.mbox(path)
    for mid in ids:
        box.add(raw_email(mid, body=f"From the desk of {mid}\nline two\n"))
    box.flush()
    box.close()
    return path


def test_ingests_eml_files_directories_and_mbox(alice: Tenant, tmp_path: Path, capsys, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CONDUIT_INGEST_BATCH_SIZE = 5  # the last flush is then empty
    (tmp_path / "one.eml").write_bytes(raw_email("e1@x"))
    folder = tmp_path / "dir" / "nested"
    folder.mkdir(parents=True)
    (folder / "two.eml").write_bytes(raw_email("e2@x"))
    box = write_mbox(tmp_path / "archive.mbox", ["m1@x", "m2@x", "m3@x"])
    call_command(
        "ingest_eml", "--workspace", "alice", str(tmp_path / "one.eml"), str(tmp_path / "dir"), str(box)
    )
    captured = capsys.readouterr()
    assert "created 5, duplicate 0, rejected 0" in captured.out
    assert Message.objects.filter(workspace=alice.workspace).count() == 5
    body = Message.objects.get(message_id="m2@x").body_text
    assert body is not None and "line two" in body


def test_second_run_counts_duplicates_and_creates_nothing(
    alice: Tenant, tmp_path: Path, capsys, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.CONDUIT_INGEST_BATCH_SIZE = 2
    box = write_mbox(tmp_path / "a.mbox", [f"d{i}@x" for i in range(5)])
    call_command("ingest_eml", "--workspace", "alice", "--progress-every", "2", str(box))
    first = capsys.readouterr()
    assert "created 5" in first.out and "... 4 messages read" in first.err
    call_command("ingest_eml", "--workspace", "alice", str(box))
    assert "created 0, duplicate 5, rejected 0" in capsys.readouterr().out
    assert Message.objects.count() == 5


def test_rejected_message_is_reported_and_exit_is_nonzero(alice: Tenant, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "good.eml").write_bytes(raw_email("g@x"))
    (tmp_path / "bad.eml").write_bytes(b"definitely not an email")
    with pytest.raises(CommandError, match="1 message"):
        call_command("ingest_eml", "--workspace", "alice", str(tmp_path))
    captured = capsys.readouterr()
    assert "created 1, duplicate 0, rejected 1" in captured.out
    assert "bad.eml: not an RFC 822 email" in captured.err
    assert Message.objects.count() == 1


def test_missing_workspace_or_path_changes_nothing(alice: Tenant, tmp_path: Path) -> None:
    (tmp_path / "a.eml").write_bytes(raw_email("a@x"))
    with pytest.raises(CommandError, match="workspace 'nope' does not exist"):
        call_command("ingest_eml", "--workspace", "nope", str(tmp_path / "a.eml"))
    with pytest.raises(CommandError, match="path not found"):
        call_command(
            "ingest_eml", "--workspace", "alice", str(tmp_path / "a.eml"), str(tmp_path / "missing.eml")
        )
    assert Message.objects.count() == 0


def test_command_line_failure_is_one_line_and_nonzero(alice: Tenant, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from django.core.management import ManagementUtility

    with pytest.raises(SystemExit) as excinfo:
        ManagementUtility(["manage.py", "ingest_eml", "--workspace", "no-such-ws", str(tmp_path)]).execute()
    assert excinfo.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "CommandError: workspace 'no-such-ws' does not exist"
    ]


def test_query_log_is_dropped_after_each_batch_when_debug_is_on(
    alice: Tenant, tmp_path: Path, settings
) -> None:  # type: ignore[no-untyped-def]
    from django.db import connection

    settings.DEBUG = True
    settings.CONDUIT_INGEST_BATCH_SIZE = 2
    box = write_mbox(tmp_path / "big.mbox", [f"q{i}@x" for i in range(6)])
    connection.queries_log.clear()
    call_command("ingest_eml", "--workspace", "alice", str(box))
    assert Message.objects.count() == 6
    assert not [q for q in connection.queries if "INSERT" in q["sql"]]


@pytest.mark.postgres
def test_command_reports_unstorable_message_and_keeps_the_rest(
    alice: Tenant, tmp_path: Path, capsys, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from tests.test_ingest import refuse_subject

    refuse_subject(monkeypatch, "m2@x")
    box = write_mbox(tmp_path / "a.mbox", ["m1@x", "m2@x", "m3@x", "m4@x"])
    with pytest.raises(CommandError, match="1 message"):
        call_command("ingest_eml", "--workspace", "alice", str(box))
    captured = capsys.readouterr()
    assert "created 3, duplicate 0, rejected 1" in captured.out
    assert "rejected <m2@x>: the message could not be stored (DataError)" in captured.err
    assert Message.objects.count() == 3
