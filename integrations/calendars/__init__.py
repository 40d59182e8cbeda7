"""Calendars: members' own Google and Microsoft 365 calendars (runbook 004).

Owns the calendar side of integrations: the kill switches and allowlists (`flags.py`), the
`calendar_sync` log lines (`logs.py`), a member's grant, its tokens and their refresh under the
connection lock (`oauth.py`, `tokens.py`), the incremental sync of one connection (`sync.py`),
the job runner that picks due connections and runs them with bounded concurrency (`jobs.py`),
push channels and subscriptions with their notifications and renewals (`push.py`), and the
processing of stored events into customer links and planned meeting writes (`processing.py`,
through the integrations.ledger port). Uses connections and providers below it; the pages and
the API above it call in here.
"""
