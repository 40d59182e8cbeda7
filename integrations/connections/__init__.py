"""Connections: how a workspace gets, keeps and loses a grant to a provider.

Owns the flows and state of crm_connections, oauth_states, pending_installs,
workspace_integrations, crm_sync_pauses and the connection_health rows: OAuth (oauth.py),
typed credentials checked before they are saved (credentials.py: Odoo's API key), install-first
claims (claims.py), connect / disconnect (lifecycle.py), valid tokens and refresh
(tokens.py), the per-workspace tenant switch (tenant_switch.py), the kill switches (pauses.py)
the single writer of health verdicts (health_rows.py) and the
description of a waiting install for the sign-in page (install_notice.py). May use providers/ and the core;
nothing above it (health, webhooks, cursors, api, pages).
"""
