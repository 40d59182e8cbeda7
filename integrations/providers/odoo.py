"""Odoo: a customer-hosted (or odoo.com) instance, connected with a user's API key.

Facts: ../shared/provider-facts.md, "Odoo", and docs/connectors.md, "Odoo". JSON-2 from Odoo 19,
XML-RPC before it: `common.version()` decides when the credentials are saved, and the choice is
kept in the connection (`api`); odoo_wire.py speaks both, through `Provider._call`, to the
instance's checked address (pinned.py). Curated writes: a logged note on the partner (and on its
open opportunity), or a To-Do activity on the partner; each carries the marker, found again by
`find_marked`. The incremental pull reads `write_date`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from integrations.providers import pinned
from integrations.providers.base import (
    Account,
    Activity,
    ExternalAccount,
    HealthResult,
    TokenSet,
    check_operation,
    last_call_ms,
    marked,
    with_marker,
)
from integrations.providers.changes import Changed, ChangedPage, check_object, join_token, split_token
from integrations.providers.errors import Permanent
from integrations.providers.odoo_wire import OdooWire, as_id, created_id
from integrations.providers.synclog import NO_CONTEXT, CallContext

JSON2_FROM = 19  # the first major version with /json/2 (provider-facts.md)
ODOO_DATETIME = "%Y-%m-%d %H:%M:%S"  # write_date as Odoo sends it: UTC, whole seconds
NOTE_BODY_MAX = 65536  # Conduit's cap: Odoo's message body and activity note are unbounded Html
SUMMARY_MAX = 255  # Conduit's cap for the To-Do summary, which carries the marker
NOTE_SUBTYPE = "mail.mt_note"  # a logged note, not a message sent to followers
TODO_XMLID = ("mail", "mail_activity_data_todo")  # the To-Do activity type
# What the incremental pull reads of each object. Archived records are read too: a lost
# opportunity is archived, and the lookups naming it must go stale.
CHANGED_MODELS = {
    "contact": ("res.partner", ["id", "email", "write_date"], []),
    "deal": ("crm.lead", ["id", "write_date"], [["type", "=", "opportunity"]]),
}


def like_literal(value: str) -> str:
    """`value` for an `=ilike` domain leaf, matched as it is: its LIKE wildcards escaped."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def odoo_datetime(when: datetime) -> str:
    return when.astimezone(UTC).strftime(ODOO_DATETIME)


def id_or_placeholder(value: str) -> int | str:
    """An id for a preview: the record id, or the placeholder the preview shows before lookup."""
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() else text


class OdooProvider(OdooWire):
    name = "odoo"
    label = "Odoo"
    required_scopes = ()  # an API key has its user's access rights, no scopes
    uses_oauth = False
    refreshes_tokens = False

    # --- no OAuth: the credentials form (integrations/connections/credentials.py) connects ---
    def api_key_only(self) -> Permanent:
        return Permanent(
            self.name, "api_key_only", "Odoo connects with an API key on the Integrations page, not OAuth"
        )

    def authorize_url(
        self, *, state: str, redirect_uri: str, code_challenge: str | None = None, environment: str = "login"
    ) -> str:
        raise self.api_key_only()

    def exchange_code(
        self,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None = None,
        environment: str = "login",
        context: CallContext = NO_CONTEXT,
    ) -> TokenSet:
        raise self.api_key_only()

    def refresh(
        self, refresh_token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> TokenSet:
        raise self.api_key_only()

    def identify(
        self, tokens: TokenSet, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> ExternalAccount:
        raise self.api_key_only()

    def revoke(self, token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT) -> None:
        # Conduit forgets the key; only its user (or an Odoo admin) can delete it in Odoo.
        raise Permanent(
            self.name, "revoke_not_supported", "delete the API key in Odoo: Preferences > Account Security"
        )

    # --- connecting: the version decides the protocol, then one authenticated call ---
    def verify_credentials(
        self, *, base: str, database: str, login: str, api_key: str, context: CallContext
    ) -> ExternalAccount:
        """Check the credentials with one authenticated call (after asking the version) and name
        the account: `key` is `<host>/<database>`. Nothing is stored here."""
        target, _rest = pinned.parse_target(base, provider=self.name)
        key = f"{target.netloc}/{database}"
        try:
            version, major = self.server_version(target.origin, key, context)
        except Permanent as exc:
            if exc.code in ("unsafe_url", "unexpected_redirect", "not_odoo"):
                raise
            # a 404, an HTML page, a fault: whatever answers there is not an Odoo server
            raise Permanent(self.name, "not_odoo", "the server did not answer like Odoo") from None
        api = "json2" if major >= JSON2_FROM else "xmlrpc"
        details: dict[str, Any] = {"database": database, "login": login, "api": api, "version": version}
        account = Account(
            self.name, api_key, key, instance_url=target.origin, context=context, details=details
        )
        if api == "json2":
            user_context = self._execute(account, "identify", "res.users", "context_get")
            uid = user_context.get("uid") if isinstance(user_context, dict) else None
        else:
            uid = self._xmlrpc(
                target.origin,
                "identify",
                "common",
                "authenticate",
                (database, login, api_key, {}),
                account_key=key,
                context=context,
                key=api_key,
                check=self.authenticated_uid,
            )
        if isinstance(uid, bool) or not isinstance(uid, int):
            raise Permanent(self.name, "invalid_response", "the server named no user for this API key")
        details |= {"uid": uid, "instance_url": target.origin, "url": target.origin}
        return ExternalAccount(key=key, details=details, user_email=login)

    # --- API ---
    def check_health(self, account: Account) -> HealthResult:
        user_context = self._execute(account, "health_check", "res.users", "context_get")
        uid = user_context.get("uid") if isinstance(user_context, dict) else None
        details = {"uid": uid, "api": account.details.get("api"), "version": account.details.get("version")}
        return HealthResult(latency_ms=last_call_ms() or 0, details=details)

    def find_contact(self, account: Account, email: str) -> str | None:
        domain = [["email", "=ilike", like_literal(email.strip())]]
        found = self._first(account, "find_contact", "res.partner", domain)
        return str(found) if found is not None else None

    def find_open_deal(self, account: Account, contact_id: str) -> str | None:
        domain = [
            ["partner_id", "=", as_id(contact_id)],
            ["type", "=", "opportunity"],
            ["active", "=", True],  # a lost opportunity is archived
            ["stage_id.is_won", "=", False],
        ]
        try:
            found = self._first(
                account, "find_open_deal", "crm.lead", domain, order="write_date desc, id desc"
            )
        except Permanent as exc:
            if exc.code == "model_not_found":  # the CRM app is not installed: no opportunities
                return None
            raise
        return str(found) if found is not None else None

    def changed_since(
        self, account: Account, object: str, since: datetime, after: str | None, limit: int
    ) -> ChangedPage:
        model, fields, scope = CHANGED_MODELS[check_object(object)]
        if after:
            stamp, last_id = split_token(after)
            # (write_date > t) OR (write_date = t AND id > last): records sharing one second are
            # paged by id, and none is read twice
            newer = ["write_date", ">", stamp]
            same_second = ["&", ["write_date", "=", stamp], ["id", ">", as_id(last_id)]]
            window: list[Any] = ["|", newer, *same_second]
        else:
            window = [["write_date", ">=", odoo_datetime(since)]]
        rows = self._search_read(
            account,
            f"pull_{object}s",
            model,
            [*scope, *window],
            fields,
            limit=limit,
            order="write_date asc, id asc",
            context={"active_test": False},
        )
        try:
            records = [
                Changed(str(r["id"]), self.parse_time(r["write_date"]), str(r.get("email") or ""))
                for r in rows
            ]
        except (KeyError, TypeError, ValueError):
            raise Permanent(self.name, "invalid_response", "a record lacks write_date") from None
        if len(records) < limit:
            return ChangedPage(records)
        return ChangedPage(records, join_token(odoo_datetime(records[-1].modified_at), records[-1].id))

    @staticmethod
    def parse_time(value: Any) -> datetime:
        parsed = datetime.fromisoformat(str(value))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

    # --- curated writes: a logged note on the partner (and its open opportunity), a To-Do ---
    def note_payload(self, activity: Activity) -> dict[str, Any]:
        return {
            "body": with_marker(activity, NOTE_BODY_MAX),
            "subject": activity.subject,
            "message_type": "comment",
            "subtype_xmlid": NOTE_SUBTYPE,
        }

    def task_values(self, activity: Activity) -> dict[str, Any]:
        return {
            "res_id": id_or_placeholder(activity.contact_id),
            "summary": marked(activity.subject, activity.marker, SUMMARY_MAX),
            "note": with_marker(activity, NOTE_BODY_MAX),
            "date_deadline": (activity.due_at or activity.occurred_at).date().isoformat(),
        }

    def write_payload(self, operation: str, activity: Activity) -> dict[str, Any]:
        """message_post's arguments (the same on the partner and the opportunity), or the To-Do's
        values without the two ids looked up at send time (res_model_id, activity_type_id)."""
        if check_operation(operation) in ("create_note", "create_meeting"):  # a meeting: a note on it
            return self.note_payload(activity)
        return self.task_values(activity)

    def _post_note(self, account: Account, model: str, record: str, payload: dict[str, Any]) -> str:
        result = self._execute(
            account, "create_note", model, "message_post", ids=[as_id(record)], params=payload, write=True
        )
        return created_id(result)

    def create_note(self, account: Account, activity: Activity) -> str:
        payload = self.note_payload(activity)
        message_id = self._post_note(account, "res.partner", activity.contact_id, payload)
        if activity.deal_id:
            self._post_note(account, "crm.lead", activity.deal_id, payload)
        return message_id

    def create_task(self, account: Account, activity: Activity) -> str:
        values = {**self.task_values(activity), "res_id": as_id(activity.contact_id)}
        model_id = self._first(account, "task_setup", "ir.model", [["model", "=", "res.partner"]])
        if model_id is None:
            raise Permanent(self.name, "model_not_found", "res.partner is not in ir.model")
        module, name = TODO_XMLID
        todo = self._first(
            account, "task_setup", "ir.model.data", [["module", "=", module], ["name", "=", name]], "res_id"
        )
        values["res_model_id"] = model_id
        if todo is not None:  # without it Odoo picks its default activity type
            values["activity_type_id"] = todo
        result = self._execute(
            account,
            "create_task",
            "mail.activity",
            "create",
            params={"vals_list": [values]},
            positional="vals_list",
            write=True,
        )
        return created_id(result)

    def find_marked(self, account: Account, operation: str, activity: Activity) -> str | None:
        contact = as_id(activity.contact_id)
        marker = activity.marker  # validated: letters and digits only, no LIKE wildcard
        if operation == "create_task":
            domain = [
                ["res_model", "=", "res.partner"],
                ["res_id", "=", contact],
                ["summary", "ilike", marker],
            ]
            found = self._first(
                account, "find_write", "mail.activity", domain, context={"active_test": False}
            )
            if found is not None:
                return str(found)
            # a To-Do marked done is deleted (or archived) and lives on as a chatter message
        domain = [["model", "=", "res.partner"], ["res_id", "=", contact], ["body", "ilike", marker]]
        found = self._first(account, "find_write", "mail.message", domain)
        if found is not None and operation != "create_task" and activity.deal_id:
            self._finish_note_on_deal(account, activity)
        return str(found) if found is not None else None

    def _finish_note_on_deal(self, account: Account, activity: Activity) -> None:
        """A note goes on the partner, then on its opportunity. When only the first made it (the
        second call failed, and the write's outcome became unknown), finding the write finishes
        it: the opportunity's copy is posted unless it is there already."""
        deal = as_id(str(activity.deal_id))
        domain = [["model", "=", "crm.lead"], ["res_id", "=", deal], ["body", "ilike", activity.marker]]
        if self._first(account, "find_write", "mail.message", domain) is None:
            self._post_note(account, "crm.lead", str(activity.deal_id), self.note_payload(activity))
