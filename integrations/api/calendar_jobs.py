"""STUB (helper C replaces): POST /api/admin/calendar/jobs/run (operator token)."""

from rest_framework.views import APIView


class CalendarJobsRunView(APIView):
    pass
