"""Shared pieces for the provider tests: accounts, activities, metric reads, secret checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from integrations.providers.base import Account, Activity
from integrations.providers.metrics import render_metrics
from integrations.providers.synclog import CallContext

HS_TOKEN = "hs-access-token-0123456789abcdef"
SF_TOKEN = "00Dsf!AQ4AQFakeSessionToken0123456789"
MARKER = "cdw0123456789abcdef01234567"


def hubspot_account(api_token: str = HS_TOKEN, key: str = "4400001", **ctx: Any) -> Account:
    return Account("hubspot", api_token, key, context=CallContext(**ctx))


def salesforce_account(
    instance_url: str = "https://acme.my.salesforce.com",
    token: str = SF_TOKEN,
    key: str = "00D5g000004SbxAEAS",
    **ctx: Any,
) -> Account:
    return Account("salesforce", token, key, instance_url=instance_url, context=CallContext(**ctx))


def activity(contact_id: str, deal_id: str | None = None, **kw: Any) -> Activity:
    return Activity(
        subject=kw.pop("subject", "Re: pricing for the annual plan"),
        text=kw.pop(
            "text",
            "Email from maya.lopez@acme-logistics.example to sam@demo.conduit.local, inbound, "
            "2026-11-16 09:12 UTC. Open in Conduit: https://conduit.example/messages/12/ "
            f"[{MARKER}]",
        ),
        occurred_at=kw.pop("occurred_at", datetime(2026, 11, 16, 9, 12, tzinfo=UTC)),
        contact_id=contact_id,
        deal_id=deal_id,
        marker=kw.pop("marker", MARKER),
        **kw,
    )


def metric_value(name: str, **labels: str) -> float:
    """Sum of the samples matching `labels`, parsed from the /metrics exposition with
    prometheus' own text parser."""
    total = 0.0
    for family in text_string_to_metric_families(render_metrics().decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += float(sample.value)
    return total
