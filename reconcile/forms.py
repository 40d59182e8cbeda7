"""The Write settings form (Settings → Integrations → Write settings): note or task per
direction, the internal domains, and how many days after the email a task is due."""

from __future__ import annotations

from typing import Any

from django import forms

from reconcile.models import WriteOperation
from reconcile.write_settings import (
    MAX_DOMAINS,
    MAX_DOMAINS_TEXT,
    MAX_DUE_DAYS,
    MIN_DUE_DAYS,
    DomainsInvalid,
    WriteSettings,
    parse_domains,
)

DUE_DAYS_MESSAGE = f"Task due days: a whole number from {MIN_DUE_DAYS} to {MAX_DUE_DAYS}."
DOMAINS_TOO_LONG = f"Keep the list under {MAX_DOMAINS_TEXT} characters ({MAX_DOMAINS} domains at most)."
OPERATION_CHOICES = [(WriteOperation.NOTE.value, "A note"), (WriteOperation.TASK.value, "A task")]


def operation_field(label: str, help_text: str) -> forms.ChoiceField:
    return forms.ChoiceField(
        label=label,
        choices=OPERATION_CHOICES,
        widget=forms.RadioSelect,
        help_text=help_text,
        error_messages={
            "required": "Choose a note or a task.",
            "invalid_choice": "Choose a note or a task.",
        },
    )


class WritePolicyForm(forms.Form):
    inbound_operation = operation_field(
        "Email from outside (inbound)",
        "Email your team receives from a customer or anyone outside your internal domains.",
    )
    outbound_operation = operation_field(
        "Email from your team (outbound)",
        "Email someone on your team sends to a customer: its sender is in your internal domains.",
    )
    internal_domains = forms.CharField(
        label="Internal domains",
        required=False,
        max_length=MAX_DOMAINS_TEXT,
        widget=forms.Textarea(
            attrs={"rows": 3, "spellcheck": "false", "placeholder": "acme.com, acme.co.uk"}
        ),
        help_text=(
            f"Your own email domains, separated by commas or new lines (at most {MAX_DOMAINS}). Addresses "
            "there are your team: Conduit never writes about them, and their mail counts as outbound. "
            "Empty: the domains of your members' email addresses."
        ),
        error_messages={
            "max_length": DOMAINS_TOO_LONG,
            "null_characters_not_allowed": "The list may contain only domains.",
        },
    )
    task_due_days = forms.IntegerField(
        label="Task due after (days)",
        min_value=MIN_DUE_DAYS,
        max_value=MAX_DUE_DAYS,
        help_text="A task is due this many days after the email's time (0: the same day).",
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
        error_messages={
            "required": DUE_DAYS_MESSAGE,
            "invalid": DUE_DAYS_MESSAGE,
            "min_value": DUE_DAYS_MESSAGE,
            "max_value": DUE_DAYS_MESSAGE,
        },
    )

    def clean_internal_domains(self) -> list[str]:
        try:
            return parse_domains(self.cleaned_data["internal_domains"])
        except DomainsInvalid as exc:
            raise forms.ValidationError(exc.messages) from None

    def settings(self) -> WriteSettings:
        data: dict[str, Any] = self.cleaned_data
        return WriteSettings(
            inbound_operation=data["inbound_operation"],
            outbound_operation=data["outbound_operation"],
            internal_domains=data["internal_domains"],
            task_due_days=data["task_due_days"],
        )

    @classmethod
    def for_settings(cls, saved: WriteSettings) -> WritePolicyForm:
        return cls(initial={**saved.as_dict(), "internal_domains": "\n".join(saved.internal_domains)})
