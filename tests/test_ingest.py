from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from conduit.ingest import IngestRejected, ingest_batch, ingest_one, parse_json, parse_raw
from conduit.models import Attachment, Message
from tests.conftest import Tenant, raw_email


def test_parse_raw_extracts_headers_bodies_and_attachments() -> None:
    parsed = parse_raw(raw_email("abc@acme.example", attachment=("quote.csv", "text/csv", b"a,b\n1,2\n")))
    assert parsed.message_id == "abc@acme.example"
    assert parsed.subject == "Quarterly review"
    assert parsed.from_address == "Maya Lopez <maya@acme.example>"
    assert parsed.to_addresses == ["sam@alice.example", "lee@alice.example"]
    assert parsed.cc_addresses == ["priya@alice.example"]
    assert parsed.sent_at is not None and parsed.sent_at.isoformat() == "2026-11-16T09:12:00+00:00"
    assert parsed.body_text is not None and "see you Tuesday" in parsed.body_text
    assert parsed.body_html is not None and "<p>" in parsed.body_html
    assert [(a.filename, a.content_type, a.content) for a in parsed.attachments] == [
        ("quote.csv", "text/csv", b"a,b\n1,2\n")
    ]


def test_ingest_stores_message_and_attachment_through_storage(alice: Tenant) -> None:
    raw = raw_email("att@x", attachment=("report.pdf", "application/pdf", b"%PDF-1.4 fake"))
    result = ingest_one(alice.workspace, parse_raw(raw))
    assert result.created
    message = Message.objects.get(pk=result.message.pk)
    assert bytes(message.raw) == raw
    assert message.size_bytes == len(raw) and not message.is_redacted
    attachment = Attachment.objects.get(message=message)
    assert (attachment.filename, attachment.size, attachment.workspace_id) == (
        "report.pdf",
        13,
        alice.workspace.pk,
    )
    with default_storage.open(attachment.file.name) as fh:
        assert fh.read() == b"%PDF-1.4 fake"


def test_ingest_is_idempotent_on_message_id_per_workspace(alice: Tenant, bob: Tenant) -> None:
    raw = raw_email("same@x", attachment=("a.txt", "text/plain", b"hi"))
    first = ingest_one(alice.workspace, parse_raw(raw))
    again = ingest_one(alice.workspace, parse_raw(raw))
    assert first.created and not again.created and again.message.pk == first.message.pk
    assert Message.objects.filter(workspace=alice.workspace).count() == 1
    assert Attachment.objects.count() == 1
    other = ingest_one(bob.workspace, parse_raw(raw))
    assert other.created and other.message.pk != first.message.pk


def test_batch_with_repeats_and_existing_rows_counts_each_once(alice: Tenant) -> None:
    ingest_one(alice.workspace, parse_raw(raw_email("old@x")))
    batch = [parse_raw(raw_email(mid)) for mid in ("old@x", "n1@x", "n1@x", "n2@x")]
    results = ingest_batch(alice.workspace, batch)
    assert [r.created for r in results] == [False, True, False, True]
    assert results[1].message.pk == results[2].message.pk
    assert Message.objects.count() == 3


def lose_race_to_another_connection(monkeypatch, workspace, message_id: str) -> None:  # type: ignore[no-untyped-def]
    """Make ingest's lookup of existing ids miss `message_id`, which another connection
    commits right then: the insert that follows hits the unique constraint."""
    import threading

    from django.db import connections

    from conduit import ingest

    real_filter = Message.objects.filter
    calls = {"n": 0}

    def other_connection_inserts() -> None:
        try:
            Message.objects.create(workspace=workspace, message_id=message_id)
        finally:
            connections.close_all()

    def racing_filter(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 1:
            return real_filter(*args, **kwargs)
        thread = threading.Thread(target=other_connection_inserts)
        thread.start()
        thread.join()
        return real_filter(*args, **kwargs).exclude(message_id=message_id)

    monkeypatch.setattr(ingest.Message.objects, "filter", racing_filter)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_falls_back_without_losing_the_batch(make_workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    alice = make_workspace("race")
    lose_race_to_another_connection(monkeypatch, alice.workspace, "race@x")
    results = ingest_batch(alice.workspace, [parse_raw(raw_email("race@x")), parse_raw(raw_email("fresh@x"))])
    assert [r.created for r in results] == [False, True]
    assert Message.objects.filter(message_id__in=["race@x", "fresh@x"]).count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_single_message_race_returns_the_winner(make_workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    alice = make_workspace("race1")
    lose_race_to_another_connection(monkeypatch, alice.workspace, "solo@x")
    (result,) = ingest_batch(alice.workspace, [parse_raw(raw_email("solo@x"))])
    assert not result.created and result.message.message_id == "solo@x"


def test_failed_batch_leaves_no_attachment_files(alice: Tenant, monkeypatch, settings) -> None:  # type: ignore[no-untyped-def]
    from conduit import ingest

    def boom(rows):  # type: ignore[no-untyped-def]
        raise RuntimeError("database went away")

    monkeypatch.setattr(ingest.Attachment.objects, "bulk_create", boom)
    with pytest.raises(RuntimeError):
        ingest_one(
            alice.workspace,
            parse_raw(raw_email("f@x", attachment=("a.bin", "application/octet-stream", b"x"))),
        )
    assert Message.objects.count() == 0
    media = Path(settings.MEDIA_ROOT)
    assert not media.exists() or not [p for p in media.rglob("*") if p.is_file()]


def test_message_without_message_id_gets_a_content_derived_one(alice: Tenant) -> None:
    raw = raw_email("", subject="no id")
    first = parse_raw(raw)
    assert first.message_id.startswith("sha256-") and first.message_id == parse_raw(raw).message_id
    ingest_one(alice.workspace, first)
    assert not ingest_one(alice.workspace, parse_raw(raw)).created


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"this is just some text, not an email at all", "no From header"),
        (b'{"json": true}', "no From header"),
        (b"Subject: hi\n\nno sender", "no From header"),
    ],
)
def test_not_an_email_is_rejected(raw: bytes, reason: str) -> None:
    with pytest.raises(IngestRejected, match=reason):
        parse_raw(raw)


def test_oversize_message_is_rejected(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CONDUIT_MAX_MESSAGE_BYTES = 100
    with pytest.raises(IngestRejected) as excinfo:
        parse_raw(raw_email("big@x", body="x" * 500))
    assert excinfo.value.code == "message_too_large"
    assert "limit is 100 bytes" in excinfo.value.reason
    with pytest.raises(IngestRejected, match="limit"):
        parse_json({"message_id": "j@x", "from": "a@b", "body_text": "y" * 200})


def test_parse_json_message() -> None:
    parsed = parse_json(
        {
            "message_id": "<j1@x>",
            "from": "a@b.example",
            "to": ["c@d.example"],
            "subject": "Hi",
            "sent_at": "2026-11-20T10:00:00+01:00",
            "body_text": "hello",
        }
    )
    assert (parsed.message_id, parsed.to_addresses, parsed.raw) == ("j1@x", ["c@d.example"], None)
    assert parsed.sent_at is not None and parsed.sent_at.utcoffset() is not None
    assert parsed.size_bytes == 5


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([], "JSON object"),
        ({"from": "a@b"}, "message_id"),
        ({"message_id": "x"}, "from"),
        ({"message_id": "x", "from": "a@b", "to": "c@d"}, "'to' must be a list"),
        ({"message_id": "x", "from": "a@b", "sent_at": "yesterday"}, "ISO 8601"),
        ({"message_id": "x", "from": "a@b", "sent_at": "2026-13-45T99:00:00"}, "ISO 8601"),
        ({"message_id": "x", "from": "a@b", "sent_at": "2026-11-20T10:00:00"}, "timezone"),
    ],
)
def test_parse_json_rejects_bad_input(data: object, reason: str) -> None:
    with pytest.raises(IngestRejected, match=reason):
        parse_json(data)


def test_unparseable_date_is_stored_as_unknown() -> None:
    raw = raw_email("d@x").replace(b"Date: Mon, 16 Nov 2026 09:12:00 +0000", b"Date: sometime soon")
    assert parse_raw(raw).sent_at is None


def test_latin1_body_without_charset_is_decoded() -> None:
    raw = (
        b"From: a@b.example\nMessage-ID: <l1@x>\nContent-Type: text/plain; charset=unknown-8bit\n\ncaf\xe9\n"
    )
    parsed = parse_raw(raw)
    assert parsed.body_text is not None and parsed.body_text.startswith("caf")


def test_attached_email_is_kept_whole_and_named() -> None:
    from email.message import EmailMessage

    inner = EmailMessage()
    inner["From"] = "x@y.example"
    inner["Subject"] = "forwarded"
    inner.set_content("inner body")
    outer = EmailMessage()
    outer["From"] = "a@b.example"
    outer["Message-ID"] = "<fwd@x>"
    outer.set_content("see attached")
    outer.add_attachment(inner)
    parsed = parse_raw(bytes(outer))
    (attachment,) = parsed.attachments
    assert attachment.content_type == "message/rfc822"
    assert attachment.filename == "attachment-1.eml"
    assert b"inner body" in attachment.content


def test_date_without_zone_is_read_as_utc() -> None:
    raw = raw_email("z@x").replace(b"+0000", b"-0000")
    parsed = parse_raw(raw)
    assert parsed.sent_at is not None and parsed.sent_at.utcoffset() is not None


def test_encoded_headers_charsets_and_nested_parts() -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <j@x.de>\n"
        b"To: a@x.example, =?utf-8?b?w4Q=?= <b@y.example>\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and\n more\n"
        b"Message-ID: <enc@x>\n"
        b"Content-Type: multipart/related; boundary=b\n\n"
        b"--b\nContent-Type: multipart/alternative; boundary=c\n\n"
        b"--c\nContent-Type: text/plain; charset=iso-8859-1\n"
        b"Content-Transfer-Encoding: quoted-printable\n\nGr=FC=DFe\n"
        b"--c\nContent-Type: text/html\n\n<p>h</p>\n--c--\n"
        b"--b\nContent-Type: image/gif\nContent-ID: <logo>\nContent-Transfer-Encoding: base64\n\nR0lG\n"
        b"--b\nContent-Type: text/plain; name=notes.txt\n"
        b"Content-Disposition: attachment; filename=notes.txt\n\nnotes\n"
        b"--b\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\n--b--\n"
    )
    parsed = parse_raw(raw)
    assert parsed.from_address == "Jürgen Müller <j@x.de>"
    assert parsed.subject == "Grüße and more"
    assert parsed.to_addresses == ["a@x.example", "b@y.example"]
    assert parsed.body_text == "Grüße" and parsed.body_html == "<p>h</p>"
    assert [(a.filename, a.content_type, a.content) for a in parsed.attachments] == [
        ("attachment-1.gif", "image/gif", b"GIF"),
        ("notes.txt", "text/plain", b"notes"),
    ]


def test_raw_utf8_headers_are_read() -> None:
    raw = "From: Jürgen <j@x.de>\nSubject: raw utf8 äöü\nMessage-ID: <u8@x>\n\nbody\n".encode()
    parsed = parse_raw(raw)
    assert (parsed.from_address, parsed.subject, parsed.body_text) == (
        "Jürgen <j@x.de>",
        "raw utf8 äöü",
        "body\n",
    )


def test_nul_bytes_are_stripped_from_stored_text(alice: Tenant) -> None:
    raw = b"From: a@b.example\nSubject: nul\x00here\nMessage-ID: <nul@x>\n\nbody\x00text\n"
    result = ingest_one(alice.workspace, parse_raw(raw))
    message = Message.objects.get(pk=result.message.pk)
    assert (message.subject, message.body_text) == ("nulhere", "bodytext\n")
    assert bytes(message.raw) == raw  # the canonical copy keeps every byte
    parsed = parse_json({"message_id": "j\x00n@x", "from": "a@b", "body_text": "x\x00y"})
    assert (parsed.message_id, parsed.body_text) == ("jn@x", "xy")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("..", "attachment-1.txt"),
        ("a/../../b.txt", "b.txt"),
        ("C:\\\\Users\\\\me\\\\report.pdf", "report.pdf"),
        ("na\x00me.txt", "name.txt"),
        ("é" * 200 + ".pdf", "é" * 146 + ".pdf"),
    ],
)
def test_attachment_names_are_made_safe(alice: Tenant, name: str, expected: str) -> None:
    from conduit.ingest import safe_filename

    assert safe_filename(name, 1, "text/plain") == expected
    raw = raw_email("fn@x", attachment=("placeholder.txt", "text/plain", b"data"))
    raw = raw.replace(b'filename="placeholder.txt"', b'filename="' + name.encode() + b'"')
    result = ingest_one(alice.workspace, parse_raw(raw))
    attachment = Attachment.objects.get(message=result.message)
    assert ".." not in attachment.file.name and "\x00" not in attachment.file.name
    assert attachment.file.name.startswith(f"attachments/{alice.workspace.pk}/")
    with default_storage.open(attachment.file.name) as fh:
        assert fh.read() == b"data"


def test_parse_json_rejects_wrong_types_and_empty_ids() -> None:
    with pytest.raises(IngestRejected, match="'body_text' must be a string"):
        parse_json({"message_id": "x", "from": "a@b", "body_text": {"html": 1}})
    with pytest.raises(IngestRejected, match="'subject' must be a string"):
        parse_json({"message_id": "x", "from": "a@b", "subject": 5})
    with pytest.raises(IngestRejected, match="'to' must be a list"):
        parse_json({"message_id": "x", "from": "a@b", "to": ["ok@x", 7]})
    with pytest.raises(IngestRejected, match="'message_id' must not be empty"):
        parse_json({"message_id": "<>", "from": "a@b"})


def refuse_subject(monkeypatch, marker: str) -> None:  # type: ignore[no-untyped-def]
    """Make the database refuse one message (a NUL slipped past cleaning) to test recovery."""
    from conduit import ingest

    real = ingest._new_message

    def new_message(workspace, parsed, now):  # type: ignore[no-untyped-def]
        message = real(workspace, parsed, now)
        if parsed.message_id == marker:
            message.subject = "bad\x00subject"
        return message

    monkeypatch.setattr(ingest, "_new_message", new_message)


@pytest.mark.postgres
def test_one_unstorable_message_does_not_sink_its_batch(alice: Tenant, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    refuse_subject(monkeypatch, "bad@x")
    batch = [parse_raw(raw_email(mid)) for mid in ("g1@x", "bad@x", "g2@x")]
    results = ingest_batch(alice.workspace, batch)
    assert [r.created for r in results] == [True, False, True]
    assert results[1].message is None and results[1].error == "the message could not be stored (DataError)"
    assert set(Message.objects.values_list("message_id", flat=True)) == {"g1@x", "g2@x"}
    with pytest.raises(IngestRejected) as excinfo:
        ingest_one(alice.workspace, parse_raw(raw_email("bad@x")))
    assert excinfo.value.code == "unstorable_message"


def test_storage_names_stay_short_in_bytes(alice: Tenant) -> None:
    from conduit.models import attachment_path

    row = Attachment(workspace=alice.workspace)
    long_name = attachment_path(row, "é" * 146 + ".pdf").rsplit("/", 1)[-1]
    assert long_name.endswith(".pdf") and len(long_name.encode()) <= 100
    no_ext = attachment_path(row, "x" * 300).rsplit("/", 1)[-1]
    assert no_ext == "x" * 90
