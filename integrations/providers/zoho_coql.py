"""The COQL queries the Zoho client sends (Zoho's SQL-like read API, POST /coql) and their literals.

Values are always quoted by `coql_quote`; the marker in a LIKE pattern is validated beforehand
(letters and digits only), so it holds no wildcard.
"""

from __future__ import annotations

from datetime import UTC, datetime

from integrations.providers.changes import split_token

# [verify] deals in a stage whose name starts with "Closed" are closed (Zoho's default stages).
OPEN_DEAL_COQL = (
    "select id, Stage, Modified_Time from Deals where (Contact_Name = {contact} and "
    "Stage not like 'Closed%') order by Modified_Time desc limit 1"
)
# Description is a multi-line field, which COQL cannot filter on: the marker also ends the Subject.
MARKED_TASK_COQL = "select id from Tasks where (Who_Id = {contact} and Subject like {pattern}) limit 1"
CHANGED_COQL = {"contact": ("Contacts", "id, Email, Modified_Time"), "deal": ("Deals", "id, Modified_Time")}


def coql_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def coql_datetime(when: datetime) -> str:
    """A COQL datetime literal: UTC, whole seconds (Zoho keeps no finer precision)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def changed_where(since: datetime, after: str | None) -> str:
    """Records at or after `since`; after a page, those past its last (Modified_Time, id)."""
    if not after:
        return f"Modified_Time >= {coql_quote(coql_datetime(since))}"
    stamp, last_id = (coql_quote(part) for part in split_token(after))
    return f"(Modified_Time > {stamp} or (Modified_Time = {stamp} and id > {last_id}))"
