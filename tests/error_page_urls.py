"""URLs for tests only: the app's routes and error handlers plus views that fail in each way."""

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conduit.urls import handler400, handler403, handler404, handler500  # noqa: F401 - Django reads them here


def crash(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug")


def forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied("only workspace owners and admins can do this.")


def suspicious(request: HttpRequest) -> HttpResponse:
    raise SuspiciousOperation("the request quoted <script>secret</script>")


def too_big(request: HttpRequest) -> HttpResponse:
    raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")


class CrashingApiView(APIView):
    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    def get(self, request: Request) -> Response:
        raise RuntimeError("a bug in an API view")


urlpatterns = [
    path("boom/", crash),
    path("forbidden/", forbidden),
    path("suspicious/", suspicious),
    path("api/v1/boom", CrashingApiView.as_view()),
    path("api/v1/forbidden", forbidden),
    path("api/v1/too-big", too_big),
    path("crm/boom", crash),
    path("", include("conduit.urls")),
]
