"""The sign-in page: Django's LoginView, plus the line about a marketplace install waiting to be
claimed when `next` is its claim link (conduit.install_notice)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import LoginView

from conduit.install_notice import install_notice
from conduit.views import safe_next


class SignInView(LoginView):
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["install_notice"] = install_notice(safe_next(self.request))
        return context
