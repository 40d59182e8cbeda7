"""Odoo's two wire protocols behind one call, and the error mapping of both.

`OdooWire._execute` makes one ORM call: JSON-2 (`POST /json/2/<model>/<method>`, `Authorization:
bearer <key>`, `X-Odoo-Database`, named arguments, HTTP status codes) or XML-RPC
(`/xmlrpc/2/object` `execute_kw(db, uid, key, model, method, args, kw)`, faults in a 200 answer),
as the connection's `api` says. Both go through `Provider._call` (limiter, sync log, metrics,
timeouts) to the instance's checked address (pinned.py); XML-RPC bodies are made and read with
the standard library's xmlrpc.client (its expat parser, >= 2.4, bounds entity expansion).
"""

from __future__ import annotations

import re
import xmlrpc.client
from collections.abc import Callable
from typing import Any
from xml.parsers.expat import ExpatError

import requests
from django.conf import settings

from integrations.providers import pinned
from integrations.providers.base import Account, Provider, json_or_none, short
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    ProviderError,
    Transient,
)
from integrations.providers.ratelimit import Bucket
from integrations.providers.synclog import CallContext

# /xmlrpc/2 fault codes (odoo/addons/base/controllers/rpc.py): 1 any other error (a traceback),
# 2 UserError and ValidationError, 3 AccessDenied, 4 AccessError.
FAULT_WARNING, FAULT_ACCESS_DENIED, FAULT_ACCESS_ERROR = 2, 3, 4
MISSING_MODEL_RE = re.compile(r"(?:Object \S+ doesn't exist|the model '[^']+' does not exist)")
UNKNOWN_DATABASE_RE = re.compile(r"database \S+ does not exist", re.I)


def api_bucket() -> Bucket:
    return Bucket.budgeted("odoo", "api", settings.ODOO_REQUESTS_PER_SECOND, 1)


def as_id(value: str) -> int:
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()):
        raise Permanent("odoo", "invalid_id", f"{text[:40]!r} is not an Odoo record id")
    return int(text)


def created_id(result: Any) -> str:
    """The id a create answers with: an int (XML-RPC) or a one-id list (JSON-2, create_multi)."""
    if isinstance(result, list) and len(result) == 1:
        result = result[0]
    if isinstance(result, bool) or not isinstance(result, int):
        raise Permanent("odoo", "invalid_create_response", "the create answer holds no record id")
    return str(result)


def major_of(version_info: Any) -> int:
    """19 from [19, 0, 0, "final", 0, ""]; 18 from ["saas~18", 3, ...] (odoo.com's SaaS series)."""
    first = version_info[0] if isinstance(version_info, list | tuple) and version_info else None
    text = str(first).removeprefix("saas~")
    if isinstance(first, bool) or not (text.isascii() and text.isdigit()):
        raise Permanent("odoo", "not_odoo", "the server did not answer like Odoo (no version)")
    return int(text)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def snake(name: str) -> str:
    """odoo.exceptions.ValidationError -> validation_error"""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name.rsplit(".", 1)[-1]).lower()


class OdooWire(Provider):
    """The transport half of the Odoo client (odoo.py holds what Conduit does with it)."""

    def open_transport(self, url: str) -> tuple[requests.Session, str, dict[str, str]]:
        return pinned.pinned_transport(url, provider=self.name)

    def api_bucket(self) -> Bucket:
        return api_bucket()

    def _xmlrpc(
        self,
        base: str,
        operation: str,
        service: str,
        method: str,
        params: tuple[Any, ...],
        *,
        account_key: str,
        context: CallContext,
        key: str = "",
        model: str = "",
        write: bool = False,
        check: Callable[[Any], Any] | None = None,
    ) -> Any:
        def decode(resp: requests.Response) -> Any:
            result = self.xmlrpc_result(resp, model)
            return check(result) if check else result

        return self._call(
            operation,
            "POST",
            f"{base}/xmlrpc/2/{service}",
            context=context,
            bucket=api_bucket(),
            account_key=account_key,
            write=write,
            secrets=(key,) if key else (),
            decode=decode,
            data=xmlrpc.client.dumps(params, methodname=method).encode("utf-8"),
            headers={"Content-Type": "text/xml; charset=utf-8"},
        )

    def xmlrpc_result(self, resp: requests.Response, model: str) -> Any:
        try:
            (result,), _method = xmlrpc.client.loads(resp.content)
        except xmlrpc.client.Fault as fault:
            raise self.fault_error(fault, model) from None
        except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError):
            raise Permanent(self.name, "invalid_response", "the answer is not XML-RPC") from None
        return result

    def _execute(
        self,
        account: Account,
        operation: str,
        model: str,
        method: str,
        *,
        ids: list[int] | None = None,
        params: dict[str, Any] | None = None,
        positional: str = "",
        context: dict[str, Any] | None = None,
        write: bool = False,
    ) -> Any:
        """One ORM call: JSON-2 with named arguments, or XML-RPC `execute_kw`, where `ids` (and
        the argument named `positional`, for `create`) go first and the rest by name."""
        params = dict(params or {})
        database = str(account.details.get("database") or "")
        if account.details.get("api") == "json2":
            body = {**params, **({"ids": ids} if ids is not None else {})}
            if context:
                body["context"] = context
            return self._call_as(
                account,
                operation,
                "POST",
                f"{account.instance_url}/json/2/{model}/{method}",
                write=write,
                json=body,
                headers={"X-Odoo-Database": database},
            )
        args: list[Any] = [ids] if ids is not None else []
        if positional:
            args.append(params.pop(positional))
        keywords = {**params, **({"context": context} if context else {})}
        uid = account.details.get("uid")
        if isinstance(uid, bool) or not isinstance(uid, int):
            raise Permanent(self.name, "not_configured", "the connection names no Odoo user; save it again")
        return self._xmlrpc(
            account.instance_url,
            operation,
            "object",
            "execute_kw",
            (database, uid, account.access_token, model, method, args, keywords),
            account_key=account.account_key,
            context=account.context,
            key=account.access_token,
            model=model,
            write=write,
        )

    def _search_read(
        self,
        account: Account,
        operation: str,
        model: str,
        domain: list[Any],
        fields: list[str],
        *,
        limit: int = 1,
        order: str = "id asc",
        context: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        params = {"domain": domain, "fields": fields, "limit": limit, "order": order}
        rows = self._execute(account, operation, model, "search_read", params=params, context=context)
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "id" in r for r in rows):
            raise Permanent(self.name, "invalid_response", f"{model} search_read did not answer records")
        return rows

    def _first(
        self, account: Account, operation: str, model: str, domain: list[Any], field: str = "id", **kw: Any
    ) -> int | None:
        rows = self._search_read(account, operation, model, domain, sorted({"id", field}), **kw)
        value = rows[0].get(field) if rows else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def server_version(self, base: str, account_key: str, context: CallContext) -> tuple[str, int]:
        """The server's version and major number: XML-RPC `common.version()`, or where that is
        gone (Odoo 22 removes XML-RPC [verify]) `GET /web/version`."""
        try:
            info = self._xmlrpc(
                base, "detect_version", "common", "version", (), account_key=account_key, context=context
            )
            version_info = info.get("server_version_info") if isinstance(info, dict) else None
            version = info.get("server_version") if isinstance(info, dict) else None
        except Permanent as exc:
            if exc.http_status != 404:
                raise
            info = self._call(
                "detect_version",
                "GET",
                f"{base}/web/version",
                context=context,
                bucket=api_bucket(),
                account_key=account_key,
            )
            version_info = info.get("version_info") if isinstance(info, dict) else None
            version = info.get("version") if isinstance(info, dict) else None
        return str(version or ""), major_of(version_info)

    def authenticated_uid(self, uid: Any) -> int:
        if isinstance(uid, bool) or not isinstance(uid, int) or uid <= 0:  # authenticate answers False
            raise AuthRevoked(self.name, "invalid_credentials", "Odoo refused this login and API key")
        return uid

    # --- error mapping ---
    def default_retry_after(self, resp: requests.Response) -> float:
        return 60.0  # Odoo documents no rate limit or Retry-After; Conduit's choice

    def classify_client_error(self, resp: requests.Response, operation: str) -> ProviderError:
        status = resp.status_code
        body = json_or_none(resp)
        body = body if isinstance(body, dict) else {}
        name = str(body.get("name") or "")
        message = short(body.get("message") or f"HTTP {status}")
        path = (resp.request.path_url if resp.request is not None else "") or ""
        model = path.split("/")[3] if path.startswith("/json/2/") and path.count("/") >= 4 else ""
        if status == 401 or name.endswith("AccessDenied"):
            return AuthRevoked(self.name, "api_key_rejected", message, http_status=status)
        if status == 403 or name.endswith("AccessError"):
            return MissingScope(self.name, [f"{model or 'record'} access"], message, http_status=status)
        if status == 404:
            code = "model_not_found" if MISSING_MODEL_RE.search(message) else "not_found"
            return Permanent(self.name, code, message, details={"name": name}, http_status=status)
        if status == 409:  # LockError: the record is locked by another transaction; try again later
            return Transient(self.name, "locked", message, http_status=status)
        code = snake(name) if name else ("validation_error" if status == 422 else f"http_{status}")
        return Permanent(self.name, code, message, details={"name": name}, http_status=status)

    def fault_error(self, fault: xmlrpc.client.Fault, model: str) -> ProviderError:
        code, text = fault.faultCode, str(fault.faultString or "")
        message = short(last_line(text) or f"fault {code}")
        if code == FAULT_ACCESS_DENIED:
            return AuthRevoked(self.name, "api_key_rejected", message)
        if code == FAULT_ACCESS_ERROR:
            return MissingScope(self.name, [f"{model or 'record'} access"], message)
        if code == FAULT_WARNING:
            missing = MISSING_MODEL_RE.search(text)
            return Permanent(self.name, "model_not_found" if missing else "user_error", message)
        if UNKNOWN_DATABASE_RE.search(text):
            return Permanent(self.name, "unknown_database", message)
        return Transient(self.name, "server_error", message)
