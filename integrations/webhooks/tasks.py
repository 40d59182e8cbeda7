"""Celery tasks of the webhook inbox (imported by integrations/tasks.py so autodiscovery finds them)."""
