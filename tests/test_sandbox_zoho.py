"""The local Zoho CRM sandbox, driven over real HTTP with `requests`: consent naming the data
centre, tokens at that data centre only, the API domain's scopes, credits and concurrency, COQL,
notes and tasks, faults and the control endpoints."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from integrations.sandbox.server import RunningSandbox, start_sandbox
from integrations.sandbox.zoho_crm import CONTACTS, DEALS, ORG_ID, REQUIRED_SCOPES
from tests.sandbox_helpers import answer_consent

TIMEOUT = 5
CLIENT, SECRET = "test-zoho-client", "test-zoho-secret"
REDIRECT = "https://conduit.example/oauth/callback"
C1, C2 = CONTACTS[0][0], CONTACTS[1][0]
D1, D2, D3 = (d[0] for d in DEALS)
MARKER = "cdw" + "0c" * 12


@pytest.fixture(autouse=True)
def _sandbox_settings(settings: Any) -> None:
    settings.ZOHO_CLIENT_ID, settings.ZOHO_CLIENT_SECRET = CLIENT, SECRET
    settings.PRODUCTION = False


@pytest.fixture
def zoho() -> Iterator[RunningSandbox]:
    sandbox = start_sandbox("zoho", port=0)
    yield sandbox
    sandbox.stop()


def other_host(base: str) -> str:
    """The same server under another host name: another data centre, as far as tokens go."""
    return base.replace("://127.0.0.1:", "://localhost:")


def authorize_url(base: str, **extra: str) -> str:
    query = {
        "response_type": "code",
        "client_id": CLIENT,
        "scope": ",".join(REQUIRED_SCOPES),
        "redirect_uri": REDIRECT,
        "access_type": "offline",
        "prompt": "consent",
        "state": "st-1",
        **extra,
    }
    return f"{base}/oauth/v2/auth?{urlencode(query)}"


def consent_code(base: str, **extra: str) -> dict[str, str]:
    location = answer_consent(authorize_url(base, **extra))
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def token(base: str, **form: str) -> dict[str, Any]:
    answer = requests.post(
        f"{base}/oauth/v2/token", data={"client_id": CLIENT, "client_secret": SECRET, **form}, timeout=TIMEOUT
    )
    assert answer.status_code == 200
    return dict(answer.json())


def mint(base: str, **body: Any) -> dict[str, Any]:
    return dict(requests.post(f"{base}/_sandbox/tokens", json=body, timeout=TIMEOUT).json())


def api(base: str, method: str, path: str, access: str | None, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Zoho-oauthtoken {access}"} if access else {}
    return requests.request(method, f"{base}/crm/v7/{path}", headers=headers, timeout=TIMEOUT, **kw)


def coql(base: str, access: str, query: str) -> requests.Response:
    return api(base, "POST", "coql", access, json={"select_query": query})


def state(base: str) -> dict[str, Any]:
    return dict(requests.get(f"{base}/_sandbox/state", timeout=TIMEOUT).json())


# --- the accounts server ---------------------------------------------------------------------------


def test_consent_redirect_names_the_data_centre(zoho: RunningSandbox) -> None:
    params = consent_code(zoho.base_url)
    assert params["location"] == "eu" and params["accounts-server"] == zoho.base_url
    assert params["state"] == "st-1" and params["code"]
    denied = urlsplit(answer_consent(authorize_url(zoho.base_url), decision="deny"))
    assert parse_qs(denied.query) == {
        "error": ["access_denied"],
        "error_description": ["The user denied access"],
        "state": ["st-1"],
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"access_type": "online"}, "access_type must be"),
        ({"response_type": "token"}, "response_type must be"),
        ({"client_id": "someone-else"}, "Unknown client_id"),
    ],
)
def test_consent_page_refuses_bad_requests(zoho: RunningSandbox, extra: dict[str, str], message: str) -> None:
    page = requests.get(authorize_url(zoho.base_url, **extra), timeout=TIMEOUT)
    assert page.status_code == 400 and message in page.text


def test_tokens_come_only_from_the_data_centre_that_issued_the_code(zoho: RunningSandbox) -> None:
    base = zoho.base_url
    code = consent_code(base)["code"]
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    assert token(other_host(base), **exchange) == {"error": "invalid_code"}  # the US server, say
    issued = token(base, **exchange)
    assert set(issued) == {"access_token", "refresh_token", "scope", "api_domain", "token_type", "expires_in"}
    assert issued["api_domain"] == base and issued["expires_in"] == 3600
    assert issued["scope"].split() == REQUIRED_SCOPES
    assert token(base, **exchange) == {"error": "invalid_code"}  # single use
    refresh = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    assert token(other_host(base), **refresh) == {"error": "invalid_code"}
    fresh = token(base, **refresh)
    assert "refresh_token" not in fresh and fresh["access_token"] != issued["access_token"]
    assert token(base, grant_type="password") == {"error": "unsupported_grant_type"}
    wrong = requests.post(f"{base}/oauth/v2/token", data={**exchange, "client_id": CLIENT}, timeout=TIMEOUT)
    assert wrong.json() == {"error": "invalid_client"}


def test_revocation_ends_the_grant_at_its_data_centre(zoho: RunningSandbox) -> None:
    base = zoho.base_url
    minted = mint(base)
    revoke = f"/oauth/v2/token/revoke?token={minted['refresh_token']}"
    assert requests.post(other_host(base) + revoke, timeout=TIMEOUT).json() == {"error": "invalid_token"}
    assert requests.post(base + revoke, timeout=TIMEOUT).json() == {"status": "success"}
    assert requests.post(base + revoke, timeout=TIMEOUT).json() == {"error": "invalid_token"}
    assert token(base, grant_type="refresh_token", refresh_token=minted["refresh_token"]) == {
        "error": "invalid_code"
    }
    assert api(base, "GET", "org", minted["access_token"]).status_code == 401  # its access tokens died too
    other = mint(base)
    assert requests.post(
        f"{base}/oauth/v2/token/revoke?token={other['access_token']}", timeout=TIMEOUT
    ).json() == {"status": "success"}


def test_an_injected_invalid_grant_refuses_the_next_refresh(zoho: RunningSandbox) -> None:
    base = zoho.base_url
    minted = mint(base)
    requests.post(f"{base}/_sandbox/faults", json={"kind": "invalid_grant"}, timeout=TIMEOUT)
    refresh = {"grant_type": "refresh_token", "refresh_token": minted["refresh_token"]}
    assert token(base, **refresh) == {"error": "invalid_code"}
    assert "access_token" in token(base, **refresh)


# --- the API domain ----------------------------------------------------------------------------


def test_the_api_wants_a_zoho_oauthtoken_with_the_right_scope(zoho: RunningSandbox) -> None:
    base = zoho.base_url
    access = mint(base)["access_token"]
    assert api(base, "GET", "org", None).json()["code"] == "INVALID_TOKEN"
    bearer = requests.get(
        f"{base}/crm/v7/org", headers={"Authorization": f"Bearer {access}"}, timeout=TIMEOUT
    )
    assert bearer.status_code == 401 and bearer.json()["code"] == "INVALID_TOKEN"
    org = api(base, "GET", "org", access)
    assert org.status_code == 200 and org.json()["org"][0]["id"] == ORG_ID
    expired = mint(base, expires_in=0)["access_token"]
    assert api(base, "GET", "org", expired).status_code == 401
    narrow = mint(base, scopes=["ZohoCRM.modules.ALL"])["access_token"]
    refused = api(base, "GET", "org", narrow)
    assert refused.status_code == 401 and refused.json()["code"] == "OAUTH_SCOPE_MISMATCH"
    assert api(base, "GET", "Contacts/search", narrow, params={"email": CONTACTS[0][3]}).status_code == 200
    assert coql(base, narrow, "select id from Tasks where x").json()["code"] == "OAUTH_SCOPE_MISMATCH"
    wide = mint(base, scopes=["ZohoCRM.modules.ALL", "ZohoCRM.coql.READ"])["access_token"]
    assert coql(base, wide, "select id from Leads").json()["code"] == "SYNTAX_ERROR"


def test_contact_search_by_email(zoho: RunningSandbox) -> None:
    base, access = zoho.base_url, mint(zoho.base_url)["access_token"]
    found = api(base, "GET", "Contacts/search", access, params={"email": CONTACTS[0][3].upper()})
    assert [c["id"] for c in found.json()["data"]] == [C1]
    none = api(base, "GET", "Contacts/search", access, params={"email": "nobody@example.com"})
    assert none.status_code == 204 and none.content == b""
    missing = api(base, "GET", "Contacts/search", access)
    assert missing.status_code == 400 and missing.json()["code"] == "REQUIRED_PARAM_MISSING"


def test_coql_answers_the_queries_conduit_sends(zoho: RunningSandbox) -> None:
    base, access = zoho.base_url, mint(zoho.base_url)["access_token"]
    open_deal = (
        "select id, Stage, Modified_Time from Deals where (Contact_Name = '{c}' and Stage not like "
        "'Closed%') order by Modified_Time desc limit 1"
    )
    assert coql(base, access, open_deal.format(c=C1)).json()["data"] == [
        {"id": D1, "Stage": "Negotiation/Review", "Modified_Time": "2026-03-02T11:00:00+01:00"}
    ]
    assert coql(base, access, open_deal.format(c=CONTACTS[2][0])).status_code == 204
    changed = (
        "select id, Email, Modified_Time from Contacts where Modified_Time >= '2026-01-05T09:00:00+00:00' "
        "order by Modified_Time asc, id asc limit 2"
    )
    page = coql(base, access, changed).json()
    assert [r["id"] for r in page["data"]] == [C1, C2] and page["data"][0]["Email"] == CONTACTS[0][3]
    after = (
        "select id, Email, Modified_Time from Contacts where (Modified_Time > '2026-01-05T09:00:00+00:00' "
        f"or (Modified_Time = '2026-01-05T09:00:00+00:00' and id > '{C2}')) "
        "order by Modified_Time asc, id asc limit 2"
    )
    assert [r["id"] for r in coql(base, access, after).json()["data"]] == [CONTACTS[2][0]]
    later = changed.replace("2026-01-05T09:00:00", "2026-01-05T09:00:01")
    assert coql(base, access, later).status_code == 204
    deals = changed.replace("Contacts", "Deals").replace("limit 2", "limit 5")
    assert coql(base, access, deals).json()["code"] == "INVALID_QUERY"
    deals = deals.replace("id, Email,", "id,")
    assert [r["id"] for r in coql(base, access, deals).json()["data"]] == [D3, D1, D2]
    odd = changed.replace("Modified_Time >= '2026-01-05T09:00:00+00:00'", "Email = 'x'")
    assert coql(base, access, odd).json()["code"] == "SYNTAX_ERROR"
    assert api(base, "POST", "coql", access, json={}).json()["code"] == "REQUIRED_PARAM_MISSING"
    assert api(base, "POST", "coql", access, data="{not json").status_code == 400


def note(parent: str = C1, module: str = "Contacts", **fields: Any) -> dict[str, Any]:
    record = {"Note_Title": f"Re: pricing [{MARKER}]", "Note_Content": "summary", "Parent_Id": parent}
    return {"data": [{**record, "$se_module": module, **fields}]}


def task(**fields: Any) -> dict[str, Any]:
    record = {"Subject": f"Follow up [{MARKER}]", "Who_Id": {"id": C1}, "Due_Date": "2026-11-18", **fields}
    return {"data": [record]}


def test_notes_are_created_on_a_contact_or_deal_and_read_back(zoho: RunningSandbox) -> None:
    base, access = zoho.base_url, mint(zoho.base_url)["access_token"]
    first = api(base, "POST", "Notes", access, json=note())
    assert first.status_code == 201
    answer = first.json()["data"][0]
    assert (answer["code"], answer["status"]) == ("SUCCESS", "success") and answer["details"]["id"]
    second = api(base, "POST", "Notes", access, json=note(Note_Title="Later")).json()["data"][0]["details"][
        "id"
    ]
    api(base, "POST", "Notes", access, json=note(D1, "Deals"))
    listed = api(
        base, "GET", f"Contacts/{C1}/Notes", access, params={"fields": "Note_Title", "sort_order": "desc"}
    )
    assert [n["id"] for n in listed.json()["data"]] == [second, answer["details"]["id"]]
    assert set(listed.json()["data"][0]) == {"id", "Note_Title"}
    oldest = api(
        base, "GET", f"Contacts/{C1}/Notes", access, params={"fields": "Note_Title", "sort_order": "asc"}
    )
    assert oldest.json()["data"][0]["id"] == answer["details"]["id"]
    assert (
        api(base, "GET", f"Contacts/{C2}/Notes", access, params={"fields": "Note_Title"}).status_code == 204
    )
    assert api(base, "GET", f"Deals/{D1}/Notes", access, params={"fields": "Note_Title"}).status_code == 200
    assert api(base, "GET", f"Contacts/{C1}/Notes", access).json()["code"] == "REQUIRED_PARAM_MISSING"
    unknown = api(base, "GET", "Contacts/123/Notes", access, params={"fields": "Note_Title"})
    assert unknown.json()["code"] == "INVALID_DATA"
    assert [n["$se_module"] for n in state(base)["notes"]] == ["Deals", "Contacts", "Contacts"]


@pytest.mark.parametrize(
    ("body", "code", "api_name"),
    [
        ({"data": []}, "INVALID_DATA", None),
        ({"records": [{}]}, "INVALID_DATA", None),
        (note(Owner="x"), "INVALID_DATA", "Owner"),
        (note(Note_Title="x" * 121), "INVALID_DATA", "Note_Title"),
        (note(Note_Content=7), "INVALID_DATA", "Note_Content"),
        (note(Note_Content=""), "MANDATORY_NOT_FOUND", "Note_Content"),
        (note("123"), "INVALID_DATA", "Parent_Id"),
        (note(module="Leads"), "INVALID_DATA", "Parent_Id"),
    ],
)
def test_refused_notes_answer_in_data(
    zoho: RunningSandbox, body: Any, code: str, api_name: str | None
) -> None:
    answer = api(zoho.base_url, "POST", "Notes", mint(zoho.base_url)["access_token"], json=body)
    assert answer.status_code == 400
    error = answer.json()["data"][0] if api_name else answer.json()
    assert error["code"] == code and error["details"].get("api_name") == api_name
    assert state(zoho.base_url)["notes"] == []


def test_tasks_name_the_contact_and_the_deal(zoho: RunningSandbox) -> None:
    base, access = zoho.base_url, mint(zoho.base_url)["access_token"]
    plain = api(base, "POST", "Tasks", access, json=task()).json()["data"][0]["details"]["id"]
    on_deal = api(base, "POST", "Tasks", access, json=task(What_Id={"id": D1}, **{"$se_module": "Deals"}))
    assert on_deal.status_code == 201
    stored = {t["id"]: t for t in state(base)["tasks"]}
    assert stored[plain]["What_Id"] is None and stored[plain]["Priority"] == "High"
    deal_task = stored[on_deal.json()["data"][0]["details"]["id"]]
    assert deal_task["What_Id"] == {"id": D1} and deal_task["Status"] == "Not Started"
    marked = f"select id from Tasks where (Who_Id = '{C1}' and Subject like '%{MARKER}%') limit 1"
    assert coql(base, access, marked).json()["data"] == [{"id": plain}]
    assert coql(base, access, marked.replace(C1, C2)).status_code == 204


@pytest.mark.parametrize(
    ("fields", "api_name"),
    [
        ({"Subject": ""}, "Subject"),
        ({"Owner": {"id": "1"}}, "Owner"),
        ({"Status": "Done"}, "Status"),
        ({"Priority": "Urgent"}, "Priority"),
        ({"Due_Date": "18/11/2026"}, "Due_Date"),
        ({"Who_Id": {"id": "123"}}, "Who_Id"),
        ({"What_Id": {"id": D1}}, "$se_module"),
        ({"What_Id": "123", "$se_module": "Deals"}, "What_Id"),
    ],
)
def test_refused_tasks(zoho: RunningSandbox, fields: dict[str, Any], api_name: str) -> None:
    answer = api(zoho.base_url, "POST", "Tasks", mint(zoho.base_url)["access_token"], json=task(**fields))
    assert answer.status_code == 400 and answer.json()["data"][0]["details"]["api_name"] == api_name
    assert (
        api(zoho.base_url, "POST", "Tasks", mint(zoho.base_url)["access_token"], json={}).status_code == 400
    )


def test_unknown_routes(zoho: RunningSandbox) -> None:
    base, access = zoho.base_url, mint(zoho.base_url)["access_token"]
    assert api(base, "GET", f"Contacts/{C1}", access).json()["code"] == "INVALID_URL_PATTERN"
    assert requests.get(f"{base}/oauth/v2/nothing", timeout=TIMEOUT).status_code == 404


# --- credits, concurrency and faults -----------------------------------------------------------------


def test_credits_run_out_then_every_call_is_refused(zoho: RunningSandbox) -> None:
    base, access = zoho.base_url, mint(zoho.base_url)["access_token"]
    requests.post(f"{base}/_sandbox/config", json={"credit_limit": 2}, timeout=TIMEOUT)
    assert [api(base, "GET", "org", access).status_code for _ in range(3)] == [200, 200, 429]
    refused = api(base, "GET", "org", access).json()
    assert refused["code"] == "LIMIT_EXCEEDED"
    current = state(base)
    assert current["credits"] == {"used": 2, "limit": 2} and current["requests"]["rate_limited"] == 2


def test_calls_beyond_the_concurrency_limit_are_refused_while_others_are_in_flight(
    zoho: RunningSandbox,
) -> None:
    base, access = zoho.base_url, mint(zoho.base_url)["access_token"]
    requests.post(f"{base}/_sandbox/config", json={"concurrency_limit": 1}, timeout=TIMEOUT)
    requests.post(f"{base}/_sandbox/faults", json={"kind": "hang", "hang_seconds": 1.0}, timeout=TIMEOUT)
    answers: list[int] = []
    slow = threading.Thread(target=lambda: answers.append(api(base, "GET", "org", access).status_code))
    slow.start()
    for _ in range(100):  # until the hanging call holds the org's one slot ("In flight: 1 / 1")
        if "<td>1 / 1</td>" in requests.get(f"{base}/", timeout=TIMEOUT).text:
            break
        threading.Event().wait(0.01)
    refused = api(base, "GET", "org", access)
    slow.join(TIMEOUT)
    assert refused.status_code == 429 and refused.json()["code"] == "TOO_MANY_REQUESTS"
    assert answers == [504]
    assert api(base, "GET", "org", access).status_code == 200  # the slot is free again


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("rate_limit", 429, "TOO_MANY_REQUESTS"),
        ("invalid_session", 401, "INVALID_TOKEN"),
        ("missing_scope", 401, "OAUTH_SCOPE_MISMATCH"),
        ("server_error", 500, "INTERNAL_ERROR"),
        ("unavailable", 503, "INTERNAL_ERROR"),
        ("hang", 504, "INTERNAL_ERROR"),
    ],
)
def test_injected_faults(zoho: RunningSandbox, kind: str, status: int, code: str) -> None:
    base, access = zoho.base_url, mint(zoho.base_url)["access_token"]
    fault = {"kind": kind, "retry_after": 3, "hang_seconds": 0}
    assert requests.post(f"{base}/_sandbox/faults", json=fault, timeout=TIMEOUT).status_code == 201
    answer = api(base, "GET", "org", access)
    assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert answer.headers.get("Retry-After") == ("3" if kind == "rate_limit" else None)
    assert api(base, "GET", "org", access).status_code == 200


def test_a_validation_fault_answers_in_data(zoho: RunningSandbox) -> None:
    base, access = zoho.base_url, mint(zoho.base_url)["access_token"]
    requests.post(f"{base}/_sandbox/faults", json={"kind": "validation"}, timeout=TIMEOUT)
    assert api(base, "POST", "Notes", access, json=note()).json()["data"][0]["code"] == "INVALID_DATA"


# --- control endpoints and the overview page -------------------------------------------------------


def test_records_change_at_the_crm_for_the_incremental_pull(zoho: RunningSandbox) -> None:
    base = zoho.base_url
    changed = requests.post(
        f"{base}/_sandbox/records",
        json={"object": "contact", "id": C2, "fields": {"Email": "jonas@new.example"}},
        timeout=TIMEOUT,
    ).json()
    assert changed["Email"] == "jonas@new.example" and changed["Modified_Time"] != CONTACTS[1][3]
    new = requests.post(
        f"{base}/_sandbox/records",
        json={
            "object": "contact",
            "fields": {"First_Name": "Ada", "Last_Name": "Byrne", "Email": "ada@x.example"},
        },
        timeout=TIMEOUT,
    ).json()
    assert new["Full_Name"] == "Ada Byrne" and new["id"] not in {c[0] for c in CONTACTS}
    deal = requests.post(
        f"{base}/_sandbox/records",
        json={"object": "deal", "fields": {"Deal_Name": "Expansion"}, "contact": new["id"]},
        timeout=TIMEOUT,
    ).json()
    assert deal["Contact_Name"] == {"id": new["id"], "name": "Ada Byrne"} and deal["Stage"] == "Qualification"
    bad = requests.post(f"{base}/_sandbox/records", json={"object": "lead"}, timeout=TIMEOUT)
    assert bad.status_code == 400


def test_overview_page_state_and_reset(zoho: RunningSandbox) -> None:
    base, access = zoho.base_url, mint(zoho.base_url)["access_token"]
    api(base, "POST", "Notes", access, json=note())
    api(base, "POST", "Tasks", access, json=task(What_Id={"id": D1}, **{"$se_module": "Deals"}))
    page = requests.get(f"{base}/", timeout=TIMEOUT).text
    assert "Zoho CRM sandbox" in page and "Sandbox Demo GmbH" in page and "eu: accounts server" in page
    assert (
        "Acme Logistics - Annual plan" in page
        and f"Follow up [{MARKER}]" in page
        and "<td>2 / 50000</td>" in page
    )
    current = state(base)
    assert current["org"]["id"] == ORG_ID and len(current["notes"]) == len(current["tasks"]) == 1
    assert requests.post(f"{base}/_sandbox/reset", timeout=TIMEOUT).status_code == 204
    assert state(base)["notes"] == [] and state(base)["credits"]["used"] == 0
