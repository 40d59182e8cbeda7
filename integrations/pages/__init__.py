"""Server-rendered pages of integrations: the Integrations page (one card per CRM), connect,
disconnect, the OAuth callback, the install-first claim and Check now. Views parse the request,
call one service and render a card or redirect. A top room: may use every room below it; the
write ledger's counts and previews come through integrations.ledger.
"""
