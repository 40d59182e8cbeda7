"""The HubSpot sandbox sends signed webhook deliveries, as HubSpot does (v3 signature).

`POST /_sandbox/webhooks` {"url": ..., "events": [{"subscriptionType": "contact.propertyChange",
"objectId": 101, ...}], "tamper": false, "age_seconds": 0, "times": 1} fills in what HubSpot adds
(eventId, portalId, appId, occurredAt, attemptNumber), signs the body with the app's client secret
and posts it to `url`; it answers with what that server said. The signer is written here from
HubSpot's description, apart from Conduit's verifier, so a test that crosses both checks one
against the other."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from typing import Any

import requests

from integrations.sandbox.common import Reply, Request, json_reply, setting
from integrations.sandbox.hubspot_crm import APP_ID, HUB_ID

_event_ids = itertools.count(int(time.time()) * 1000)
FILLED = ("eventId", "subscriptionId", "portalId", "appId", "occurredAt", "attemptNumber", "changeSource")


def hubspot_event(spec: dict[str, Any], *, now_ms: int) -> dict[str, Any]:
    """A delivery item: the spec's fields over what HubSpot fills in."""
    return {
        "eventId": next(_event_ids),
        "subscriptionId": 5500001,
        "portalId": HUB_ID,
        "appId": APP_ID,
        "occurredAt": now_ms,
        "attemptNumber": 0,
        "changeSource": "CRM",
        **spec,
    }


def signature_v3(secret: str, method: str, url: str, body: bytes, timestamp: str) -> str:
    message = f"{method}{url}".encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def signed_delivery(
    url: str, events: list[dict[str, Any]], *, secret: str, now_ms: int, age_seconds: int = 0
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of one delivery as HubSpot would send it."""
    body = json.dumps(events).encode()
    timestamp = str(now_ms - age_seconds * 1000)
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": signature_v3(secret, "POST", url, body, timestamp),
        "X-HubSpot-Request-Timestamp": timestamp,
    }
    return body, headers


def _options(data: Any) -> tuple[str, list[dict[str, Any]], bool, int, int]:
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object with url and events")
    url, specs = data.get("url"), data.get("events")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError("url must be an http(s) URL")
    if not isinstance(specs, list) or not specs or not all(isinstance(s, dict) for s in specs):
        raise ValueError("events must be a non-empty list of objects")
    age, times = data.get("age_seconds", 0), data.get("times", 1)
    if isinstance(age, bool) or not isinstance(age, int):
        raise ValueError("age_seconds must be an integer")
    if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= 5:
        raise ValueError("times must be an integer from 1 to 5")
    return url, specs, bool(data.get("tamper")), age, times


def send(req: Request, clock: Any = time.time) -> Reply:
    """Serve POST /_sandbox/webhooks (outside the state lock: it waits on another server)."""
    try:
        url, specs, tamper, age, times = _options(req.json())
    except ValueError as exc:
        return json_reply(400, {"error": str(exc)})
    now_ms = int(clock() * 1000)
    events = [hubspot_event(spec, now_ms=now_ms) for spec in specs]
    body, headers = signed_delivery(
        url, events, secret=setting("HUBSPOT_CLIENT_SECRET"), now_ms=now_ms, age_seconds=age
    )
    if tamper:
        headers["X-HubSpot-Signature-v3"] = signature_v3("not-the-secret", "POST", url, body, str(now_ms))
    replies = []
    for _ in range(times):
        try:
            resp = requests.post(url, data=body, headers=headers, timeout=10)
        except requests.RequestException as exc:
            return json_reply(502, {"error": f"could not deliver: {type(exc).__name__}", "events": events})
        replies.append({"status": resp.status_code, "body": resp.text[:2000]})
    return json_reply(200, {"events": events, "replies": replies})
