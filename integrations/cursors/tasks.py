"""Celery tasks of the incremental pull (imported by integrations/tasks.py so autodiscovery finds them)."""
