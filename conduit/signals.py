"""Signals the shared core sends, so apps can react without the core importing them."""

from django.dispatch import Signal

# Sent inside the storing transaction with workspace_id and message_ids (new messages only).
messages_stored = Signal()
