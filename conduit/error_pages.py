"""handler400, handler403, handler404 and handler500 (conduit/urls.py).

Pages answer with the product's templates (400.html, 403.html, 500.html). Under /api/ and /crm/ each
answers JSON {"code", "message"} like every other API error: DRF turns its own errors into JSON, but
an exception it does not handle (a crash, a body over DATA_UPLOAD_MAX_MEMORY_SIZE) ends up here."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.csrf import requires_csrf_token

from conduit.tenancy import API_PREFIXES

# Sentences for the 400s whose cause is safe to name; any other stays generic (Django's own
# messages can quote what was sent).
BAD_REQUEST_REASONS: dict[type[Exception], str] = {
    RequestDataTooBig: "the request body is larger than Conduit accepts",
    TooManyFieldsSent: "the request has more fields than Conduit accepts",
}


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIXES)


def _json(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"code": code, "message": message}, status=status)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api(request):
        reason = BAD_REQUEST_REASONS.get(type(exception), "the request is malformed")
        return _json("bad_request", f"Conduit could not read this request: {reason}.", 400)
    return defaults.bad_request(request, exception)


@requires_csrf_token  # the page's sign-out form carries a CSRF token
def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api(request):
        return _json("permission_denied", "You do not have permission to perform this action.", 403)
    # Conduit raises PermissionDenied with a sentence for the person ("only workspace owners ...").
    reason = str(exception).strip().rstrip(".")
    return render(request, "403.html", {"reason": reason}, status=403)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """A URL under /api/ or /crm/ that matches no route (e.g. a negative id) answers JSON too."""
    if is_api(request):
        return _json("not_found", f"no API endpoint at {request.path}", 404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if is_api(request):
        return _json("server_error", "Conduit failed to answer this request; the error is logged.", 500)
    return defaults.server_error(request)
