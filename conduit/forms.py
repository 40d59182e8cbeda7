from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import password_validation


class SignUpForm(forms.Form):
    email = forms.EmailField(max_length=150)  # it is also the username (auth_user.username: 150)
    workspace_name = forms.CharField(max_length=200, label="Company / workspace name")
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("password") and cleaned.get("email"):
            from django.contrib.auth.models import User

            probe = User(username=cleaned["email"], email=cleaned["email"])
            try:
                password_validation.validate_password(cleaned["password"], probe)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, label="Token name", help_text="e.g. mail-gateway")


# A search link stays far below gunicorn's limit_request_line (conduit/gunicorn.py) even when every
# character is percent-encoded UTF-8, so an over-long search reaches the view and gets a sentence.
SEARCH_MAX_CHARS = 200


class MessageSearchForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=SEARCH_MAX_CHARS,
        error_messages={
            "max_length": "Search for at most %(limit_value)d characters; this search has %(show_value)d. "
            "Shorten it and try again.",
            "null_characters_not_allowed": "Search text cannot contain a NUL character.",
        },
    )

    def first_error(self) -> str:
        errors = self.errors.get("q") or ["This search cannot be run."]
        return str(errors[0])
