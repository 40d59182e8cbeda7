"""The Odoo sandbox itself (integrations/sandbox/odoo.py, odoo_data.py): its two protocols, its
small ORM, its control endpoints and its overview page, driven the way a raw client would."""

from __future__ import annotations

import time
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from integrations.sandbox.odoo_data import DATABASE, LOGIN, SEEDED_API_KEY, UID, like_match
from integrations.sandbox.server import RunningSandbox
from tests.odoo_helpers import MAYA, inject, reset, start_odoo, state

HEADERS = {"Authorization": f"bearer {SEEDED_API_KEY}", "X-Odoo-Database": DATABASE}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningSandbox]:
    running = start_odoo()
    yield running
    running.stop()


@pytest.fixture
def odoo(server: RunningSandbox) -> str:
    reset(server.base_url)
    return server.base_url


def call(base: str, model: str, method: str, **body: Any) -> requests.Response:
    return requests.post(f"{base}/json/2/{model}/{method}", json=body, headers=HEADERS, timeout=5)


def execute_kw(base: str, *args: Any, key: str = SEEDED_API_KEY, database: str = DATABASE) -> Any:
    proxy = xmlrpc.client.ServerProxy(f"{base}/xmlrpc/2/object")
    return proxy.execute_kw(database, UID, key, *args)


def search(base: str, model: str, domain: list[Any], **kw: Any) -> list[dict[str, Any]]:
    answer = call(base, model, "search_read", domain=domain, **kw)
    assert answer.status_code == 200, answer.text
    return list(answer.json())


# --- JSON-2 -----------------------------------------------------------------------------------


def test_json2_reads_with_domains_orders_and_many2one_pairs(odoo: str) -> None:
    leads = search(
        odoo, "crm.lead", [["partner_id", "in", [7, 8]]], fields=["name", "partner_id", "stage_id"]
    )
    assert [lead["id"] for lead in leads] == [21, 22, 23]
    assert leads[0]["partner_id"] == [7, "Maya Lopez"]
    assert leads[1]["stage_id"] == [4, "Won"]
    ids = [
        r["id"] for r in search(odoo, "crm.lead", [], order="write_date desc", context={"active_test": False})
    ]
    assert ids == [22, 21, 23, 24]
    assert [r["id"] for r in search(odoo, "crm.lead", [["active", "=", False]], fields=["id"])] == [24]
    every = search(odoo, "res.partner", ["|", ["id", "=", 7], "!", ["id", "<=", 8]], fields=["id"])
    assert [r["id"] for r in every] == [7, 9]
    assert [r["id"] for r in search(odoo, "res.partner", [["id", "not in", [7]], ["id", "<", 9]])] == [8]
    assert search(odoo, "res.partner", [["id", ">", 7]], limit=1, offset=1, fields=["email"]) == [
        {"id": 9, "email": "lee@northwind.example"}
    ]
    assert search(odoo, "res.partner", [["write_date", ">", False]]) == []
    assert (
        search(odoo, "crm.lead", [["partner_id.name", "ilike", "lee"]], context={"active_test": False})[0][
            "id"
        ]
        == 24
    )
    assert search(odoo, "crm.lead", [["partner_id", "!=", False], ["stage_id.name", "=", "Nope"]]) == []
    everything = search(odoo, "res.partner", [["id", "=", 7]])[0]
    assert set(everything) >= {"id", "name", "email", "active", "write_date"}


def test_json2_answers_context_get_and_records_as_ids(odoo: str) -> None:
    assert call(odoo, "res.users", "context_get").json()["uid"] == UID
    posted = call(odoo, "res.partner", "message_post", ids=[7], body="<b>hi</b>", message_type="comment")
    assert posted.status_code == 200 and isinstance(posted.json()[0], int)
    assert state(odoo)["messages"][0]["body"] == "<p>&lt;b&gt;hi&lt;/b&gt;</p>"


@pytest.mark.parametrize(
    ("model", "method", "body", "status", "name"),
    [
        ("x.nope", "search_read", {}, 404, "werkzeug.exceptions.NotFound"),
        ("res.partner", "unlink", {}, 404, "werkzeug.exceptions.NotFound"),
        ("res.partner", "search_read", {"surprise": 1}, 422, "odoo.exceptions.ValidationError"),
        ("res.partner", "search_read", {"domain": [["secret", "=", 1]]}, 500, "builtins.ValueError"),
        ("res.partner", "search_read", {"domain": [["id", "~", 1]]}, 500, "builtins.ValueError"),
        ("res.partner", "search_read", {"domain": [["id", "in", 7]]}, 500, "builtins.ValueError"),
        ("res.partner", "search_read", {"domain": ["|", ["id", "=", 7]]}, 500, "builtins.ValueError"),
        ("res.partner", "search_read", {"domain": [["id", "="]]}, 500, "builtins.ValueError"),
        ("res.partner", "message_post", {"ids": [7, 8]}, 500, "builtins.ValueError"),
        ("res.partner", "message_post", {"ids": [99]}, 404, "odoo.exceptions.MissingError"),
        (
            "crm.lead",
            "message_post",
            {"ids": [21], "message_type": "sms"},
            422,
            "odoo.exceptions.ValidationError",
        ),
        (
            "res.partner",
            "message_post",
            {"ids": [7], "subtype_xmlid": "x.y"},
            422,
            "odoo.exceptions.ValidationError",
        ),
    ],
)
def test_json2_errors_have_odoo_statuses_and_names(
    odoo: str, model: str, method: str, body: dict[str, Any], status: int, name: str
) -> None:
    answer = call(odoo, model, method, **body)
    assert answer.status_code == status, answer.text
    assert answer.json()["name"] == name


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ({"res_model_id": 85, "res_id": 7, "date_deadline": "2026-11-20"}, 200),
        ({"res_model_id": 85, "res_id": 7, "date_deadline": "soon"}, 422),
        ({"res_model_id": 281, "res_id": 99, "date_deadline": "2026-11-20"}, 422),
        ({"res_model_id": 95, "res_id": 7, "date_deadline": "2026-11-20"}, 422),
        ({"res_model_id": 85, "res_id": 7, "date_deadline": "2026-11-20", "activity_type_id": 77}, 422),
        ({"res_model_id": 85, "res_id": 7, "bogus": 1}, 500),
    ],
)
def test_json2_activity_create_validates_like_odoo(odoo: str, values: dict[str, Any], status: int) -> None:
    answer = call(odoo, "mail.activity", "create", vals_list=[values])
    assert answer.status_code == status, answer.text
    if status == 200:
        (created,) = state(odoo)["activities"]
        assert answer.json() == [created["id"]]
        assert (created["activity_type_id"], created["res_model"]) == (4, "res.partner")


def test_json2_refuses_bad_keys_databases_paths_and_bodies(odoo: str, server: RunningSandbox) -> None:
    url = f"{odoo}/json/2/res.users/context_get"
    assert requests.post(url, json={}, timeout=5).status_code == 401
    wrong = requests.post(url, json={}, headers={"Authorization": "Basic xyz"}, timeout=5)
    assert (wrong.status_code, wrong.json()["message"]) == (401, "Invalid apikey")
    other_db = requests.post(url, json={}, headers={**HEADERS, "X-Odoo-Database": "other"}, timeout=5)
    assert other_db.status_code == 404
    no_db_header = requests.post(url, json={}, headers={"Authorization": HEADERS["Authorization"]}, timeout=5)
    assert no_db_header.status_code == 200  # one database: the header is optional
    assert requests.post(f"{odoo}/json/2/res.users", json={}, headers=HEADERS, timeout=5).status_code == 404
    for body in (b"[1, 2]", b"{not json"):
        bad = requests.post(
            url, data=body, headers={**HEADERS, "Content-Type": "application/json"}, timeout=5
        )
        assert bad.status_code == 400
    assert requests.post(url, headers=HEADERS, timeout=5).status_code == 200  # an empty body is {}
    assert requests.get(url, headers=HEADERS, timeout=5).status_code == 404
    assert requests.get(f"{odoo}/web/login", timeout=5).status_code == 404


def test_an_older_version_has_no_json2_and_no_web_version(odoo: str) -> None:
    reset(odoo, major_version=16)
    assert call(odoo, "res.users", "context_get").status_code == 404
    assert requests.get(f"{odoo}/web/version", timeout=5).status_code == 404
    reset(odoo)
    assert requests.get(f"{odoo}/web/version", timeout=5).json() == {
        "version_info": [19, 0, 0, "final", 0, ""],
        "version": "19.0",
    }


# --- XML-RPC ----------------------------------------------------------------------------------


def test_xmlrpc_common_and_object(odoo: str) -> None:
    common = xmlrpc.client.ServerProxy(f"{odoo}/xmlrpc/2/common")
    assert common.version()["server_version_info"] == [19, 0, 0, "final", 0, ""]
    assert common.authenticate(DATABASE, LOGIN, SEEDED_API_KEY, {}) == UID
    assert common.login(DATABASE, LOGIN, "wrong") is False
    found = execute_kw(
        odoo, "res.partner", "search_read", [[["email", "=ilike", MAYA.upper()]]], {"fields": ["id"]}
    )
    assert found == [{"id": 7}]
    positional = execute_kw(odoo, "res.partner", "search_read", [[], ["email"], 0, 1, "id desc"])
    assert positional == [{"id": 9, "email": "lee@northwind.example"}]
    assert isinstance(execute_kw(odoo, "crm.lead", "message_post", [[21]], {"body": "x"}), int)
    single = execute_kw(
        odoo, "mail.activity", "create", [{"res_model_id": 85, "res_id": 8, "date_deadline": "2026-12-01"}]
    )
    assert isinstance(single, int)


@pytest.mark.parametrize(
    ("args", "kw", "code", "text"),
    [
        (("res.partner", "search_read", [[]]), {"key": "wrong"}, 3, "Access Denied"),
        (("res.partner", "search_read", [[]]), {"database": "other"}, 1, 'database "other" does not exist'),
        (("x.nope", "search_read", [[]]), {}, 2, "Object x.nope doesn't exist"),
        (("res.partner", "unlink", [[7]]), {}, 1, "does not exist on the model"),
        (("res.partner", "message_post", [[99]]), {}, 2, "Record does not exist"),
        (("res.partner", "search_read", [[["id", "~", 1]]]), {}, 1, "Invalid operator"),
    ],
)
def test_xmlrpc_faults_carry_odoo_codes(
    odoo: str, args: tuple[Any, ...], kw: dict[str, str], code: int, text: str
) -> None:
    with pytest.raises(xmlrpc.client.Fault) as caught:
        execute_kw(odoo, *args, **kw)
    assert caught.value.faultCode == code
    assert text in caught.value.faultString


def test_xmlrpc_broken_requests_are_fault_1(odoo: str) -> None:
    broken = requests.post(f"{odoo}/xmlrpc/2/object", data=b"<methodCall", timeout=5)
    assert broken.status_code == 200
    with pytest.raises(xmlrpc.client.Fault) as caught:
        xmlrpc.client.loads(broken.content)
    assert caught.value.faultCode == 1
    common = xmlrpc.client.ServerProxy(f"{odoo}/xmlrpc/2/common")
    for attempt in (lambda: common.about(), lambda: common.authenticate(DATABASE)):
        with pytest.raises(xmlrpc.client.Fault) as caught:
            attempt()
        assert caught.value.faultCode == 1
    reset(odoo, major_version=22)
    assert requests.post(f"{odoo}/xmlrpc/2/common", data=b"", timeout=5).status_code == 404


def test_faults_answer_in_the_protocol_of_the_call(odoo: str) -> None:
    inject(odoo, "invalid_session", path_contains="/xmlrpc/")
    with pytest.raises(xmlrpc.client.Fault) as caught:
        execute_kw(odoo, "res.partner", "search_read", [[]])
    assert caught.value.faultCode == 3
    inject(odoo, "missing_scope", path_contains="/json/2/")
    assert call(odoo, "res.partner", "search_read").status_code == 403
    inject(odoo, "unavailable")
    assert call(odoo, "res.partner", "search_read").status_code == 503
    inject(odoo, "hang", hang_seconds=0)
    assert call(odoo, "res.partner", "search_read").status_code == 504
    # a commit_then_hang fault waits for a create; a broken XML-RPC body is no create
    inject(odoo, "commit_then_hang", hang_seconds=0)
    assert requests.post(f"{odoo}/xmlrpc/2/object", data=b"junk", timeout=5).status_code == 200
    assert call(odoo, "res.partner", "search_read").status_code == 200
    assert state(odoo)["faults"][0]["kind"] == "commit_then_hang"


# --- control endpoints, records and the overview page ------------------------------------------


def test_minted_and_revoked_keys(odoo: str) -> None:
    minted = requests.post(f"{odoo}/_sandbox/tokens", json={}, timeout=5).json()
    assert (minted["login"], minted["database"], minted["uid"]) == (LOGIN, DATABASE, UID)
    assert len(minted["api_key"]) == 40
    headers = {"Authorization": f"Bearer {minted['api_key']}"}
    url = f"{odoo}/json/2/res.users/context_get"
    assert requests.post(url, json={}, headers=headers, timeout=5).status_code == 200
    assert (
        requests.post(f"{odoo}/_sandbox/revoke", json={"api_key": minted["api_key"]}, timeout=5).status_code
        == 204
    )
    assert requests.post(url, json={}, headers=headers, timeout=5).status_code == 401
    assert requests.post(f"{odoo}/_sandbox/revoke", json=["x"], timeout=5).status_code == 400
    assert requests.post(f"{odoo}/_sandbox/revoke", data=b"{", timeout=5).status_code == 400
    assert state(odoo)["api_keys"] == 1


@pytest.mark.parametrize("config", [{"major_version": 7}, {"major_version": 31}, {"nope": 1}])
def test_config_is_checked(odoo: str, config: dict[str, int]) -> None:
    assert requests.post(f"{odoo}/_sandbox/config", json=config, timeout=5).status_code == 400


def test_records_change_at_the_crm_bump_write_date(odoo: str, server: RunningSandbox) -> None:
    server.state.clock = lambda: 1_800_000_000.0  # type: ignore[method-assign]
    try:
        changed = requests.post(
            f"{odoo}/_sandbox/records",
            json={"object": "contact", "id": "9", "fields": {"name": "Lee P."}},
            timeout=5,
        ).json()
        assert (changed["name"], changed["write_date"]) == ("Lee P.", "2027-01-15 08:00:00")
        new_deal = requests.post(
            f"{odoo}/_sandbox/records",
            json={"object": "deal", "fields": {"name": "New"}, "contact": "9"},
            timeout=5,
        ).json()
        assert (new_deal["partner_id"], new_deal["type"], new_deal["active"]) == (9, "opportunity", True)
        new_contact = requests.post(
            f"{odoo}/_sandbox/records",
            json={"object": "contact", "id": "55", "fields": {"email": "n@x.example"}},
            timeout=5,
        ).json()
        assert (new_contact["id"], new_contact["email"]) == (55, "n@x.example")
    finally:
        server.state.clock = time.time  # type: ignore[method-assign]
    for bad in ({"object": "invoice"}, {"object": "contact", "fields": {"salary": 1}}):
        assert requests.post(f"{odoo}/_sandbox/records", json=bad, timeout=5).status_code == 400


def test_the_overview_page_shows_the_database(odoo: str) -> None:
    call(odoo, "res.partner", "message_post", ids=[7], body="a note", subtype_xmlid="mail.mt_note")
    call(
        odoo,
        "mail.activity",
        "create",
        vals_list=[{"res_model_id": 85, "res_id": 7, "date_deadline": "2026-12-01"}],
    )
    page = requests.get(f"{odoo}/", timeout=5)
    assert page.status_code == 200
    assert "<title>Odoo sandbox</title>" in page.text
    for text in (
        "19.0 (JSON-2 and XML-RPC)",
        DATABASE,
        "Maya Lopez",
        "Acme Logistics - Annual plan",
        "a note",
        "To-Dos",
    ):
        assert text in page.text
    reset(odoo, major_version=17)
    assert "17.0 (XML-RPC only)" in requests.get(f"{odoo}/", timeout=5).text
    reset(odoo, major_version=22)
    assert "22.0 (JSON-2 only)" in requests.get(f"{odoo}/", timeout=5).text


def test_like_matching() -> None:
    assert like_match("a\\_b%", "A_bcd")
    assert not like_match("a\\_b", "axb")
    assert like_match("a_b", "axb")
    assert like_match("a\\", "a")  # a trailing backslash escapes nothing
