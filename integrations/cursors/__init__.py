"""Sync cursors: incremental pulls of changed contacts and deals (crm_sync_cursors), claimed in
short transactions, their changes announced through integrations.ledger so that cached lookups
stay fresh; reset for operators. May use connections/, providers/ and the core.
"""
