"""The calendar pages' URLs (included from conduit/urls.py): a member's calendar cards, connect,
the OAuth callback (GOOGLE_REDIRECT_URI / MICROSOFT_REDIRECT_URI), disconnect, Sync now, and a
customer's timeline of email and meetings."""

from django.urls import path

from integrations.pages import calendar_connect, calendar_page, customer_timeline

urlpatterns = [
    path("settings/calendar/", calendar_page.calendar_page, name="calendar"),
    path("settings/calendar/<str:provider>/connect/", calendar_connect.connect, name="calendar-connect"),
    path("settings/calendar/callback/<str:provider>/", calendar_connect.callback, name="calendar-callback"),
    path(
        "settings/calendar/<int:connection_id>/disconnect/",
        calendar_connect.disconnect,
        name="calendar-disconnect",
    ),
    path("settings/calendar/<int:connection_id>/sync/", calendar_connect.sync_now, name="calendar-sync-now"),
    path("customers/<str:email>/", customer_timeline.customer_timeline, name="customer-timeline"),
]
