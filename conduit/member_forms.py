"""Forms of the Members page and of the invitation link's page."""

from __future__ import annotations

from typing import Any

from django import forms

from conduit.forms import SignUpForm
from conduit.models import Membership


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=150, label="Email")
    role = forms.ChoiceField(label="Role")

    def __init__(self, *args: Any, roles: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        role = self.fields["role"]
        assert isinstance(role, forms.ChoiceField)
        role.choices = [(r, Membership.Role(r).label) for r in roles]
        role.initial = Membership.Role.MEMBER


class InvitedSignUpForm(SignUpForm):
    """Sign-up's own checks (email, password strength) for the invited email, without a new
    workspace: the account joins the workspace that invited it."""

    workspace_name = None  # type: ignore[assignment]

    def __init__(self, *args: Any, email: str, **kwargs: Any) -> None:
        kwargs["initial"] = {"email": email}
        super().__init__(*args, **kwargs)
        self.fields["email"].disabled = True  # the invited email, whatever the browser sends
