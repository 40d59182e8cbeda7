"""The webhook inbox: verify, store, acknowledge; process in a task; replay (runbook 003)."""
