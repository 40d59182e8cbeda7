"""STUB (helper D replaces): connect, OAuth callback, disconnect and Sync now of a member's calendar."""

from django.http import HttpRequest, HttpResponse


def connect(request: HttpRequest, provider: str) -> HttpResponse:
    raise NotImplementedError


def callback(request: HttpRequest, provider: str) -> HttpResponse:
    raise NotImplementedError


def disconnect(request: HttpRequest, connection_id: int) -> HttpResponse:
    raise NotImplementedError


def sync_now(request: HttpRequest, connection_id: int) -> HttpResponse:
    raise NotImplementedError
