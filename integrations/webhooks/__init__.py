"""The webhook inbox (webhook_events): verify the signature, store once per event, acknowledge;
process in a task, announcing changed CRM records through integrations.ledger; backlog sweep and
replay (runbook 003). May use connections/, providers/ and the core.
"""
