"""Models of the integrations app; later issues fill this module (see docs/architecture.md)."""
