from django.apps import AppConfig


class ReconcileConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "reconcile"

    def ready(self) -> None:
        from conduit.signals import messages_stored
        from reconcile.planning import on_messages_stored

        messages_stored.connect(on_messages_stored, dispatch_uid="reconcile.plan_on_ingest")
