"""The Retention page (/settings/retention/): owners and admins edit the workspace's policy,
members read it, and everyone sees the last purge's receipt."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from conduit.models import Membership
from conduit.tenancy import workspace_of
from conduit.views import signed_in_user, workspace_required
from retention.cards import policy_card
from retention.forms import RetentionPolicyForm
from retention.policy import PolicyInvalid, do_update_policy, policy_for


@require_http_methods(["GET", "POST"])
@workspace_required
def retention_page(request: HttpRequest) -> HttpResponse:
    """The retention settings card: owners and admins edit the policy, members read it."""
    workspace = workspace_of(request)
    membership: Membership | None = getattr(request, "membership", None)
    can_admin = membership is not None and membership.administers
    policy = policy_for(workspace)
    if request.method == "POST":
        if not can_admin:
            raise Http404("only workspace owners and admins can change the retention policy")
        form = RetentionPolicyForm(request.POST)
        if form.is_valid():
            try:
                update = do_update_policy(workspace, form.cleaned_data, actor=signed_in_user(request))
            except PolicyInvalid as exc:
                for field, message in exc.errors.items():
                    form.add_error(field, message)
            else:
                messages.success(request, "Retention policy saved." if update.changed else "Nothing changed.")
                return redirect("retention")
    else:
        saved = {f: getattr(policy, f) for f in ("message_days", "attachment_days", "sync_log_days")}
        form = RetentionPolicyForm(
            initial={"purge_enabled": policy.purge_enabled, **(saved if policy.pk else {})}
        )
    context = {"form": form, "can_admin": can_admin, "card": policy_card(workspace, policy)}
    return render(request, "retention/retention.html", context, status=400 if form.errors else 200)
