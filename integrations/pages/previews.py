"""The dry-run previews of the Integrations card in words: what each planned write becomes in the
CRM, in the CRM's own vocabulary (a HubSpot note, a Salesforce Task, an Odoo log note, a HubSpot
meeting, a Salesforce Event ...), on which contact and deal, and its text cut to a few lines. The
exact request body stays one click away (the card's <details>). The text is Conduit's curated
summary: never an email body, never a calendar event's description."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from integrations.ledger import WritePreview
from integrations.models import CRM_CHOICES

TEXT_LINES = 4  # the preview shows this many lines of the text; the request body has it all
# The record a write hangs on: both the contact and the deal / opportunity, the deal when there is
# one (else the contact), or the contact alone.
Targets = Literal["both", "deal_or_contact", "contact"]


@dataclass(frozen=True)
class Sent:
    """What one write operation creates in a CRM."""

    what: str  # "A note", "A Task": the record, in the CRM's own word
    targets: Targets = "both"


@dataclass(frozen=True)
class Vocabulary:
    note: Sent
    task: Sent
    contact: str  # the CRM's word for a contact and for a deal
    deal: str
    sends: str  # what the card says Conduit writes there
    # a meeting from a member's calendar (create_meeting); where the CRM has none in Conduit's
    # scope it is a note describing the meeting (Provider.create_meeting)
    meeting: Sent = field(default=Sent("A meeting"))


WORDS: dict[str, Vocabulary] = {
    "hubspot": Vocabulary(
        note=Sent("A note"),
        task=Sent("A task"),
        contact="contact",
        deal="deal",
        sends="notes and tasks, on contacts and their open deals",
        meeting=Sent("A meeting"),
    ),
    # Salesforce has no note in Conduit's scope: a note is a completed Task (a logged activity).
    "salesforce": Vocabulary(
        note=Sent("A completed Task"),
        task=Sent("A Task"),
        contact="Contact",
        deal="Opportunity",
        sends="Tasks (a note is a completed Task), on Contacts and their open Opportunities",
        meeting=Sent("An Event"),
    ),
    "zoho": Vocabulary(
        note=Sent("A note", "deal_or_contact"),
        task=Sent("A task"),
        contact="contact",
        deal="deal",
        sends="notes and tasks, on contacts and their open deals",
        meeting=Sent("A note about the meeting", "deal_or_contact"),
    ),
    # message_post with the note subtype: a "Log note" in the chatter (partner and opportunity);
    # a task is a To-Do activity on the partner.
    "odoo": Vocabulary(
        note=Sent("A log note", "both"),
        task=Sent("A To-Do activity", "contact"),
        contact="contact",
        deal="opportunity",
        sends="log notes in the chatter and To-Do activities, on contacts and their open opportunities",
        meeting=Sent("A log note about the meeting", "both"),
    ),
    # The ATS: a note on the candidate matched by email (Lever: on the candidate's
    # opportunity); no task, no deal. Workday takes no writes.
    "greenhouse": Vocabulary(
        note=Sent("A candidate note", "contact"),
        task=Sent("A candidate note", "contact"),
        contact="candidate",
        deal="application",
        sends="notes on candidates matched by email",
        meeting=Sent("A candidate note about the meeting", "contact"),
    ),
    "lever": Vocabulary(
        note=Sent("An opportunity note", "contact"),
        task=Sent("An opportunity note", "contact"),
        contact="opportunity",
        deal="opportunity",
        sends="notes on the opportunities of candidates matched by email",
        meeting=Sent("An opportunity note about the meeting", "contact"),
    ),
    "workday": Vocabulary(
        note=Sent("Nothing", "contact"),
        task=Sent("Nothing", "contact"),
        contact="candidate",
        deal="job application",
        sends="nothing yet: Workday has no verified API to add a note to a candidate, so Conduit only "
        "checks the connection",
        meeting=Sent("Nothing", "contact"),
    ),
}
DEFAULT_WORDS = Vocabulary(Sent("A note"), Sent("A task"), "contact", "deal", "notes and tasks")


def words_for(crm: str) -> Vocabulary:
    return WORDS.get(crm, DEFAULT_WORDS)


def short_date(when: datetime, *, now: datetime) -> str:
    """9 Dec; with the year when it is not this year's (9 Dec 2027)."""
    when = timezone.localtime(when)
    day = f"{when.day} {when:%b}"
    return day if when.year == timezone.localtime(now).year else f"{day} {when.year}"


def sent_for(crm: str, operation: str) -> Sent:
    """What one write operation creates in this CRM."""
    words = words_for(crm)
    if operation == "create_meeting":
        return words.meeting
    return words.task if operation == "create_task" else words.note


def what_is_sent(crm: str, preview: WritePreview, *, now: datetime) -> str:
    """ "A note", "A task due 9 Dec", "A completed Task", "A To-Do activity due 9 Dec", "A meeting",
    "An Event"."""
    sent = sent_for(crm, preview.operation)
    if preview.operation == "create_task" and preview.due_at is not None:
        return f"{sent.what} due {short_date(preview.due_at, now=now)}"
    return sent.what


def address(email: str) -> SafeString:
    """An address cut to one line when long, the whole of it in the title."""
    return format_html('<span class="cut-inline addr" title="{}">{}</span>', email, email)


def contact_words(words: Vocabulary, preview: WritePreview) -> SafeString:
    if preview.contact_id:
        return format_html(
            'the {} {} <span class="muted">(id {})</span>',
            words.contact,
            address(preview.target),
            preview.contact_id,
        )
    return format_html("the {} with email {}", words.contact, address(preview.target))


def where_it_goes(crm: str, preview: WritePreview) -> SafeString:
    """On which contact and deal / opportunity the write lands, as far as Conduit knows before
    sending: the lookup runs just before the send, and its answer is cached."""
    words = words_for(crm)
    sent = sent_for(crm, preview.operation)
    contact = contact_words(words, preview)
    if preview.looked_up and not preview.contact_id:
        return format_html(
            "No {} {} has the email {} yet: Conduit skips this write unless one does when it is sent.",
            dict(CRM_CHOICES).get(crm, crm),
            words.contact,
            address(preview.target),
        )
    deal_id, unknown = preview.deal_id, not preview.looked_up
    if sent.targets == "contact":
        return format_html("On {}.", contact)
    if sent.targets == "deal_or_contact":
        if deal_id:
            return format_html("On the {} {}, of {}.", words.deal, deal_id, contact)
        if unknown:
            return format_html(
                "On the open {} of {}, or on the {} when there is none.", words.deal, contact, words.contact
            )
        return format_html("On {} (no open {}).", contact, words.deal)
    if deal_id:
        return format_html("On {} and the {} {}.", contact, words.deal, deal_id)
    if unknown:
        return format_html("On {} and its open {}, if any.", contact, words.deal)
    return format_html("On {} (no open {}).", contact, words.deal)


def preview_card(crm: str, preview: WritePreview, *, now: datetime) -> dict[str, Any]:
    """One planned write in plain values for the card (templates run no queries)."""
    lines = preview.text.splitlines()
    shown = TEXT_LINES if len(lines) > TEXT_LINES + 1 else len(lines)  # never a line to say "1 more"
    return {
        "id": preview.id,
        "operation": preview.operation,
        "what": what_is_sent(crm, preview, now=now),
        "where": where_it_goes(crm, preview),
        "target": preview.target,
        "created_at": preview.created_at,
        "lines": lines[:shown],
        "more_lines": len(lines) - shown,
        "text": preview.text,
        "payload_json": preview.payload_json,
    }


def preview_cards(
    crm: str, previews: list[WritePreview], *, now: datetime | None = None
) -> list[dict[str, Any]]:
    moment = now or timezone.now()
    return [preview_card(crm, p, now=moment) for p in previews]
