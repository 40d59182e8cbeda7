"""Models of the reconcile app; later issues fill this module (see docs/architecture.md)."""
