"""Server-rendered pages of integrations: the Integrations page (one card per CRM, its plain
values in cards.py; the Pause sync card and its form in sync_pause.py, where a workspace admin
pauses and resumes the workspace), connect, disconnect, the OAuth callback, the install-first
claim, Check now, and the credentials form of a CRM connected with an API key (Odoo). Views parse
the request, call one service and render a card or redirect. A top room: may use every room
below it; the write ledger's counts and previews come through integrations.ledger.
"""
