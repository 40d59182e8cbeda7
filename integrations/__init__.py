"""Integrations: everything between a workspace and the external systems it connects.

One Django app (one models.py, one migrations folder) in rooms, each a sub-package whose
docstring says what it owns and what it may use. Higher rooms use lower ones, never the
reverse (enforced by the import-linter contracts in pyproject.toml):

    api/  pages/                      the REST endpoints and the server-rendered pages
    health/  webhooks/  cursors/      hourly checks; the webhook inbox; incremental pulls
    connections/                      OAuth, claims, tokens, connect/disconnect, switches, pauses
    providers/                        one module per provider on one base, and the transport
    sandbox/                          local stand-ins of the providers (run_sandbox, tests, bench)

Beside the rooms: models.py (every integrations table), admin.py, tasks.py (registers the
rooms' Celery tasks) and ledger.py (the port through which integrations talks to the write
ledger that reconcile owns). Integrations imports conduit, never reconcile or retention.
"""
