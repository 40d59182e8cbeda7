"""The HubSpot sandbox's extra portals (bench/multihost.py): tokens minted with a hub_id get a
ten-second window of their own, and the state lists each portal's requests, 429s and peak."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from integrations.sandbox.server import RunningSandbox, start_sandbox


@pytest.fixture
def hubspot() -> Iterator[RunningSandbox]:
    sandbox = start_sandbox("hubspot", port=0)
    yield sandbox
    sandbox.stop()


def call(sandbox: RunningSandbox, token: str) -> requests.Response:
    return requests.get(
        f"{sandbox.base_url}/account-info/v3/details",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


def test_each_portal_has_its_own_window_and_counts(hubspot: RunningSandbox) -> None:
    base = hubspot.base_url
    requests.post(f"{base}/_sandbox/config", json={"ten_second_limit": 3}, timeout=5).raise_for_status()
    first = requests.post(f"{base}/_sandbox/tokens", json={"hub_id": 7001}, timeout=5).json()
    second = requests.post(f"{base}/_sandbox/tokens", json={"hub_id": 7002, "scopes": ["oauth"]}, timeout=5)
    default = requests.post(f"{base}/_sandbox/tokens", json={}, timeout=5).json()
    assert first["hub_id"] == 7001 and second.json()["hub_id"] == 7002 and default["hub_id"] == 4400001

    answers = [call(hubspot, first["access_token"]).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    assert call(hubspot, default["access_token"]).status_code == 200  # the seeded portal's window is apart
    state = requests.get(f"{base}/_sandbox/state", timeout=5).json()
    assert state["portals"]["7001"] == {"requests": 4, "rate_limited": 1, "peak_ten_seconds": 3}
    assert state["portals"]["7002"] == {"requests": 0, "rate_limited": 0, "peak_ten_seconds": 0}


def test_a_refreshed_token_stays_on_its_portal(hubspot: RunningSandbox) -> None:
    from django.conf import settings

    base = hubspot.base_url
    minted = requests.post(f"{base}/_sandbox/tokens", json={"hub_id": 7003}, timeout=5).json()
    refreshed = requests.post(
        f"{base}/oauth/v1/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": minted["refresh_token"],
            "client_id": settings.HUBSPOT_CLIENT_ID,
            "client_secret": settings.HUBSPOT_CLIENT_SECRET,
        },
        timeout=5,
    ).json()
    assert call(hubspot, refreshed["access_token"]).status_code == 200
    state = requests.get(f"{base}/_sandbox/state", timeout=5).json()
    assert state["portals"]["7003"]["requests"] == 1


@pytest.mark.parametrize("hub_id", [0, -1, "7001", True, 1.5])
def test_a_bad_hub_id_is_refused(hubspot: RunningSandbox, hub_id: object) -> None:
    answer = requests.post(f"{hubspot.base_url}/_sandbox/tokens", json={"hub_id": hub_id}, timeout=5)
    assert answer.status_code == 400 and answer.json() == {"error": "hub_id must be a positive integer"}


def test_a_portal_mint_checks_the_rest_of_the_body(hubspot: RunningSandbox) -> None:
    base = hubspot.base_url
    bad = requests.post(f"{base}/_sandbox/tokens", json={"hub_id": 7004, "scopes": "x"}, timeout=5)
    assert bad.status_code == 400 and "scopes" in bad.json()["error"]
    not_json = requests.post(f"{base}/_sandbox/tokens", data=b"{", timeout=5)
    assert not_json.status_code == 400 and not_json.json() == {"error": "body must be JSON"}
    assert "portals" not in requests.get(f"{base}/_sandbox/state", timeout=5).json()
