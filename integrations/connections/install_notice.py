"""The sign-in and sign-up pages' line about an install waiting to be claimed (the core's
conduit.install_notice port; registered in IntegrationsConfig.ready()).

An anonymous visitor who follows a claim link lands on the sign-in page with
`next=/claim-install?crm=...&install_id=...`. The page names the CRM and the account only for an
install that is pending and unexpired and still holds its grant (the claim's own rule,
claims.check_claimable); an unknown, claimed or expired id gets the neutral notice, which says
nothing about it.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from conduit.install_notice import InstallNotice
from conduit.tenancy import system_scope
from integrations.connections.claims import ClaimRefused, check_claimable
from integrations.models import PendingInstall
from integrations.providers import PROVIDERS

ACCOUNT_NOUNS = {"hubspot": "portal", "salesforce": "org", "zoho": "org", "odoo": "database"}
INSTALL_ID_MAX = 64


class PendingInstallDescriber:
    def describe(self, next_path: str) -> InstallNotice | None:
        try:
            claim_path = reverse("claim-install")
        except NoReverseMatch:
            return None
        parts = urlsplit(next_path)
        if parts.path != claim_path:
            return None
        query = parse_qs(parts.query)
        crm = (query.get("crm") or [""])[0]
        install_id = (query.get("install_id") or [""])[0]
        return InstallNotice(describe_pending_install(crm, install_id))


def describe_pending_install(crm: str, install_id: str) -> str:
    """ "HubSpot portal 4400001 (acme.hubspot.com)" for a claimable install, else ''."""
    if crm not in PROVIDERS or not install_id or len(install_id) > INSTALL_ID_MAX or "\x00" in install_id:
        return ""
    now = timezone.now()
    with system_scope():
        pending = (
            PendingInstall.objects.select_related("connection")
            .filter(install_id=install_id, crm=crm, status=PendingInstall.Status.PENDING, expires_at__gt=now)
            .first()
        )
        if pending is None:
            return ""
        try:
            check_claimable(pending, now)
        except ClaimRefused:
            return ""
    key = pending.external_account_key
    name = str(pending.metadata.get("account_name") or "")
    account = f"{pending.get_crm_display()} {ACCOUNT_NOUNS.get(crm, 'account')} {key}"
    return f"{account} ({name})" if name and name != key else account
