"""Models of the retention app; later issues fill this module (see docs/architecture.md)."""
