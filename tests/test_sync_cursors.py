"""Sync cursors: each provider's changed-since paging (HubSpot's 10,000-result search
window, Salesforce's SystemModstamp keyset), the sandbox support, and the pull end to end: a
record changed at the CRM makes its cached lookup stale, the cursor advances, errors stay on
their cursor, a disabled integration is not pulled, a locked cursor is skipped."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from django.conf import settings
from django.utils import timezone

from conduit.tenancy import system_scope
from integrations.connections.pauses import do_pause_sync, target_for
from integrations.connections.tenant_switch import do_set_integration_enabled
from integrations.cursors import pull
from integrations.cursors.pull import pull_cursor, pull_sync_cursors
from integrations.models import CrmConnection, SyncCursor, SyncLog
from integrations.providers import get_provider
from integrations.providers.base import Account
from integrations.providers.changes import check_object, parse_time
from integrations.providers.errors import Permanent
from reconcile import mapping
from reconcile.models import DealMapping
from tests.conftest import Tenant
from tests.ops_helpers import make_mapping
from tests.reconcile_helpers import sandbox_fault
from tests.test_tokens import connected


def past_the_index_lag() -> datetime:
    """A clock late enough that a change made just now is older than the cursor's index lag."""
    return timezone.now() + pull.INDEX_LAG + timedelta(seconds=1)


HS_ACCOUNT = Account("hubspot", "hs-secret-token", "4400001")
SF_INSTANCE = "https://acme.my.salesforce.com"
SF_ACCOUNT = Account("salesforce", "sf-secret-token", "00D000000000001", instance_url=SF_INSTANCE)
SINCE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SINCE_MS = str(int(SINCE.timestamp() * 1000))
MAYA = "maya.lopez@acme-logistics.example"
CONTACT_IDS = {"hubspot": "101", "salesforce": "0035g00000SbxC1AAJ"}
DEAL_IDS = {"hubspot": "201", "salesforce": "0065g00000SbxO1AAJ"}


def hs_search_url(object_type: str) -> str:
    return f"{settings.HUBSPOT_API_BASE_URL}/crm/v3/objects/{object_type}/search"


def sf_query_url() -> str:
    return f"{SF_INSTANCE}/services/data/{settings.SALESFORCE_API_VERSION}/query"


def sent_json(index: int) -> Any:
    return json.loads(responses.calls[index].request.body or b"{}")


def sent_soql(index: int) -> str:
    return str(responses.calls[index].request.params["q"])


def hs_contact(record_id: str, modified: str, email: str = "") -> dict[str, Any]:
    return {"id": record_id, "properties": {"email": email, "lastmodifieddate": modified}}


@pytest.fixture
def sf_origin(settings: Any) -> None:
    settings.SALESFORCE_EXTRA_INSTANCE_ORIGINS = [SF_INSTANCE]


# --- providers: changed_since -------------------------------------------------------------


@pytest.mark.django_db
@responses.activate
def test_hubspot_changed_contacts_search_by_last_modified_ascending_and_pages_with_after() -> None:
    first = {
        "results": [hs_contact("101", "2026-12-01T09:00:00.000Z", "A@x.example")],
        "paging": {"next": {"after": "1"}},
    }
    responses.post(hs_search_url("contacts"), json=first)
    responses.post(hs_search_url("contacts"), json={"results": [hs_contact("102", "2026-12-01T10:00:00Z")]})
    provider = get_provider("hubspot")
    page = provider.changed_since(HS_ACCOUNT, "contact", SINCE, None, 1)
    assert sent_json(0) == {
        "filterGroups": [
            {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": SINCE_MS}]}
        ],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["email", "lastmodifieddate"],
        "limit": 1,
    }
    assert [(r.id, r.email, r.modified_at) for r in page.records] == [("101", "A@x.example", SINCE)]
    last = provider.changed_since(HS_ACCOUNT, "contact", SINCE, page.next, 1)
    assert sent_json(1)["after"] == "1" and sent_json(1)["filterGroups"][0]["filters"][0]["value"] == SINCE_MS
    assert [r.id for r in last.records] == ["102"] and last.next is None


@pytest.mark.django_db
@responses.activate
def test_hubspot_changed_deals_filter_on_hs_lastmodifieddate() -> None:
    deal = {"id": "201", "properties": {"hs_lastmodifieddate": SINCE_MS}}
    responses.post(hs_search_url("deals"), json={"results": [deal]})
    page = get_provider("hubspot").changed_since(HS_ACCOUNT, "deal", SINCE, None, 50)
    body = sent_json(0)
    assert body["filterGroups"][0]["filters"][0]["propertyName"] == "hs_lastmodifieddate"
    assert body["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
    assert body["properties"] == ["hs_lastmodifieddate"]
    assert [(r.id, r.email, r.modified_at) for r in page.records] == [("201", "", SINCE)]
    with system_scope():
        assert SyncLog.objects.filter(operation="pull_deals", status="SUCCESS").count() == 1


@pytest.mark.django_db
@responses.activate
def test_hubspot_never_pages_past_the_search_window_and_restarts_from_the_newest_time_read() -> None:
    newest = "2026-12-01T11:00:00.000Z"
    near_end = {"results": [hs_contact("150", newest)], "paging": {"next": {"after": "9950"}}}
    responses.post(hs_search_url("contacts"), json=near_end)
    responses.post(hs_search_url("contacts"), json={"results": []})
    provider = get_provider("hubspot")
    page = provider.changed_since(HS_ACCOUNT, "contact", SINCE, None, 100)
    provider.changed_since(HS_ACCOUNT, "contact", SINCE, page.next, 100)
    restart = sent_json(1)
    assert "after" not in restart  # a new search, not page 9950..10050
    assert restart["filterGroups"][0]["filters"][0]["value"] == str(
        int(parse_time(newest).timestamp() * 1000)
    )


@pytest.mark.django_db
@responses.activate
def test_hubspot_pages_within_one_millisecond_up_to_exactly_the_window() -> None:
    responses.post(
        hs_search_url("contacts"),
        json={"results": [hs_contact("1", SINCE_MS)], "paging": {"next": {"after": "9900"}}},
    )
    page = get_provider("hubspot").changed_since(HS_ACCOUNT, "contact", SINCE, None, 100)
    assert page.next == f"{SINCE_MS}|9900"  # 9900 + 100 = 10000: allowed


@pytest.mark.django_db
@responses.activate
def test_hubspot_next_page_is_a_new_search_from_the_newest_time_read() -> None:
    responses.post(
        hs_search_url("contacts"),
        json={"results": [hs_contact("1", "2026-12-01T11:00:00Z")], "paging": {"next": {"after": "1"}}},
    )
    page = get_provider("hubspot").changed_since(HS_ACCOUNT, "contact", SINCE, None, 1)
    newest = int(datetime(2026, 12, 1, 11, 0, tzinfo=UTC).timestamp() * 1000)
    assert page.next == f"{newest}|"


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.django_db
@responses.activate
def test_a_record_edited_during_the_pull_does_not_make_another_one_skipped(
    alice: Tenant, settings: Any
) -> None:
    """Offset paging over a list sorted by modification time would skip C here: A is edited between
    page 1 and page 2, moves to the end, and C shifts back to the offset already read."""
    from tests.ops_helpers import make_connection

    settings.CONDUIT_SYNC_PULL_PAGE_SIZE = 2
    make_connection(alice.workspace, "hubspot")
    now = timezone.now()
    base = int((now - timedelta(hours=3)).timestamp() * 1000)
    server = {"A": base + 1000, "B": base + 2000, "C": base + 3000, "D": base + 4000}
    seen: list[str] = []

    def search(request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        if seen:  # a user edits A after the first page was read
            server["A"] = base + 9000
        since = int(body["filterGroups"][0]["filters"][0]["value"])
        rows = sorted((ms, key) for key, ms in server.items() if ms >= since)
        start = int(body.get("after") or 0)
        page = rows[start : start + body["limit"]]
        seen.extend(key for _, key in page)
        out: dict[str, Any] = {"results": [hs_contact(key, iso_ms(ms)) for ms, key in page]}
        if start + body["limit"] < len(rows):
            out["paging"] = {"next": {"after": str(start + body["limit"])}}
        return 200, {}, json.dumps(out)

    responses.add_callback(responses.POST, hs_search_url("contacts"), callback=search)
    responses.post(hs_search_url("deals"), json={"results": []})
    pull_sync_cursors(now=lambda: now)
    assert {"A", "B", "C", "D"} <= set(seen)


@pytest.mark.django_db
@responses.activate
def test_hubspot_window_full_of_one_millisecond_steps_past_it_instead_of_looping() -> None:
    same = {"results": [hs_contact("1", SINCE_MS)], "paging": {"next": {"after": "10000"}}}
    responses.post(hs_search_url("contacts"), json=same)
    page = get_provider("hubspot").changed_since(HS_ACCOUNT, "contact", SINCE, None, 100)
    assert page.next == f"{int(SINCE_MS) + 1}|"


@pytest.mark.django_db
@responses.activate
def test_hubspot_result_without_a_modified_time_is_a_permanent_error() -> None:
    responses.post(hs_search_url("contacts"), json={"results": [{"id": "1", "properties": {}}]})
    with pytest.raises(Permanent) as caught:
        get_provider("hubspot").changed_since(HS_ACCOUNT, "contact", SINCE, None, 10)
    assert caught.value.code == "invalid_search_response"


@pytest.mark.django_db
@responses.activate
def test_salesforce_changed_contacts_page_by_systemmodstamp_then_id(sf_origin: None) -> None:
    records = [
        {"Id": "003A", "Email": "a@x.example", "SystemModstamp": "2026-12-01T09:00:00.000+0000"},
        {"Id": "003B", "Email": None, "SystemModstamp": "2026-12-01T09:30:00.000+0000"},
    ]
    responses.get(sf_query_url(), json={"totalSize": 2, "done": True, "records": records})
    responses.get(sf_query_url(), json={"totalSize": 0, "done": True, "records": []})
    provider = get_provider("salesforce")
    page = provider.changed_since(SF_ACCOUNT, "contact", SINCE + timedelta(microseconds=5), None, 2)
    assert sent_soql(0) == (
        "SELECT Id, Email, SystemModstamp FROM Contact WHERE SystemModstamp >= 2026-12-01T09:00:00Z "
        "ORDER BY SystemModstamp ASC, Id ASC LIMIT 2"
    )
    assert [(r.id, r.email) for r in page.records] == [("003A", "a@x.example"), ("003B", "")]
    assert page.next is not None  # a full page: there may be more
    last = provider.changed_since(SF_ACCOUNT, "contact", SINCE, page.next, 2)
    assert sent_soql(1) == (
        "SELECT Id, Email, SystemModstamp FROM Contact WHERE (SystemModstamp > 2026-12-01T09:30:00Z OR "
        "(SystemModstamp = 2026-12-01T09:30:00Z AND Id > '003B')) ORDER BY SystemModstamp ASC, Id ASC LIMIT 2"
    )
    assert last.records == [] and last.next is None


@pytest.mark.django_db
@responses.activate
def test_salesforce_changed_opportunities_short_page_is_the_last(sf_origin: None) -> None:
    record = {"Id": "006A", "SystemModstamp": "2026-12-01T09:00:00.000+0000"}
    responses.get(sf_query_url(), json={"totalSize": 1, "done": True, "records": [record]})
    page = get_provider("salesforce").changed_since(SF_ACCOUNT, "deal", SINCE, None, 5)
    assert sent_soql(0).startswith("SELECT Id, SystemModstamp FROM Opportunity WHERE SystemModstamp >= ")
    assert [r.id for r in page.records] == ["006A"] and page.next is None


@pytest.mark.django_db
@responses.activate
def test_salesforce_record_without_systemmodstamp_is_a_permanent_error(sf_origin: None) -> None:
    responses.get(sf_query_url(), json={"totalSize": 1, "done": True, "records": [{"Id": "003A"}]})
    with pytest.raises(Permanent) as caught:
        get_provider("salesforce").changed_since(SF_ACCOUNT, "contact", SINCE, None, 5)
    assert caught.value.code == "invalid_query_response"


def test_changed_since_refuses_an_unknown_object() -> None:
    with pytest.raises(ValueError, match="unknown object 'lead'"):
        check_object("lead")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (SINCE_MS, SINCE),
        ("2026-12-01T09:00:00.000Z", SINCE),
        ("2026-12-01T10:00:00.000+0100", SINCE),
        ("2026-12-01T09:00:00+00:00", SINCE),
    ],
)
def test_provider_times_parse_as_aware_utc(value: str, expected: datetime) -> None:
    assert parse_time(value) == expected


def test_a_time_without_a_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        parse_time("2026-12-01T09:00:00")


# --- the sandboxes ----------------------------------------------------------------------------


def sandbox_token(base: str) -> str:
    return str(requests.post(f"{base}/_sandbox/tokens", json={}, timeout=5).json()["access_token"])


def hs_search(base: str, object_type: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{base}/crm/v3/objects/{object_type}/search",
        json=body,
        headers={"Authorization": f"Bearer {sandbox_token(base)}"},
        timeout=5,
    )


def change(env: dict[str, str], crm: str, object: str, record_id: str = "", **values: Any) -> dict[str, Any]:
    """Edit (or, without an id, create) a contact or deal in a sandbox CRM, as a user would."""
    body: dict[str, Any] = {"object": object, "fields" if crm == "salesforce" else "properties": values}
    if record_id:
        body["id"] = record_id
    answer = requests.post(f"{env[crm]}/_sandbox/records", json=body, timeout=5)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def time_filter(prop: str, operator: str, value: Any) -> dict[str, Any]:
    return {"filterGroups": [{"filters": [{"propertyName": prop, "operator": operator, "value": value}]}]}


def test_sandbox_hubspot_compares_modified_dates_as_times_in_ms_or_iso(crm_env: dict[str, str]) -> None:
    base = crm_env["hubspot"]
    requests.post(f"{base}/_sandbox/config", json={"search_per_second": 100}, timeout=5)
    march = "2026-03-03T00:00:00.000Z"

    def ids(operator: str, value: Any, direction: str = "ASCENDING") -> list[str]:
        body = {
            **time_filter("hs_lastmodifieddate", operator, value),
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": direction}],
        }
        answer = hs_search(base, "deals", body)
        assert answer.status_code == 200, answer.text
        return [r["id"] for r in answer.json()["results"]]

    assert ids("GTE", march) == ["202"]
    assert ids("GT", "2026-03-02T10:00:00.000Z") == ["202"]
    assert ids("GTE", "2026-03-02T10:00:00.000Z") == ["201", "202"]
    assert ids("LT", str(int(parse_time(march).timestamp() * 1000))) == ["203", "201"]
    assert ids("LTE", "2026-02-20T08:15:00.000Z") == ["203"]
    assert ids("GTE", "0", "DESCENDING") == ["202", "201", "203"]


def test_sandbox_hubspot_seeded_contacts_have_a_last_modified_date(crm_env: dict[str, str]) -> None:
    body = {
        **time_filter("lastmodifieddate", "LT", "2026-02-01T00:00:00Z"),
        "properties": ["lastmodifieddate"],
    }
    results = hs_search(crm_env["hubspot"], "contacts", body).json()["results"]
    assert [r["properties"]["lastmodifieddate"] for r in results] == ["2026-01-05T09:00:00.000Z"] * 3


def test_sandbox_hubspot_refuses_comparisons_it_cannot_make(crm_env: dict[str, str]) -> None:
    bad_date = hs_search(crm_env["hubspot"], "contacts", time_filter("lastmodifieddate", "GTE", "soon"))
    assert bad_date.status_code == 400 and "'soon' is not a date" in bad_date.json()["message"]


def test_sandbox_hubspot_sorts_other_properties_as_text_and_reads_zoneless_dates_as_utc(
    crm_env: dict[str, str],
) -> None:
    base = crm_env["hubspot"]
    by_email = {"sorts": [{"propertyName": "email", "direction": "DESCENDING"}]}
    assert [r["id"] for r in hs_search(base, "contacts", by_email).json()["results"]] == ["101", "103", "102"]
    naive = hs_search(base, "deals", time_filter("hs_lastmodifieddate", "GT", "2026-03-04T00:00:00"))
    assert [r["id"] for r in naive.json()["results"]] == ["202"]
    flag = hs_search(base, "deals", time_filter("hs_lastmodifieddate", "GT", True))
    assert flag.status_code == 400 and "unsupported" in flag.json()["message"]


def test_sandbox_hubspot_search_window_answers_400_past_it(crm_env: dict[str, str]) -> None:
    base = crm_env["hubspot"]
    config = requests.post(f"{base}/_sandbox/config", json={"search_result_window": 2}, timeout=5).json()
    assert config["search_result_window"] == 2
    assert hs_search(base, "deals", {"limit": 2}).status_code == 200
    past = hs_search(base, "deals", {"limit": 1, "after": "2"})
    assert past.status_code == 400 and "paging past the first 2 results" in past.json()["message"]
    refused = requests.post(f"{base}/_sandbox/config", json={"search_result_window": 0}, timeout=5)
    assert refused.status_code == 400 and "positive integer" in refused.json()["error"]


def test_sandbox_hubspot_record_changes_set_last_modified_to_now(crm_env: dict[str, str]) -> None:
    base = crm_env["hubspot"]
    before = datetime.now(UTC) - timedelta(seconds=1)
    changed = change(crm_env, "hubspot", "contact", "101", firstname="Maya-Rose")
    assert changed["properties"]["firstname"] == "Maya-Rose"
    assert parse_time(changed["properties"]["lastmodifieddate"]) >= before
    created = change(crm_env, "hubspot", "deal", dealname="New deal")
    assert created["properties"]["hs_object_id"] == created["id"]
    assert parse_time(created["properties"]["hs_lastmodifieddate"]) >= before
    linked = requests.post(
        f"{base}/_sandbox/records", json={"object": "deal", "id": created["id"], "contact": "102"}, timeout=5
    )
    assert linked.status_code == 200
    assert requests.get(f"{base}/", timeout=5).status_code == 200  # the overview shows the new deal
    state = requests.get(f"{base}/_sandbox/state", timeout=5).json()
    deal = next(d for d in state["deals"] if d["id"] == created["id"])
    assert deal["associations"] == [{"to_type": "contact", "to_id": "102", "type_id": 3}]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"object": "lead"}, "object must be 'contact' or 'deal'"),
        ({"object": "contact", "properties": ["x"]}, "must be an object of names to values"),
        ({"object": "contact", "colour": "red"}, "body must be an object"),
        ([], "body must be an object"),
    ],
)
def test_sandbox_record_changes_refuse_bad_bodies(crm_env: dict[str, str], body: Any, message: str) -> None:
    answer = requests.post(f"{crm_env['hubspot']}/_sandbox/records", json=body, timeout=5)
    assert answer.status_code == 400 and message in answer.json()["error"]
    answer = requests.post(f"{crm_env['salesforce']}/_sandbox/records", json=body, timeout=5)
    assert answer.status_code == 400


@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_sandbox_record_changes_need_a_json_body(crm_env: dict[str, str], crm: str) -> None:
    answer = requests.post(f"{crm_env[crm]}/_sandbox/records", data="{", timeout=5)
    assert answer.status_code == 400 and answer.json()["error"] == "body must be JSON"


def sf_query(base: str, soql: str) -> requests.Response:
    version = settings.SALESFORCE_API_VERSION
    return requests.get(
        f"{base}/services/data/{version}/query",
        params={"q": soql},
        headers={"Authorization": f"Bearer {sandbox_token(base)}"},
        timeout=5,
    )


def test_sandbox_salesforce_answers_the_keyset_queries(crm_env: dict[str, str]) -> None:
    base = crm_env["salesforce"]
    contact = requests.post(
        f"{base}/_sandbox/records",
        json={
            "object": "contact",
            "fields": {"FirstName": "Ada", "LastName": "Byron", "Email": "ada@x.example"},
        },
        timeout=5,
    ).json()
    assert contact["Name"] == "Ada Byron" and contact["SystemModstamp"].endswith(".000+0000")
    since = "SELECT Id, Email, SystemModstamp FROM Contact WHERE SystemModstamp >= 2026-01-01T00:00:00Z "
    order = "ORDER BY SystemModstamp ASC, Id ASC LIMIT "
    all_ids = [r["Id"] for r in sf_query(base, since + order + "10").json()["records"]]
    assert all_ids == [*sorted(CONTACT_IDS_SF), contact["Id"]]
    after = (
        "SELECT Id, Email, SystemModstamp FROM Contact WHERE (SystemModstamp > 2026-01-05T09:00:00Z OR "
        f"(SystemModstamp = 2026-01-05T09:00:00Z AND Id > '{all_ids[0]}')) "
    )
    assert [r["Id"] for r in sf_query(base, after + order + "2").json()["records"]] == all_ids[1:3]
    opportunity = requests.post(
        f"{base}/_sandbox/records",
        json={"object": "deal", "fields": {"Name": "Expansion"}, "contact": all_ids[0]},
        timeout=5,
    ).json()
    deals = "SELECT Id, SystemModstamp FROM Opportunity WHERE SystemModstamp >= 2026-03-03T00:00:00Z "
    found = sf_query(base, deals + order + "10").json()["records"]
    assert [r["Id"] for r in found] == ["0065g00000SbxO2AAJ", opportunity["Id"]]
    assert set(found[0]) == {"attributes", "Id", "SystemModstamp"}
    assert requests.get(f"{base}/", timeout=5).status_code == 200


CONTACT_IDS_SF = ["0035g00000SbxC1AAJ", "0035g00000SbxC2AAJ", "0035g00000SbxC3AAJ"]


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        (
            "SELECT Id, SystemModstamp FROM Contact WHERE LastModifiedDate >= 2026-01-01T00:00:00Z "
            "ORDER BY SystemModstamp ASC, Id ASC LIMIT 5",
            "MALFORMED_QUERY",
        ),
        (
            "SELECT Id, Email, SystemModstamp FROM Opportunity WHERE SystemModstamp >= 2026-01-01T00:00:00Z "
            "ORDER BY SystemModstamp ASC, Id ASC LIMIT 5",
            "INVALID_FIELD",
        ),
    ],
)
def test_sandbox_salesforce_refuses_other_changed_queries(
    crm_env: dict[str, str], soql: str, code: str
) -> None:
    answer = sf_query(crm_env["salesforce"], soql)
    assert answer.status_code == 400 and answer.json()[0]["errorCode"] == code


# --- the pull, end to end against the sandboxes ---------------------------------------------------


cached = make_mapping


def reload(obj: Any) -> Any:
    with system_scope():
        obj.refresh_from_db()
    return obj


def cursor(conn: CrmConnection, object: str) -> SyncCursor:
    with system_scope():
        return SyncCursor.objects.get(connection=conn, object=object)


def is_stale(row: DealMapping) -> bool:
    return reload(row).refreshed_at == mapping.STALE


@pytest.fixture(autouse=True)
def _fast_search(settings: Any) -> None:
    settings.HUBSPOT_SEARCH_PER_SECOND = 100


def fast_hubspot(base: str) -> None:
    requests.post(f"{base}/_sandbox/config", json={"search_per_second": 100}, timeout=5)


@pytest.mark.django_db
@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_a_contact_changed_in_the_crm_makes_its_lookup_stale_and_the_cursor_advances(
    crm_env: dict[str, str], alice: Tenant, crm: str
) -> None:
    conn = connected(alice.workspace, crm, crm_env[crm])
    fast_hubspot(crm_env["hubspot"])
    maya = cached(conn, MAYA, CONTACT_IDS[crm], DEAL_IDS[crm])
    other = cached(conn, "lee@northwind.example", "x-lee", "")
    first = pull_sync_cursors()
    assert (first.connections, first.cursors, first.records, first.errors) == (1, 2, 0, 0)
    contact_cursor = cursor(conn, "contact")
    assert contact_cursor.workspace_id == alice.workspace.pk and contact_cursor.provider == crm
    start = contact_cursor.since_ts
    assert not is_stale(maya)
    key = "FirstName" if crm == "salesforce" else "firstname"
    changed = change(crm_env, crm, "contact", CONTACT_IDS[crm], **{key: "M."})
    counts = pull_sync_cursors(now=past_the_index_lag)
    assert (counts.cursors, counts.records, counts.errors) == (2, 1, 0)
    assert is_stale(maya) and not is_stale(other)
    contact_cursor = cursor(conn, "contact")
    modified = changed.get("SystemModstamp") or changed["properties"]["lastmodifieddate"]
    assert contact_cursor.since_ts == parse_time(modified) > start
    assert (contact_cursor.last_status, contact_cursor.last_error, contact_cursor.records_seen) == (
        "ok",
        "",
        1,
    )
    assert contact_cursor.last_run_at is not None
    with system_scope():
        assert SyncLog.objects.filter(connection=conn, operation="pull_contacts").count() == 2


@pytest.mark.django_db
def test_a_changed_contact_email_expires_the_lookup_that_found_nobody(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    conn = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    fast_hubspot(crm_env["hubspot"])
    nobody = cached(conn, "new.address@acme.example", "", "")
    change(crm_env, "hubspot", "contact", "103", email="New.Address@acme.example")
    pull_sync_cursors()
    assert is_stale(nobody)


@pytest.mark.django_db
@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_a_changed_deal_expires_its_lookups_and_those_that_found_no_deal(
    crm_env: dict[str, str], alice: Tenant, crm: str
) -> None:
    conn = connected(alice.workspace, crm, crm_env[crm])
    fast_hubspot(crm_env["hubspot"])
    with_deal = cached(conn, MAYA, CONTACT_IDS[crm], DEAL_IDS[crm])
    without_deal = cached(conn, "lee@northwind.example", "x-lee", "")
    other_deal = cached(conn, "jonas@brightfield-energy.example", "x-jonas", "x-other-deal")
    override = cached(conn, "op@acme.example", "x-op", "", source=DealMapping.Source.OPERATOR)
    pull_sync_cursors()
    key = "StageName" if crm == "salesforce" else "dealstage"
    change(crm_env, crm, "deal", DEAL_IDS[crm], **{key: "closedlost"})
    pull_sync_cursors()
    assert is_stale(with_deal) and is_stale(without_deal)
    assert not is_stale(other_deal) and not is_stale(override)
    assert cursor(conn, "deal").records_seen == 1


@pytest.mark.django_db
def test_a_new_cursor_starts_the_initial_hours_back(
    crm_env: dict[str, str], alice: Tenant, settings: Any
) -> None:
    settings.CONDUIT_SYNC_PULL_INITIAL_HOURS = 5
    conn = connected(alice.workspace, "salesforce", crm_env["salesforce"])
    now = timezone.now()
    pull_sync_cursors(now=lambda: now)
    assert cursor(conn, "deal").since_ts == now - timedelta(hours=5)
    assert cursor(conn, "contact").last_run_at == now


@pytest.mark.django_db
def test_page_limit_leaves_a_partial_cursor_that_the_next_run_continues(
    crm_env: dict[str, str], alice: Tenant, settings: Any
) -> None:
    settings.CONDUIT_SYNC_PULL_PAGE_SIZE = 1
    settings.CONDUIT_SYNC_PULL_MAX_PAGES = 1
    conn = connected(alice.workspace, "salesforce", crm_env["salesforce"])
    pull_sync_cursors()
    first = change(crm_env, "salesforce", "contact", CONTACT_IDS["salesforce"], Email=MAYA)
    pull_sync_cursors(now=past_the_index_lag)
    contact_cursor = cursor(conn, "contact")
    assert (contact_cursor.last_status, contact_cursor.records_seen) == ("partial", 1)
    assert contact_cursor.since_ts == parse_time(first["SystemModstamp"])


@pytest.mark.django_db
def test_hubspot_pull_restarts_at_the_search_window_and_reads_everything(
    crm_env: dict[str, str], alice: Tenant, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = crm_env["hubspot"]
    requests.post(f"{base}/_sandbox/config", json={"search_result_window": 6}, timeout=5)
    fast_hubspot(base)
    monkeypatch.setattr(get_provider("hubspot"), "search_window", 6)
    settings.CONDUIT_SYNC_PULL_PAGE_SIZE = 3
    conn = connected(alice.workspace, "hubspot", base)
    pull_sync_cursors()
    created = [change(crm_env, "hubspot", "contact", email=f"c{n}@bulk.example")["id"] for n in range(10)]
    rows = [cached(conn, f"c{n}@bulk.example", "", "") for n in range(10)]
    pull_sync_cursors()
    contact_cursor = cursor(conn, "contact")
    assert contact_cursor.last_status == "ok" and contact_cursor.records_seen >= 10
    assert all(is_stale(row) for row in rows) and len(set(created)) == 10
    with system_scope():
        assert not SyncLog.objects.filter(connection=conn, status="FAILED").exists()


@pytest.mark.django_db
def test_the_sandbox_refuses_paging_past_its_search_window(crm_env: dict[str, str]) -> None:
    """What HubSpot does past 10,000 results, and what the pull's restart avoids."""
    base = crm_env["hubspot"]
    requests.post(f"{base}/_sandbox/config", json={"search_result_window": 4}, timeout=5)
    token = requests.post(f"{base}/_sandbox/tokens", json={}, timeout=5).json()["access_token"]
    for n in range(5):
        change(crm_env, "hubspot", "contact", email=f"c{n}@bulk.example")
    body = {"filterGroups": [], "limit": 3, "after": "3"}
    answer = requests.post(
        f"{base}/crm/v3/objects/contacts/search",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR"


@pytest.mark.django_db
def test_a_disabled_integration_gets_no_pull(crm_env: dict[str, str], alice: Tenant, bob: Tenant) -> None:
    off = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    on = connected(bob.workspace, "salesforce", crm_env["salesforce"])
    do_set_integration_enabled(alice.workspace, "hubspot", False, actor="system:test")
    counts = pull_sync_cursors()
    assert (counts.connections, counts.cursors) == (1, 2)
    with system_scope():
        assert not SyncCursor.objects.filter(connection=off).exists()
        assert not SyncLog.objects.filter(connection=off).exists()
        assert SyncCursor.objects.filter(connection=on).count() == 2


@pytest.mark.django_db
def test_a_paused_scope_is_still_pulled(crm_env: dict[str, str], alice: Tenant) -> None:
    """A pause stops writes; a pull only reads the CRM and marks Conduit's cache stale."""
    conn = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    fast_hubspot(crm_env["hubspot"])
    do_pause_sync(target_for(provider="hubspot"), reason="INC-1", actor="system:test")
    maya = cached(conn, MAYA, "101", "201")
    change(crm_env, "hubspot", "contact", "101", firstname="M.")
    counts = pull_sync_cursors()
    assert counts.cursors == 2 and is_stale(maya)


@pytest.mark.django_db
def test_only_connected_connections_with_a_workspace_are_pulled(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    errored = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    with system_scope():
        CrmConnection.objects.filter(pk=errored.pk).update(status=CrmConnection.Status.ERROR)
    connected(None, "salesforce", crm_env["salesforce"])
    assert pull_sync_cursors().connections == 0
    with system_scope():
        assert not SyncCursor.objects.exists()


@pytest.mark.django_db
def test_a_provider_error_is_recorded_on_its_cursor_and_the_others_go_on(
    crm_env: dict[str, str], alice: Tenant, bob: Tenant
) -> None:
    failing = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    working = connected(bob.workspace, "salesforce", crm_env["salesforce"])
    fast_hubspot(crm_env["hubspot"])
    sandbox_fault(crm_env["hubspot"], kind="server_error", count=10, path_contains="/search")
    change(crm_env, "salesforce", "contact", CONTACT_IDS["salesforce"], Email=MAYA)
    counts = pull_sync_cursors()
    assert (counts.connections, counts.cursors, counts.errors, counts.records) == (2, 4, 2, 1)
    for object in ("contact", "deal"):
        broken = cursor(failing, object)
        assert (broken.last_status, broken.last_error, broken.records_seen) == ("error", "http_500", 0)
        assert broken.last_run_at is not None
    assert cursor(working, "contact").last_status == "ok" and cursor(working, "contact").records_seen == 1


@pytest.mark.django_db
def test_a_revoked_grant_is_recorded_as_its_code_never_the_token(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    conn = connected(alice.workspace, "salesforce", crm_env["salesforce"])
    sandbox_fault(crm_env["salesforce"], kind="invalid_session", count=2)
    pull_sync_cursors()
    broken = cursor(conn, "contact")
    assert (broken.last_status, broken.last_error) == ("error", "access_token_rejected")
    assert cursor(conn, "deal").last_error == "not_connected"
    assert reload(conn).status == CrmConnection.Status.ERROR


@pytest.mark.django_db
@responses.activate
def test_last_error_keeps_the_code_only_even_when_the_crm_echoes_the_token(alice: Tenant) -> None:
    from tests.ops_helpers import make_connection

    conn = make_connection(alice.workspace, "hubspot")
    echoed = {"status": "error", "category": "VALIDATION_ERROR", "message": f"bad {conn.access_token}"}
    responses.post(hs_search_url("contacts"), json=echoed, status=400)
    responses.post(hs_search_url("deals"), json={"results": []})
    pull_sync_cursors()
    broken = cursor(conn, "contact")
    assert broken.last_error == "validation_error" and conn.access_token not in broken.last_error


@pytest.mark.django_db
@responses.activate
def test_since_never_moves_backwards_nor_closer_to_now_than_the_index_lag(alice: Tenant) -> None:
    from tests.ops_helpers import make_connection

    conn = make_connection(alice.workspace, "hubspot")
    now = timezone.now()
    older = {"results": [hs_contact("1", (now - timedelta(days=3)).isoformat())]}
    future = {
        "results": [{"id": "2", "properties": {"hs_lastmodifieddate": (now + timedelta(days=1)).isoformat()}}]
    }
    responses.post(hs_search_url("contacts"), json=older)
    responses.post(hs_search_url("deals"), json=future)
    pull_sync_cursors(now=lambda: now)
    assert cursor(conn, "contact").since_ts == now - timedelta(hours=settings.CONDUIT_SYNC_PULL_INITIAL_HOURS)
    assert cursor(conn, "deal").since_ts == now - pull.INDEX_LAG


@pytest.mark.django_db
def test_a_bug_in_one_pull_is_recorded_and_the_others_go_on(
    crm_env: dict[str, str], alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = connected(alice.workspace, "salesforce", crm_env["salesforce"])
    real = pull.apply_changes

    def broken(conn: CrmConnection, object: str, records: list[Any]) -> int:
        if object == "contact":
            raise RuntimeError("bug")
        return real(conn, object, records)

    monkeypatch.setattr(pull, "apply_changes", broken)
    change(crm_env, "salesforce", "contact", CONTACT_IDS["salesforce"], Email=MAYA)
    counts = pull_sync_cursors()
    assert (counts.cursors, counts.errors) == (2, 1)
    assert (cursor(conn, "contact").last_status, cursor(conn, "contact").last_error) == (
        "error",
        "internal_error",
    )
    assert cursor(conn, "deal").last_status == "ok"


@pytest.mark.django_db
def test_a_connection_deleted_after_listing_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pull, "connections_to_pull", lambda: [987654])
    assert pull_sync_cursors().as_dict() == {
        "connections": 0,
        "cursors": 0,
        "records": 0,
        "errors": 0,
        "skipped": 0,
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_cursor_locked_by_another_run_is_skipped_not_waited_on(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    from django.db import connection as db

    conn = connected(alice.workspace, "salesforce", crm_env["salesforce"])
    pull_sync_cursors()
    held = cursor(conn, "contact")
    locked, release = threading.Event(), threading.Event()

    def other_run() -> None:
        try:
            with system_scope():
                SyncCursor.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(10)
        finally:
            db.close()

    thread = threading.Thread(target=other_run)
    thread.start()
    try:
        assert locked.wait(10)
        assert pull_cursor(held.pk) is None
        counts = pull_sync_cursors()
        assert (counts.skipped, counts.cursors) == (1, 1)
    finally:
        release.set()
        thread.join(10)
    assert reload(held).last_run_at == held.last_run_at
    assert cursor(conn, "deal").last_run_at != held.last_run_at


@pytest.mark.django_db
def test_a_cursor_another_run_is_pulling_is_skipped_until_its_claim_goes_stale(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    conn = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    pull_sync_cursors()
    contact = cursor(conn, "contact")
    with system_scope():
        SyncCursor.objects.filter(pk=contact.pk).update(last_status="running", last_run_at=timezone.now())
    assert pull_cursor(contact.pk) is None
    with system_scope():
        SyncCursor.objects.filter(pk=contact.pk).update(
            last_run_at=timezone.now() - pull.CLAIM_TTL - timedelta(seconds=1)
        )
    run = pull_cursor(contact.pk)
    assert run is not None and run.status == "ok" and reload(contact).last_status == "ok"


@pytest.mark.django_db
def test_a_reset_made_while_a_pull_runs_wins_over_its_advance(
    crm_env: dict[str, str], alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations.cursors.reset import do_reset_sync_cursors

    conn = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    pull_sync_cursors()
    change(crm_env, "hubspot", "contact", CONTACT_IDS["hubspot"], firstname="M.")
    real_read = pull.read_page

    def read_then_reset(*args: Any) -> Any:
        page = real_read(*args)
        do_reset_sync_cursors("hubspot", "contact", 48, actor="system:test")
        return page

    monkeypatch.setattr(pull, "read_page", read_then_reset)
    contact = cursor(conn, "contact")
    before = timezone.now()
    assert pull_cursor(contact.pk, now=past_the_index_lag) is not None
    after = reload(contact)
    assert after.since_ts <= before - timedelta(hours=47) and after.last_status == "ok"


@pytest.mark.django_db(transaction=True)
def test_provider_calls_of_a_pull_run_outside_any_transaction(
    crm_env: dict[str, str], alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connection as db

    conn = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    real_read = pull.read_page
    inside: list[bool] = []

    def watched(*args: Any) -> Any:
        inside.append(db.in_atomic_block)
        return real_read(*args)

    monkeypatch.setattr(pull, "read_page", watched)
    assert pull_sync_cursors().errors == 0
    assert inside == [False, False] and cursor(conn, "contact").last_status == "ok"


@pytest.mark.django_db
def test_a_run_that_was_taken_over_records_nothing(
    crm_env: dict[str, str], alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    pull_sync_cursors()
    contact = cursor(conn, "contact")
    real_read = pull.read_page

    def slow_then_taken_over(*args: Any) -> Any:
        page = real_read(*args)
        later = timezone.now() + pull.CLAIM_TTL + timedelta(minutes=1)
        assert pull.claim(contact.pk, later) is not None  # another run takes the stale claim
        return page

    monkeypatch.setattr(pull, "read_page", slow_then_taken_over)
    pull_cursor(contact.pk)
    after = reload(contact)
    assert after.last_status == "running" and after.last_run_at > timezone.now()


@pytest.mark.django_db
def test_a_soft_time_limit_is_recorded_then_stops_the_run(
    crm_env: dict[str, str], alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    conn = connected(alice.workspace, "hubspot", crm_env["hubspot"])

    def out_of_time(*args: Any) -> Any:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(pull, "read_page", out_of_time)
    with pytest.raises(SoftTimeLimitExceeded):
        pull_sync_cursors()
    with system_scope():
        assert list(SyncCursor.objects.filter(connection=conn).values_list("object", "last_status")) == [
            ("contact", "error")
        ]


@pytest.mark.django_db
def test_a_failed_claim_is_logged_and_the_run_goes_on(
    crm_env: dict[str, str], alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    connected(alice.workspace, "hubspot", crm_env["hubspot"])
    real_claim = pull.claim
    calls: list[int] = []

    def flaky(cursor_id: int, now: datetime) -> Any:
        calls.append(cursor_id)
        if len(calls) == 1:
            raise RuntimeError("database hiccup")
        return real_claim(cursor_id, now)

    monkeypatch.setattr(pull, "claim", flaky)
    counts = pull_sync_cursors()
    assert (counts.cursors, counts.errors) == (2, 1)
