from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.utils import timezone

from conduit.health import check_beat
from conduit.models import Heartbeat
from conduit.tasks import heartbeat


def test_healthz_ok_when_database_broker_and_beat_are_up(db: None) -> None:
    heartbeat()
    response = Client().get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["broker"]["ok"] and body["beat"]["ok"]
    assert body["beat"]["age_seconds"] < 5


def test_healthz_503_when_beat_never_ran(db: None) -> None:
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["beat"] == {"ok": False, "error": "no heartbeat recorded yet", "age_seconds": None}


def test_beat_is_down_when_heartbeat_is_stale(db: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CONDUIT_BEAT_STALE_SECONDS = 60
    Heartbeat.objects.create(name="beat", beat_at=timezone.now() - timedelta(seconds=61))
    assert check_beat()["ok"] is False
    assert Client().get("/healthz").status_code == 503


def test_healthz_503_when_broker_is_unreachable(db: None, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from conduit.celery import app

    heartbeat()
    real = app.connection_for_write
    monkeypatch.setattr(app, "connection_for_write", lambda: real(url="redis://127.0.0.1:1/0"))
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False


def test_healthz_503_when_database_fails(db: None, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from conduit import health

    class Broken:
        def cursor(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("db down")

    monkeypatch.setattr(health, "connection", Broken())
    monkeypatch.setattr(
        health.Heartbeat.objects, "filter", lambda **kw: (_ for _ in ()).throw(RuntimeError("db"))
    )
    response = Client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == {"ok": False, "error": "RuntimeError"}
    assert body["beat"]["ok"] is False
