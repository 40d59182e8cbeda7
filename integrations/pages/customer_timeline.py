"""STUB (helper E replaces): a customer's timeline, email and meetings side by side."""

from django.http import HttpRequest, HttpResponse


def customer_timeline(request: HttpRequest, email: str) -> HttpResponse:
    raise NotImplementedError
