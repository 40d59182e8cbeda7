"""STUB (helper E replaces): the Settings > Calendar page, one card per calendar provider."""

from django.http import HttpRequest, HttpResponse


def calendar_page(request: HttpRequest) -> HttpResponse:
    raise NotImplementedError
