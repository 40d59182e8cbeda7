"""The closed set of provider errors the rest of Conduit acts on.

Callers never see an HTTP status: delivery, health and refresh code branch on these classes
only (see the table in provider-facts.md, "Classifying errors"). Messages carry an error code
and a short provider message, never a token, a request body or a response body.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base class. `code` is a stable snake_case error code for sync logs and metrics."""

    code = "provider_error"

    def __init__(
        self, provider: str, code: str | None = None, message: str = "", *, http_status: int | None = None
    ):
        self.provider = provider
        self.code = code or type(self).code
        self.message = message
        self.http_status = http_status
        super().__init__(self._text())

    def _text(self) -> str:
        return f"{self.provider}: {self.code}" + (f": {self.message}" if self.message else "")

    def scrub(self, secrets: list[str]) -> None:
        """Remove values Conduit sent (tokens, codes, the client secret) if the provider echoed them."""
        for secret in secrets:
            if secret and secret in self.message:
                self.message = self.message.replace(secret, "[redacted]")
        self.args = (self._text(),)


class AuthRevoked(ProviderError):
    """The grant is gone (invalid_grant, BAD_REFRESH_TOKEN, BAD_HUB): the customer must reconnect."""

    code = "refresh_token_revoked"


class TokenExpired(ProviderError):
    """The access token was refused (401): refresh once under the connection lock, retry once."""

    code = "token_expired"


class RateLimited(ProviderError):
    """The provider (or Conduit's own limiter) says wait `retry_after` seconds; not a failed attempt."""

    code = "rate_limited"

    def __init__(
        self,
        provider: str,
        code: str | None = None,
        message: str = "",
        *,
        retry_after: float,
        http_status: int | None = None,
    ):
        super().__init__(provider, code, message, http_status=http_status)
        self.retry_after = retry_after


class Transient(ProviderError):
    """5xx, 423, 477, timeouts, connection failures: retry with backoff, counts as an attempt."""

    code = "transient"


class Permanent(ProviderError):
    """Validation and other 4xx, or a configuration problem (invalid_client): no retry."""

    code = "permanent"

    def __init__(
        self,
        provider: str,
        code: str | None = None,
        message: str = "",
        *,
        details: dict[str, object] | None = None,
        http_status: int | None = None,
    ):
        super().__init__(provider, code, message, http_status=http_status)
        self.details = details or {}


class MissingScope(ProviderError):
    """The grant lacks scopes Conduit needs: reconnect asking for `missing`."""

    code = "missing_scope"

    def __init__(
        self, provider: str, missing: list[str], message: str = "", *, http_status: int | None = None
    ):
        super().__init__(
            provider, None, message or "missing scopes: " + " ".join(missing), http_status=http_status
        )
        self.missing = missing


class InvalidInstanceUrl(Permanent):
    """A provider address outside the provider's own domains (a Salesforce instance_url, a Zoho
    accounts server or API domain): no code or token is sent to it."""

    code = "invalid_instance_url"
