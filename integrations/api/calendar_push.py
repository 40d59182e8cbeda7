"""STUB (helper D replaces): Google channel notifications and Graph subscription notifications."""

from django.http import HttpRequest, HttpResponse


def google_notification(request: HttpRequest) -> HttpResponse:
    raise NotImplementedError


def microsoft_notification(request: HttpRequest) -> HttpResponse:
    raise NotImplementedError
