from celery import shared_task
from django.utils import timezone

from conduit.models import Heartbeat


@shared_task(name="conduit.heartbeat")
def heartbeat() -> str:
    """Run by beat every 30 s; /healthz reports the age of the last one."""
    now = timezone.now()
    Heartbeat.objects.update_or_create(name="beat", defaults={"beat_at": now})
    return now.isoformat()
