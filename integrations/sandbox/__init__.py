"""Local stand-ins for the HubSpot, Salesforce, Zoho CRM and Odoo APIs (OAuth or API keys, rate
limits, faults, CRM writes, signed webhooks) and for Google Calendar and Microsoft Graph (members'
calendars, sync tokens / delta links, push channels), served by stdlib threads for end-to-end tests,
benches and `manage.py run_sandbox`. Imported only by that command, the tests and bench/; it imports no
other room, so it stays an independent peer of the real provider.
"""
