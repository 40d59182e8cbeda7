"""The calendar endpoints' URLs (included from conduit/urls.py): runbook 004's job-runner endpoint
(as written, and under /api/v1 for the schema) and the push notification receivers."""

from django.urls import path

from integrations.api import calendar_jobs, calendar_push

urlpatterns = [
    path(
        "api/admin/calendar/jobs/run", calendar_jobs.CalendarJobsRunView.as_view(), name="calendar-jobs-run"
    ),
    path(
        "api/v1/admin/calendar/jobs/run",
        calendar_jobs.CalendarJobsRunView.as_view(),
        name="api-calendar-jobs-run",
    ),
    path("webhooks/calendar/google", calendar_push.google_notification, name="calendar-push-google"),
    path("webhooks/calendar/microsoft", calendar_push.microsoft_notification, name="calendar-push-microsoft"),
]
