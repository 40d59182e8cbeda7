"""The Odoo client: against `responses` mocks shaped from Odoo's documentation and source (JSON-2
and XML-RPC), and against the sandbox over a real socket in both protocols."""

from __future__ import annotations

import json
import xmlrpc.client
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import responses

from conduit.tenancy import system_scope
from integrations.models import SyncLog
from integrations.providers.base import Account, TokenSet
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    ProviderError,
    RateLimited,
    Transient,
)
from integrations.providers.odoo import OdooProvider, id_or_placeholder, like_literal
from integrations.providers.odoo_wire import created_id, major_of, snake
from integrations.providers.synclog import CallContext
from integrations.sandbox.odoo_data import DATABASE, LOGIN, SEEDED_API_KEY
from integrations.sandbox.server import RunningSandbox
from tests.odoo_helpers import (
    MARKER,
    MAYA,
    MOCK_KEY,
    ODOO_HOST,
    ODOO_URL,
    PUBLIC_IP,
    TASK_MARKER,
    activity,
    fake_dns,
    inject,
    odoo_account,
    reset,
    sandbox_settings,
    start_odoo,
    state,
)

pytestmark = pytest.mark.django_db
PINNED = f"https://{PUBLIC_IP}"
JSON2 = f"{PINNED}/json/2"
APIS = ["json2", "xmlrpc"]
MAJOR = {"json2": 19, "xmlrpc": 17}


@pytest.fixture
def provider() -> OdooProvider:
    return OdooProvider()


@pytest.fixture
def mock_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {ODOO_HOST: [PUBLIC_IP]})


@pytest.fixture
def mocked(mock_dns: None) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def json2_account(**ctx: Any) -> Account:
    return odoo_account(ODOO_URL, key=MOCK_KEY, database="acme", **ctx)


def xmlrpc_account(**kw: Any) -> Account:
    return odoo_account(ODOO_URL, api="xmlrpc", key=MOCK_KEY, database="acme", **kw)


def sent(call: Any) -> Any:
    return json.loads(call.request.body)


def xml_answer(value: Any) -> str:
    params = value if isinstance(value, xmlrpc.client.Fault) else (value,)
    return xmlrpc.client.dumps(params, methodresponse=True, allow_none=False)


def xmlrpc_mock(
    mock: responses.RequestsMock, answer: Callable[[str, str, tuple[Any, ...]], Any]
) -> list[tuple[str, str, tuple[Any, ...]]]:
    """Both XML-RPC services: `answer(service, method, params)` gives a value or a Fault."""
    seen: list[tuple[str, str, tuple[Any, ...]]] = []

    def handler(service: str) -> Callable[[Any], tuple[int, dict[str, str], str]]:
        def respond(request: Any) -> tuple[int, dict[str, str], str]:
            params, method = xmlrpc.client.loads(request.body)
            seen.append((service, str(method), params))
            return 200, {"Content-Type": "text/xml"}, xml_answer(answer(service, str(method), params))

        return respond

    for service in ("common", "object"):
        mock.add_callback("POST", f"{PINNED}/xmlrpc/2/{service}", callback=handler(service))
    return seen


def version_answer(major: Any) -> dict[str, Any]:
    return {"server_version": f"{major}.0", "server_version_info": [major, 0, 0, "final", 0, ""]}


# --- connecting ------------------------------------------------------------------------------


def test_odoo_19_is_checked_over_json2_with_the_key_and_database(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    seen = xmlrpc_mock(mocked, lambda service, method, params: version_answer(19))
    mocked.post(f"{JSON2}/res.users/context_get", json={"lang": "en_US", "tz": "Europe/Brussels", "uid": 6})
    account = provider.verify_credentials(
        base=ODOO_URL, database="acme", login="bot@acme.example", api_key=MOCK_KEY, context=CallContext()
    )
    assert seen == [("common", "version", ())]
    assert account.key == f"{ODOO_HOST}/acme"
    assert account.details == {
        "database": "acme",
        "login": "bot@acme.example",
        "api": "json2",
        "version": "19.0",
        "uid": 6,
        "instance_url": ODOO_URL,
        "url": ODOO_URL,
    }
    call = mocked.calls[-1]
    assert call.request.headers["Authorization"] == f"Bearer {MOCK_KEY}"
    assert call.request.headers["X-Odoo-Database"] == "acme"
    assert call.request.headers["Host"] == ODOO_HOST
    assert sent(call) == {}


def test_odoo_17_is_checked_with_xmlrpc_authenticate(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    seen = xmlrpc_mock(mocked, lambda s, m, p: version_answer(17) if m == "version" else 6)
    account = provider.verify_credentials(
        base=ODOO_URL, database="acme", login="bot@acme.example", api_key=MOCK_KEY, context=CallContext()
    )
    assert seen[1] == ("common", "authenticate", ("acme", "bot@acme.example", MOCK_KEY, {}))
    assert (account.details["api"], account.details["uid"]) == ("xmlrpc", 6)


@pytest.mark.parametrize(
    ("first", "api"), [("saas~18", "xmlrpc"), ("saas~19", "json2"), (18, "xmlrpc"), (20, "json2")]
)
def test_the_major_version_decides_the_protocol(
    first: Any, api: str, provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    xmlrpc_mock(
        mocked,
        lambda s, m, p: {"server_version_info": [first, 3, 0, "final", 0, ""]} if m == "version" else 2,
    )
    mocked.post(f"{JSON2}/res.users/context_get", json={"uid": 2})
    account = provider.verify_credentials(
        base=ODOO_URL, database="acme", login="bot", api_key=MOCK_KEY, context=CallContext()
    )
    assert account.details["api"] == api
    assert account.details["version"] == ""


def test_without_xmlrpc_the_web_version_route_decides(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    mocked.post(f"{PINNED}/xmlrpc/2/common", status=404, body="<h1>Not Found</h1>")
    mocked.get(f"{PINNED}/web/version", json={"version_info": [22, 0, 0, "final", 0, ""], "version": "22.0"})
    mocked.post(f"{JSON2}/res.users/context_get", json={"uid": 2})
    account = provider.verify_credentials(
        base=ODOO_URL, database="acme", login="bot", api_key=MOCK_KEY, context=CallContext()
    )
    assert (account.details["api"], account.details["version"]) == ("json2", "22.0")


@pytest.mark.parametrize(
    "setup",
    ["both_404", "html", "no_version", "fault", "web_version_not_json"],
)
def test_a_server_that_is_not_odoo_is_named_so(
    setup: str, provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    if setup == "both_404":
        mocked.post(f"{PINNED}/xmlrpc/2/common", status=404)
        mocked.get(f"{PINNED}/web/version", status=404)
    elif setup == "html":
        mocked.post(f"{PINNED}/xmlrpc/2/common", body="<html>Welcome to nginx</html>")
    elif setup == "no_version":
        xmlrpc_mock(mocked, lambda s, m, p: ["not", "a", "dict"])
    elif setup == "fault":
        xmlrpc_mock(mocked, lambda s, m, p: xmlrpc.client.Fault(2, "nope"))
    else:
        mocked.post(f"{PINNED}/xmlrpc/2/common", status=404)
        mocked.get(f"{PINNED}/web/version", body="hello")
    with pytest.raises(Permanent) as caught:
        provider.verify_credentials(
            base=ODOO_URL, database="acme", login="bot", api_key=MOCK_KEY, context=CallContext()
        )
    assert caught.value.code == "not_odoo"


def test_a_redirect_while_asking_the_version_stays_a_redirect(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    mocked.post(f"{PINNED}/xmlrpc/2/common", status=301, headers={"Location": "https://www.acme.odoo.com/"})
    with pytest.raises(Permanent) as caught:
        provider.verify_credentials(
            base=ODOO_URL, database="acme", login="b", api_key=MOCK_KEY, context=CallContext()
        )
    assert caught.value.code == "unexpected_redirect"


@pytest.mark.parametrize("uid", [False, 0, True, "2"])
def test_xmlrpc_authenticate_refusing_the_key_is_auth_revoked(
    uid: Any, provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    xmlrpc_mock(mocked, lambda s, m, p: version_answer(16) if m == "version" else uid)
    with pytest.raises(AuthRevoked) as caught:
        provider.verify_credentials(
            base=ODOO_URL, database="acme", login="b", api_key=MOCK_KEY, context=CallContext()
        )
    assert caught.value.code == "invalid_credentials"


@pytest.mark.parametrize("answer", [["not a dict"], {"lang": "en_US"}, {"uid": True}])
def test_a_json2_check_naming_no_user_is_refused(
    answer: Any, provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    xmlrpc_mock(mocked, lambda s, m, p: version_answer(19))
    mocked.post(f"{JSON2}/res.users/context_get", json=answer)
    with pytest.raises(Permanent) as caught:
        provider.verify_credentials(
            base=ODOO_URL, database="acme", login="b", api_key=MOCK_KEY, context=CallContext()
        )
    assert caught.value.code == "invalid_response"


def test_oauth_is_not_how_odoo_connects(provider: OdooProvider) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: provider.authorize_url(state="s", redirect_uri="https://x"),
        lambda: provider.exchange_code(code="c", redirect_uri="https://x"),
        lambda: provider.refresh("r"),
        lambda: provider.identify(TokenSet("k")),
    ]
    for call in calls:
        with pytest.raises(Permanent) as caught:
            call()
        assert caught.value.code == "api_key_only"
    with pytest.raises(Permanent) as caught:
        provider.revoke(MOCK_KEY)
    assert caught.value.code == "revoke_not_supported"
    assert MOCK_KEY not in str(caught.value)
    assert provider.missing_scopes([]) == []
    assert provider.api_bucket().provider == "odoo"


# --- lookups -----------------------------------------------------------------------------------


def test_contact_lookup_is_case_insensitive_with_wildcards_taken_literally(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    mocked.post(f"{JSON2}/res.partner/search_read", json=[{"id": 7}])
    assert provider.find_contact(json2_account(), "  Maya_Lopez%@acme.example ") == "7"
    assert sent(mocked.calls[0]) == {
        "domain": [["email", "=ilike", "Maya\\_Lopez\\%@acme.example"]],
        "fields": ["id"],
        "limit": 1,
        "order": "id asc",
    }
    assert like_literal("a\\b") == "a\\\\b"


def test_no_contact_is_none(provider: OdooProvider, mocked: responses.RequestsMock) -> None:
    mocked.post(f"{JSON2}/res.partner/search_read", json=[])
    assert provider.find_contact(json2_account(), MAYA) is None


def test_open_opportunity_lookup(provider: OdooProvider, mocked: responses.RequestsMock) -> None:
    mocked.post(f"{JSON2}/crm.lead/search_read", json=[{"id": 21}])
    assert provider.find_open_deal(json2_account(), "7") == "21"
    assert sent(mocked.calls[0]) == {
        "domain": [
            ["partner_id", "=", 7],
            ["type", "=", "opportunity"],
            ["active", "=", True],
            ["stage_id.is_won", "=", False],
        ],
        "fields": ["id"],
        "limit": 1,
        "order": "write_date desc, id desc",
    }
    mocked.replace(responses.POST, f"{JSON2}/crm.lead/search_read", json=[])
    assert provider.find_open_deal(json2_account(), "7") is None


def test_without_the_crm_app_there_is_no_open_opportunity(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    body = {"name": "werkzeug.exceptions.NotFound", "message": "the model 'crm.lead' does not exist"}
    mocked.post(f"{JSON2}/crm.lead/search_read", status=404, json=body)
    assert provider.find_open_deal(json2_account(), "7") is None
    mocked.replace(responses.POST, f"{JSON2}/crm.lead/search_read", status=403, json={"message": "no"})
    with pytest.raises(MissingScope):
        provider.find_open_deal(json2_account(), "7")
    mocked.replace(responses.POST, f"{JSON2}/crm.lead/search_read", status=422, json={"message": "bad"})
    with pytest.raises(Permanent):
        provider.find_open_deal(json2_account(), "7")


@pytest.mark.parametrize("contact", ["abc", "", "7 OR 1", "\uff17"])  # the last: a fullwidth 7
def test_a_contact_id_that_is_not_an_odoo_id_is_refused_unsent(
    contact: str, provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    with pytest.raises(Permanent) as caught:
        provider.find_open_deal(json2_account(), contact)
    assert caught.value.code == "invalid_id"
    assert len(mocked.calls) == 0


@pytest.mark.parametrize("answer", [{"id": 1}, [1, 2], [{"name": "x"}]])
def test_a_search_read_answer_that_is_not_records_is_refused(
    answer: Any, provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    mocked.post(f"{JSON2}/res.partner/search_read", json=answer)
    with pytest.raises(Permanent) as caught:
        provider.find_contact(json2_account(), MAYA)
    assert caught.value.code == "invalid_response"


# --- writes ------------------------------------------------------------------------------------


def test_a_note_is_logged_on_the_partner_and_its_open_opportunity(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    mocked.post(f"{JSON2}/res.partner/message_post", json=[501])
    mocked.post(f"{JSON2}/crm.lead/message_post", json=[502])
    planned = activity("7", "21")
    assert provider.create_note(json2_account(), planned) == "501"
    partner, lead = (sent(c) for c in mocked.calls)
    expected = provider.write_payload("create_note", planned)
    assert partner == {**expected, "ids": [7]}
    assert lead == {**expected, "ids": [21]}
    assert expected["message_type"] == "comment"
    assert expected["subtype_xmlid"] == "mail.mt_note"
    assert expected["body"].endswith(f" [{MARKER}]")
    assert "sam@demo.conduit.local" in expected["body"]


def test_without_an_opportunity_the_note_goes_on_the_partner_only(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    mocked.post(f"{JSON2}/res.partner/message_post", json=501)
    assert provider.create_note(json2_account(), activity("7")) == "501"
    assert len(mocked.calls) == 1


def test_a_task_is_a_todo_activity_on_the_partner(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    mocked.post(f"{JSON2}/ir.model/search_read", json=[{"id": 85}])
    mocked.post(f"{JSON2}/ir.model.data/search_read", json=[{"id": 1, "res_id": 4}])
    mocked.post(f"{JSON2}/mail.activity/create", json=[901])
    planned = activity(
        "7", "21", marker=TASK_MARKER, subject="Follow up", due_at=datetime(2026, 11, 20, tzinfo=UTC)
    )
    assert provider.create_task(json2_account(), planned) == "901"
    model_lookup, type_lookup, create = (sent(c) for c in mocked.calls)
    assert model_lookup["domain"] == [["model", "=", "res.partner"]]
    assert type_lookup["domain"] == [["module", "=", "mail"], ["name", "=", "mail_activity_data_todo"]]
    assert type_lookup["fields"] == ["id", "res_id"]
    (values,) = create["vals_list"]
    assert values == {
        **provider.write_payload("create_task", planned),
        "res_model_id": 85,
        "activity_type_id": 4,
    }
    assert values["summary"] == f"Follow up [{TASK_MARKER}]"
    assert values["date_deadline"] == "2026-11-20"
    assert values["res_id"] == 7


def test_without_the_todo_type_odoo_picks_its_default(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    mocked.post(f"{JSON2}/ir.model/search_read", json=[{"id": 85}])
    mocked.post(f"{JSON2}/ir.model.data/search_read", json=[])
    mocked.post(f"{JSON2}/mail.activity/create", json=[901])
    assert provider.create_task(json2_account(), activity("7", marker=TASK_MARKER)) == "901"
    assert "activity_type_id" not in sent(mocked.calls[-1])["vals_list"][0]
    assert sent(mocked.calls[-1])["vals_list"][0]["date_deadline"] == "2026-11-16"


def test_without_res_partner_in_ir_model_no_task_is_sent(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    mocked.post(f"{JSON2}/ir.model/search_read", json=[{"id": "85"}])
    with pytest.raises(Permanent) as caught:
        provider.create_task(json2_account(), activity("7", marker=TASK_MARKER))
    assert caught.value.code == "model_not_found"
    assert len(mocked.calls) == 1


@pytest.mark.parametrize("answer", [[1, 2], "12", True, [], None])
def test_a_create_answer_without_one_id_is_refused(answer: Any) -> None:
    with pytest.raises(Permanent) as caught:
        created_id(answer)
    assert caught.value.code == "invalid_create_response"


def test_write_payload_shows_a_placeholder_before_the_lookup(provider: OdooProvider) -> None:
    planned = activity("<the Odoo contact with email maya@acme.example>", marker=TASK_MARKER)
    assert provider.write_payload("create_task", planned)["res_id"] == planned.contact_id
    assert id_or_placeholder("42") == 42
    with pytest.raises(ValueError):
        provider.write_payload("create_deal", planned)


def test_xmlrpc_sends_ids_and_create_values_positionally(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    def answer(service: str, method: str, params: tuple[Any, ...]) -> Any:
        called = params[4]
        return {"message_post": 501, "search_read": [{"id": 85, "res_id": 4}], "create": [901]}[called]

    seen = xmlrpc_mock(mocked, answer)
    account = xmlrpc_account()
    assert provider.create_note(account, activity("7")) == "501"
    assert provider.create_task(account, activity("7", marker=TASK_MARKER)) == "901"
    note, model_lookup, _type_lookup, create = (params for _s, _m, params in seen)
    assert note[:6] == ("acme", 2, MOCK_KEY, "res.partner", "message_post", [[7]])
    assert note[6]["subtype_xmlid"] == "mail.mt_note"
    assert model_lookup[4:6] == ("search_read", [])
    assert model_lookup[6]["domain"] == [["model", "=", "res.partner"]]
    assert create[3:5] == ("mail.activity", "create")
    (values,) = create[5][0]
    assert values["res_model_id"] == 85
    assert create[6] == {}


def test_xmlrpc_needs_the_user_id(provider: OdooProvider, mocked: responses.RequestsMock) -> None:
    with pytest.raises(Permanent) as caught:
        provider.find_contact(xmlrpc_account(uid=None), MAYA)
    assert caught.value.code == "not_configured"
    assert len(mocked.calls) == 0


# --- finding a write whose outcome is unknown --------------------------------------------------


def test_find_write_looks_for_the_marker(provider: OdooProvider, mocked: responses.RequestsMock) -> None:
    mocked.post(f"{JSON2}/mail.message/search_read", json=[{"id": 501}])
    assert provider.find_write(json2_account(), "create_note", activity("7")) == "501"
    assert sent(mocked.calls[0])["domain"] == [
        ["model", "=", "res.partner"],
        ["res_id", "=", 7],
        ["body", "ilike", MARKER],
    ]
    mocked.post(f"{JSON2}/mail.activity/search_read", json=[{"id": 901}])
    assert provider.find_write(json2_account(), "create_task", activity("7", marker=TASK_MARKER)) == "901"
    task_search = sent(mocked.calls[1])
    assert task_search["domain"][2] == ["summary", "ilike", TASK_MARKER]
    assert task_search["context"] == {"active_test": False}


def test_a_todo_marked_done_is_found_by_its_chatter_message(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    mocked.post(f"{JSON2}/mail.activity/search_read", json=[])
    mocked.post(f"{JSON2}/mail.message/search_read", json=[{"id": 777}])
    assert provider.find_write(json2_account(), "create_task", activity("7", marker=TASK_MARKER)) == "777"
    mocked.replace(responses.POST, f"{JSON2}/mail.message/search_read", json=[])
    assert provider.find_write(json2_account(), "create_task", activity("7", marker=TASK_MARKER)) is None


def test_find_write_refuses_a_bad_marker_unsent(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    with pytest.raises(ValueError):
        provider.find_write(json2_account(), "create_note", activity("7", marker="%' OR 1=1"))
    assert len(mocked.calls) == 0


# --- the incremental pull ----------------------------------------------------------------------


def test_changed_since_pages_by_write_date_then_id(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    rows = [
        {"id": 7, "email": MAYA, "write_date": "2026-03-01 10:00:00"},
        {"id": 9, "email": False, "write_date": "2026-03-01 10:00:05"},
    ]
    mocked.post(f"{JSON2}/res.partner/search_read", json=rows)
    since = datetime(2026, 3, 1, 9, 59, 59, 900000, tzinfo=UTC)
    page = provider.changed_since(json2_account(), "contact", since, None, 2)
    assert [(r.id, r.email) for r in page.records] == [("7", MAYA), ("9", "")]
    assert page.records[1].modified_at == datetime(2026, 3, 1, 10, 0, 5, tzinfo=UTC)
    assert page.next == "2026-03-01 10:00:05|9"
    first = sent(mocked.calls[0])
    assert first == {
        "domain": [["write_date", ">=", "2026-03-01 09:59:59"]],
        "fields": ["id", "email", "write_date"],
        "limit": 2,
        "order": "write_date asc, id asc",
        "context": {"active_test": False},
    }
    mocked.post(
        f"{JSON2}/crm.lead/search_read",
        json=[{"id": 21, "write_date": "2026-03-02 10:00:00+00:00"}],
    )
    deals = provider.changed_since(json2_account(), "deal", since, "2026-03-01 10:00:05|9", 2)
    assert (deals.records[0].id, deals.next) == ("21", None)
    assert sent(mocked.calls[1])["domain"] == [
        ["type", "=", "opportunity"],
        "|",
        ["write_date", ">", "2026-03-01 10:00:05"],
        "&",
        ["write_date", "=", "2026-03-01 10:00:05"],
        ["id", ">", 9],
    ]


@pytest.mark.parametrize(
    "row", [{"id": 7}, {"id": 7, "write_date": False}, {"id": 7, "write_date": "yesterday"}]
)
def test_a_pulled_record_without_a_write_date_is_refused(
    row: dict[str, Any], provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    mocked.post(f"{JSON2}/res.partner/search_read", json=[row])
    with pytest.raises(Permanent) as caught:
        provider.changed_since(json2_account(), "contact", datetime(2026, 1, 1, tzinfo=UTC), None, 10)
    assert caught.value.code == "invalid_response"


def test_changed_since_refuses_an_unknown_object(provider: OdooProvider) -> None:
    with pytest.raises(ValueError):
        provider.changed_since(json2_account(), "invoice", datetime(2026, 1, 1, tzinfo=UTC), None, 10)


# --- errors: JSON-2 statuses and XML-RPC faults ------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "code"),
    [
        (
            401,
            {"name": "werkzeug.exceptions.Unauthorized", "message": "Invalid apikey"},
            {},
            AuthRevoked,
            "api_key_rejected",
        ),
        (
            400,
            {"name": "odoo.exceptions.AccessDenied", "message": "Access Denied"},
            {},
            AuthRevoked,
            "api_key_rejected",
        ),
        (
            403,
            {"name": "odoo.exceptions.AccessError", "message": "not allowed"},
            {},
            MissingScope,
            "missing_scope",
        ),
        (
            422,
            {"name": "odoo.exceptions.AccessError", "message": "not allowed"},
            {},
            MissingScope,
            "missing_scope",
        ),
        (
            404,
            {"name": "werkzeug.exceptions.NotFound", "message": "the model 'x.y' does not exist"},
            {},
            Permanent,
            "model_not_found",
        ),
        (404, None, {}, Permanent, "not_found"),
        (
            422,
            {"name": "odoo.exceptions.ValidationError", "message": "bad"},
            {},
            Permanent,
            "validation_error",
        ),
        (422, {"message": "bad"}, {}, Permanent, "validation_error"),
        (400, {"name": "werkzeug.exceptions.BadRequest", "message": "json"}, {}, Permanent, "bad_request"),
        (409, {"name": "odoo.exceptions.LockError", "message": "locked"}, {}, Transient, "locked"),
        (418, ["not an object"], {}, Permanent, "http_418"),
        (
            403,
            {"name": "odoo.exceptions.AccessDenied", "message": "Access Denied"},
            {},
            AuthRevoked,
            "api_key_rejected",
        ),
        (429, None, {"Retry-After": "7"}, RateLimited, "rate_limited"),
        (429, None, {}, RateLimited, "rate_limited"),
        (500, {"name": "builtins.ValueError", "message": "internal server error"}, {}, Transient, "http_500"),
        (503, None, {}, Transient, "http_503"),
        (302, None, {"Location": "https://login.acme.example/"}, Permanent, "unexpected_redirect"),
    ],
)
def test_json2_answers_map_to_the_closed_set(
    status: int,
    body: Any,
    headers: dict[str, str],
    error: type[ProviderError],
    code: str,
    provider: OdooProvider,
    mocked: responses.RequestsMock,
) -> None:
    kwargs: dict[str, Any] = {"json": body} if body is not None else {"body": "<h1>error</h1>"}
    mocked.post(f"{JSON2}/res.partner/search_read", status=status, headers=headers, **kwargs)
    with pytest.raises(error) as caught:
        provider.find_contact(json2_account(), MAYA)
    assert caught.value.code == code
    if error is MissingScope:
        assert caught.value.missing == ["res.partner access"]  # type: ignore[attr-defined]
    if error is RateLimited:
        assert caught.value.retry_after == (7.0 if headers else 60.0)  # type: ignore[attr-defined]


def test_timeouts_and_network_failures_are_transient(
    provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    mocked.post(f"{JSON2}/res.partner/search_read", body=requests.ReadTimeout("slow"))
    with pytest.raises(Transient) as caught:
        provider.find_contact(json2_account(), MAYA)
    assert caught.value.code == "timeout"
    mocked.replace(
        responses.POST, f"{JSON2}/res.partner/search_read", body=requests.ConnectionError(f"{PINNED} refused")
    )
    with pytest.raises(Transient) as caught:
        provider.find_contact(json2_account(), MAYA)
    assert (caught.value.code, caught.value.message) == ("network_error", "ConnectionError")


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        (xmlrpc.client.Fault(3, "Access Denied"), AuthRevoked, "api_key_rejected"),
        (
            xmlrpc.client.Fault(4, "You are not allowed to access 'Contact' (res.partner) records."),
            MissingScope,
            "missing_scope",
        ),
        (xmlrpc.client.Fault(2, "The operation cannot be completed: bad value"), Permanent, "user_error"),
        (xmlrpc.client.Fault(2, "Object crm.lead doesn't exist"), Permanent, "model_not_found"),
        (
            xmlrpc.client.Fault(
                1,
                'Traceback (most recent call last):\n  File "x"\n'
                'psycopg2.OperationalError: FATAL:  database "acme" does not exist\n',
            ),
            Permanent,
            "unknown_database",
        ),
        (
            xmlrpc.client.Fault(1, "Traceback (most recent call last):\n  ...\nKeyError: 'x'\n"),
            Transient,
            "server_error",
        ),
        (xmlrpc.client.Fault(1, ""), Transient, "server_error"),
    ],
)
def test_xmlrpc_faults_map_to_the_closed_set(
    fault: xmlrpc.client.Fault,
    error: type[ProviderError],
    code: str,
    provider: OdooProvider,
    mocked: responses.RequestsMock,
) -> None:
    xmlrpc_mock(mocked, lambda s, m, p: fault)
    with pytest.raises(error) as caught:
        provider.find_contact(xmlrpc_account(), MAYA)
    assert caught.value.code == code
    if error is MissingScope:
        assert caught.value.missing == ["res.partner access"]  # type: ignore[attr-defined]
    if code == "server_error" and fault.faultString:
        assert caught.value.message == "KeyError: 'x'"


@pytest.mark.parametrize(
    "body",
    [b"not xml", b"<?xml version='1.0'?><methodResponse><params></params></methodResponse>", b"<a><b></a>"],
)
def test_an_answer_that_is_not_xmlrpc_is_refused(
    body: bytes, provider: OdooProvider, mocked: responses.RequestsMock
) -> None:
    mocked.post(f"{PINNED}/xmlrpc/2/object", body=body)
    with pytest.raises(Permanent) as caught:
        provider.find_contact(xmlrpc_account(), MAYA)
    assert caught.value.code == "invalid_response"


def test_the_key_never_leaves_in_errors_logs_or_sync_logs(
    provider: OdooProvider,
    mocked: responses.RequestsMock,
    capture_json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    echo = {"name": "odoo.exceptions.ValidationError", "message": f"key {MOCK_KEY} is not welcome"}
    mocked.post(f"{JSON2}/res.partner/search_read", status=422, json=echo)
    with pytest.raises(Permanent) as json2_error:
        provider.find_contact(json2_account(), MAYA)
    xmlrpc_mock(mocked, lambda s, m, p: xmlrpc.client.Fault(2, f"bad key {p[2]}"))
    with pytest.raises(Permanent) as xmlrpc_error:
        provider.find_contact(xmlrpc_account(), MAYA)
    for caught in (json2_error, xmlrpc_error):
        assert MOCK_KEY not in str(caught.value)
        assert "[redacted]" in caught.value.message
    with system_scope():
        rows = list(SyncLog.objects.values_list("summary", "error_code"))
    assert rows and all(MOCK_KEY not in summary for summary, _ in rows)
    assert MOCK_KEY not in json.dumps(capture_json_logs())


def test_small_helpers() -> None:
    assert snake("odoo.exceptions.MissingError") == "missing_error"
    assert major_of((17, 0)) == 17
    for bad in ([], None, [True], ["saas~x"], "19"):
        with pytest.raises(Permanent):
            major_of(bad)
    assert OdooProvider.parse_time("2026-03-01T10:00:00+01:00") == datetime(2026, 3, 1, 9, tzinfo=UTC)


# --- against the sandbox, over a real socket, in both protocols --------------------------------


@pytest.fixture(scope="module")
def odoo_server() -> Iterator[RunningSandbox]:
    running = start_odoo()
    yield running
    running.stop()


@pytest.fixture(params=APIS)
def sandbox(
    request: pytest.FixtureRequest, odoo_server: RunningSandbox, settings: Any
) -> Iterator[dict[str, Any]]:
    sandbox_settings(settings)
    reset(odoo_server.base_url, major_version=MAJOR[request.param])
    account = OdooProvider().verify_credentials(
        base=odoo_server.base_url,
        database=DATABASE,
        login=LOGIN,
        api_key=SEEDED_API_KEY,
        context=CallContext(),
    )
    assert account.details["api"] == request.param
    yield {
        "api": request.param,
        "base": odoo_server.base_url,
        "account": Account(
            "odoo", SEEDED_API_KEY, account.key, instance_url=odoo_server.base_url, details=account.details
        ),
        "server": odoo_server,
    }


def test_sandbox_connects_and_checks_health(sandbox: dict[str, Any], provider: OdooProvider) -> None:
    result = provider.check_health(sandbox["account"])
    assert result.details == {"uid": 2, "api": sandbox["api"], "version": f"{MAJOR[sandbox['api']]}.0"}
    assert result.latency_ms >= 0


def test_sandbox_lookups(sandbox: dict[str, Any], provider: OdooProvider) -> None:
    account = sandbox["account"]
    assert provider.find_contact(account, "MAYA.Lopez@ACME-logistics.example") == "7"
    assert provider.find_contact(account, "maya_lopez@acme-logistics.example") is None
    assert provider.find_contact(account, "nobody@nowhere.example") is None
    assert provider.find_open_deal(account, "7") == "21"  # 22 is won
    assert provider.find_open_deal(account, "8") == "23"
    assert provider.find_open_deal(account, "9") is None  # 24 is lost (archived)


def test_sandbox_writes_and_finds_them_by_marker(sandbox: dict[str, Any], provider: OdooProvider) -> None:
    account, base = sandbox["account"], sandbox["base"]
    note = activity("7", "21")
    task = activity("7", "21", marker=TASK_MARKER, subject="Follow up")
    note_id = provider.write(account, "create_note", note)
    task_id = provider.write(account, "create_task", task)
    written = state(base)
    on = sorted((m["model"], m["res_id"]) for m in written["messages"])
    assert on == [("crm.lead", 21), ("res.partner", 7)]
    assert all(
        m["subtype_xmlid"] == "mail.mt_note" and f"[{MARKER}]" in m["body"] for m in written["messages"]
    )
    (todo,) = written["activities"]
    assert (todo["res_model"], todo["res_id"], todo["activity_type_id"]) == ("res.partner", 7, 4)
    assert todo["summary"] == f"Follow up [{TASK_MARKER}]"
    assert provider.find_write(account, "create_note", note) == note_id
    assert provider.find_write(account, "create_task", task) == task_id
    assert provider.find_write(account, "create_note", activity("7", marker="cdw" + "0" * 24)) is None
    assert provider.find_write(account, "create_task", activity("8", marker=TASK_MARKER)) is None


def test_sandbox_a_done_todo_is_still_found(sandbox: dict[str, Any], provider: OdooProvider) -> None:
    account, running = sandbox["account"], sandbox["server"]
    task = activity("7", marker=TASK_MARKER)
    provider.create_task(account, task)
    with running.state.lock:  # marking it done: the activity goes, a chatter message stays
        tables = running.state.tables  # type: ignore[attr-defined]
        (done,) = tables["mail.activity"].values()
        tables["mail.activity"].clear()
        tables["mail.message"][5000] = {
            "id": 5000,
            "model": "res.partner",
            "res_id": 7,
            "body": f"<p>To-Do done: {done['summary']}</p>",
            "subject": False,
            "message_type": "notification",
            "subtype_xmlid": False,
            "date": "2026-11-17 10:00:00",
        }
    assert provider.find_write(account, "create_task", task) == "5000"


def test_sandbox_pull_reads_changes_oldest_first(sandbox: dict[str, Any], provider: OdooProvider) -> None:
    account, base = sandbox["account"], sandbox["base"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    first = provider.changed_since(account, "contact", start, None, 2)
    second = provider.changed_since(account, "contact", start, first.next, 2)
    assert [r.id for r in first.records + second.records] == ["7", "8", "9"]
    assert second.next is None
    changed = requests.post(
        f"{base}/_sandbox/records",
        json={"object": "contact", "id": "8", "fields": {"email": "j@b.example"}},
        timeout=5,
    ).json()
    since = provider.parse_time(changed["write_date"])
    latest = provider.changed_since(account, "contact", since, None, 10)
    assert [(r.id, r.email) for r in latest.records] == [("8", "j@b.example")]
    deals = provider.changed_since(account, "deal", start, None, 10)
    assert [r.id for r in deals.records] == ["24", "23", "21", "22"]  # the lost one too


FAULTS = [
    ("rate_limit", RateLimited, {"json2": "rate_limited", "xmlrpc": "rate_limited"}),
    ("server_error", Transient, {"json2": "http_500", "xmlrpc": "server_error"}),
    ("unavailable", Transient, {"json2": "http_503", "xmlrpc": "http_503"}),
    ("invalid_session", AuthRevoked, {"json2": "api_key_rejected", "xmlrpc": "api_key_rejected"}),
    ("missing_scope", MissingScope, {"json2": "missing_scope", "xmlrpc": "missing_scope"}),
    ("validation", Permanent, {"json2": "validation_error", "xmlrpc": "user_error"}),
    ("hang", Transient, {"json2": "timeout", "xmlrpc": "timeout"}),
]


@pytest.mark.parametrize(("kind", "error", "codes"), FAULTS, ids=[f[0] for f in FAULTS])
def test_sandbox_faults_map_to_the_closed_set(
    kind: str,
    error: type[ProviderError],
    codes: dict[str, str],
    sandbox: dict[str, Any],
    provider: OdooProvider,
    settings: Any,
) -> None:
    settings.CONDUIT_PROVIDER_TIMEOUT = (2, 0.5)
    inject(sandbox["base"], kind, retry_after=3, hang_seconds=2)
    with pytest.raises(error) as caught:
        provider.create_note(sandbox["account"], activity("7"))
    assert caught.value.code == codes[sandbox["api"]]
    if kind == "rate_limit":
        assert caught.value.retry_after == 3.0  # type: ignore[attr-defined]
    requests.delete(f"{sandbox['base']}/_sandbox/faults", timeout=5)


def test_sandbox_lost_reply_then_find_write(
    sandbox: dict[str, Any], provider: OdooProvider, settings: Any
) -> None:
    settings.CONDUIT_PROVIDER_TIMEOUT = (2, 0.5)
    inject(sandbox["base"], "commit_then_hang", hang_seconds=2)
    task = activity("7", marker=TASK_MARKER)
    with pytest.raises(Transient) as caught:
        provider.create_task(sandbox["account"], task)
    assert caught.value.code == "timeout"
    found = provider.find_write(sandbox["account"], "create_task", task)
    assert found == str(state(sandbox["base"])["activities"][0]["id"])


def test_sandbox_revoked_key_is_auth_revoked(sandbox: dict[str, Any], provider: OdooProvider) -> None:
    base = sandbox["base"]
    assert (
        requests.post(f"{base}/_sandbox/revoke", json={"api_key": SEEDED_API_KEY}, timeout=5).status_code
        == 204
    )
    with pytest.raises(AuthRevoked) as caught:
        provider.find_contact(sandbox["account"], MAYA)
    assert caught.value.code == "api_key_rejected"
    with pytest.raises(AuthRevoked) as caught:
        provider.verify_credentials(
            base=base, database=DATABASE, login=LOGIN, api_key=SEEDED_API_KEY, context=CallContext()
        )
    assert caught.value.code == {"json2": "api_key_rejected", "xmlrpc": "invalid_credentials"}[sandbox["api"]]


def test_sandbox_unknown_database(sandbox: dict[str, Any], provider: OdooProvider) -> None:
    with pytest.raises(Permanent) as caught:
        provider.verify_credentials(
            base=sandbox["base"], database="nope", login=LOGIN, api_key=SEEDED_API_KEY, context=CallContext()
        )
    assert (caught.value.code, caught.value.http_status) == {
        "json2": ("not_found", 404),
        "xmlrpc": ("unknown_database", None),
    }[sandbox["api"]]


def test_sandbox_without_the_crm_app(sandbox: dict[str, Any], provider: OdooProvider) -> None:
    running = sandbox["server"]
    with running.state.lock:
        del running.state.tables["crm.lead"]  # type: ignore[attr-defined]
    assert provider.find_open_deal(sandbox["account"], "7") is None


def test_sandbox_rate_limit(sandbox: dict[str, Any], provider: OdooProvider) -> None:
    requests.post(f"{sandbox['base']}/_sandbox/config", json={"requests_per_second": 0}, timeout=5)
    with pytest.raises(RateLimited) as caught:
        provider.find_contact(sandbox["account"], MAYA)
    assert caught.value.retry_after == 1.0
    assert state(sandbox["base"])["requests"]["rate_limited"] == 1


def test_sandbox_odoo_22_answers_only_json2(
    odoo_server: RunningSandbox, provider: OdooProvider, settings: Any
) -> None:
    sandbox_settings(settings)
    reset(odoo_server.base_url, major_version=22)
    account = provider.verify_credentials(
        base=odoo_server.base_url,
        database=DATABASE,
        login=LOGIN,
        api_key=SEEDED_API_KEY,
        context=CallContext(),
    )
    assert (account.details["api"], account.details["version"]) == ("json2", "22.0")
    answer = requests.post(f"{odoo_server.base_url}/xmlrpc/2/common", data=b"", timeout=5)
    assert answer.status_code == 404


def test_finding_a_note_that_reached_only_the_partner_posts_the_opportunitys_copy(
    sandbox: dict[str, Any], provider: OdooProvider
) -> None:
    if sandbox["api"] != "json2":
        pytest.skip("the sandbox's faults match a path; XML-RPC names the model only in its body")
    account, base = sandbox["account"], sandbox["base"]
    note = activity("7", "21")
    inject(base, "server_error", path_contains="crm.lead/message_post")
    with pytest.raises(ProviderError):
        provider.write(account, "create_note", note)
    assert [m["model"] for m in state(base)["messages"]] == ["res.partner"]
    found = provider.find_write(account, "create_note", note)
    assert sorted((m["model"], m["res_id"]) for m in state(base)["messages"]) == [
        ("crm.lead", 21),
        ("res.partner", 7),
    ]
    assert found == str(state(base)["messages"][0]["id"])
    assert provider.find_write(account, "create_note", note) == found  # nothing posted twice
    assert len(state(base)["messages"]) == 2
