"""/metrics: multiprocess exposition behind a bearer token or a staff login."""

from __future__ import annotations

import multiprocessing

import pytest
from django.contrib.auth.models import User
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from integrations.providers import metrics
from tests.provider_helpers import metric_value

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def metrics_token(settings) -> str:  # type: ignore[no-untyped-def]
    settings.CONDUIT_METRICS_TOKEN = TOKEN
    return TOKEN


def families(body: bytes) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


@pytest.mark.django_db
def test_metrics_with_the_bearer_token_parse_and_name_the_playbook_metrics(metrics_token: str) -> None:
    metrics.SYNC_ERRORS.labels(provider="hubspot", operation="create_note", error_code="http_500").inc()
    metrics.RATE_LIMIT_HITS.labels(provider="hubspot").inc()
    metrics.SYNC_DURATION.labels(provider="hubspot", operation="create_note").observe(0.3)
    metrics.set_connection_status("hubspot", 7, ok=True)
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    found = families(response.content)
    for name in (
        "crm_sync_errors",
        "crm_rate_limit_hits",
        "crm_sync_duration_seconds",
        "crm_connection_status",
    ):
        assert name in found, name
    assert metric_value("crm_connection_status", provider="hubspot", workspace_id="7") == 1.0


@pytest.mark.django_db
def test_counters_add_up_across_processes(metrics_token: str) -> None:
    """A forked process (a Celery worker, a gunicorn worker) adds to the same exposition."""
    labels = {"provider": "salesforce", "operation": "probe", "error_code": "mp_test"}
    before = metric_value("crm_sync_errors_total", **labels)

    def bump() -> None:
        metrics.SYNC_ERRORS.labels(**labels).inc(3)

    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=bump)
    child.start()
    child.join(timeout=20)
    metrics.SYNC_ERRORS.labels(**labels).inc()
    assert metric_value("crm_sync_errors_total", **labels) == before + 4


@pytest.mark.django_db
@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0000000000000", "Basic abc", f"Token {TOKEN}"])
def test_metrics_refuse_without_the_token(metrics_token: str, header: str | None) -> None:
    kwargs = {"HTTP_AUTHORIZATION": header} if header else {}
    response = Client().get("/metrics", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert b"crm_sync" not in response.content


@pytest.mark.django_db
def test_metrics_refuse_any_bearer_when_no_token_is_configured(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CONDUIT_METRICS_TOKEN = ""
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


@pytest.mark.django_db
def test_staff_login_sees_metrics_and_other_users_do_not(alice) -> None:  # type: ignore[no-untyped-def]
    assert alice.client().get("/metrics").status_code == 401
    staff = User.objects.create_user("ops@conduit.example", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "crm_sync_duration_seconds" in families(response.content)


@pytest.mark.django_db
def test_an_operator_token_reads_metrics_and_a_revoked_or_workspace_token_does_not(alice) -> None:  # type: ignore[no-untyped-def]
    from conduit.services import do_revoke_staff_token
    from conduit.tenancy import system_scope
    from tests.ops_helpers import make_staff, staff_token, workspace_token

    staff = make_staff()
    raw = staff_token(staff)
    answer = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert answer.status_code == 200
    assert "crm_sync_duration_seconds" in families(answer.content)
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {workspace_token(alice)}").status_code == 401
    with system_scope():
        token = staff.staff_tokens.get()
    do_revoke_staff_token(token, actor=staff)
    refused = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert refused.status_code == 401 and "operator token" in refused.json()["message"]
