"""The retention settings card's form: a switch and three day limits (blank = the default)."""

from __future__ import annotations

from typing import Any

from django import forms

from retention.policy import (
    DAY_FIELDS,
    MAX_DAYS,
    MIN_DAYS,
    PolicyInvalid,
    PolicyValues,
    days_message,
    defaults,
    normalize,
)

HELP = {
    "message_days": "After this, a message keeps its headers; its text, HTML and raw email are removed.",
    "attachment_days": "After this, attachment files are deleted; the message lists them as removed.",
    "sync_log_days": "How long the log of Conduit's calls to your CRM is kept.",
}


def days_field(field: str, default: int) -> forms.IntegerField:
    message = days_message(field)
    return forms.IntegerField(
        label=f"{DAY_FIELDS[field][1]} for (days)",
        required=False,
        min_value=MIN_DAYS,
        max_value=MAX_DAYS,
        error_messages={"invalid": message, "min_value": message, "max_value": message},
        help_text=f"{HELP[field]} Blank: the default, {default} days.",
        widget=forms.NumberInput(attrs={"placeholder": str(default), "inputmode": "numeric"}),
    )


class RetentionPolicyForm(forms.Form):
    purge_enabled = forms.BooleanField(
        label="Purge old email automatically",
        required=False,
        help_text="Runs daily. Off: Conduit keeps everything it stores.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        default = defaults()
        for field in DAY_FIELDS:
            self.fields[field] = days_field(field, getattr(default, field))
        self.values: PolicyValues | None = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.errors:
            try:
                self.values = normalize(cleaned)
            except PolicyInvalid as exc:  # the form's own checks catch these first
                for field, message in exc.errors.items():
                    self.add_error(field, message)
        return cleaned
