"""The REST API of integrations' own data under /api/v1: connection flows (connections.py),
customer status and sync logs (status.py), operator endpoints (operators.py), the plain reads
behind them (reads.py) and their shapes for the OpenAPI schema (serializers.py). A top room:
may use every room below it; the write ledger's numbers come through integrations.ledger.
"""
