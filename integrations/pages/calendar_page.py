"""Settings > Calendar: the signed-in member's own calendars, one card per provider (Google
Calendar, Microsoft 365) with its state, last sync, error in plain words and the Sync now /
Reconnect / Disconnect buttons (posting to calendar_connect.py's views), why an action is
unavailable (a flag or an allowlist), and the member's next meetings. The values come from
calendar_cards.py; the page costs the same few queries however many events are stored."""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from conduit.models import Profile
from conduit.tenancy import workspace_of
from conduit.views import signed_in_user, workspace_required
from integrations.models import ExternalCalendarConnection, ExternalCalendarEvent
from integrations.pages.calendar_cards import UPCOMING, card_for, meeting_for, page_refusals, provider_choices


def member_profile(request: HttpRequest) -> Profile:
    profile = Profile.objects.filter(user=signed_in_user(request)).first()
    if profile is None:
        raise Http404("this account has no member profile")
    return profile


@workspace_required
def calendar_page(request: HttpRequest) -> HttpResponse:
    workspace, profile = workspace_of(request), member_profile(request)
    now = timezone.now()
    live = {
        conn.provider: conn
        for conn in ExternalCalendarConnection.objects.filter(workspace=workspace, profile=profile)
        .exclude(status=ExternalCalendarConnection.Status.DISCONNECTED)
        .annotate(events_stored=Count("events"))
    }
    cards = [
        card_for(
            provider,
            label,
            live.get(provider),
            profile_id=profile.pk,
            events_stored=getattr(live.get(provider), "events_stored", 0),
            now=now,
        )
        for provider, label in provider_choices()
    ]
    upcoming = (
        ExternalCalendarEvent.objects.filter(
            workspace=workspace,
            profile=profile,
            connection__in=[c.pk for c in live.values()],
            cancelled=False,
        )
        .filter(Q(ends_at__gte=now) | Q(ends_at__isnull=True, starts_at__gte=now))
        .select_related("connection")
        .order_by("starts_at", "pk")[:UPCOMING]
    )
    context = {
        "cards": cards,
        "refusals": page_refusals(profile.pk, cards),
        "meetings": [meeting_for(event) for event in upcoming] if live else [],
        "any_connected": bool(live),
        "profile_email": profile.email,
    }
    return render(request, "integrations/calendar.html", context)
