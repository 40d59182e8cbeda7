"""Sync cursors: incremental pulls of changed contacts and deals that keep mappings fresh."""
