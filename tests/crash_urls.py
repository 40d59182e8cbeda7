"""URLs for tests only: the app's routes plus a view that writes and then crashes."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from conduit.models import Message
from conduit.tenancy import workspace_of


def write_then_crash(request: HttpRequest) -> HttpResponse:
    Message.objects.create(workspace=workspace_of(request), message_id="half-done@x")
    raise RuntimeError("crash after a write")


urlpatterns = [path("crash/", write_then_crash), path("", include("conduit.urls"))]
